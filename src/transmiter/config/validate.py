"""Early validation of a composed config: every check is cheap and runs before any heavy work.

Hydra already rejects unknown keys ("Key 'x' is not in struct") and unknown group choices (with the
available options). This module checks values, with messages that name the key and the fix.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transmiter.config.instantiate import dataset_spec_from_config, instantiate
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
    from transmiter.data.dataset import CORRUPT_IMAGE_POLICIES

    policy = cfg.dataset.get("on_corrupt_image", "error")
    _require(
        policy in CORRUPT_IMAGE_POLICIES,
        "dataset.on_corrupt_image",
        policy,
        "use error (stop at the first unreadable image, naming it) or skip (leave unreadable images out; "
        "they are counted and listed in the results record)",
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
    _validate_methods(cfg)
    if check_data:
        _validate_dataset(cfg)


def _validate_model(cfg: DictConfig) -> None:
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


def _method_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig, list[str]]]:
    """(key, method node, keys of the model nodes it fine-tunes) for the method and those it nests: a study's
    single-model methods run on each role of the pair; transfer methods fine-tune the pair's source."""
    method = cfg.get("method")
    if method is None:
        return []
    if "methods" not in method:
        nodes = [("method", method, ["model"])]
    else:
        roles = [f"pair.{r}" for r in method.get("roles", ["source", "target"])]
        single = set(method.get("single_model", []))
        nodes = [
            (f"method.methods.{name}", node, roles if name in single else ["pair.source"])
            for name, node in method.methods.items()
            if node is not None
        ]
    out = []
    for key, node, models in nodes:
        if "source_finetune" in node:
            out.append((key, node, []))
            out.append((f"{key}.source_finetune", node.source_finetune, ["pair.source"]))
        else:
            out.append((key, node, models))
    return out


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate_methods(cfg: DictConfig) -> None:
    """Method hyper-parameters that would only fail deep in a run: λ, K against the dataset's classes, ω
    against the depth of the towers it splits."""
    num_classes = cfg.dataset.get("num_classes")
    for key, node, models in _method_nodes(cfg):
        if "lam" in node:
            _require(
                _number(node.lam) and node.lam >= 0,
                f"{key}.lam",
                node.lam,
                "the Procrustes regulariser must be a number >= 0 (the reference uses 500; 0 = plain Procrustes)",
            )
        if "K" in node:
            K = node.K
            _require(
                isinstance(K, int) and not isinstance(K, bool) and K >= 2,
                f"{key}.K",
                K,
                "use the number of logits the adapter works on, e.g. 1024 (C task classes + K-C auxiliary names)",
            )
            if isinstance(num_classes, int) and not node.get("grow_k", False):
                _require(
                    K > num_classes,
                    f"{key}.K",
                    K,
                    f"K must exceed the number of classes of dataset={cfg.dataset.name} (C={num_classes}): K holds "
                    f"the C task classes plus K-C auxiliary names; raise {key}.K (e.g. {_next_k(num_classes)}) or "
                    f"set {key}.grow_k=true",
                )
        fit = node.get("fit") if isinstance(node.get("fit"), DictConfig) else None
        if fit is not None and fit.get("proj_dim") is not None:
            proj_dim, K = fit.proj_dim, node.get("K")
            _require(
                isinstance(proj_dim, int)
                and not isinstance(proj_dim, bool)
                and (not _number(K) or proj_dim >= K),
                f"{key}.fit.proj_dim",
                proj_dim,
                f"the orthogonal projection needs proj_dim >= K (K={K}): use null (= K) or an integer >= K",
            )
        if fit is not None and "dropout" in fit:
            _require(
                _number(fit.dropout) and 0 <= fit.dropout < 1,
                f"{key}.fit.dropout",
                fit.dropout,
                "use a dropout probability 0 <= dropout < 1 (the reference uses 0)",
            )
        if node.get("kind") == "skip_tuning" and "module" in node:
            for model_key in models:
                _validate_omega(cfg, key, node.module, model_key)


def _next_k(num_classes: int) -> int:
    k = 1024
    while k <= num_classes:
        k *= 2
    return k


def _validate_omega(cfg: DictConfig, key: str, module: DictConfig, model_key: str) -> None:
    """0 <= ω <= depth of the image tower (and text_omega for the text tower) of the model at `model_key`."""
    import open_clip

    from transmiter.models.clip import register_project_models

    node = OmegaConf.select(cfg, model_key)
    if node is None or "arch" not in node:
        return
    register_project_models()
    arch_cfg = open_clip.get_model_config(str(node.arch)) or {}
    depths = {
        "omega": (arch_cfg.get("vision_cfg") or {}).get("layers"),
        "text_omega": (arch_cfg.get("text_cfg") or {}).get("layers"),
    }
    for name, depth in depths.items():
        value = module.get(name)
        if value is None or not isinstance(depth, int):  # None: the default (half the depth); ResNet towers
            continue
        _require(
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= depth,
            f"{key}.module.{name}",
            value,
            f"{model_key} ({node.arch}) has {depth} {'image' if name == 'omega' else 'text'} blocks: use "
            f"0 <= {name} <= {depth}, or null for half the depth",
        )


def uses_pair(cfg: DictConfig) -> bool:
    """Transfer methods (and study jobs) read `pair`; single-model methods read `model`."""
    method = cfg.get("method") or {}
    return cfg.get("pair") is not None and ("source_finetune" in method or "methods" in method)


def _validate_dataset(cfg: DictConfig) -> None:
    """The dataset folder and its split definition must exist (a full check: `transmiter data check`)."""
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
