"""Cost helpers for the logit adapter: parameter counts and measured FLOPs per sample.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on an inference forward with the
projection materialised beforehand (so the orthogonal parametrisation's matrix exponential, a
training-time cost, is not charged to inference). The counter covers matrix products (push, MLP,
pull; 2 FLOPs per multiply-add); element-wise work (standardisation, LayerNorm, GELU) is not counted
and is O(K) per sample, negligible next to the O(K * proj_dim) products.

    adapter_cost(adapter)  # {'params': 9439232, 'trainable_params': ..., 'flops_per_sample': ..., 'macs_per_sample': ...}
"""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from transmiter.transfer.adapter import LogitAdapter

__all__ = ["adapter_cost", "adapter_flops_per_sample", "adapter_param_count"]


def adapter_param_count(adapter: LogitAdapter, *, trainable_only: bool = False) -> int:
    """Number of adapter entries: W (proj_dim x K, counted once whatever its form) + MLP parameters.

    With ``trainable_only`` only tensors that currently require grad are counted (an orthogonal W
    counts as its proj_dim x K entries, not the parametrisation's internal buffers).
    """
    W = adapter.W
    w_count = W.numel() if (not trainable_only or adapter.projection != "frozen") else 0
    mlp = sum(p.numel() for p in adapter.blocks.parameters() if (p.requires_grad or not trainable_only))
    return int(w_count + mlp)


@torch.no_grad()
def adapter_flops_per_sample(adapter: LogitAdapter, *, batch_size: int = 8) -> int:
    """FLOPs of one inference forward per logit row, measured with ``FlopCounterMode``."""
    p = next(iter(adapter.export_tensors().values()))
    x = torch.randn(batch_size, adapter.K, device=p.device, dtype=p.dtype)
    was_training = adapter.training
    adapter.eval()
    try:
        with parametrize.cached():
            _ = adapter.W  # materialise (and cache) the projection outside the counter
            counter = FlopCounterMode(display=False)
            with counter:
                adapter(x)
    finally:
        adapter.train(was_training)
    return int(counter.get_total_flops() // batch_size)


def adapter_cost(adapter: LogitAdapter) -> dict[str, int | float]:
    flops = adapter_flops_per_sample(adapter)
    return {
        "params": adapter_param_count(adapter),
        "trainable_params": adapter_param_count(adapter, trainable_only=True),
        "flops_per_sample": flops,
        "macs_per_sample": flops // 2,
        "gflops_per_sample": flops / 1e9,
    }
