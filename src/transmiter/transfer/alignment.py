"""Transfer figures: how well two models' logits line up, and what the Procrustes rotation achieves.

On the paired fitting rows (the same images seen by the source and the target, logits over the same K
names), with the fitted adapter's projection W and the transfer's rotation Q:

    Z_s = standardize(l_s) W^T,  Z_t = standardize(l_t) W^T             (the adapter's latents)
    residual_before   = ||Z_t - Z_s||_F / ||Z_s||_F                      (Q = I: the source adapter as is)
    residual_after    = ||Z_t Q - Z_s||_F / ||Z_s||_F                    (what the rotation leaves)
    rotation_distance = ||Q - I||_F / sqrt(d)                            (0 = no rotation; at most 2)
    cka               = linear CKA of standardize(l_s) and standardize(l_t)

Linear CKA (Kornblith et al. 2019) compares the two row-Gram matrices after centring the columns:
||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F), 1 for Y = X Q with any orthogonal Q and 0 for
unrelated representations. W has orthonormal columns, so the CKA of the latents equals that of the
standardised logits. Everything is accumulated in float64 over row chunks.

    figures = transfer_figures(fitted_adapter, source_logits, target_logits, rotation=Q)
    linear_cka(x, x @ q)                    # 1.0 for an orthogonal q
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from transmiter.transfer.adapter import LogitAdapter, standardize_logits

__all__ = ["TRANSFER_FIGURES", "linear_cka", "relative_residual", "rotation_distance", "transfer_figures"]

# The keys `transfer_figures` returns, in the order reports show them.
TRANSFER_FIGURES = ("residual_before", "residual_after", "rotation_distance", "cka", "num_rows")
CHUNK_ROWS = 4096


def _chunks(*tensors: Tensor, size: int = CHUNK_ROWS):
    for i in range(0, tensors[0].shape[0], size):
        yield tuple(t[i : i + size].to(torch.float64) for t in tensors)


def _check_paired(x: Tensor, y: Tensor, what: str) -> None:
    if x.ndim != 2 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(
            f"{what} must be two [N, d] tensors of the same shape with N >= 2 paired rows; got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )


@torch.no_grad()
def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of two paired representations [N, d_x] and [N, d_y] (rows = the same samples)."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(
            f"linear_cka needs two [N, d] tensors with the same N >= 2 paired rows; got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    xx = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    yy = torch.zeros(y.shape[1], y.shape[1], dtype=torch.float64)
    yx = torch.zeros(y.shape[1], x.shape[1], dtype=torch.float64)
    sx = torch.zeros(x.shape[1], dtype=torch.float64)
    sy = torch.zeros(y.shape[1], dtype=torch.float64)
    for xb, yb in _chunks(x.cpu(), y.cpu()):
        xx += xb.T @ xb
        yy += yb.T @ yb
        yx += yb.T @ xb
        sx += xb.sum(0)
        sy += yb.sum(0)
    n = x.shape[0]
    mx, my = sx / n, sy / n
    # centred cross-products: X_c^T X_c = X^T X - n mx mx^T, and likewise
    xx -= n * torch.outer(mx, mx)
    yy -= n * torch.outer(my, my)
    yx -= n * torch.outer(my, mx)
    denom = torch.linalg.matrix_norm(xx) * torch.linalg.matrix_norm(yy)
    if float(denom) == 0.0:
        raise ValueError("linear_cka is undefined for a constant representation (zero variance)")
    return float(yx.pow(2).sum() / denom)


@torch.no_grad()
def relative_residual(z_source: Tensor, z_target: Tensor, rotation: Tensor | None = None) -> float:
    """||Z_t Q - Z_s||_F / ||Z_s||_F (Q = I when `rotation` is None)."""
    _check_paired(z_source, z_target, "relative_residual latents")
    q = None if rotation is None else rotation.detach().to(device="cpu", dtype=torch.float64)
    num = den = 0.0
    for zs, zt in _chunks(z_source.cpu(), z_target.cpu()):
        moved = zt if q is None else zt @ q
        num += float((moved - zs).pow(2).sum())
        den += float(zs.pow(2).sum())
    if den == 0.0:
        raise ValueError("relative_residual: the source latents are all zero")
    return math.sqrt(num / den)


def rotation_distance(rotation: Tensor) -> float:
    """||Q - I||_F / sqrt(d): 0 for the identity, 2 at most for an orthogonal Q (= sqrt(2 (1 - tr Q / d)))."""
    q = rotation.detach().to(device="cpu", dtype=torch.float64)
    if q.ndim != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"rotation must be a square matrix, got shape {tuple(q.shape)}")
    return float(torch.linalg.matrix_norm(q - torch.eye(q.shape[0], dtype=q.dtype)) / math.sqrt(q.shape[0]))


@torch.no_grad()
def transfer_figures(
    adapter: LogitAdapter, source_logits: Tensor, target_logits: Tensor, rotation: Tensor
) -> dict[str, Any]:
    """The figures of one transfer (module docstring) on paired logits [N, K] through `adapter`'s W."""
    _check_paired(source_logits, target_logits, "source and target logits")
    if source_logits.shape[1] != adapter.K:
        raise ValueError(
            f"logits have {source_logits.shape[1]} columns but the adapter works on K={adapter.K} names"
        )
    eps = adapter.config.eps
    zs_logits = standardize_logits(source_logits.cpu().to(torch.float64), eps)[0]
    zt_logits = standardize_logits(target_logits.cpu().to(torch.float64), eps)[0]
    W = adapter.W.detach().to(device="cpu", dtype=torch.float64)
    z_source, z_target = zs_logits @ W.T, zt_logits @ W.T
    return {
        "residual_before": relative_residual(z_source, z_target),
        "residual_after": relative_residual(z_source, z_target, rotation),
        "rotation_distance": rotation_distance(rotation),
        "cka": linear_cka(zs_logits, zt_logits),
        "num_rows": int(source_logits.shape[0]),
    }
