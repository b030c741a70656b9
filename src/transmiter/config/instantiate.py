"""The one place that turns config nodes into objects (Hydra's `instantiate`, converting every
OmegaConf container to plain Python).

    spec = instantiate(cfg.model)                       # -> ModelSpec
    dataset = dataset_spec_from_config(cfg.dataset)     # -> DatasetSpec (templates and epoch rule stay in cfg)
    spec = shipped_dataset_spec("OxfordPets")           # a shipped conf/dataset file, by protocol NAME
    targets = target_dataset_nodes(cfg)                 # {config name: dataset node} of setting.targets
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate as _hydra_instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from transmiter.config.compose import CONFIG_DIR
from transmiter.config.schema import ConfigError, DatasetConfig
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


def dataset_config_names() -> list[str]:
    """The names of the shipped dataset configs (`conf/dataset/<name>.yaml`)."""
    return sorted(p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml"))


def dataset_config_node(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    key: str = "dataset",
    overrides_key: str = "overrides",
) -> DictConfig:
    """`conf/dataset/<name>.yaml` typed by the dataset schema, then `overrides` on top, as the `dataset` group
    would compose it; `key` and `overrides_key` name the config entries behind them in errors."""
    path = CONFIG_DIR / "dataset" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{key}={name!r} is invalid: there is no dataset config {path.name} in {path.parent}; "
            f"choose among {', '.join(dataset_config_names())}"
        )
    node = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(path))
    try:
        return OmegaConf.merge(node, dict(overrides or {}))
    except OmegaConfBaseException as err:
        raise ConfigError(
            f"{overrides_key} is invalid: {str(err).splitlines()[0]}; give keys of a dataset config with "
            f"values of their type ({', '.join(f.name for f in dataclasses.fields(DatasetConfig))})"
        ) from err


def target_dataset_nodes(cfg: DictConfig) -> dict[str, DictConfig]:
    """The dataset node of every `setting.targets` entry (with its `setting.target_overrides`), in order."""
    setting = cfg.setting
    node = setting.get("target_overrides")
    overrides = {} if node is None else OmegaConf.to_container(node, resolve=True)
    assert isinstance(overrides, dict)
    targets = [str(t) for t in setting.get("targets") or []]
    unused = sorted(set(overrides) - set(targets))
    if unused:
        raise ConfigError(
            f"setting.target_overrides names {unused}, which are not in setting.targets={targets}: "
            "add them to setting.targets or drop their overrides"
        )
    return {
        name: dataset_config_node(
            name, overrides.get(name), "setting.targets", f"setting.target_overrides.{name}"
        )
        for name in targets
    }


def shipped_dataset_specs() -> dict[str, DatasetSpec]:
    """The DatasetSpec of every shipped `conf/dataset/*.yaml`, by protocol NAME (the configs are the one
    description of the datasets; nothing else lists their folders or class counts)."""
    specs = {}
    for name in dataset_config_names():
        spec = dataset_spec_from_config(dataset_config_node(name))
        specs[spec.name] = spec
    return specs


def shipped_dataset_spec(name: str) -> DatasetSpec:
    """The shipped spec of protocol NAME `name`; the error lists the known names."""
    specs = shipped_dataset_specs()
    if name not in specs:
        raise DatasetError(f"no shipped dataset named {name!r}; known: {', '.join(specs)}")
    return specs[name]
