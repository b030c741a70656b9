"""TransMiter+: refine a transferred adapter with a few labelled TARGET samples.

Input rows: the target model's zero-shot logits over the K names, and an integer label. The loss is
cross-entropy on the adapter output restricted to the supervised columns ``class_ids`` (the base
classes in base-to-novel; all C classes otherwise): ``CE(adapter(x)[:, class_ids], label)``.

Labels are, by default, indices into the C-class label space (``label_space="global"``) and are
mapped to positions in ``class_ids``; with ``label_space="local"`` they already are positions.

Defaults (reference ``post_finetune.py`` argparse, with the epochs fixed since its default was 0):
AdamW lr 1e-4, weight decay 1e-3, global batch 128, 10 epochs (set on the Trainer), per-step cosine
schedule with 10 % linear warm-up; input noise as in fitting (alpha 0.5, p 0.5, per global batch).

Projection during refinement (``projection``): default **"orthogonal"** - the moved W is re-wrapped
in PyTorch's orthogonal parametrisation, initialised exactly at W_new (dynamic trivialisation
base = W_new), so push and pull stay a transpose pair. This keeps the refined adapter a valid
TransMiter adapter (it can itself be transferred again with Procrustes) and regularises the few-shot
step. ``"free"`` trains W as a plain matrix (tied push/pull, orthogonality not enforced), closest to
the reference, which trains unconstrained (and untied) in/out projections. All MLP parameters are
always trainable.

Selection: fixed epochs by default (the last state is the result). With ``select_on_val=True`` the
state with the best accuracy on the validation loader - which must be the few-shot VALIDATION split,
never test - is kept (ties keep the earlier state; the state before any update counts as a candidate
only if validation runs before training).

    module = TransMiterPlusModule(transferred_adapter, class_ids=base_ids, seed=cfg.seed)
    trainer.fit(module, datamodule=LogitPairDataModule(train=(target_zs, labels), batch_size=128))
    refined = module.refined_adapter()

Checkpoints: ``adapter`` and ``class_ids`` are not hyper-parameters; pass them again to
``TransMiterPlusModule.load_from_checkpoint(path, adapter=..., class_ids=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from transmiter.transfer.adapter import LogitAdapter
from transmiter.transfer.training import LogitNoise, WarmupCosine

__all__ = ["DEFAULT_EPOCHS", "TransMiterPlusModule"]

DEFAULT_EPOCHS = 10  # fixed in advance (the reference default, 0, does nothing); set on the Trainer

REFINE_PROJECTIONS = ("orthogonal", "free")


class TransMiterPlusModule(L.LightningModule):
    """Few-shot cross-entropy refinement of a (transferred) adapter."""

    def __init__(
        self,
        adapter: LogitAdapter,
        class_ids: Sequence[int] | None = None,
        *,
        num_classes: int | None = None,
        label_space: str = "global",
        projection: str = "orthogonal",
        lr: float = 1e-4,
        weight_decay: float = 1e-3,
        warmup_ratio: float = 0.1,
        noise_alpha: float = 0.5,
        noise_p: float = 0.5,
        noise_mode: str = "batch",
        select_on_val: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if projection not in REFINE_PROJECTIONS:
            raise ValueError(f"projection must be one of {REFINE_PROJECTIONS}, got {projection!r}")
        if label_space not in ("global", "local"):
            raise ValueError(f"label_space must be 'global' or 'local', got {label_space!r}")
        if class_ids is None:
            if num_classes is None:
                raise ValueError("give class_ids (supervised columns) or num_classes (uses columns 0..C-1)")
            class_ids = range(int(num_classes))
        ids = [int(i) for i in class_ids]
        if not ids or len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) >= adapter.K:
            raise ValueError(
                f"class_ids must be distinct column indices in [0, K={adapter.K}), got {ids[:10]}..."
            )
        self.save_hyperparameters(ignore=["adapter", "class_ids"])
        # independent, trainable copy (a transferred adapter holds frozen tensors)
        self.adapter = adapter.clone(projection=projection).train()
        self.adapter.requires_grad_(True)
        self.register_buffer("class_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        lookup = torch.full((max(ids) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(ids)] = torch.arange(len(ids))
        self.register_buffer("_label_lookup", lookup, persistent=False)
        self.noise = LogitNoise(noise_alpha, noise_p, noise_mode, seed=seed)
        self.val_acc = MulticlassAccuracy(num_classes=len(ids), average="micro")
        self.best_val_acc: float | None = None
        self._best_tensors: dict[str, Tensor] | None = None

    @classmethod
    def from_settings(
        cls, adapter: LogitAdapter, class_ids: Sequence[int], settings: Mapping[str, Any], *, seed: int
    ) -> TransMiterPlusModule:
        """The module for a `method.refine` block (the study and `transmiter.refine_adapter` both build it
        here); `epochs` and `batch_size` belong to the Trainer and the DataModule and are not read."""
        s = settings
        return cls(
            adapter,
            class_ids=class_ids,
            projection=s["projection"],
            lr=s["lr"],
            weight_decay=s["weight_decay"],
            warmup_ratio=s["warmup_ratio"],
            noise_alpha=s["noise_alpha"],
            noise_p=s["noise_p"],
            noise_mode=s["noise_mode"],
            select_on_val=s["select_on_val"],
            seed=seed,
        )

    # ---------------------------------------------------------------- core
    def forward(self, logits: Tensor) -> Tensor:
        """Scores over the supervised columns (``adapter(x)[:, class_ids]``)."""
        return self.adapter(logits)[:, self.class_ids]

    def local_labels(self, labels: Tensor) -> Tensor:
        """Map labels to positions in ``class_ids`` (``label_space="global"``) or check them ("local")."""
        labels = labels.long()
        if self.hparams.label_space == "local":
            bad = (labels < 0) | (labels >= self.class_ids.numel())
            local = labels
        else:
            in_range = (labels >= 0) & (labels < self._label_lookup.numel())
            local = torch.where(
                in_range, self._label_lookup[labels.clamp(0, self._label_lookup.numel() - 1)], -1
            )
            bad = local < 0
        if bool(bad.any()):
            raise ValueError(
                f"label(s) {labels[bad].unique()[:5].tolist()} not among class_ids (e.g. a novel-class image in "
                f"a base-class refinement set); fix: pass only images of the supervised classes, or check "
                f"class_ids / label_space"
            )
        return local

    def on_fit_start(self) -> None:
        self.noise.set_rank(self.global_rank)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        logits, labels = batch
        y = self.local_labels(labels)
        scores = self(self.noise(logits))
        loss = F.cross_entropy(scores.float(), y)
        acc = (scores.argmax(-1) == y).float().mean()
        B = logits.shape[0]
        self.log("train/ce", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=B, prog_bar=True)
        self.log("train/acc", acc, on_step=False, on_epoch=True, sync_dist=True, batch_size=B)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        logits, labels = batch
        y = self.local_labels(labels)
        scores = self(logits)
        self.val_acc.update(scores.float(), y)
        loss = F.cross_entropy(scores.float(), y)
        self.log("val/ce", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=logits.shape[0])

    def on_validation_epoch_end(self) -> None:
        acc = float(self.val_acc.compute())  # synchronised across processes by torchmetrics
        self.val_acc.reset()
        self.log("val/acc", acc, sync_dist=False)
        if not self.hparams.select_on_val or self.trainer.sanity_checking:
            return
        if self.best_val_acc is None or acc > self.best_val_acc:
            self.best_val_acc = acc
            self._best_tensors = {k: v.cpu() for k, v in self.adapter.export_tensors().items()}

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        opt = torch.optim.AdamW(self.adapter.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(total, hp.warmup_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["transmiter_noise_state"] = self.noise.state_dict()
        checkpoint["transmiter_best_val_acc"] = self.best_val_acc

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.noise.load_state_dict(checkpoint.get("transmiter_noise_state", {}))
        self.best_val_acc = checkpoint.get("transmiter_best_val_acc")

    # ---------------------------------------------------------------- results
    def refined_adapter(self, projection: str = "frozen") -> LogitAdapter:
        """Frozen copy of the result: the best-on-validation state if selected, else the last state."""
        adapter = self.adapter.clone(projection=projection)
        if self.hparams.select_on_val and self._best_tensors is not None:
            adapter.load_tensors(self._best_tensors)
        adapter.eval()
        if projection == "frozen":
            adapter.requires_grad_(False)
        return adapter
