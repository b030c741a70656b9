"""Early validation of a composed config, before any heavy work: messages name the key and the fix.

    validate_config(cfg)          # ConfigError, e.g. "method.K=16 is invalid: K must exceed ..."

Hydra rejects unknown keys, unknown group choices and values of the wrong type while composing (the schema,
transmiter.config.schema); `check_values` checks each key's allowed values. This module adds what one key
cannot say alone: K against the dataset's classes, proj_dim against K, trainer devices and nodes, a GPU
trainer against the machine, Skip Tuning against the towers it splits (a ResNet cannot be; ω below their
depth), the models against open_clip's registry, the shots against the setting's range, the setting's
target datasets (known, not the source itself, label spaces that fit), the dataset folders on disk.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transmiter.config.instantiate import dataset_spec_from_config, instantiate, target_dataset_nodes
from transmiter.config.schema import ConfigError, check_values

__all__ = ["ConfigError", "uses_pair", "validate_config"]

WANDB_MODES = ("offline", "online", "disabled")


def _require(cond: bool, key: str, value, fix: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} is invalid: {fix}")


def validate_config(cfg: DictConfig, check_data: bool = True) -> None:
    """Every check, cheapest first: the schema's allowed values, the checks across nodes and trainer counts,
    the dataset folder, then what needs torch or open_clip (a GPU for a GPU trainer, the towers Skip Tuning
    splits, the models against open_clip's registry and, offline, the local weights)."""
    check_values(cfg)
    _validate_logger(cfg.get("logger"))
    _validate_setting(cfg)
    _validate_world(cfg)
    _validate_methods(cfg)
    _validate_class_batches(cfg)
    _validate_trainer_counts(cfg)
    if check_data:
        _validate_dataset(cfg)
        for name, node in target_dataset_nodes(cfg).items():
            _validate_dataset_folder(node, cfg.paths.data_dir, f"setting.targets: {name}")
    _validate_accelerator(cfg)
    _validate_tower_depths(cfg)
    _validate_model(cfg)


def _count_ok(value, allow_all: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1 or (allow_all and value == -1)
    if isinstance(value, str):
        text = value.strip()
        if allow_all and text in ("auto", "-1"):
            return True
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return bool(parts) and all(p.isdigit() for p in parts) and (len(parts) > 1 or int(parts[0]) >= 1)
    if OmegaConf.is_list(value) or isinstance(value, list | tuple):
        return len(value) > 0 and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
        )
    return False


def _validate_trainer_counts(cfg: DictConfig) -> None:
    """trainer.devices and trainer.num_nodes, before Lightning sees them (its own messages name no key)."""
    trainer = cfg.get("trainer") or {}
    devices = trainer.get("devices", "auto")
    _require(
        _count_ok(devices, allow_all=True),
        "trainer.devices",
        devices,
        "use a positive number of devices (e.g. 1), -1 or auto for all of them, or a list of device indices "
        "such as [0,1]",
    )
    nodes = trainer.get("num_nodes", 1)
    _require(_count_ok(nodes, allow_all=False), "trainer.num_nodes", nodes, "use a positive number of nodes")


def _validate_accelerator(cfg: DictConfig) -> None:
    """A GPU trainer needs a visible GPU (and as many as trainer.devices asks for)."""
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        raise ConfigError(
            f"trainer.accelerator={accelerator} is invalid here: this machine has no usable CUDA GPU "
            "(torch.cuda.is_available() is False). Use trainer=cpu (or trainer=ddp_cpu for 2 CPU processes), "
            "or run on a GPU machine (check it with nvidia-smi and a CUDA build of torch)"
        )
    devices = trainer.get("devices", "auto")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > available:
        raise ConfigError(
            f"trainer.devices={devices} is invalid here: this machine has {available} visible GPU(s) "
            f"(CUDA_VISIBLE_DEVICES limits them); use trainer.devices={available} or fewer, or -1 for all"
        )


def _validate_logger(node: DictConfig | None) -> None:
    """wandb's mode, and Lightning's offline flag, which would silently override it (dry-run)."""
    if node is None or "WandbLogger" not in str(node.get("_target_")):
        return
    mode = node.get("mode")
    _require(
        mode in WANDB_MODES,
        "logger.mode",
        mode,
        "use offline (the default: runs are written next to the outputs), online (stream to wandb.ai) or "
        "disabled; WANDB_MODE=<mode> sets it for every job",
    )
    _require(
        not node.get("offline") or mode == "offline",
        "logger.offline",
        node.get("offline"),
        f"Lightning's offline flag forces wandb's dry-run mode, so logger.mode={mode} would be ignored; "
        "leave logger.offline unset and choose the mode with WANDB_MODE or logger.mode",
    )


def _validate_world(cfg: DictConfig) -> None:
    """The synthetic world must be known, and a synthetic benchmark must be one of that world's."""
    world = cfg.get("world")
    if world is None:
        return
    from transmiter.synthetic.worlds import WORLDS, world_of_dataset

    name = world.get("name")
    _require(
        name in WORLDS, "world.name", name, f"choose the world with world=<name>, one of: {', '.join(WORLDS)}"
    )
    owner = world_of_dataset(str(cfg.dataset.name))
    if owner is not None and owner != name:
        raise ConfigError(
            f"dataset={cfg.dataset.name} is a benchmark of world={owner}, but world={name} is selected (its "
            f"models never saw that world): add world={owner}, or pick one of world {name}'s benchmarks: "
            f"{world.get('datasets')}"
        )


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


def _validate_setting(cfg: DictConfig) -> None:
    """The shots against the setting's range; its targets: known configs, not the source itself, and (for
    a source label space) no more classes than the source has."""
    setting = cfg.setting
    low_high = setting.get("shot_range")
    if low_high is not None:
        low, high = (int(x) for x in low_high)
        _require(
            low <= int(setting.shots) <= high,
            "setting.shots",
            setting.shots,
            f"setting={setting.name} samples {low}-{high} shots per class (the protocol's 1, 2, 4, 8, 16): use "
            f"a value in that range, e.g. setting.shots={high}, or sweep them with setting.shots=1,2,4,8,16 -m",
        )
    targets = target_dataset_nodes(cfg)
    _require(
        not targets or cfg.eval.split == "test",
        "eval.split",
        cfg.eval.split,
        f"setting={setting.name} scores targets with the source's models, and selecting on a target would "
        "use the target domain: select on the source alone (eval.split=val setting.targets=[]), then report "
        "with eval.split=test",
    )
    source = cfg.dataset
    for name, node in targets.items():
        check_values(node, f"setting.targets.{name}")
        _require(
            node.name != source.name and node.folder != source.folder,
            "setting.targets",
            name,
            f"{name} ({node.name}) is the source dataset itself (dataset={source.name}, trained on): its test "
            f"split is already scored as the source column; remove {name} from setting.targets",
        )
        if setting.target_label_space == "source":
            n, c = node.get("num_classes"), source.get("num_classes")
            _require(
                n is None or c is None or n <= c,
                "setting.targets",
                name,
                f"target_label_space=source maps each class of {name} ({n} classes) to a class of the "
                f"source {source.name} ({c} classes) by name, so it cannot have more; use "
                "setting.target_label_space=own (the target's own label space) or a source that holds its classes",
            )


def _validate_methods(cfg: DictConfig) -> None:
    """K against the classes of the dataset and of the targets scored in their own label space, and proj_dim
    against K, for the method and those it nests."""
    counts = {f"dataset={cfg.dataset.name}": cfg.dataset.get("num_classes")}
    if cfg.setting.get("target_label_space") == "own":
        for name, node in target_dataset_nodes(cfg).items():
            counts[f"target {name}"] = node.get("num_classes")
    for key, node, _ in _method_nodes(cfg):
        refine = node.get("refine")
        _require(
            not (refine is not None and refine.get("select_on_val") and cfg.dataset.loader == "imagenet"),
            f"{key}.refine.select_on_val",
            True,
            f"dataset={cfg.dataset.name} has no validation split (its protocol's val is the test set), so an "
            f"epoch selected on it would be selected on test; set {key}.refine.select_on_val=false",
        )
        K = node.get("K")
        if K is None:
            continue
        for where, num_classes in counts.items():
            # a target reads the adapter fitted on the source: its K cannot grow
            if not isinstance(num_classes, int) or (
                node.get("grow_k", False) and where.startswith("dataset=")
            ):
                continue
            _require(
                K > num_classes,
                f"{key}.K",
                K,
                f"K must exceed the number of classes of {where} (C={num_classes}): K holds the C task classes "
                f"plus K-C auxiliary names; raise {key}.K (e.g. {_next_k(num_classes)})"
                + (f" or set {key}.grow_k=true" if where.startswith("dataset=") else ""),
            )
        proj_dim = node.fit.get("proj_dim") if "fit" in node else None
        if proj_dim is not None:
            _require(
                proj_dim >= K,
                f"{key}.fit.proj_dim",
                proj_dim,
                f"the orthogonal projection needs proj_dim >= K (K={K}): use null (= K) or an integer >= K",
            )


def _validate_tower_depths(cfg: DictConfig) -> None:
    """Every Skip Tuning node against each model it fine-tunes: the towers must split at a block (outside a
    study, which falls back to FT for such a model), and ω (and text_omega) must fit their depth."""
    for key, node, models in _method_nodes(cfg):
        if node.get("kind") == "skip_tuning" and "module" in node:
            for model_key in models:
                if not key.startswith("method.methods."):
                    _validate_splittable(cfg, key, model_key)
                _validate_omega(cfg, key, node.module, model_key)


def _arch_config(cfg: DictConfig, model_key: str) -> tuple[str, dict] | None:
    import open_clip

    from transmiter.models.clip import register_project_models

    node = OmegaConf.select(cfg, model_key)
    if node is None or "arch" not in node:
        return None
    register_project_models()
    return str(node.arch), open_clip.get_model_config(str(node.arch)) or {}


def _validate_splittable(cfg: DictConfig, key: str, model_key: str) -> None:
    """Skip Tuning splits both towers at a block: a ResNet (RN50) or timm tower cannot be; name the FT
    override before any model is loaded."""
    from transmiter.models.towers import split_problem_of_config

    found = _arch_config(cfg, model_key)
    problem = split_problem_of_config(*found) if found else None
    if problem is None:
        return
    if key == "method":
        fix = "use method=ft (full fine-tuning) for this model"
    else:  # a transfer method's source fine-tuner, e.g. method.source_finetune
        fix = (
            f"fine-tune it with FT instead: add method@{key}=ft to the command, or choose a pair whose source "
            "is a ViT"
        )
    raise ConfigError(
        f"{key} is Skip Tuning, which cannot fine-tune {model_key} ({found[0]}): {problem}; {fix}"
    )


def _next_k(num_classes: int) -> int:
    k = 1024
    while k <= num_classes:
        k *= 2
    return k


def _validate_omega(cfg: DictConfig, key: str, module: DictConfig, model_key: str) -> None:
    """0 <= ω < depth of the image tower (and text_omega for the text tower) of the model at `model_key`:
    ω = depth would leave no block to tune."""
    found = _arch_config(cfg, model_key)
    if found is None:
        return
    arch, arch_cfg = found
    depths = {
        "omega": (arch_cfg.get("vision_cfg") or {}).get("layers"),
        "text_omega": (arch_cfg.get("text_cfg") or {}).get("layers"),
    }
    for name, depth in depths.items():
        value = module.get(name)
        if value is None or not isinstance(depth, int):  # None: the default (half the depth); ResNet towers
            continue
        tower = "image" if name == "omega" else "text"
        _require(
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value < depth,
            f"{key}.module.{name}",
            value,
            f"{model_key} ({arch}) has {depth} {tower} blocks: use 0 <= {name} <= {depth - 1}, or null "
            f"for half the depth"
            + (
                f" ({name}={depth} would freeze every {tower} block, leaving no block for Skip Tuning to tune)"
                if value == depth
                else ""
            ),
        )


def uses_pair(cfg: DictConfig) -> bool:
    """Transfer methods (and study jobs) read `pair`; single-model methods read `model`."""
    method = cfg.get("method") or {}
    return cfg.get("pair") is not None and ("source_finetune" in method or "methods" in method)


def _validate_dataset(cfg: DictConfig) -> None:
    """The dataset folder and its split definition must exist (a full check: `transmiter data check`)."""
    scale = str(cfg.get("world_scale", "demo"))
    _validate_dataset_folder(cfg.dataset, cfg.paths.data_dir, f"dataset={cfg.dataset.name}", scale)


def _setting_benchmark_folders() -> set[str]:
    """The folders `transmiter data synthetic` writes (the settings' synthetic source and renderings)."""
    from transmiter.synthetic.setting_benchmarks import SETTING_BENCHMARKS

    return {s.folder for s in SETTING_BENCHMARKS.values()}


def _validate_dataset_folder(node: DictConfig, data_dir, where: str, world_scale: str = "demo") -> None:
    from transmiter.synthetic.worlds import build_command, world_of_dataset

    spec = dataset_spec_from_config(node)
    root = Path(str(data_dir)).expanduser().resolve() / spec.folder
    owner = world_of_dataset(spec.name)
    if owner is not None and not (root / spec.split_file).is_file():
        raise ConfigError(
            f"{where}: the synthetic benchmark is not generated in {root.parent}; run "
            f"`{build_command(owner, world_scale)}` (make demo does it) with the same paths.data_dir"
        )
    if spec.folder in _setting_benchmark_folders() and not (root / spec.split_file).is_file():
        raise ConfigError(
            f"{where}: the synthetic dataset is not generated in {root.parent}; run "
            f"`transmiter data synthetic paths.data_dir={root.parent}` (make demo-xd does it)"
        )
    if not root.is_dir():
        raise ConfigError(
            f"{where}: folder {root} does not exist. Set paths.data_dir (or TRANSMITER_DATA) to "
            f"the folder holding '{spec.folder}/', lay it out as CoOp's DATASETS.md describes, and run "
            f"`transmiter data check dataset=<name>` to see what is missing."
        )
    if spec.split_file and not (root / spec.split_file).is_file():
        raise ConfigError(
            f"{where}: split file {root / spec.split_file} is missing. Download "
            f"{spec.split_file} (CoOp DATASETS.md) into {root}; splits are never regenerated."
        )


def _validate_class_batches(cfg: DictConfig) -> None:
    """Skip Tuning's batches from 4 shots on hold batch_size images of one class, so a class with fewer
    training images than batch_size never forms a batch: with batch_size above the shots no batch exists at
    all, and training would stop only once it starts."""
    shots = int(cfg.setting.get("shots") or 0)
    for key, node, _ in _method_nodes(cfg):
        if (
            node.get("kind") != "skip_tuning" or shots < 4
        ):  # below 4 shots: random batches (data.class_batches)
            continue
        _require(
            int(node.batch_size) <= shots,
            f"{key}.batch_size",
            node.batch_size,
            f"Skip Tuning's batches hold batch_size images of ONE class and setting.shots={shots} gives each "
            f"class {shots} training images: use {key}.batch_size={min(shots, 4)} (the protocol's 4) or at most "
            f"{shots}",
        )
