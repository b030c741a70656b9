"""The Lightning Trainer and experiment logger every stage uses, built from `conf/trainer` and `conf/logger`.

trainer = build_trainer(cfg.trainer, purpose="eval", root_dir=output_dir)
logger = build_logger(cfg.logger)                   # False for logger=none
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from transmiter.callbacks import ShutdownSpawnedProcessGroup
from transmiter.config.instantiate import instantiate


def quiet_lightning_banners() -> None:
    """Lightning prints device banners and tips on every Trainer; a run builds several. Keep warnings."""
    import logging

    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def progress_enabled() -> bool:
    return os.environ.get("TRANSMITER_PROGRESS", "1") not in ("0", "false", "False")


def build_trainer(
    trainer_cfg: DictConfig,
    *,
    purpose: str,
    root_dir: str | os.PathLike | None = None,
    logger: Any = False,
    callbacks: list | None = None,
    **overrides: Any,
) -> L.Trainer:
    """A Trainer from `conf/trainer/*`. Non-training purposes ("eval", "features") get no logger and
    no checkpointing; every trainer shows a rich progress bar unless TRANSMITER_PROGRESS=0."""
    quiet_lightning_banners()
    cfg = OmegaConf.to_container(trainer_cfg, resolve=True)
    assert isinstance(cfg, dict)
    cfg.update(overrides)
    callbacks = list(callbacks or [])
    if not any(isinstance(c, ShutdownSpawnedProcessGroup) for c in callbacks):
        callbacks.append(ShutdownSpawnedProcessGroup())
    show_progress = progress_enabled()
    if show_progress and not any(isinstance(c, L.pytorch.callbacks.ProgressBar) for c in callbacks):
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=False))
    cfg.setdefault("enable_progress_bar", show_progress)
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
    (`skip_tuning-train/loss`, the way Lightning's loggers join a prefix), so every stage of a study job draws
    its own curves in the job's one run. Everything else goes to the job's logger unchanged."""

    def __init__(self, logger: Logger, stage: str) -> None:
        super().__init__()
        self.logger, self.stage = logger, stage
        self.separator = getattr(logger, "LOGGER_JOIN_CHAR", "-")

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
        self.logger.log_metrics({f"{self.stage}{self.separator}{k}": v for k, v in metrics.items()}, step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.logger.log_hyperparams(params, *args, **kwargs)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        self.logger.log_graph(model, input_array)

    def save(self) -> None:
        self.logger.save()

    def finalize(self, status: str) -> None:
        self.logger.finalize(status)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.logger.after_save_checkpoint(checkpoint_callback)
