"""Early validation of a composed config: every check is cheap and runs before any heavy work.

Hydra already rejects unknown keys ("Key 'x' is not in struct") and unknown group choices (with the
available options). This module checks values, with messages that name the key and the fix.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transmiter.models.templates import TEMPLATE_KINDS

SUBSETS = ("all", "base", "new")
EVAL_SPLITS = ("test", "val")


class ConfigError(ValueError):
    """An invalid config value; the message names the key and how to fix it."""


def _require(cond: bool, key: str, value, fix: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} is invalid: {fix}")


def validate_config(cfg: DictConfig, check_data: bool = True) -> None:
    _require(
        isinstance(cfg.seed, int) and cfg.seed >= 0,
        "seed",
        cfg.seed,
        "use a non-negative integer, e.g. seed=1",
    )
    s = cfg.setting
    _require(
        isinstance(s.shots, int) and (s.shots >= 1 or s.shots == -1),
        "setting.shots",
        s.shots,
        "use a positive number of shots per class (e.g. 16), or -1 for the full training split",
    )
    _require(
        s.train_subsample in SUBSETS, "setting.train_subsample", s.train_subsample, f"choose one of {SUBSETS}"
    )
    groups = list(s.eval_groups)
    _require(
        len(groups) > 0
        and all(g in SUBSETS for g in groups)
        and (groups == ["all"] or set(groups) == {"base", "new"}),
        "setting.eval_groups",
        groups,
        "use [base, new] (base-to-novel) or [all] (base-to-base)",
    )
    if "templates" in cfg.method:
        _require(
            cfg.method.templates in TEMPLATE_KINDS,
            "method.templates",
            cfg.method.templates,
            f"choose one of {', '.join(TEMPLATE_KINDS)}",
        )
    _require(
        cfg.eval.get("split", "test") in EVAL_SPLITS,
        "eval.split",
        cfg.eval.get("split"),
        "use test (reported numbers) or val (hyperparameter selection)",
    )
    crop = cfg.dataset.get("train_crop_scale", None)
    if crop is not None:
        ok = (
            OmegaConf.is_list(crop)
            and len(crop) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in crop)
            and 0 < crop[0] <= crop[1] <= 1
        )
        _require(
            ok,
            "dataset.train_crop_scale",
            crop,
            "use [low, high] with 0 < low <= high <= 1, e.g. [0.08, 1.0]",
        )
    for key in ("batch_size", "num_workers"):
        v = cfg.eval[key]
        _require(
            isinstance(v, int) and v >= (1 if key == "batch_size" else 0),
            f"eval.{key}",
            v,
            "use a positive integer" if key == "batch_size" else "use 0 or a positive integer",
        )
    _validate_model(cfg)
    if check_data:
        _validate_dataset(cfg)


def _validate_model(cfg: DictConfig) -> None:
    from transmiter.instantiate import instantiate
    from transmiter.models.clip import ModelError

    nodes = {"model": cfg.get("model")}
    if uses_pair(cfg):
        nodes = {"pair.source": cfg.pair.get("source"), "pair.target": cfg.pair.get("target")}
    for key, node in nodes.items():
        if node is None:
            continue
        try:
            spec = instantiate(node)
            spec.validate()
        except ModelError as err:
            raise ConfigError(str(err).replace("model.", f"{key}.", 1)) from err
        _require_offline_weights(key, spec)


def _require_offline_weights(key: str, spec) -> None:
    """Offline (HF_HUB_OFFLINE=1), a pretrained tag must already be in the local cache."""
    import os

    from transmiter.models.clip import weights_available

    if os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false"):
        return  # online: open_clip downloads missing weights
    ok, where = weights_available(spec)
    if not ok:
        raise ConfigError(
            f"{key}.pretrained={spec.pretrained!r}: weights not found offline ({where}). Download them once "
            f"on a connected machine (e.g. python -c \"import open_clip; open_clip.create_model('{spec.arch}', "
            f"pretrained='{spec.pretrained}')\"), or point {key}.pretrained at a local checkpoint file."
        )


def uses_pair(cfg: DictConfig) -> bool:
    """Transfer methods (and study jobs) read `pair`; single-model methods read `model`."""
    method = cfg.get("method") or {}
    return cfg.get("pair") is not None and ("source_finetune" in method or "methods" in method)


def _validate_dataset(cfg: DictConfig) -> None:
    """The dataset folder and its split definition must exist (a full check: `transmiter data check`)."""
    from transmiter.context import dataset_spec_from_config

    spec = dataset_spec_from_config(cfg.dataset)
    root = Path(str(cfg.paths.data_dir)).expanduser().resolve() / spec.folder
    if not root.is_dir():
        raise ConfigError(
            f"dataset={spec.name}: folder {root} does not exist. Set paths.data_dir (or TRANSMITER_DATA) to "
            f"the folder holding '{spec.folder}/', prepare it as in protocol.md §1, and run "
            f"`transmiter data check dataset=<name>` to see what is missing."
        )
    if spec.split_file and not (root / spec.split_file).is_file():
        raise ConfigError(
            f"dataset={spec.name}: split file {root / spec.split_file} is missing. Download "
            f"{spec.split_file} (CoOp DATASETS.md) into {root}; splits are never regenerated."
        )
