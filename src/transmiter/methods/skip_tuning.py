"""Skip Tuning (CVPR 2025): LSkip + CSkip + class-homogeneous batches + staged LR.

    from transmiter.methods.skip_tuning import SkipTuningCLIP
    module = SkipTuningCLIP(model, tokenizer, base_names, "a photo of a {}.",
                            train_dataset=train_set,     # torch Dataset -> (image, label, index), TRAIN transform
                            shots=16, eval_classnames={"base": base_names, "novel": novel_names},
                            epoch_divisor=1)             # the defaults are the base-to-novel schedule
    trainer = L.Trainer(max_epochs=module.max_epochs, precision="bf16-mixed")   # fp32 on CPU
    trainer.fit(module)                       # the module serves its own training batches (token cache)
    module.set_eval_order("base", "novel")
    trainer.test(module, dataloaders=[base_test_loader, novel_test_loader])   # plain full CLIP forward

The schedules of the other settings (few-shot, base-to-base, cross-dataset) are in
`transmiter.config.schema.SkipTuningConfig.per_setting`; the ÷4 epoch rule is each dataset's `epoch_divisor`.

Mechanisms and decisions:
* LSkip. Blocks [0, ω) of the image tower and [0, ω_t) of the text tower are frozen with the embeddings,
  ln_pre and logit_scale (`freeze_for_finetuning(model, ω, ω_t)`); ω defaults to image depth // 2 and ω_t to
  the same fraction of the text depth (`resolve_omegas`). Trained: the upper blocks, ln_post/proj,
  ln_final/text_projection.
* Image-token cache: at the start of every epoch, one no-grad pass of `image_front` (patch embed ... block
  ω-1, never the tuned blocks) over the training images under a fresh draw of the train augmentation. Stored
  batch-first [n, L, D] in `cache_dtype` (fp16 by default) in CPU memory, or in a memory-mapped file under
  `cache_dir` (one file per rank) for big datasets. The pass runs lazily when the epoch's training iterator
  starts (after any checkpoint restore, before the first batch) under the Trainer's precision context.
* DDP: the batch plan of an epoch depends only on (seed, epoch), so each rank knows its share in advance and
  extracts ONLY the images its batches use (ranks extract disjoint sets; nothing is communicated).
  `batch_size` is per rank (whole class batches per rank; FT's is global): see SkipTuningCLIP.
* Text cache: text hidden states after block ω_t-1 for all training prompts, built once (the front is frozen
  and the prompts fixed, so it can never change) on the training device.
* CSkip (`methods/cskip.py`): prototypes = zero-shot L2-normalised text features of the training classes,
  computed once before the first step and saved in the checkpoint (a resumed run keeps them). Per step the
  kept classes are ranked / sampled, the text cache and token ids sliced, labels remapped. `cskip_mask`
  "step" (default, fresh draw per step) or "once" (the reference's single draw per run, saved in the
  checkpoint). Ground truths are never dropped.
* Token drop (off by default, `drop_ratio` 0): r ~ U(0, drop_ratio), ceil((L-1)·r) PATCH tokens removed; the
  CLS token is never dropped. `token_drop="batch"` (reference: same positions for the whole batch) or
  "sample" (independent positions per sample, same count).
* Batches: `ClassBatchSampler` — class-homogeneous when shots >= 4 (one class per batch of `batch_size`),
  uniformly random otherwise; redrawn every epoch; DDP shares disjoint with equal counts.
* Optimiser: SGD (momentum 0.9, wd 5e-4) with two param groups: text tower at `text_lr`, image tower
  (`visual.*`) at `image_lr`. `warmup_epochs` constant epochs at `warmup_lr`, then the cosine shifted by the
  warm-up (schedules.py), over `max_epochs = epochs // epoch_divisor`.
* Inference is a plain full CLIP forward from pixels (no cache, no drop, no class skipping).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from transmiter.data.class_batches import ClassBatchSampler
from transmiter.distributed import exclude_from_ddp_sync
from transmiter.methods.cskip import ClassSkipper
from transmiter.methods.finetune import ClipTuningModule
from transmiter.methods.schedules import build_epoch_scheduler, effective_epochs
from transmiter.models.towers import (
    check_splittable,
    encode_text,
    freeze_for_finetuning,
    image_back,
    image_front,
    resolve_omegas,
    text_back,
    text_front,
)
from transmiter.trainers import attached_trainer

__all__ = ["ImageTokenCache", "SkipTuningCLIP", "dataset_labels", "drop_tokens"]

_DTYPES = {"float16": torch.float16, "float32": torch.float32}


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def dataset_labels(dataset: Dataset, labels: Sequence[int] | None = None) -> list[int]:
    """Labels of every item without decoding images when possible.

    Order of preference: `labels` given; a `labels` / `targets` attribute; a list attribute (`items`,
    `data`, `datums`, `samples`) of objects with `.label`; a Subset of any of these; else one pass over the
    dataset (decodes every image once).
    """
    n = len(dataset)
    if labels is not None:
        out = [int(y) for y in labels]
    elif isinstance(dataset, Subset):
        base = dataset_labels(dataset.dataset)
        out = [base[i] for i in dataset.indices]
    else:
        out = None
        for attr in ("labels", "targets"):
            value = getattr(dataset, attr, None)
            if value is not None and not callable(value) and len(value) == n:
                out = [int(y) for y in value]
                break
        if out is None:
            for attr in ("items", "data", "datums", "samples"):
                value = getattr(dataset, attr, None)
                if isinstance(value, list | tuple) and len(value) == n and n and hasattr(value[0], "label"):
                    out = [int(d.label) for d in value]
                    break
        if out is None:
            out = [int(dataset[i][1]) for i in range(n)]
    if len(out) != n:
        raise ValueError(f"{len(out)} labels for a training set of {n} items")
    return out


def drop_tokens(
    tokens: torch.Tensor, drop_ratio: float, mode: str = "batch", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Remove ceil((L-1)·r) patch tokens, r ~ U(0, drop_ratio); CLS (position 0) is always kept.

    mode "batch": the same positions for the whole batch (the reference); "sample": per-sample positions.
    Kept tokens stay in their original order. tokens: [B, L, D] batch-first.
    """
    if drop_ratio <= 0:
        return tokens
    if not 0 < drop_ratio < 1:
        raise ValueError(f"drop_ratio={drop_ratio} must lie in [0, 1)")
    if mode not in ("batch", "sample"):
        raise ValueError(f"token_drop={mode!r}: use 'batch' or 'sample'")
    b, length, _ = tokens.shape
    n_patches = length - 1
    r = float(torch.rand((), generator=generator)) * drop_ratio
    n_drop = min(math.ceil(n_patches * r), n_patches - 1) if n_patches > 1 else 0
    if n_drop <= 0:
        return tokens
    n_keep = n_patches - n_drop
    if mode == "batch":
        keep = torch.randperm(n_patches, generator=generator)[:n_keep].sort().values + 1
        keep = torch.cat([torch.zeros(1, dtype=torch.long), keep]).to(tokens.device)
        return tokens[:, keep]
    scores = torch.rand(b, n_patches, generator=generator)
    keep = scores.argsort(dim=1)[:, :n_keep].sort(dim=1).values + 1
    keep = torch.cat([torch.zeros(b, 1, dtype=torch.long), keep], dim=1).to(tokens.device)
    return torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class ImageTokenCache:
    """Image tokens after block ω-1 for the dataset indices one rank serves in one epoch.

    In CPU memory by default, or a memory-mapped file `<cache_dir>/image_tokens_<tag>_<pid>_<random>.bin`
    (numpy memmap). The name is unique to this process and cache, so jobs (and ranks) sharing a cache_dir
    never write into each other's file; and the file is unlinked as soon as it is mapped: its disk space lives
    exactly as long as the mapping, so nothing is left behind, even by a killed job. Storage is reused from
    epoch to epoch when the row count and token shape do not change.
    """

    def __init__(
        self,
        num_items: int,
        dtype: torch.dtype = torch.float16,
        cache_dir: str | os.PathLike | None = None,
        tag: str = "rank0",
    ):
        if dtype not in (torch.float16, torch.float32):
            raise ValueError(f"cache dtype {dtype} not supported; use torch.float16 or torch.float32")
        self.num_items = int(num_items)
        self.dtype = dtype
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.tag = tag
        self._file_id = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.row_of = torch.full((self.num_items,), -1, dtype=torch.long)
        self.store: torch.Tensor | None = None
        self._memmap: np.memmap | None = None
        self.epoch: int | None = None

    @property
    def path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"image_tokens_{self.tag}_{self._file_id}.bin"

    @property
    def nbytes(self) -> int:
        return 0 if self.store is None else self.store.numel() * self.store.element_size()

    def allocate(self, rows: Sequence[int], token_shape: tuple[int, int]) -> None:
        shape = (len(rows), *token_shape)
        self.epoch = None
        self.row_of.fill_(-1)
        self.row_of[torch.as_tensor(list(rows), dtype=torch.long)] = torch.arange(len(rows))
        if self.store is not None and tuple(self.store.shape) == shape:
            return
        self.store = None
        self._memmap = None
        if self.cache_dir is None:
            self.store = torch.empty(shape, dtype=self.dtype)
        else:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            np_dtype = np.float16 if self.dtype == torch.float16 else np.float32
            self._memmap = np.memmap(self.path, dtype=np_dtype, mode="w+", shape=shape)
            self.path.unlink()  # the mapping keeps the (now nameless) file: freed when it is dropped
            self.store = torch.from_numpy(self._memmap)

    def _rows(self, indices: torch.Tensor) -> torch.Tensor:
        rows = self.row_of[indices.cpu().long()]
        if bool((rows < 0).any()):
            missing = indices.cpu()[rows < 0].tolist()[:8]
            raise KeyError(
                f"image-token cache of epoch {self.epoch} holds no tokens for dataset indices {missing}: the "
                "batch plan and the cache disagree (was the epoch's cache built for this rank's batches?)"
            )
        return rows

    def write(self, indices: torch.Tensor, tokens: torch.Tensor) -> None:
        assert self.store is not None
        self.store[self._rows(indices)] = tokens.detach().to("cpu", self.dtype)

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        assert self.store is not None
        return self.store[self._rows(indices)]

    def flush(self) -> None:
        if self._memmap is not None:
            self._memmap.flush()


class _CachedTokenBatches(IterableDataset):
    """One epoch of (tokens [B, L, D], labels [B], indices [B]) for this rank, read from the token cache.

    Starting the iteration prepares the epoch (builds the cache) — Lightning starts it after restoring any
    checkpoint and before the first batch, on every rank.
    """

    def __init__(self, owner: SkipTuningCLIP):
        super().__init__()
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner.batch_sampler)

    def __iter__(self):
        owner = self.owner
        epoch = owner.current_training_epoch()
        owner.prepare_epoch(epoch)
        labels = owner.train_labels_tensor
        for batch in owner.batch_sampler.rank_batches(epoch):
            idx = torch.as_tensor(batch, dtype=torch.long)
            yield owner.image_cache.read(idx), labels[idx], idx


# ----------------------------------------------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------------------------------------------


class SkipTuningCLIP(ClipTuningModule):
    """Skip Tuning of an open_clip ViT CLIP (any size). See the module docstring.

    `batch_size` is PER RANK, unlike FT's global batch (ClassificationDataModule divides that by the world
    size): a class-homogeneous batch is one class's `batch_size` images, and under DDP every rank takes whole
    batches of the epoch's plan (rank r: batches r, r + W, ...). One optimiser step therefore averages W batches,
    W * batch_size images of W classes, and an epoch has 1/W of the steps. batch_size=4 on one device is the
    reference; on W devices it is an effective batch of 4W (scale the learning rates if you need the same
    optimisation).

    `cache_dir`: None keeps the image-token cache in CPU memory; a folder holds it in a memory-mapped file
    there instead (ImageTokenCache), for datasets whose cache does not fit in RAM.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        classnames: Sequence[str],
        template: str = "a photo of a {}.",
        *,
        train_dataset: Dataset | None = None,
        train_labels: Sequence[int] | None = None,
        omega: int | None = None,
        text_omega: int | None = None,
        text_lr: float = 2e-5,
        image_lr: float = 5e-6,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        epochs: int = 20,
        epoch_divisor: int = 1,
        warmup_epochs: int = 1,
        warmup_lr: float | None = 1e-6,
        batch_size: int = 4,
        shots: int | None = None,
        class_homogeneous: bool | None = None,
        seed: int = 0,
        top_ratio: float = 0.5,
        max_top: int = 50,
        lam: float = 0.3,
        cskip_mask: str = "step",
        drop_ratio: float = 0.0,
        token_drop: str = "batch",
        extraction_batch_size: int = 128,
        extraction_workers: int = 0,
        cache_dtype: str = "float16",
        cache_dir: str | None = None,
        eval_classnames: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    ):
        check_splittable(model)
        super().__init__(model, tokenizer, classnames, template, eval_classnames)
        if cache_dtype not in _DTYPES:
            raise ValueError(f"cache_dtype={cache_dtype!r}: use one of {sorted(_DTYPES)}")
        if token_drop not in ("batch", "sample"):
            raise ValueError(f"token_drop={token_drop!r}: use 'batch' or 'sample'")
        if not 0 <= drop_ratio < 1:
            raise ValueError(f"drop_ratio={drop_ratio} must lie in [0, 1)")
        if warmup_epochs > 0 and warmup_lr is None:
            raise ValueError("warmup_epochs > 0 needs warmup_lr (1e-6 base2novel, 1e-8 cross)")
        self.omega, self.text_omega = resolve_omegas(model, omega, text_omega)
        self.save_hyperparameters(
            {
                "classnames": self.classnames,
                "template": self.template,
                "omega": omega,
                "text_omega": text_omega,
                "text_lr": float(text_lr),
                "image_lr": float(image_lr),
                "momentum": float(momentum),
                "weight_decay": float(weight_decay),
                "epochs": int(epochs),
                "epoch_divisor": int(epoch_divisor),
                "warmup_epochs": int(warmup_epochs),
                "warmup_lr": None if warmup_lr is None else float(warmup_lr),
                "batch_size": int(batch_size),
                "shots": None if shots is None else int(shots),
                "class_homogeneous": class_homogeneous,
                "seed": int(seed),
                "top_ratio": float(top_ratio),
                "max_top": int(max_top),
                "lam": float(lam),
                "cskip_mask": str(cskip_mask),
                "drop_ratio": float(drop_ratio),
                "token_drop": str(token_drop),
                "extraction_batch_size": int(extraction_batch_size),
                "extraction_workers": int(extraction_workers),
                "cache_dtype": str(cache_dtype),
                "cache_dir": None if cache_dir is None else str(cache_dir),
                "eval_classnames": {k: list(v) for k, v in self.eval_sets.items()},
            }
        )
        self.text_lr, self.image_lr = float(text_lr), float(image_lr)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.epochs = effective_epochs(int(epochs), int(epoch_divisor))
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_lr = None if warmup_lr is None else float(warmup_lr)
        self.batch_size, self.shots, self.seed = int(batch_size), shots, int(seed)
        self.class_homogeneous = class_homogeneous
        self.drop_ratio, self.token_drop = float(drop_ratio), token_drop
        self.extraction_batch_size, self.extraction_workers = (
            int(extraction_batch_size),
            int(extraction_workers),
        )
        self.cache_dtype = _DTYPES[cache_dtype]
        self.cache_dir = cache_dir
        self.skipper = ClassSkipper(len(self.classnames), top_ratio, max_top, lam, cskip_mask, seed)

        freeze_for_finetuning(self.model, self.omega, self.text_omega)

        self.train_dataset = train_dataset
        self._given_train_labels = None if train_labels is None else [int(y) for y in train_labels]
        self.train_labels_tensor: torch.Tensor | None = None
        self.batch_sampler: ClassBatchSampler | None = None
        self.image_cache: ImageTokenCache | None = None
        self._manual_epoch = 0  # the epoch served when no Trainer is attached (benchmarks, manual loops)
        embed_dim = self._embed_dim()
        self.register_buffer("cskip_prototypes", torch.zeros(len(self.classnames), embed_dim))
        self.register_buffer("cskip_prototypes_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("text_cache", None, persistent=False)
        exclude_from_ddp_sync(self, ["cskip_prototypes", "cskip_prototypes_ready", "text_cache"])

    # -- configuration -------------------------------------------------------------------------------------
    def _embed_dim(self) -> int:
        with torch.no_grad():
            return int(encode_text(self.model, self.train_token_ids[:1]).shape[-1])

    @property
    def max_epochs(self) -> int:
        """Epochs the Trainer should run: epochs // epoch_divisor."""
        return self.epochs

    def set_train_dataset(self, dataset: Dataset, labels: Sequence[int] | None = None) -> None:
        """Attach (or replace) the raw training set: items (image, label[, index]) under the TRAIN transform."""
        self.train_dataset = dataset
        self._given_train_labels = None if labels is None else [int(y) for y in labels]
        self.batch_sampler = None

    def current_training_epoch(self) -> int:
        trainer = attached_trainer(self)
        return trainer.current_epoch if trainer is not None else self._manual_epoch

    def _world(self) -> tuple[int, int]:
        trainer = attached_trainer(self)
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        return 1, 0

    def setup_training_data(self) -> None:
        """Labels, batch sampler and (empty) image cache for this rank; called by `train_dataloader`."""
        if self.train_dataset is None:
            raise ValueError(
                "SkipTuningCLIP needs its raw training set: pass train_dataset= (items (image, label, index) "
                "under the TRAIN transform) or call module.set_train_dataset(ds) before trainer.fit(module)"
            )
        labels = dataset_labels(self.train_dataset, self._given_train_labels)
        bad = [y for y in labels if not 0 <= y < len(self.classnames)]
        if bad:
            raise ValueError(f"training labels {sorted(set(bad))[:8]} outside [0, {len(self.classnames)})")
        self.train_labels_tensor = torch.as_tensor(labels, dtype=torch.long)
        world, rank = self._world()
        mode = None if self.class_homogeneous is None else ("class" if self.class_homogeneous else "random")
        self.batch_sampler = ClassBatchSampler(
            labels,
            self.batch_size,
            mode=mode,
            shots=self.shots,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            classnames=self.classnames,  # names the classes left without a batch, if any
        )
        if len(self.batch_sampler) == 0:
            raise ValueError(
                f"{self.batch_sampler.total_batches()} training batches cannot be shared by {world} ranks"
            )
        self.image_cache = ImageTokenCache(len(labels), self.cache_dtype, self.cache_dir, tag=f"rank{rank}")

    def train_dataloader(self) -> DataLoader:
        """This rank's cached-token batches; epochs are prepared when iteration starts."""
        self.setup_training_data()
        return DataLoader(_CachedTokenBatches(self), batch_size=None, num_workers=0)

    # -- caches --------------------------------------------------------------------------------------------
    def _precision_context(self):
        trainer = attached_trainer(self)
        return trainer.precision_plugin.forward_context() if trainer is not None else nullcontext()

    @torch.no_grad()
    def prepare_static(self) -> None:
        """Text cache (once per process) and CSkip prototypes (once per run, from the current = zero-shot
        weights, before the first step; restored from a checkpoint on resume)."""
        was_training = self.model.training
        self.model.eval()
        try:
            ids = self.train_token_ids
            if self.text_cache is None or self.text_cache.device != ids.device:
                chunks = [
                    text_front(self.model, ids[i : i + 256], self.text_omega).to(self.cache_dtype)
                    for i in range(0, ids.shape[0], 256)
                ]
                self.text_cache = torch.cat(chunks)
            if not bool(self.cskip_prototypes_ready):
                self.cskip_prototypes.copy_(
                    self.text_features(self.classnames).to(self.cskip_prototypes.dtype)
                )
                self.cskip_prototypes_ready.fill_(True)
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def prepare_epoch(self, epoch: int) -> None:
        """Build this rank's image-token cache for `epoch` (no-op if already built)."""
        if self.batch_sampler is None or self.image_cache is None:
            self.setup_training_data()
        self.prepare_static()
        cache = self.image_cache
        if cache.epoch == epoch:
            return
        self.batch_sampler.set_epoch(epoch)
        rows = self.batch_sampler.indices_for_epoch(epoch)
        loader = DataLoader(
            Subset(self.train_dataset, rows),
            batch_size=self.extraction_batch_size,
            shuffle=False,
            num_workers=self.extraction_workers,
            pin_memory=self.device.type == "cuda",
        )
        was_training = self.model.training
        self.model.eval()
        pos = 0
        try:
            with self._precision_context():
                for batch in loader:
                    images, labels = batch[0], batch[1]
                    n = images.shape[0]
                    idx = torch.as_tensor(rows[pos : pos + n], dtype=torch.long)
                    pos += n
                    if not torch.equal(torch.as_tensor(labels).long().cpu(), self.train_labels_tensor[idx]):
                        raise ValueError("the training set returned labels that differ from its known labels")
                    tokens = image_front(self.model, images.to(self.device, non_blocking=True), self.omega)
                    if cache.store is None or pos == n:
                        cache.allocate(rows, tuple(tokens.shape[1:]))
                    cache.write(idx, tokens)
        finally:
            self.model.train(was_training)
        cache.flush()
        cache.epoch = epoch

    # -- training ------------------------------------------------------------------------------------------
    def compute_loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """CE over the CSkip-kept classes from cached image tokens; returns (loss, number of kept classes)."""
        if self.text_cache is None:  # normally built when the epoch's iterator starts
            self.prepare_static()
        if self.training and self.drop_ratio > 0:
            tokens = drop_tokens(tokens, self.drop_ratio, self.token_drop)
        img = image_back(self.model, tokens, self.omega, normalize=True)
        kept, targets = self.skipper(img, self.cskip_prototypes, labels)
        if kept is None:
            hidden, ids = self.text_cache, self.train_token_ids
        else:
            kept = kept.to(self.text_cache.device)
            hidden, ids = self.text_cache[kept], self.train_token_ids[kept]
        txt = text_back(self.model, hidden, ids, self.text_omega, normalize=True)
        logits = self.logits_against(img, txt)
        return F.cross_entropy(logits.float(), targets), int(ids.shape[0])

    def training_step(self, batch, batch_idx: int):
        tokens, labels = batch[0], batch[1]
        if tokens.dim() != 3:
            raise TypeError(
                f"SkipTuningCLIP.training_step got a batch of shape {tuple(tokens.shape)}, not cached image "
                "tokens [B, L, D]: it trains from its own token cache. Call trainer.fit(module) without train "
                "dataloaders (or have the DataModule return module.train_dataloader())."
            )
        loss, kept = self.compute_loss(tokens, labels)
        bs = labels.shape[0]
        # step values as they are; epoch means reduced over DDP ranks (the keys on_step+on_epoch would give)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=bs)
        self.log("train/kept_classes_step", float(kept), on_step=True, on_epoch=False, batch_size=bs)
        self.log(
            "train/kept_classes_epoch",
            float(kept),
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=bs,
        )
        return loss

    def param_groups(self) -> list[dict]:
        """Staged LR: the text tower at text_lr, the image tower (`visual.*`) at image_lr."""
        text, image = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (image if name.startswith("visual.") else text).append(p)
        groups = [
            {"params": text, "lr": self.text_lr, "name": "text"},
            {"params": image, "lr": self.image_lr, "name": "image"},
        ]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self):
        self.warn_epoch_mismatch(self.epochs)
        optimizer = torch.optim.SGD(
            self.param_groups(), lr=self.text_lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        scheduler = build_epoch_scheduler(optimizer, self.epochs, self.warmup_epochs, self.warmup_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # -- checkpoint extras ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["skip_tuning"] = {"cskip": self.skipper.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("skip_tuning")
        if extra:
            self.skipper.load_state_dict(extra.get("cskip", {}))
