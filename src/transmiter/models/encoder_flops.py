"""Inference cost of an image encoder, measured (not estimated) with torch.utils.flop_counter.

image_encoder_flops(bundle)      # FLOPs of encode_image for one image at the model's resolution
count_flops(fn)                  # FLOPs of fn() (matmuls, convolutions, attention; forward and backward)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs that `fn()` computes, 2 per multiply-add, backward included if it runs inside.

    nn.MultiheadAttention in eval mode without grad takes a fused fast path that FlopCounterMode has no
    formula for (it would miss the qkv projection and the attention: a third of a ViT-B-16's FLOPs); the
    count runs the same arithmetic through the unfused path instead."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return int(counter.get_total_flops())


@lru_cache(maxsize=32)
def _flops(identity: str, model_ref: int, image_size: int) -> int:
    model = _MODELS[model_ref]
    x = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
    with torch.no_grad():
        return count_flops(lambda: model.encode_image(x))


_MODELS: dict[int, torch.nn.Module] = {}


def image_encoder_flops(bundle) -> int:
    """FLOPs per image of `bundle.model.encode_image` (memoised per model identity)."""
    _MODELS[id(bundle.model)] = bundle.model
    return _flops(bundle.identity, id(bundle.model), bundle.image_size)
