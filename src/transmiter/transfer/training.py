"""Shared pieces of the two gradient-based TransMiter stages (fitting and TransMiter+).

* :class:`LogitNoise` - Gaussian input noise, std = ``alpha`` x the row's own logit std, applied with
  probability ``p`` either once per (global) batch (``mode="batch"``, the reference) or per sample
  (``mode="sample"``). Draws come from the object's own seeded generators, never the global RNG.
  In "batch" mode the coin generator is seeded identically on every DDP rank, so all ranks flip the
  same way at each step: the flip is per *global* batch, as in a single-process run. The noise
  values themselves come from a rank-specific generator (different samples, different noise).
* :func:`warmup_cosine_factor` / :class:`WarmupCosine` - per-step LR factor: linear warm-up, then
  cosine decay to 0.
* :func:`distillation_kl` - the fitting loss s * KL(softmax(t / T_t) || softmax(y / tau)).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NOISE_MODES", "LogitNoise", "WarmupCosine", "distillation_kl", "warmup_cosine_factor"]

NOISE_MODES = ("batch", "sample")
_RANK_STRIDE = 1_000_003


class LogitNoise:
    """Reproducible logit-noise augmentation (see module docstring)."""

    def __init__(self, alpha: float = 0.5, p: float = 0.5, mode: str = "batch", seed: int = 0) -> None:
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"noise probability must be in [0, 1], got {p}")
        if alpha < 0:
            raise ValueError(f"noise alpha must be >= 0, got {alpha}")
        self.alpha, self.p, self.mode, self.seed = float(alpha), float(p), mode, int(seed)
        self.rank = 0
        self._coin: torch.Generator | None = None
        self._noise: torch.Generator | None = None
        self._pending_state: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        return self.alpha > 0 and self.p > 0

    def set_rank(self, rank: int) -> None:
        if rank != self.rank:
            self.rank = int(rank)
            self._coin = self._noise = None

    def _generators(self, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
        if self._coin is None or self._coin.device != device:
            self._coin = torch.Generator(device=device).manual_seed(self.seed)
            self._noise = torch.Generator(device=device).manual_seed(
                self.seed + _RANK_STRIDE * (self.rank + 1)
            )
            if self._pending_state is not None:
                self._coin.set_state(self._pending_state["coin"])
                self._noise.set_state(self._pending_state["noise"])
                self._pending_state = None
        assert self._noise is not None
        return self._coin, self._noise

    def __call__(self, logits: Tensor) -> Tensor:
        if not self.enabled:
            return logits
        coin, gen = self._generators(logits.device)
        B = logits.shape[0]
        if self.mode == "batch":
            flip = torch.rand((), generator=coin, device=logits.device)
            if bool(flip >= self.p):
                return logits
            mask = None
        else:
            mask = (torch.rand(B, 1, generator=gen, device=logits.device) < self.p).to(logits.dtype)
        std = logits.detach().float().std(dim=-1, keepdim=True, unbiased=True).to(logits.dtype)
        noise = torch.randn(logits.shape, generator=gen, device=logits.device, dtype=logits.dtype)
        noise = noise * (self.alpha * std)
        if mask is not None:
            noise = noise * mask
        return logits + noise

    def state_dict(self) -> dict[str, Any]:
        if self._coin is None or self._noise is None:
            return dict(self._pending_state) if self._pending_state else {}
        return {"coin": self._coin.get_state(), "noise": self._noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore generator states (applied lazily when the device is known)."""
        if state:
            self._pending_state = {"coin": state["coin"].cpu(), "noise": state["noise"].cpu()}
            self._coin = self._noise = None


def warmup_cosine_factor(step: int, total_steps: int, warmup_ratio: float) -> float:
    """LR multiplier at optimiser step ``step`` (0-based): linear warm-up over the first
    ``ceil(warmup_ratio * total)`` steps (reaching 1 at the last warm-up step), then cosine to 0."""
    total = max(int(total_steps), 1)
    warm = math.ceil(warmup_ratio * total) if warmup_ratio > 0 else 0
    if step < warm:
        return (step + 1) / warm
    decay = max(total - warm, 1)
    progress = min((step - warm) / decay, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Picklable ``LambdaLR`` multiplier (a callable object, so ``LambdaLR.state_dict`` keeps it)."""

    def __init__(self, total_steps: int, warmup_ratio: float) -> None:
        self.total_steps, self.warmup_ratio = int(total_steps), float(warmup_ratio)

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(step, self.total_steps, self.warmup_ratio)


def distillation_kl(
    student: Tensor,
    teacher: Tensor,
    *,
    teacher_temperature: float = 0.5,
    temperature: float = 1.0,
    coef: float = 1.0,
) -> Tensor:
    """s * KL(softmax(teacher / T_t) || softmax(student / tau)), batch-mean, s = tau^2 * T_t * coef.

    Same value as ``nn.KLDivLoss(reduction="batchmean")`` on (log-probs of the student, probs of
    the teacher); computed in fp32 from log-probabilities on both sides for stability.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ")
    scale = temperature**2 * teacher_temperature * coef
    log_q = F.log_softmax(student.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher.float() / teacher_temperature, dim=-1)
    return scale * F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
