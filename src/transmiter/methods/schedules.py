"""Per-epoch learning-rate schedules of FT and Skip Tuning.

    from transmiter.methods.schedules import lr_factor, build_epoch_scheduler, effective_epochs
    lr_factor(epoch, total_epochs=5, warmup_epochs=1)          # 1, .905, .655, .345 for epochs 1..4
    sched = build_epoch_scheduler(optimizer, total_epochs=20, warmup_epochs=1, warmup_lr=1e-6)
    # Lightning: {"scheduler": sched, "interval": "epoch"} -> stepped once after every training epoch

Rules (traced from dassl's ConstantWarmupScheduler + CosineAnnealingLR, stepped per epoch):
* no warm-up:      lr(e) = base · 0.5 · (1 + cos(π · e / T))
* k warm-up epochs: lr(e) = warmup_lr for e < k (every param group), then
                   lr(e) = base · 0.5 · (1 + cos(π · (e - k) / T))  — the cosine is shifted by k epochs and
                   never reaches its tail (T=20, k=1: last epoch uses 0.0245).
* `effective_epochs(epochs, divisor)`: Skip Tuning divides MAX_EPOCH by 4 (integer division) on ImageNet,
  SUN397 and Food101; the divisor lives in the dataset config. FT does not apply it.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "EpochLambda",
    "build_epoch_scheduler",
    "cosine_factor",
    "effective_epochs",
    "lr_at_epoch",
    "lr_factor",
]


def cosine_factor(step: float, total: int) -> float:
    """0.5 · (1 + cos(π · step / total))."""
    if total <= 0:
        raise ValueError(f"total_epochs={total} must be >= 1")
    return 0.5 * (1.0 + math.cos(math.pi * step / total))


def lr_factor(epoch: int, total_epochs: int, warmup_epochs: int = 0) -> float:
    """Multiplier of the base lr in `epoch` (0-based). Returns 0.0 during warm-up, where the lr is the
    constant `warmup_lr` rather than a multiple of the base (see `lr_at_epoch`)."""
    if epoch < warmup_epochs:
        return 0.0
    return cosine_factor(epoch - warmup_epochs, total_epochs)


def lr_at_epoch(
    base_lr: float, epoch: int, total_epochs: int, warmup_epochs: int = 0, warmup_lr: float | None = None
) -> float:
    """The learning rate used throughout `epoch` (0-based)."""
    if epoch < warmup_epochs:
        if warmup_lr is None:
            raise ValueError("warmup_epochs > 0 needs a warmup_lr")
        return float(warmup_lr)
    return base_lr * lr_factor(epoch, total_epochs, warmup_epochs)


class EpochLambda:
    """Picklable LambdaLR multiplier for one param group (a callable object, so LambdaLR saves its state)."""

    def __init__(
        self, base_lr: float, total_epochs: int, warmup_epochs: int = 0, warmup_lr: float | None = None
    ):
        if warmup_epochs > 0 and warmup_lr is None:
            raise ValueError("warmup_epochs > 0 needs a warmup_lr")
        if base_lr <= 0:
            raise ValueError(f"base lr {base_lr} must be > 0")
        self.base_lr = float(base_lr)
        self.total_epochs = int(total_epochs)
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_lr = None if warmup_lr is None else float(warmup_lr)

    def __call__(self, epoch: int) -> float:
        return (
            lr_at_epoch(self.base_lr, epoch, self.total_epochs, self.warmup_epochs, self.warmup_lr)
            / self.base_lr
        )


def build_epoch_scheduler(
    optimizer: torch.optim.Optimizer,
    total_epochs: int,
    warmup_epochs: int = 0,
    warmup_lr: float | None = None,
) -> LambdaLR:
    """LambdaLR over epochs, one multiplier per param group (each group's own base lr, shared warm-up lr)."""
    lambdas = [
        EpochLambda(group["lr"], total_epochs, warmup_epochs, warmup_lr) for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, lr_lambda=lambdas)


def effective_epochs(epochs: int, divisor: int = 1) -> int:
    """Skip Tuning's epoch rule: epochs // divisor (at least 1). divisor 4 for ImageNet, SUN397, Food101."""
    if divisor < 1:
        raise ValueError(f"epoch_divisor={divisor} must be >= 1")
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    return max(1, epochs // divisor)
