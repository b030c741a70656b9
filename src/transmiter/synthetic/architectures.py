"""Tiny open_clip architectures of the synthetic world, registered through open_clip's config registry.

The JSON configs live in ``model_configs/`` next to this module. After :func:`register_synthetic_models`
(idempotent) they behave like any built-in open_clip architecture::

    from transmiter.synthetic.architectures import register_synthetic_models, WEAK_MODEL, STRONG_MODEL
    register_synthetic_models()
    model, _, preprocess = open_clip.create_model_and_transforms(STRONG_MODEL, pretrained="/path/ckpt.safetensors")
    tokenizer = open_clip.get_tokenizer(STRONG_MODEL)   # context length 24, from the config

| name          | role   | vision tower (open_clip ViT, 32 px, patch 8 -> 16 tokens + CLS) | text tower (ctx 24)        | embed |
|---------------|--------|------------------------------------------------------------------|----------------------------|-------|
| SynthViT-T-8  | weak   | width 64, 4 blocks, 2 heads (0.22 M params)                      | width 64, 4 blocks, 2 heads | 64   |
| SynthViT-S-8  | strong | width 128, 6 blocks, 4 heads (1.2 M params)                      | width 96, 4 blocks, 3 heads | 96   |

Both have at least 4 blocks per tower, so "freeze the first half" (Skip Tuning's LSkip) is meaningful.
Why patch 8 for both: with the pretraining budget of the demo (500 steps of 256 pairs), a patch-4 ViT
(width 96) learned shapes *more slowly* than the patch-8 ones (40 % vs 64 % colour x shape in distribution)
at 1.4x the cost of the strong model here; the strong model gets its edge from width and depth instead.
Preprocessing is open_clip's default (OpenAI CLIP mean/std, bicubic, resize shortest side + centre crop to
32, a no-op on the 32-pixel synthetic images): open_clip 3.3 reads ``preprocess_cfg`` only from pretrained
tags, ``hf-hub:`` or ``local-dir:`` configs, not from a built-in architecture JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import open_clip

CONFIG_DIR = Path(__file__).parent / "model_configs"
WEAK_MODEL = "SynthViT-T-8"
STRONG_MODEL = "SynthViT-S-8"
SYNTHETIC_MODELS: tuple[str, ...] = (WEAK_MODEL, STRONG_MODEL)


def _config_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.json"))}


def register_synthetic_models() -> list[str]:
    """Make the synthetic architectures known to open_clip; safe to call any number of times.

    Returns the registered names. The config folder is added to open_clip's search path only when one of
    our names is missing from ``open_clip.list_models()`` (or registered with a different config).
    """
    files = _config_files()
    known = set(open_clip.list_models())
    stale = [
        name
        for name, path in files.items()
        if name not in known or open_clip.get_model_config(name) != json.loads(path.read_text())
    ]
    if stale:
        open_clip.add_model_config(CONFIG_DIR)
    return sorted(files)


def synthetic_model_config(name: str) -> dict[str, Any]:
    """The JSON config of a synthetic architecture (read from the package, no registration needed)."""
    files = _config_files()
    if name not in files:
        raise KeyError(f"unknown synthetic model {name!r}; known: {sorted(files)}")
    return json.loads(files[name].read_text())
