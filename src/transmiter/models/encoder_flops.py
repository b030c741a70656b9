"""Inference cost of an image encoder, measured (not estimated) with torch.utils.flop_counter.

image_encoder_flops(bundle)      # FLOPs of encode_image for one image at the model's resolution
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode


@lru_cache(maxsize=32)
def _flops(identity: str, model_ref: int, image_size: int) -> int:
    model = _MODELS[model_ref]
    x = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.encode_image(x)
    return int(counter.get_total_flops())


_MODELS: dict[int, torch.nn.Module] = {}


def image_encoder_flops(bundle) -> int:
    """FLOPs per image of `bundle.model.encode_image` (memoised per model identity)."""
    _MODELS[id(bundle.model)] = bundle.model
    return _flops(bundle.identity, id(bundle.model), bundle.image_size)
