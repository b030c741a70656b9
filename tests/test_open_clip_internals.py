"""Pins the two open_clip internals the tower split relies on (transmiter.models.open_clip_internals): if a
release changes them, these fail before any split tower computes a wrong feature."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.test_finetune_towers import PROMPTS, TOKENIZER, VARIANTS
from transmiter.models.open_clip_internals import text_additive_mask, vision_pool


@pytest.mark.parametrize("variant", ["clip", "avg-pool", "ln-after-pool", "attn-pool"])
def test_vision_pool_is_the_towers_own_pooling(variant):
    visual = VARIANTS[variant]().visual
    images = torch.randn(2, 3, 32, 32)
    tokens = {}
    handle = visual.transformer.register_forward_hook(lambda m, i, out: tokens.setdefault("x", out))
    with torch.no_grad():
        expected = visual(images)
        handle.remove()
        pooled, _ = vision_pool(visual, tokens["x"])
        if visual.proj is not None:
            pooled = pooled @ visual.proj
    torch.testing.assert_close(pooled, expected, atol=1e-6, rtol=1e-6)


def test_text_additive_mask_hides_padding_from_every_query():
    model = VARIANTS["customtext-bidir-last"]()
    tower = model.text
    tower.use_pad_mask = True
    ids = TOKENIZER(PROMPTS)
    mask = text_additive_mask(tower, ids, ids.shape[1], torch.float32)
    assert mask.shape[-2:] == (ids.shape[1], ids.shape[1])
    pad = ids == tower.pad_id
    # padded keys are -inf for every query of their row; real tokens are 0
    hidden = mask.view(len(PROMPTS), -1, ids.shape[1], ids.shape[1])[:, 0]
    assert torch.isinf(hidden[pad.unsqueeze(1).expand_as(hidden)]).all()
    assert (hidden[~pad.unsqueeze(1).expand_as(hidden)] == 0).all()
    # and the tower's forward with this mask is what encode_text computes
    with torch.no_grad():
        full = model.encode_text(ids)
    assert torch.isfinite(full).all() and F.normalize(full, dim=-1).shape == (len(PROMPTS), 24)
