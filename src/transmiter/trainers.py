"""The Lightning Trainer and experiment logger every stage uses, built from `conf/trainer` and `conf/logger`.

trainer = build_trainer(cfg.trainer, purpose="eval", root_dir=output_dir)
logger = build_logger(cfg.logger)                   # False for logger=none
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from transmiter.config.compose import CONFIG_DIR
from transmiter.config.instantiate import instantiate
from transmiter.console import quiet_library_notices


def progress_enabled() -> bool:
    return os.environ.get("TRANSMITER_PROGRESS", "1") not in ("0", "false", "False")


def build_callbacks(
    callbacks_cfg: DictConfig | None, group: str, checkpoint_dir: str | os.PathLike | None = None
) -> list[L.Callback]:
    """The callbacks of one group of `conf/callbacks` ("train" or "every"; the shipped default file when
    `callbacks_cfg` is None). A node with `dirpath: ???` writes into `checkpoint_dir`; progress bars are left
    out under TRANSMITER_PROGRESS=0."""
    if callbacks_cfg is None:
        callbacks_cfg = OmegaConf.load(CONFIG_DIR / "callbacks" / "default.yaml")
    built: list[L.Callback] = []
    for name, node in (callbacks_cfg.get(group) or {}).items():
        if node is None:
            continue
        if OmegaConf.is_missing(node, "dirpath"):
            if checkpoint_dir is None:
                raise ValueError(
                    f"callbacks.{group}.{name} writes checkpoints: build it with a checkpoint_dir"
                )
            node = OmegaConf.merge(node, {"dirpath": str(checkpoint_dir)})
        callback = instantiate(node)
        if isinstance(callback, ProgressBar) and not progress_enabled():
            continue
        built.append(callback)
    return built


def build_trainer(
    trainer_cfg: DictConfig,
    *,
    purpose: str,
    callbacks_cfg: DictConfig | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    root_dir: str | os.PathLike | None = None,
    logger: Any = False,
    callbacks: list | None = None,
    **overrides: Any,
) -> L.Trainer:
    """A Trainer from `conf/trainer/*`: the `train` callbacks of `conf/callbacks` (training stages, which
    checkpoint into `checkpoint_dir`), then `callbacks`, then the `every` ones. Non-training purposes
    ("eval", "features") get no logger and no checkpointing."""
    quiet_library_notices()
    cfg = OmegaConf.to_container(trainer_cfg, resolve=True)
    assert isinstance(cfg, dict)
    cfg.update(overrides)
    training = build_callbacks(callbacks_cfg, "train", checkpoint_dir) if purpose == "train" else []
    callbacks = [*training, *(callbacks or []), *build_callbacks(callbacks_cfg, "every")]
    cfg.setdefault("enable_progress_bar", any(isinstance(c, ProgressBar) for c in callbacks))
    if purpose in ("eval", "features"):
        cfg.setdefault("enable_checkpointing", False)
        cfg["use_distributed_sampler"] = purpose == "features"  # eval shards itself, unpadded
        cfg["deterministic"] = False  # no backward pass: nothing to make deterministic
    if root_dir is not None:
        cfg.setdefault("default_root_dir", str(root_dir))
    return instantiate(cfg, logger=logger, callbacks=callbacks)


def build_logger(logger_cfg: DictConfig | None) -> Any:
    """The configured Lightning logger, or False when `logger=none`."""
    if logger_cfg is None or logger_cfg.get("_target_") in (None, "null"):
        return False
    return instantiate(logger_cfg)


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer running `module`, or None when the module is used on its own (plain forward, tests)."""
    try:
        return module.trainer
    except RuntimeError:  # Lightning's "is not attached to a `Trainer`"
        return None


class StageLogger(Logger):
    """The job's experiment logger as one training stage writes to it: metric keys get the stage's name
    (`skip_tuning/ViT-B-16/train/loss_epoch`; wandb groups its panels by the part before the first `/`), so
    every stage of a study job draws its own curves in the job's one run. The stage's hyperparameters are
    not logged: the job logged its whole resolved config once, and the stages' own (lr, epochs, ...) would
    overwrite one another in the run's config."""

    def __init__(self, logger: Logger, stage: str) -> None:
        super().__init__()
        self.logger, self.stage = logger, stage

    @property
    def name(self) -> str | None:
        return self.logger.name

    @property
    def version(self) -> int | str | None:
        return self.logger.version

    @property
    def save_dir(self) -> str | None:
        return self.logger.save_dir

    @property
    def root_dir(self) -> str | None:
        return self.logger.root_dir

    @property
    def log_dir(self) -> str | None:
        return self.logger.log_dir

    @property
    def experiment(self) -> Any:
        return self.logger.experiment

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logger.log_metrics({f"{self.stage}/{k}": v for k, v in metrics.items()}, step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: see the class docstring."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        self.logger.log_graph(model, input_array)

    def save(self) -> None:
        self.logger.save()

    def finalize(self, status: str) -> None:
        self.logger.finalize(status)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.logger.after_save_checkpoint(checkpoint_callback)
