"""Captioned batches of the synthetic world: sample scenes, render them, caption them.

from transmiter.synthetic.batches import draw_batch
batch = draw_batch(PRETRAIN_DISTRIBUTION, 1024, seed=0)     # images, scenes, captions
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from transmiter.synthetic.captions import caption_scenes
from transmiter.synthetic.world import SceneBatch, SceneDistribution, as_rng, render_scenes, sample_scenes


def draw_batch(
    dist: SceneDistribution,
    n: int,
    seed: int | Sequence[int] | np.random.Generator,
    *,
    fixed: Mapping[str, Any] | None = None,
    with_captions: bool = True,
    caption_style: str = "full",
) -> SceneBatch:
    """Sample, render and caption ``n`` scenes (deterministic given the seed).

    ``caption_style``: "full" (varied, any attribute) or "short" (frame + colour + shape), see
    :func:`transmiter.synthetic.captions.caption_scenes`.
    """
    rng = as_rng(seed)
    scenes = sample_scenes(dist, n, rng, fixed=fixed)
    images = render_scenes(scenes)
    captions = caption_scenes(scenes, rng, style=caption_style) if with_captions else []
    return SceneBatch(images=images, scenes=scenes, captions=captions)
