"""Regularised orthogonal Procrustes on paired latents, with a streamed (and DDP-summed) statistic.

Problem: Q* = argmin over orthogonal Q of ||Z_t Q - Z_s||_F^2 + lam ||Q - I||_F^2, with Z_s, Z_t the
N x d source / target latents (rows paired by image). Both terms reduce to -2 tr(Q^T M) + const with

    M = Z_t^T Z_s + lam I,     M = U S V^T (SVD),     Q* = U V^T.

lam -> infinity gives Q = I; lam = 0 is the classical (unregularised) Procrustes solution.

lam scaling: the reference uses an ABSOLUTE lam (500), whose relative strength shrinks as N grows
(Z_t^T Z_s grows like N; a standardised K-logit row has squared norm K - 1). ``lam_per_sample=True``
uses lam * N instead, so the same value means the same relative pull towards I at any N.

Streaming: ``accumulate_cross_covariance`` sums Z_t^T Z_s batch by batch in float64, so N can be
large; under ``torch.distributed`` it all-reduces (sums) the matrix and N across processes, so every
rank gets the statistic of the full, concatenated data - the same Q as a single process.

    cc = accumulate_cross_covariance(((zs_b, zt_b) for zs_b, zt_b in pairs))     # latents
    Q = regularized_procrustes(cc.matrix, lam=500.0, num_samples=cc.count)
    Q = regularized_procrustes(z_source=Zs, z_target=Zt, lam=0.0)                 # one shot
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from transmiter.transfer.adapter import standardize_logits

__all__ = [
    "CrossCovariance",
    "accumulate_cross_covariance",
    "all_reduce_cross_covariance",
    "distributed_active",
    "procrustes_objective",
    "regularized_procrustes",
]


def distributed_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@dataclass
class CrossCovariance:
    """Running sum of Z_t^T Z_s (d x d, float64) and the number of rows seen."""

    matrix: Tensor
    count: int = 0

    @classmethod
    def zeros(cls, dim: int, device: torch.device | str | None = None) -> CrossCovariance:
        return cls(torch.zeros(dim, dim, dtype=torch.float64, device=device), 0)

    @torch.no_grad()
    def update(self, z_source: Tensor, z_target: Tensor) -> CrossCovariance:
        if z_source.shape != z_target.shape or z_source.ndim != 2:
            raise ValueError(
                f"paired latents must both be [n, d] with the same shape, got {tuple(z_source.shape)} and "
                f"{tuple(z_target.shape)}"
            )
        zs = z_source.to(device=self.matrix.device, dtype=torch.float64)
        zt = z_target.to(device=self.matrix.device, dtype=torch.float64)
        self.matrix += zt.T @ zs
        self.count += int(zs.shape[0])
        return self


@torch.no_grad()
def all_reduce_cross_covariance(cc: CrossCovariance) -> CrossCovariance:
    """Sum the statistic over all processes (no-op without an initialised process group > 1)."""
    if not distributed_active():
        return cc
    n = torch.tensor([cc.count], dtype=torch.float64, device=cc.matrix.device)
    dist.all_reduce(cc.matrix, op=dist.ReduceOp.SUM)
    dist.all_reduce(n, op=dist.ReduceOp.SUM)
    cc.count = int(n.item())
    return cc


@torch.no_grad()
def accumulate_cross_covariance(
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    projection: Tensor | None = None,
    eps: float = 1e-6,
    distributed: bool | None = None,
    device: torch.device | str | None = None,
    dim: int | None = None,
) -> CrossCovariance:
    """Stream ``(source, target)`` pairs into M0 = sum_b Z_t,b^T Z_s,b.

    Without ``projection`` each pair already holds latents ``[n, d]``. With ``projection`` (W,
    ``d x K``) each pair holds raw logits ``[n, K]`` and the latents are ``standardize(l) W^T``
    (float64). ``distributed=None`` sums over processes when a process group is initialised; ``False``
    keeps the local statistic. ``dim`` (latent size) lets a process with no local batch still take
    part in the all-reduce when no ``projection`` is given.
    """
    cc: CrossCovariance | None = None
    W64 = None
    for source, target in batches:
        if projection is not None:
            if W64 is None:
                W64 = projection.detach().to(dtype=torch.float64, device=source.device)
            zs = standardize_logits(source.to(torch.float64), eps)[0] @ W64.T
            zt = standardize_logits(target.to(torch.float64), eps)[0] @ W64.T
        else:
            zs, zt = source, target
        if cc is None:
            cc = CrossCovariance.zeros(zs.shape[1], device=device if device is not None else zs.device)
        cc.update(zs, zt)
    if cc is None:
        if projection is None and dim is None:
            raise ValueError("no batches given and neither projection nor dim to size the statistic")
        d = projection.shape[0] if projection is not None else int(dim)  # type: ignore[arg-type]
        dev = device if device is not None else (projection.device if projection is not None else None)
        cc = CrossCovariance.zeros(d, device=dev)
    use_dist = distributed_active() if distributed is None else (distributed and distributed_active())
    if use_dist:
        all_reduce_cross_covariance(cc)
    if cc.count == 0:
        raise ValueError("no samples were accumulated (empty batches on every process)")
    return cc


@torch.no_grad()
def regularized_procrustes(
    cross_cov: Tensor | CrossCovariance | None = None,
    *,
    z_source: Tensor | None = None,
    z_target: Tensor | None = None,
    lam: float = 0.0,
    lam_per_sample: bool = False,
    num_samples: int | None = None,
    return_singular_values: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Q = U V^T for M = Z_t^T Z_s + lam_eff I = U S V^T (float64, on M's device).

    Give either ``cross_cov`` (the matrix Z_t^T Z_s or a :class:`CrossCovariance`) or the paired
    latents ``z_source``/``z_target``. ``lam_per_sample=True`` makes lam_eff = lam * N (N from the
    latents, the ``CrossCovariance`` or ``num_samples``); the default is the reference's absolute lam.
    """
    if cross_cov is None:
        if z_source is None or z_target is None:
            raise ValueError("give cross_cov, or both z_source and z_target")
        cc = CrossCovariance.zeros(z_source.shape[1], device=z_source.device).update(z_source, z_target)
        M0, n = cc.matrix, cc.count
    elif isinstance(cross_cov, CrossCovariance):
        M0, n = cross_cov.matrix, cross_cov.count
    else:
        M0, n = cross_cov.to(torch.float64), num_samples
    if M0.ndim != 2 or M0.shape[0] != M0.shape[1]:
        raise ValueError(f"cross-covariance must be square, got shape {tuple(M0.shape)}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    lam_eff = float(lam)
    if lam_per_sample:
        if n is None:
            raise ValueError("lam_per_sample=True needs the number of samples (num_samples=...)")
        lam_eff *= float(n)
    M = M0 + lam_eff * torch.eye(M0.shape[0], dtype=M0.dtype, device=M0.device)
    U, S, Vh = torch.linalg.svd(M)
    Q = U @ Vh
    return (Q, S) if return_singular_values else Q


def procrustes_objective(Q: Tensor, z_source: Tensor, z_target: Tensor, lam: float = 0.0) -> float:
    """||Z_t Q - Z_s||_F^2 + lam ||Q - I||_F^2 (float64), for checks."""
    Q = Q.double()
    eye = torch.eye(Q.shape[0], dtype=Q.dtype, device=Q.device)
    fit = (z_target.double() @ Q - z_source.double()).pow(2).sum()
    return float(fit + lam * (Q - eye).pow(2).sum())
