"""The two pieces of open_clip the tower split (`transmiter.models.towers`) needs and open_clip offers no
public function for, kept in this one module:

    pooled, tokens = vision_pool(model.visual, x)            # the image tower's own pooling of its tokens
    mask = text_additive_mask(model.text, ids, seq_len, dtype)  # a TextTransformer's pad / CLS attention mask

Both call open_clip's private methods of the same names. tests/test_open_clip_internals.py pins what they
must return (the pieces of open_clip's own forward pass), and pyproject.toml bounds open_clip_torch to the
releases those tests ran against, so a release that changes them fails a test instead of a result.
"""

from __future__ import annotations

import torch
from torch import nn


def vision_pool(visual: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled, remaining tokens) of a VisionTransformer for its tokens after the last block: the model's own
    pooling (cls token / average / none, attentional pooler, layer norm before or after pooling)."""
    return visual._pool(tokens)


def text_additive_mask(
    tower: nn.Module, token_ids: torch.Tensor, seq_len: int, dtype: torch.dtype
) -> torch.Tensor:
    """The additive attention mask a TextTransformer builds from token ids (padding, appended CLS token)."""
    return tower._build_additive_mask(token_ids, seq_len, dtype)
