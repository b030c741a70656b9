"""The synthetic worlds: which benchmarks each holds and how its two CLIPs are pretrained.

Both worlds render the same scenes with the same weak (``SynthViT-T-8``) and strong (``SynthViT-S-8``)
architectures; they differ in what the downstream tasks ask of pretraining:

* ``domain_shift``: colour x shape, count x colour and pattern x shape tasks whose images carry a shift
  shared by every class (tints, noise, blur, unseen backgrounds). Fine-tuning on base classes learns the
  shift, so it lifts novel classes nearly as much as base ones.
* ``class_knowledge``: 40 named kinds per task (like species); the images look like pretraining's, and
  what a model knows about a class is how well pretraining taught it that class's name. Fine-tuning on base
  classes fixes the base names and leaves the novel ones as pretraining left them.

Usage::

    from transmiter.synthetic.worlds import WORLDS, get_world
    world = get_world("class_knowledge")
    world.benchmarks                     # {"SynthBirds": BenchmarkSpec, ...}
    world.pretrain_config("SynthViT-S-8", scale="demo")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transmiter.synthetic.benchmarks import BENCHMARKS, KIND_BENCHMARKS, BenchmarkSpec
from transmiter.synthetic.kinds import KindNaming, class_knowledge_naming

if TYPE_CHECKING:
    from transmiter.synthetic.pretrain import PretrainConfig

#: pretrained weights shipped with the package: shipped/<world>/<arch>.safetensors + manifest.json
SHIPPED_DIR = Path(__file__).parent / "shipped"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class WorldSpec:
    """One synthetic world: its benchmarks and its pretraining recipe (``naming``: how captions name the
    kinds; None for a world without named kinds; ``pretrain_overrides``: recipe changes of one
    architecture at demo scale, ``{model_name: {field: value}}``)."""

    name: str
    summary: str
    benchmarks: Mapping[str, BenchmarkSpec]
    naming: KindNaming | None = None
    pretrain_overrides: Mapping[str, Mapping[str, Any]] | None = None

    def pretrain_config(self, model_name: str, scale: str = "demo") -> PretrainConfig:
        from transmiter.synthetic.pretrain import pretrain_config

        overrides = (self.pretrain_overrides or {}).get(model_name, {})
        extra = dict(overrides) if scale != "tiny" else {}
        if self.naming is not None:
            extra["naming"] = self.naming
        return pretrain_config(model_name, scale, **extra)

    @property
    def dataset_folders(self) -> tuple[str, ...]:
        """The ``conf/dataset`` names of its benchmarks."""
        return tuple(spec.folder for spec in self.benchmarks.values())


WORLDS: dict[str, WorldSpec] = {
    "domain_shift": WorldSpec(
        name="domain_shift",
        summary="tasks under a distribution shift shared by every class",
        benchmarks=BENCHMARKS,
    ),
    "class_knowledge": WorldSpec(
        name="class_knowledge",
        summary="named kinds whose names pretraining taught unevenly; no shift",
        benchmarks=KIND_BENCHMARKS,
        naming=class_knowledge_naming(),
        # chosen on the validation split from zero-shot and FT rows (experiments/demo/class_knowledge.md)
        pretrain_overrides={"SynthViT-T-8": {"steps": 550}, "SynthViT-S-8": {"seed": 1}},
    ),
}


def get_world(name: str) -> WorldSpec:
    """The world called ``name`` (``KeyError`` naming the choices)."""
    if name not in WORLDS:
        raise KeyError(f"unknown synthetic world {name!r}; choose one of: {', '.join(WORLDS)}")
    return WORLDS[name]


def world_of_dataset(dataset_name: str) -> str | None:
    """The world whose benchmark is called ``dataset_name`` (protocol name), or None (not synthetic)."""
    for world in WORLDS.values():
        if dataset_name in world.benchmarks:
            return world.name
    return None


def shipped_manifest(world: str, shipped_dir: Path = SHIPPED_DIR) -> dict[str, Any] | None:
    """The manifest of the weights shipped for ``world`` (None when none are shipped)."""
    path = shipped_dir / world / MANIFEST_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def build_command(world: str, scale: str = "demo") -> str:
    """The command that builds ``world`` at ``scale`` (for error messages)."""
    return f"transmiter world build world={world}" + ("" if scale == "demo" else f" --scale {scale}")
