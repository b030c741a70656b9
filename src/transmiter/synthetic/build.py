"""Build (or reuse) a whole synthetic world: both pretrained models and every downstream benchmark.

Usage::

    from transmiter.synthetic.build import build_world
    world = build_world(cache_dir, data_dir, world="class_knowledge")   # shipped weights: seconds
    world.weak_model, world.weak_checkpoint      # "SynthViT-T-8", Path(.../open_clip_model.safetensors)
    world.strong_model, world.strong_checkpoint  # "SynthViT-S-8", ...
    world.datasets["SynthBirds"].root            # data_dir / "synth_birds"

Checkpoints come from the pretraining cache (keyed by the recipe), else from the weights shipped with the
package for that world, scale and recipe (``shipped/<world>/``; see :func:`ship_world`), else they are
trained (minutes of CPU). ``force=True`` ignores both and trains again.

``scale="tiny"`` trains each model for a handful of steps and writes small benchmarks (seconds; for tests
of the plumbing only: the tiny models are near chance). Use different ``data_dir``s for different scales:
a benchmark folder written at one scale is regenerated when asked for at another.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transmiter.synthetic import pretrain as pt
from transmiter.synthetic.architectures import STRONG_MODEL, WEAK_MODEL, register_synthetic_models
from transmiter.synthetic.benchmarks import BenchmarkSpec, generate_benchmark
from transmiter.synthetic.concurrent import pretrain_all_or_load
from transmiter.synthetic.worlds import MANIFEST_NAME, SHIPPED_DIR, get_world, shipped_manifest

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

    world: str
    scale: str
    cache_dir: Path
    data_dir: Path
    weak_model: str
    weak_checkpoint: Path
    strong_model: str
    strong_checkpoint: Path
    datasets: dict[str, DatasetArtifact] = field(default_factory=dict)
    #: model -> where its checkpoint came from: "cache", "shipped" or "trained"
    sources: dict[str, str] = field(default_factory=dict)

    def checkpoint(self, model_name: str) -> Path:
        if model_name == self.weak_model:
            return self.weak_checkpoint
        if model_name == self.strong_model:
            return self.strong_checkpoint
        raise KeyError(f"{model_name!r} is not part of this world ({self.weak_model}, {self.strong_model})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "world": self.world,
            "scale": self.scale,
            "cache_dir": str(self.cache_dir),
            "data_dir": str(self.data_dir),
            "weak_model": self.weak_model,
            "weak_checkpoint": str(self.weak_checkpoint),
            "strong_model": self.strong_model,
            "strong_checkpoint": str(self.strong_checkpoint),
            "sources": dict(self.sources),
            "datasets": {
                k: {**v.spec.dataset_config(), "root": str(v.root)} for k, v in self.datasets.items()
            },
        }


def _install_shipped(
    world: str, scale: str, cfgs: list[pt.PretrainConfig], cache_dir: Path, shipped_dir: Path
) -> set[str]:
    """Copy the shipped checkpoints that match ``cfgs`` into the cache; returns the models installed."""
    manifest = shipped_manifest(world, shipped_dir) or {}
    if manifest.get("scale") != scale:
        return set()
    installed = set()
    for cfg in cfgs:
        entry = manifest.get("models", {}).get(cfg.model_name)
        if entry is None or pt.read_valid_meta(cfg, cache_dir) is not None:
            continue
        if entry["key"] != cfg.key():
            log.warning(
                "the %s weights shipped for world %s were trained with another recipe; training instead "
                "(refresh them with `transmiter world build world=%s --force --update-shipped`)",
                cfg.model_name,
                world,
                world,
            )
            continue
        source = shipped_dir / world / entry["file"]
        pt.install_checkpoint(cfg, cache_dir, source, entry["sha256"], entry.get("stats", {}))
        installed.add(cfg.model_name)
    return installed


def build_world(
    cache_dir: str | Path,
    data_dir: str | Path,
    *,
    world: str,
    scale: str = "demo",
    progress: bool = True,
    accelerator: str = "auto",
    side_by_side: bool = False,
    force: bool = False,
    shipped_dir: Path = SHIPPED_DIR,
) -> WorldArtifacts:
    """Pretrain-or-load both models of ``world`` into ``cache_dir`` and generate-or-reuse its benchmarks
    in ``data_dir``.

    ``force``: train both models again even when cached or shipped. ``side_by_side``: train the missing
    models at once in worker processes sharing the CPU cores (:mod:`transmiter.synthetic.concurrent`; off
    by default: one at a time is bit-reproducible).
    """
    spec = get_world(world)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {SCALES}")
    register_synthetic_models()
    cache_dir, data_dir = Path(cache_dir), Path(data_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    datasets = {}
    for name, bench in spec.benchmarks.items():
        datasets[name] = DatasetArtifact(
            bench, generate_benchmark(bench, data_dir, scale=scale, progress=progress)
        )
    cfgs = [spec.pretrain_config(model_name, scale) for model_name in (WEAK_MODEL, STRONG_MODEL)]
    if force:
        for cfg in cfgs:
            pt.forget(cfg, cache_dir)
    cached = {c.model_name for c in cfgs if pt.read_valid_meta(c, cache_dir) is not None}
    shipped = set() if force else _install_shipped(world, scale, cfgs, cache_dir, shipped_dir)
    ckpts = pretrain_all_or_load(
        cfgs, cache_dir, progress=progress, accelerator=accelerator, side_by_side=side_by_side
    )
    sources = {
        c.model_name: "cache"
        if c.model_name in cached
        else "shipped"
        if c.model_name in shipped
        else "trained"
        for c in cfgs
    }
    return WorldArtifacts(
        world=world,
        scale=scale,
        cache_dir=cache_dir,
        data_dir=data_dir,
        weak_model=WEAK_MODEL,
        weak_checkpoint=ckpts[WEAK_MODEL],
        strong_model=STRONG_MODEL,
        strong_checkpoint=ckpts[STRONG_MODEL],
        datasets=datasets,
        sources=sources,
    )


def ship_world(artifacts: WorldArtifacts, shipped_dir: Path = SHIPPED_DIR) -> Path:
    """Copy a built world's checkpoints into ``shipped_dir/<world>/`` with their manifest (scale, recipe key,
    SHA-256, training stats), so that :func:`build_world` installs them instead of training. The package
    ships the demo scale of the class_knowledge world (`make demo`'s)."""
    spec = get_world(artifacts.world)
    folder = shipped_dir / artifacts.world
    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for model_name in (artifacts.weak_model, artifacts.strong_model):
        cfg = spec.pretrain_config(model_name, artifacts.scale)
        meta = pt.read_valid_meta(cfg, artifacts.cache_dir)
        if meta is None:
            raise FileNotFoundError(
                f"{model_name} of world {artifacts.world} is not in {artifacts.cache_dir}"
            )
        file = f"{model_name}.safetensors"
        tmp = folder / f".{file}.tmp"
        shutil.copyfile(artifacts.checkpoint(model_name), tmp)
        tmp.replace(folder / file)
        models[model_name] = {
            "file": file,
            "key": cfg.key(),
            "sha256": meta["sha256"],
            "bytes": meta["bytes"],
            "stats": meta.get("stats", {}),
        }
    manifest = {"world": artifacts.world, "scale": artifacts.scale, "models": models}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return folder
