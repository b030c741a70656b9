"""Logit-arithmetic baselines for weak-to-strong transfer (reference ``eval_baseline_table``).

All act on the first C logits (task classes; auxiliary columns are dropped) and, by default, on
log-softmax scores; ``raw=True`` uses the raw logits instead (the reference does this in its domain
generalisation mode). Notation: t_zs = target zero-shot, s_ft = fine-tuned source, s_zs = source
zero-shot logits; log p = log_softmax over the C classes.

* ``eft_logits``     (reference "proxy", EFT-style): log p_t^zs + alpha (log p_s^ft - log p_s^zs)
* ``base_change``    : log p_s^ft + alpha (log p_t^zs - log p_s^zs)
* ``ensemble``       : alpha log p_s^ft + (1 - alpha) log p_t^zs
* ``self_ensemble``  : alpha log p_s^ft + (1 - alpha) log p_s^zs

The returned scores are meant for argmax / masked argmax (base-to-novel), not as normalised
log-probabilities.

PromptTransfer, also named as a baseline for TransMiter, is not defined in the material available to
this project (it is not in the reference code and its definition could not be retrieved), and is
therefore not implemented.

    scores = eft_logits(target_zs, source_ft, source_zs, alpha=1.0, num_classes=C)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["base_change", "eft_logits", "ensemble", "self_ensemble"]


def _scores(logits: Tensor, num_classes: int | None, raw: bool) -> Tensor:
    x = logits if num_classes is None else logits[..., :num_classes]
    x = x.float()
    return x if raw else F.log_softmax(x, dim=-1)


def _check(*tensors: Tensor, num_classes: int | None) -> int:
    C = num_classes if num_classes is not None else min(t.shape[-1] for t in tensors)
    for t in tensors:
        if t.shape[-1] < C:
            raise ValueError(f"logits with {t.shape[-1]} columns cannot provide C={C} class scores")
    if len({t.shape[:-1] for t in tensors}) != 1:
        raise ValueError(f"batch shapes differ: {[tuple(t.shape) for t in tensors]}")
    return C


def eft_logits(
    target_zs: Tensor,
    source_ft: Tensor,
    source_zs: Tensor,
    alpha: float = 1.0,
    *,
    num_classes: int | None = None,
    raw: bool = False,
) -> Tensor:
    """log p_t^zs + alpha (log p_s^ft - log p_s^zs) over the first C logits.

    ``num_classes`` defaults to the smallest width among the inputs (e.g. C when the fine-tuned
    source only has task-class logits while the zero-shot ones also hold auxiliary columns).
    """
    C = _check(target_zs, source_ft, source_zs, num_classes=num_classes)
    t, f, s = (_scores(x, C, raw) for x in (target_zs, source_ft, source_zs))
    return t + alpha * (f - s)


def base_change(
    target_zs: Tensor,
    source_ft: Tensor,
    source_zs: Tensor,
    alpha: float = 1.0,
    *,
    num_classes: int | None = None,
    raw: bool = False,
) -> Tensor:
    """log p_s^ft + alpha (log p_t^zs - log p_s^zs) over the first C logits."""
    C = _check(target_zs, source_ft, source_zs, num_classes=num_classes)
    t, f, s = (_scores(x, C, raw) for x in (target_zs, source_ft, source_zs))
    return f + alpha * (t - s)


def ensemble(
    target_zs: Tensor,
    source_ft: Tensor,
    alpha: float = 1.0,
    *,
    num_classes: int | None = None,
    raw: bool = False,
) -> Tensor:
    """alpha log p_s^ft + (1 - alpha) log p_t^zs over the first C logits."""
    C = _check(target_zs, source_ft, num_classes=num_classes)
    t, f = (_scores(x, C, raw) for x in (target_zs, source_ft))
    return alpha * f + (1.0 - alpha) * t


def self_ensemble(
    source_zs: Tensor,
    source_ft: Tensor,
    alpha: float = 1.0,
    *,
    num_classes: int | None = None,
    raw: bool = False,
) -> Tensor:
    """alpha log p_s^ft + (1 - alpha) log p_s^zs over the first C logits (source model only)."""
    C = _check(source_zs, source_ft, num_classes=num_classes)
    s, f = (_scores(x, C, raw) for x in (source_zs, source_ft))
    return alpha * f + (1.0 - alpha) * s
