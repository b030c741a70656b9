"""The embedded synthetic vision-language world (no downloads needed).

Modules:

* :mod:`~transmiter.synthetic.world` - procedural scenes (12 shapes, 10 colours, sizes, textures, background
  patterns/colours, positions, counts) rendered to 32-pixel images; :class:`SceneDistribution` and shifts.
* :mod:`~transmiter.synthetic.captions` - varied natural-language captions and a parser.
* :mod:`~transmiter.synthetic.architectures` - tiny open_clip ViT architectures (weak ``SynthViT-T-8``,
  strong ``SynthViT-S-8``) registered with ``open_clip.add_model_config``.
* :mod:`~transmiter.synthetic.pretrain` - contrastive pretraining (LightningModule), cached by config hash.
* :mod:`~transmiter.synthetic.benchmarks` - downstream datasets in the CoOp layout (``BENCHMARKS``).
* :mod:`~transmiter.synthetic.kinds` - named kinds and how pretraining captions name them (class_knowledge).
* :mod:`~transmiter.synthetic.worlds` - the two worlds (``domain_shift``, ``class_knowledge``): benchmarks and
  pretraining recipe of each.
* :mod:`~transmiter.synthetic.build` - :func:`build_world`, everything at once (cached, shipped or trained).
* :mod:`~transmiter.synthetic.probe` - a small zero-shot probe.

Usage::

    from transmiter.synthetic import build_world
    world = build_world("~/.cache/transmiter/synthetic", "data", world="class_knowledge", scale="demo")

Heavy imports (torch, lightning) happen only when the corresponding names are first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SceneDistribution": "world",
    "PRETRAIN_DISTRIBUTION": "world",
    "draw_batch": "batches",
    "register_synthetic_models": "architectures",
    "WEAK_MODEL": "architectures",
    "STRONG_MODEL": "architectures",
    "BENCHMARKS": "benchmarks",
    "BenchmarkSpec": "benchmarks",
    "generate_benchmark": "benchmarks",
    "PretrainConfig": "pretrain",
    "pretrain_config": "pretrain",
    "pretrain_or_load": "pretrain",
    "build_world": "build",
    "WorldArtifacts": "build",
    "zero_shot_accuracy": "probe",
    "WORLDS": "worlds",
    "get_world": "worlds",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
