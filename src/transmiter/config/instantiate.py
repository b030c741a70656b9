"""The one place that turns config nodes into objects (Hydra's `instantiate`, converting every
OmegaConf container to plain Python).

    spec = instantiate(cfg.model)                       # -> ModelSpec
    dataset = dataset_spec_from_config(cfg.dataset)     # -> DatasetSpec (templates and epoch rule stay in cfg)
    spec = shipped_dataset_spec("OxfordPets")           # a shipped conf/dataset file, by protocol NAME
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate as _hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from transmiter.config.compose import CONFIG_DIR
from transmiter.config.schema import DatasetConfig
from transmiter.data.errors import DatasetError
from transmiter.data.spec import DatasetSpec


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate with `_convert_="all"`: objects and checkpoints hold plain dicts and lists,
    never OmegaConf containers (which pickle with their whole parent config and break weights-only loads)."""
    return _hydra_instantiate(node, _convert_="all", **kwargs)


_SPEC_EXTRAS = ("templates", "epoch_divisor", "train_crop_scale", "on_corrupt_image")


def dataset_spec_from_config(node: DictConfig):
    """The DatasetSpec of a `conf/dataset/*` node (its template overrides and epoch rule stay in cfg)."""
    data = OmegaConf.to_container(node, resolve=True)
    assert isinstance(data, dict)
    data.pop("_target_", None)
    for key in _SPEC_EXTRAS:
        data.pop(key, None)
    return DatasetSpec(**data)


def dataset_templates(node: DictConfig) -> dict[str, list[str]]:
    """The dataset config's template overrides per kind ({} when it has none: `templates: {}` or no key)."""
    t = node.get("templates")
    t = OmegaConf.to_container(t, resolve=True) if OmegaConf.is_config(t) else (t or {})
    return {str(k): [str(x) for x in v] for k, v in t.items()}  # type: ignore[union-attr]


def shipped_dataset_specs() -> dict[str, DatasetSpec]:
    """The DatasetSpec of every shipped `conf/dataset/*.yaml`, by protocol NAME (the configs are the one
    description of the datasets; nothing else lists their folders or class counts)."""
    specs = {}
    for path in sorted((CONFIG_DIR / "dataset").glob("*.yaml")):
        node = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(path))
        spec = dataset_spec_from_config(node)
        specs[spec.name] = spec
    return specs


def shipped_dataset_spec(name: str) -> DatasetSpec:
    """The shipped spec of protocol NAME `name`; the error lists the known names."""
    specs = shipped_dataset_specs()
    if name not in specs:
        raise DatasetError(f"no shipped dataset named {name!r}; known: {', '.join(specs)}")
    return specs[name]
