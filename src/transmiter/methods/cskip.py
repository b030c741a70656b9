"""Class-wise Skipping (CSkip) of Skip Tuning.

    from transmiter.methods.cskip import ClassSkipper, expected_kept_classes
    skipper = ClassSkipper(num_classes=19, top_ratio=0.5, max_top=50, lam=0.3, mask_mode="step")
    kept, new_labels = skipper(image_features, prototypes, labels)   # kept: sorted class ids
    expected_kept_classes(19)   # ≈ 11.1 (Pets base), expected_kept_classes(5) == 4.0 (EuroSAT base)

Per batch: sim = normalise(img) @ Pᵀ with P the frozen, L2-normalised zero-shot prototypes; every sample's
ground-truth entry is set to 1e4; s_c = max over the batch; classes sorted by s_c (descending, stable) give
rank positions r = 0..C-1. Rank r is kept with probability p_r: 1 for r < k = min(ceil(top_ratio·C), max_top)
(top_ratio > 1 means an absolute count: ceil(min(top_ratio, C))); for the m = C - k other ranks,
x = linspace(0, 5, m), f = Exp-pdf(x; scale λ), p = min-max normalised f (1 at rank k, 0 at the last rank).

Decisions (where the reference implementation has quirks):
* mask_mode="step" (default) draws a fresh keep mask over rank positions at every step;
  mask_mode="once" reproduces the reference: one draw per run, reused for every batch (the classes filling
  those positions still change with the ranking). The once-mask is drawn from a generator seeded by `seed`,
  so every DDP rank draws the same one; `state_dict()` / `load_state_dict()` carry it across resumes.
* m == 1 (a single rank beyond k): min-max normalisation is 0/0 there; that rank gets p = 0 (never kept by
  the mask) — the reference's NaN comparison has the same effect, without the NaN.
* Every class that appears as a label in the batch is forced into the kept set, so a ground truth is never
  dropped (the reference would silently relabel it as class 0 when a batch holds more distinct labels than k).
* If top_ratio == 1 or k == C, CSkip is off (`active` False) and all classes are used.
* Labels are remapped to positions inside the ascending kept set (`searchsorted`).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ClassSkipper",
    "cskip_top_k",
    "expected_kept_classes",
    "rank_classes",
    "rank_keep_probabilities",
    "select_classes",
]

GT_SCORE = 1e4


def cskip_top_k(num_classes: int, top_ratio: float = 0.5, max_top: int = 50) -> int:
    """k: the number of top-ranked classes always kept."""
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1")
    if top_ratio <= 0:
        raise ValueError(f"top_ratio={top_ratio} must be > 0")
    if top_ratio <= 1:
        k = math.ceil(top_ratio * num_classes)
    else:
        k = math.ceil(min(top_ratio, num_classes))
    return int(min(k, max_top, num_classes))


def rank_keep_probabilities(
    num_classes: int, top_ratio: float = 0.5, max_top: int = 50, lam: float = 0.3
) -> torch.Tensor:
    """p_r for every rank position r = 0..C-1 (float64)."""
    if lam <= 0:
        raise ValueError(f"lambda={lam} must be > 0")
    k = cskip_top_k(num_classes, top_ratio, max_top)
    m = num_classes - k
    p = torch.ones(num_classes, dtype=torch.float64)
    if m == 1:
        p[k:] = 0.0  # 0/0 in the min-max normalisation: defined as never kept by the mask
    elif m > 1:
        x = torch.linspace(0.0, 5.0, m, dtype=torch.float64)
        f = torch.exp(-x / lam) / lam
        p[k:] = (f - f.min()) / (f.max() - f.min())
    return p


def expected_kept_classes(
    num_classes: int, top_ratio: float = 0.5, max_top: int = 50, lam: float = 0.3
) -> float:
    """E[K'] = k + Σ p_r over the skippable ranks (label forcing can only add to it; with class-homogeneous
    batches the single ground truth is at rank 0, so this is exact). C=19 -> ≈11.1, C=5 -> 4, C=500 -> ≈77."""
    if top_ratio == 1:
        return float(num_classes)
    return float(rank_keep_probabilities(num_classes, top_ratio, max_top, lam).sum())


def rank_classes(
    image_features: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Class ids sorted by max-over-batch similarity (descending, stable); batch labels come first."""
    img = torch.nn.functional.normalize(image_features.detach().float(), dim=-1)
    sim = img @ prototypes.detach().float().to(img.device).T  # [B, C]
    sim[torch.arange(sim.shape[0], device=sim.device), labels.to(sim.device)] = GT_SCORE
    score = sim.max(dim=0).values
    return torch.argsort(score, descending=True, stable=True)


def select_classes(
    order: torch.Tensor, keep_rank: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept class ids (ascending; every label forced in) and labels remapped to positions in that set."""
    keep_rank = keep_rank.to(order.device)
    kept_mask = torch.zeros(order.numel(), dtype=torch.bool, device=order.device)
    kept_mask[order[keep_rank]] = True
    kept_mask[labels.to(order.device)] = True
    kept = torch.nonzero(kept_mask, as_tuple=False).flatten()
    new_labels = torch.searchsorted(kept, labels.to(kept.device))
    return kept, new_labels.to(labels.device)


class ClassSkipper:
    """Samples the kept class set of every training step (see the module docstring)."""

    def __init__(
        self,
        num_classes: int,
        top_ratio: float = 0.5,
        max_top: int = 50,
        lam: float = 0.3,
        mask_mode: str = "step",
        seed: int = 0,
    ):
        if mask_mode not in ("step", "once"):
            raise ValueError(
                f"cskip_mask={mask_mode!r}: use 'step' (fresh draw per step) or 'once' (reference)"
            )
        self.num_classes = int(num_classes)
        self.top_ratio = float(top_ratio)
        self.max_top = int(max_top)
        self.lam = float(lam)
        self.mask_mode = mask_mode
        self.seed = int(seed)
        self.k = cskip_top_k(self.num_classes, self.top_ratio, self.max_top)
        self.active = not (self.top_ratio == 1 or self.k == self.num_classes)
        self.probabilities = rank_keep_probabilities(self.num_classes, self.top_ratio, self.max_top, self.lam)
        self.once_mask: torch.Tensor | None = None

    def expected_kept(self) -> float:
        return expected_kept_classes(self.num_classes, self.top_ratio, self.max_top, self.lam)

    def draw_rank_mask(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A fresh keep mask over rank positions: keep_r = U_r < p_r."""
        u = torch.rand(self.num_classes, dtype=torch.float64, generator=generator)
        return u < self.probabilities

    def rank_mask(self) -> torch.Tensor:
        """The mask of this step: fresh ('step') or the single per-run draw ('once')."""
        if self.mask_mode == "step":
            return self.draw_rank_mask()
        if self.once_mask is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.once_mask = self.draw_rank_mask(gen)
        return self.once_mask

    def __call__(
        self, image_features: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(kept class ids or None when CSkip is off, remapped labels)."""
        if not self.active:
            return None, labels
        if prototypes.shape[0] != self.num_classes:
            raise ValueError(f"CSkip: {prototypes.shape[0]} prototypes for {self.num_classes} classes")
        order = rank_classes(image_features, prototypes, labels)
        return select_classes(order, self.rank_mask(), labels)

    def state_dict(self) -> dict:
        return {"once_mask": None if self.once_mask is None else self.once_mask.clone()}

    def load_state_dict(self, state: dict) -> None:
        mask = state.get("once_mask")
        self.once_mask = None if mask is None else mask.clone().bool()
