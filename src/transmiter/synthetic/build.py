"""Build (or reuse) the whole synthetic world: both pretrained models and every downstream benchmark.

Usage::

    from transmiter.synthetic.build import build_world
    world = build_world(cache_dir, data_dir, scale="demo")   # ~6 min of CPU the first time, then instant
    world.weak_model, world.weak_checkpoint      # "SynthViT-T-8", Path(.../open_clip_model.safetensors)
    world.strong_model, world.strong_checkpoint  # "SynthViT-S-8", ...
    world.datasets["SynthShapes"].root           # data_dir / "synth_shapes"

``scale="tiny"`` trains each model for a handful of steps and writes small benchmarks (seconds; for tests
of the plumbing only: the tiny models are near chance). Use different ``data_dir``s for different scales:
a benchmark folder written at one scale is regenerated when asked for at another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transmiter.synthetic.architectures import STRONG_MODEL, WEAK_MODEL, register_synthetic_models
from transmiter.synthetic.benchmarks import BENCHMARKS, BenchmarkSpec, generate_benchmark
from transmiter.synthetic.concurrent import pretrain_all_or_load
from transmiter.synthetic.pretrain import pretrain_config

log = logging.getLogger(__name__)

SCALES = ("demo", "tiny")


@dataclass(frozen=True)
class DatasetArtifact:
    """A generated benchmark: its spec and its folder."""

    spec: BenchmarkSpec
    root: Path

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class WorldArtifacts:
    """Everything :func:`build_world` produced."""

    scale: str
    cache_dir: Path
    data_dir: Path
    weak_model: str
    weak_checkpoint: Path
    strong_model: str
    strong_checkpoint: Path
    datasets: dict[str, DatasetArtifact] = field(default_factory=dict)

    def checkpoint(self, model_name: str) -> Path:
        if model_name == self.weak_model:
            return self.weak_checkpoint
        if model_name == self.strong_model:
            return self.strong_checkpoint
        raise KeyError(f"{model_name!r} is not part of this world ({self.weak_model}, {self.strong_model})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "cache_dir": str(self.cache_dir),
            "data_dir": str(self.data_dir),
            "weak_model": self.weak_model,
            "weak_checkpoint": str(self.weak_checkpoint),
            "strong_model": self.strong_model,
            "strong_checkpoint": str(self.strong_checkpoint),
            "datasets": {
                k: {**v.spec.dataset_config(), "root": str(v.root)} for k, v in self.datasets.items()
            },
        }


def build_world(
    cache_dir: str | Path,
    data_dir: str | Path,
    *,
    scale: str = "demo",
    progress: bool = True,
    accelerator: str = "auto",
    side_by_side: bool = False,
) -> WorldArtifacts:
    """Pretrain-or-load both models into ``cache_dir`` and generate-or-reuse the benchmarks in ``data_dir``.

    ``side_by_side``: train the missing models at once in worker processes sharing the CPU cores
    (:mod:`transmiter.synthetic.concurrent`; off by default: one at a time is bit-reproducible).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {SCALES}")
    register_synthetic_models()
    cache_dir, data_dir = Path(cache_dir), Path(data_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    datasets = {}
    for name, spec in BENCHMARKS.items():
        datasets[name] = DatasetArtifact(
            spec, generate_benchmark(spec, data_dir, scale=scale, progress=progress)
        )
    cfgs = [pretrain_config(model_name, scale) for model_name in (WEAK_MODEL, STRONG_MODEL)]
    ckpts = pretrain_all_or_load(
        cfgs, cache_dir, progress=progress, accelerator=accelerator, side_by_side=side_by_side
    )
    return WorldArtifacts(
        scale=scale,
        cache_dir=cache_dir,
        data_dir=data_dir,
        weak_model=WEAK_MODEL,
        weak_checkpoint=ckpts[WEAK_MODEL],
        strong_model=STRONG_MODEL,
        strong_checkpoint=ckpts[STRONG_MODEL],
        datasets=datasets,
    )
