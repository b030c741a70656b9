"""Contrastive (CLIP) pretraining of the synthetic architectures, cached by configuration hash.

Usage::

    from transmiter.synthetic.pretrain import pretrain_config, pretrain_or_load
    cfg = pretrain_config("SynthViT-S-8", scale="demo")
    ckpt = pretrain_or_load(cfg, cache_dir)          # trains once, then returns the cached file
    model, _, preprocess = open_clip.create_model_and_transforms("SynthViT-S-8", pretrained=str(ckpt))

Training is a :class:`SyntheticClipPretrainer` (LightningModule): open_clip's ``ClipLoss`` is built in
``setup()`` from ``global_rank``/``world_size`` (``local_loss=True, gather_with_grad=True``), so it stays
correct under DDP; each rank draws its own seeded batches on the fly from the scene generator (the global
batch is split across ranks); AdamW with linear warm-up and cosine decay; logit scale clamped to 100.

Cache layout (``cache_dir/<model>-<key16>/``): ``open_clip_model.safetensors`` (a plain state dict that
``open_clip`` loads from its path) and ``meta.json`` (config, SHA-256 and size of the checkpoint, training
stats). The checkpoint is written to a temporary file and atomically renamed; the sidecar is written (also
atomically) only afterwards, so a crash leaves either nothing or a checkpoint without a valid sidecar. A
cached entry is used only when the sidecar parses, its key matches and the file's SHA-256 matches;
anything else (truncated, corrupted, half-written) is retrained. A file lock serialises concurrent callers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import open_clip
import torch
from open_clip.loss import ClipLoss
from torch.utils.data import DataLoader, IterableDataset

from transmiter.io import atomic_path, atomic_write, file_digest, file_lock
from transmiter.synthetic.architectures import register_synthetic_models, synthetic_model_config
from transmiter.synthetic.batches import draw_batch
from transmiter.synthetic.kinds import KindNaming, caption_with_names
from transmiter.synthetic.world import (
    PRETRAIN_DISTRIBUTION,
    PRETRAIN_EASY_DISTRIBUTION,
    WORLD_VERSION,
    SceneDistribution,
)

log = logging.getLogger(__name__)

#: bump when the training procedure changes what a configuration produces
TRAIN_VERSION = "1"
CHECKPOINT_NAME = "open_clip_model.safetensors"
META_NAME = "meta.json"

#: number of trainings actually run in this process (tests use it to detect cache hits)
TRAINING_RUNS = 0


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pretrained checkpoint (hashed into the cache key)."""

    model_name: str
    steps: int = 500
    batch_size: int = 256  # global batch; split evenly across DDP ranks
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0
    seed: int = 0
    #: curriculum: with ``C = curriculum_fraction * steps``, batch ``i`` draws a share
    #: ``max(min_easy_fraction, 1 - i / C)`` of its scenes from ``easy_distribution`` (captioned with short
    #: captions) and the rest from ``distribution`` (full captions); ``curriculum_fraction=0``: no curriculum
    easy_distribution: SceneDistribution = field(default_factory=lambda: PRETRAIN_EASY_DISTRIBUTION)
    curriculum_fraction: float = 0.6
    min_easy_fraction: float = 0.25
    distribution: SceneDistribution = field(default_factory=lambda: PRETRAIN_DISTRIBUTION)
    #: how captions name the kinds (the class_knowledge world); None: colours and shapes only
    naming: KindNaming | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(
                f"PretrainConfig: steps >= 1 and batch_size >= 2 required, got {self.steps}, {self.batch_size}"
            )
        if not (0.0 <= self.curriculum_fraction <= 1.0 and 0.0 <= self.min_easy_fraction <= 1.0):
            raise ValueError("PretrainConfig: curriculum_fraction and min_easy_fraction must be in [0, 1]")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"PretrainConfig.warmup_steps must be in [0, steps], got {self.warmup_steps}")

    @property
    def curriculum_steps(self) -> int:
        return int(round(self.curriculum_fraction * self.steps))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["betas"] = list(self.betas)
        d["distribution"] = self.distribution.to_dict()
        d["easy_distribution"] = self.easy_distribution.to_dict()
        if self.naming is None:
            del d["naming"]  # keeps the keys of worlds without names
        else:
            d["naming"] = self.naming.to_dict()
        return d

    def key(self) -> str:
        """SHA-256 over this config, the architecture JSON and the world/training code versions."""
        payload = {
            "config": self.to_dict(),
            "architecture": synthetic_model_config(self.model_name),
            "world_version": WORLD_VERSION,
            "train_version": TRAIN_VERSION,
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


#: per-scale training recipes (the architectures are the same at every scale)
PRETRAIN_SCALES: dict[str, dict[str, Any]] = {
    "demo": {"steps": 500, "batch_size": 256, "warmup_steps": 50},
    "tiny": {"steps": 4, "batch_size": 16, "warmup_steps": 1},
}


def pretrain_config(model_name: str, scale: str = "demo", **overrides: Any) -> PretrainConfig:
    """The standard recipe for ``model_name`` at ``scale`` ("demo" or "tiny"), with optional overrides."""
    if scale not in PRETRAIN_SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {sorted(PRETRAIN_SCALES)}")
    kwargs = dict(PRETRAIN_SCALES[scale]) | overrides
    return PretrainConfig(model_name=model_name, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# data


def easy_fraction(step: int, curriculum_steps: int, min_easy: float) -> float:
    """Share of easy scenes in batch ``step`` of the curriculum."""
    if curriculum_steps <= 0:
        return 0.0
    return max(min_easy, 1.0 - step / curriculum_steps)


class SceneCaptionStream(IterableDataset):
    """``steps`` batches of (normalised images NCHW float32, caption tokens), drawn on the fly.

    Batch ``i`` of rank ``r`` is drawn from ``numpy.random.default_rng([seed, r, i])``, so the stream is
    reproducible and ranks see different data. With a curriculum, the first scenes of each batch come from
    the easy distribution (:func:`easy_fraction`).
    """

    def __init__(
        self,
        dist: SceneDistribution,
        steps: int,
        batch_size: int,
        seed: int,
        rank: int,
        tokenizer: Any,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        easy_dist: SceneDistribution | None = None,
        curriculum_steps: int = 0,
        min_easy_fraction: float = 0.0,
        naming: KindNaming | None = None,
    ) -> None:
        super().__init__()
        self.dist, self.steps, self.batch_size = dist, steps, batch_size
        self.seed, self.rank, self.tokenizer = seed, rank, tokenizer
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.easy_dist = easy_dist
        self.curriculum_steps = curriculum_steps if easy_dist is not None else 0
        self.min_easy_fraction = min_easy_fraction
        self.naming = naming

    def __len__(self) -> int:
        return self.steps

    def draw(self, i: int) -> tuple[np.ndarray, list[str], int]:
        """Raw batch ``i``: uint8 images, captions and how many leading scenes are easy ones."""
        rng = np.random.default_rng([self.seed, self.rank, i])
        frac = easy_fraction(i, self.curriculum_steps, self.min_easy_fraction)
        n_easy = int(round(frac * self.batch_size))
        images, captions = [], []
        parts = ((self.easy_dist, n_easy, "short"), (self.dist, self.batch_size - n_easy, "full"))
        for dist, n, style in parts:
            if n > 0 and self.naming is None:
                b = draw_batch(dist, n, rng, caption_style=style)
                images.append(b.images)
                captions += b.captions
            elif n > 0:
                b = draw_batch(dist, n, rng, with_captions=False)
                images.append(b.images)
                captions += caption_with_names(b.scenes, rng, self.naming, style)
        return np.concatenate(images), captions, n_easy

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, captions, _ = self.draw(i)
        return to_model_input(images, self.mean, self.std), self.tokenizer(captions)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(self.steps):
            yield self.batch(i)


def to_model_input(images: np.ndarray, mean: torch.Tensor | tuple, std: torch.Tensor | tuple) -> torch.Tensor:
    """uint8 NHWC images -> normalised float32 NCHW tensor (same result as open_clip's eval transform on
    32-pixel images: ToTensor + Normalize)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


# ---------------------------------------------------------------------------------------------------------
# module


def uses_gpu(accelerator: str) -> bool:
    """Whether ``accelerator`` ("cpu", "gpu"/"cuda" or "auto") trains on a GPU here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warm-up from 1/warmup to 1, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class SyntheticClipPretrainer(L.LightningModule):
    """Contrastive pretraining of one synthetic open_clip architecture from random initialisation."""

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        register_synthetic_models()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        with _drop_log_message("No pretrained weights loaded"):
            self.model = open_clip.create_model(cfg.model_name)
        self.tokenizer = open_clip.get_tokenizer(cfg.model_name)
        pp = self.model.visual.preprocess_cfg
        self.mean, self.std = tuple(pp["mean"]), tuple(pp["std"])
        self.loss_fn: ClipLoss | None = None
        self.local_batch = cfg.batch_size

    def setup(self, stage: str) -> None:
        world_size = self.trainer.world_size
        if self.cfg.batch_size % world_size:
            raise ValueError(
                f"PretrainConfig.batch_size={self.cfg.batch_size} is the global batch and must be divisible by "
                f"the world size {world_size}"
            )
        self.local_batch = self.cfg.batch_size // world_size
        self.loss_fn = ClipLoss(
            local_loss=True,
            gather_with_grad=True,
            cache_labels=True,
            rank=self.global_rank,
            world_size=world_size,
        )

    def train_dataloader(self) -> DataLoader:
        stream = SceneCaptionStream(
            self.cfg.distribution,
            self.cfg.steps,
            self.local_batch,
            self.cfg.seed,
            self.global_rank,
            self.tokenizer,
            self.mean,
            self.std,
            easy_dist=self.cfg.easy_distribution,
            curriculum_steps=self.cfg.curriculum_steps,
            min_easy_fraction=self.cfg.min_easy_fraction,
            naming=self.cfg.naming,
        )
        return DataLoader(stream, batch_size=None, num_workers=0)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, tokens = batch
        image_features, text_features, logit_scale = self.model(images, tokens)
        assert self.loss_fn is not None, "setup() builds the loss"
        loss = self.loss_fn(image_features, text_features, logit_scale)
        self.log("loss", loss, prog_bar=True)
        self.log("scale", logit_scale, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim < 2 or "logit_scale" in name or "embedding" in name:
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [
            {"params": decay, "weight_decay": self.cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=self.cfg.betas, eps=self.cfg.eps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.cfg.warmup_steps, self.cfg.steps)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ---------------------------------------------------------------------------------------------------------
# training + caching


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def training_threads() -> int:
    """Torch threads for pretraining: the core count, unless ``TRANSMITER_TORCH_THREADS`` says otherwise.

    On a machine shared with other busy processes, fewer threads than cores can be several times faster
    (OpenMP threads wait on each other when they do not all get a core).
    """
    env = os.environ.get("TRANSMITER_TORCH_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"TRANSMITER_TORCH_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return cpu_cores()


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _drop_log_message(fragment: str) -> Iterator[None]:
    """Drop root-logger records containing ``fragment`` (open_clip warns about random initialisation)."""

    class _Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return fragment not in record.getMessage()

    flt = _Filter()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def pretrain(
    cfg: PretrainConfig,
    *,
    progress: bool = True,
    accelerator: str = "auto",
    devices: int | str = 1,
    root_dir: str | Path | None = None,
    threads: int | None = None,
    callbacks: list[L.Callback] | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train ``cfg.model_name`` from scratch; returns the (CPU, eval-mode) open_clip model and stats.

    Uses ``threads`` torch threads, by default :func:`training_threads` (all cores). ``callbacks`` are added
    to the Trainer's (e.g. :class:`transmiter.synthetic.concurrent.CoreShare`, which may change the thread
    count while training; a callback with a ``stats()`` method adds its figures to the returned stats).
    On a GPU the precision is bf16-mixed, fp32 on CPU.
    """
    global TRAINING_RUNS
    from transmiter.callbacks import progress_bar

    TRAINING_RUNS += 1
    module = SyntheticClipPretrainer(cfg)
    use_gpu = uses_gpu(accelerator)
    timer = _StepTimer(cfg.steps)
    extra = list(callbacks or [])
    callbacks = [timer, *extra, progress_bar(leave=True)] if progress else [timer, *extra]
    start, cpu_start = time.perf_counter(), time.process_time()
    threads = threads or training_threads()
    with _torch_threads(threads), _quiet_lightning(), tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="gpu" if use_gpu else "cpu",
            devices=devices,
            precision="bf16-mixed" if use_gpu else "32-true",
            max_steps=cfg.steps,
            max_epochs=1,
            gradient_clip_val=cfg.grad_clip or None,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            callbacks=callbacks,
            log_every_n_steps=max(1, min(50, cfg.steps // 10)),
            num_sanity_val_steps=0,
            default_root_dir=str(root_dir or tmp),
        )
        with warnings.catch_warnings():
            # the stream is consumed in the main process (num_workers=0), so its __len__ is exact
            warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
            # Lightning's own use of a deprecated torch pytree API; nothing a user can act on
            warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
            trainer.fit(module)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1
    }
    model = module.model.to("cpu").float().eval()
    stats = {
        "train_seconds": round(seconds, 2),
        "loop_seconds": round(timer.seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "final_loss": metrics.get("loss"),
        "logit_scale": float(model.logit_scale.detach().exp()),
        "torch_threads": threads,
        "cpu_cores": cpu_cores(),
        "accelerator": "gpu" if use_gpu else "cpu",
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    for cb in extra:
        if hasattr(cb, "stats"):
            stats |= cb.stats()
    return model, stats


class _StepTimer(L.Callback):
    """Logs progress (INFO) about every 10 % of the steps; keeps the wall time of the training loop."""

    def __init__(self, total: int) -> None:
        self.total, self.every = total, max(1, total // 10)
        self.start = 0.0
        self.seconds = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.seconds = time.perf_counter() - self.start
        step = batch_idx + 1
        if step % self.every == 0 or step == self.total:
            loss = trainer.callback_metrics.get("loss")
            log.info(
                "%s step %d/%d loss %.3f (%.1f s)",
                pl_module.cfg.model_name,
                step,
                self.total,
                float(loss) if loss is not None else float("nan"),
                self.seconds,
            )


def save_checkpoint(model: torch.nn.Module, path: str | Path) -> str:
    """Atomically write ``model.state_dict()`` as safetensors; returns its SHA-256."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path, fsync=True) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
        digest = file_digest(tmp)
    return digest


def entry_dir(cfg: PretrainConfig, cache_dir: str | Path) -> Path:
    """The cache folder of a configuration."""
    return Path(cache_dir) / f"{cfg.model_name}-{cfg.key()[:16]}"


def read_valid_meta(cfg: PretrainConfig, cache_dir: str | Path) -> dict[str, Any] | None:
    """The sidecar of a valid cached checkpoint for ``cfg``, or None (missing, stale, corrupted)."""
    folder = entry_dir(cfg, cache_dir)
    ckpt, meta_path = folder / CHECKPOINT_NAME, folder / META_NAME
    if not ckpt.is_file() or not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != cfg.key():
        return None
    if meta.get("bytes") != ckpt.stat().st_size or meta.get("sha256") != file_digest(ckpt):
        return None
    return meta


def pretrain_or_load(
    cfg: PretrainConfig,
    cache_dir: str | Path,
    *,
    progress: bool = True,
    accelerator: str = "auto",
    threads: int | None = None,
    callbacks: list[L.Callback] | None = None,
) -> Path:
    """Path of a valid pretrained checkpoint for ``cfg`` in ``cache_dir``; trains (once) when needed
    (``threads`` and ``callbacks`` go to :func:`pretrain`)."""
    register_synthetic_models()
    folder = entry_dir(cfg, cache_dir)
    ckpt = folder / CHECKPOINT_NAME
    with file_lock(Path(cache_dir) / f".{folder.name}.lock"):
        if read_valid_meta(cfg, cache_dir) is not None:
            return ckpt
        if folder.exists():
            log.warning("cached checkpoint in %s is missing, stale or corrupted; retraining", folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        log.info("pretraining %s (%d steps x %d)", cfg.model_name, cfg.steps, cfg.batch_size)
        model, stats = pretrain(
            cfg, progress=progress, accelerator=accelerator, threads=threads, callbacks=callbacks
        )
        digest = save_checkpoint(model, ckpt)
        meta = {
            "format": 1,
            "key": cfg.key(),
            "model_name": cfg.model_name,
            "checkpoint": CHECKPOINT_NAME,
            "sha256": digest,
            "bytes": ckpt.stat().st_size,
            "config": cfg.to_dict(),
            "world_version": WORLD_VERSION,
            "train_version": TRAIN_VERSION,
            "open_clip_version": open_clip.__version__,
            "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stats": stats,
        }
        atomic_write(folder / META_NAME, json.dumps(meta, indent=2) + "\n", fsync=True)
    return ckpt


def install_checkpoint(
    cfg: PretrainConfig, cache_dir: str | Path, source: str | Path, sha256: str, stats: dict[str, Any]
) -> Path:
    """Put a checkpoint trained elsewhere for ``cfg`` (the weights shipped with the package) into the
    cache as if it had been trained here; ``sha256`` must match the file. Returns the cached path."""
    source = Path(source)
    if file_digest(source) != sha256:
        raise ValueError(f"{source}: SHA-256 does not match its manifest; rebuild with `--force`")
    folder = entry_dir(cfg, cache_dir)
    ckpt = folder / CHECKPOINT_NAME
    with file_lock(Path(cache_dir) / f".{folder.name}.lock"):
        if read_valid_meta(cfg, cache_dir) is not None:
            return ckpt
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        with atomic_path(ckpt, fsync=True) as tmp:
            shutil.copyfile(source, tmp)
        meta = {
            "format": 1,
            "key": cfg.key(),
            "model_name": cfg.model_name,
            "checkpoint": CHECKPOINT_NAME,
            "sha256": sha256,
            "bytes": ckpt.stat().st_size,
            "config": cfg.to_dict(),
            "world_version": WORLD_VERSION,
            "train_version": TRAIN_VERSION,
            "installed_from": str(source),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stats": stats,
        }
        atomic_write(folder / META_NAME, json.dumps(meta, indent=2) + "\n", fsync=True)
    return ckpt


def forget(cfg: PretrainConfig, cache_dir: str | Path) -> None:
    """Remove the cached checkpoint of ``cfg`` (the next :func:`pretrain_or_load` trains it again)."""
    folder = entry_dir(cfg, cache_dir)
    with file_lock(Path(cache_dir) / f".{folder.name}.lock"):
        shutil.rmtree(folder, ignore_errors=True)
