"""TransMiter phase 2, knowledge transfer WITHOUT backpropagation.

Given a fitted source adapter (projection W, MLP) and paired zero-shot logits of the same images from
the source and the target model over the SAME K names in the SAME order (C task classes + the aux
names stored with the adapter):

    Z_s = standardize(l_s) W^T,   Z_t = standardize(l_t) W^T          (source's trained W, no noise)
    M   = Z_t^T Z_s + lam I = U S V^T,   Q = U V^T                      (regularised Procrustes)
    W_new = Q^T W                                                       (used for push AND pull)

The target forward is then z_t -> W_new z_t (~ the source latent) -> unchanged MLP -> W_new^T ->
de-standardise with the target's own statistics. W_new is still orthogonal, so push/pull remain a
transpose pair. The result is a new adapter with a FROZEN projection whose tensors do not require
grad; the input adapter is not modified.

No gradients: the whole computation runs under ``torch.inference_mode()`` (one streamed pass over the
pairs, a d x d product sum and one d x d SVD). Only the final copy into the returned module runs with
inference mode switched off (still under ``no_grad``), so that the returned module holds ordinary
tensors that can later be moved, loaded into, or refined by TransMiter+; inference tensors cannot.

lam: absolute by default (reference: 500, so its effect depends on N); ``scale_lam_by_n=True`` uses
lam * N. Under ``torch.distributed`` each process passes ITS shard of the pairs; the statistic is
summed across processes and Q is broadcast from rank 0, so the result equals a single-process run.

Chained transfer (weak -> medium -> strong) needs nothing special - each hop is a transfer of the
adapter obtained at the previous hop, with logits of the model it was moved to as the new "source":

    medium_adapter = transfer_adapter(weak_adapter,   l_weak,   l_medium, lam=500)
    strong_adapter = transfer_adapter(medium_adapter, l_medium, l_strong, lam=500)

(all logits over the same K names; the latents of hop 2 go through the medium adapter's W_new, so
the rotations compose: W_strong = Q2^T Q1^T W_weak).

    adapter_t = transfer_adapter(adapter_s, source_logits, target_logits, lam=500.0)
    details   = transfer_adapter_with_details(adapter_s, source_logits, target_logits)  # + Q, N, S
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from transmiter.transfer.adapter import PROJECTION_KEY, LogitAdapter
from transmiter.transfer.procrustes import (
    accumulate_cross_covariance,
    distributed_active,
    regularized_procrustes,
)

__all__ = ["TransferResult", "rotate_adapter", "transfer_adapter", "transfer_adapter_with_details"]


@dataclass
class TransferResult:
    adapter: LogitAdapter  # frozen target adapter
    rotation: Tensor  # Q (d x d, float64, CPU)
    singular_values: Tensor  # of M = Z_t^T Z_s + lam_eff I (float64, CPU)
    num_samples: int  # N summed over processes
    lam: float  # as given
    lam_effective: float  # lam, or lam * N with scale_lam_by_n
    scale_lam_by_n: bool


def _chunked_pairs(
    source_logits: Tensor | None,
    target_logits: Tensor | None,
    batches: Iterable[tuple[Tensor, Tensor]] | None,
    chunk_size: int,
    K: int,
) -> Iterator[tuple[Tensor, Tensor]]:
    if batches is not None:
        if source_logits is not None or target_logits is not None:
            raise ValueError("give either source_logits/target_logits or batches, not both")
        for s, t in batches:
            _check_pair(s, t, K)
            yield s, t
        return
    if source_logits is None or target_logits is None:
        raise ValueError("give source_logits and target_logits (paired rows), or batches of pairs")
    _check_pair(source_logits, target_logits, K)
    for i in range(0, source_logits.shape[0], chunk_size):
        yield source_logits[i : i + chunk_size], target_logits[i : i + chunk_size]


def _check_pair(s: Tensor, t: Tensor, K: int) -> None:
    if s.ndim != 2 or s.shape != t.shape or s.shape[1] != K:
        raise ValueError(
            f"source and target logits must both be [N, K={K}] with paired rows (same images, same K "
            f"names in the same order); got {tuple(s.shape)} and {tuple(t.shape)}"
        )


def _materialize(adapter: LogitAdapter, tensors: dict[str, Tensor]) -> LogitAdapter:
    """Build the frozen result from (possibly inference) tensors as ordinary, grad-free tensors."""
    W = tensors[PROJECTION_KEY]
    with torch.inference_mode(False), torch.no_grad():
        new = LogitAdapter.from_tensors(tensors, adapter.config, projection="frozen")
        new = new.to(device=W.device, dtype=W.dtype)
        new.requires_grad_(False)
        new.eval()
    return new


@torch.inference_mode()
def rotate_adapter(adapter: LogitAdapter, rotation: Tensor) -> LogitAdapter:
    """New frozen adapter with W_new = Q^T W (push and pull) and the MLP copied unchanged."""
    W = adapter.W.detach()
    Q = rotation.to(device=W.device, dtype=torch.float64)
    if Q.shape != (W.shape[0], W.shape[0]):
        raise ValueError(f"rotation must be {W.shape[0]} x {W.shape[0]}, got {tuple(Q.shape)}")
    tensors = adapter.export_tensors()
    tensors[PROJECTION_KEY] = (Q.T @ W.to(torch.float64)).to(W.dtype)
    return _materialize(adapter, tensors)


@torch.inference_mode()
def transfer_adapter_with_details(
    adapter: LogitAdapter,
    source_logits: Tensor | None = None,
    target_logits: Tensor | None = None,
    lam: float = 500.0,
    scale_lam_by_n: bool = False,
    *,
    batches: Iterable[tuple[Tensor, Tensor]] | None = None,
    chunk_size: int = 4096,
    distributed: bool | None = None,
) -> TransferResult:
    """Transfer ``adapter`` to the target model (see module docstring); returns the adapter + Q, N, S."""
    W = adapter.W.detach()
    pairs = _chunked_pairs(source_logits, target_logits, batches, chunk_size, adapter.K)
    moved = ((s.to(W.device), t.to(W.device)) for s, t in pairs)
    cc = accumulate_cross_covariance(
        moved, projection=W, eps=adapter.config.eps, distributed=distributed, device=W.device
    )
    Q, S = regularized_procrustes(cc, lam=lam, lam_per_sample=scale_lam_by_n, return_singular_values=True)
    use_dist = distributed_active() if distributed is None else (distributed and distributed_active())
    if use_dist:
        dist.broadcast(Q, src=0)  # bitwise-identical Q on every rank
    new = rotate_adapter(adapter, Q)
    with torch.inference_mode(False):
        rotation = Q.detach().cpu().clone()
        singular = S.detach().cpu().clone()
    return TransferResult(
        adapter=new,
        rotation=rotation,
        singular_values=singular,
        num_samples=cc.count,
        lam=float(lam),
        lam_effective=float(lam) * (cc.count if scale_lam_by_n else 1),
        scale_lam_by_n=scale_lam_by_n,
    )


@torch.inference_mode()
def transfer_adapter(
    adapter: LogitAdapter,
    source_logits: Tensor | None = None,
    target_logits: Tensor | None = None,
    lam: float = 500.0,
    scale_lam_by_n: bool = False,
    *,
    batches: Iterable[tuple[Tensor, Tensor]] | None = None,
    chunk_size: int = 4096,
    distributed: bool | None = None,
) -> LogitAdapter:
    """Frozen target adapter (W_new = Q^T W, MLP unchanged); no backward pass is ever run."""
    return transfer_adapter_with_details(
        adapter,
        source_logits,
        target_logits,
        lam,
        scale_lam_by_n,
        batches=batches,
        chunk_size=chunk_size,
        distributed=distributed,
    ).adapter
