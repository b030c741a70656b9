"""The transmiter Hydra application: compose -> validate -> build -> run the method -> record.

    transmiter method=zeroshot model=ViT-B-16 dataset=oxford_pets setting=base2novel seed=1
    transmiter -m dataset=oxford_pets,dtd seed=1,2,3            # a sweep (basic launcher)
    python -m transmiter experiment=smoke

Returns (and prints) the run's metrics; the results record is `<run dir>/results.json`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from transmiter.config.compose import CONFIG_DIR
from transmiter.config.schema import check_known_keys, check_trainer_keys
from transmiter.config.validate import ConfigError, validate_config
from transmiter.io import WriteError, absolute, check_folder, is_disk_error, write_error
from transmiter.planning import describe_job, job_status


def guard_multirun_ddp(cfg: DictConfig) -> None:
    """Refuse --multirun with Lightning's re-executing `ddp` strategy on more than one device unless
    SLURM (submitit) creates the processes: Lightning's launcher would start one sweep per device."""
    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    devices = cfg.trainer.get("devices", 1)
    num_nodes = int(cfg.trainer.get("num_nodes", 1) or 1)
    many = (
        devices in (-1, "auto")
        or (isinstance(devices, int) and devices > 1)
        or (not isinstance(devices, int) and len(list(devices)) > 1)
        or num_nodes > 1
    )
    launcher = str(hc.launcher.get("_target_", ""))
    if (
        hc.mode == RunMode.MULTIRUN
        and cfg.trainer.get("strategy") == "ddp"
        and many
        and "submitit" not in launcher
    ):
        raise ConfigError(
            "trainer.strategy=ddp cannot run under --multirun with a local launcher: Lightning re-executes the "
            "command once per GPU and every copy starts its own sweep (Lightning issue 11300). Use "
            "hydra/launcher=slurm (SLURM starts one task per GPU), or trainer.strategy=ddp_spawn, or run "
            "the jobs one by one (a shell loop of single runs with trainer=ddp)."
        )


def run(cfg: DictConfig) -> dict[str, float]:
    """One job: everything a Hydra run does, callable from tests with a composed config.

    The config is checked before torch, Lightning or open_clip are imported, so a bad value answers at once."""
    check_known_keys(cfg)
    guard_multirun_ddp(cfg)
    output_dir = Path(str(cfg.paths.output_dir)).resolve()
    if cfg.get("dry_run"):
        print(describe_job(cfg, output_dir))
        return {}
    if cfg.get("skip_done", True) and job_status(output_dir)[0] == "done":
        print(
            f"[skipped] {cfg.task_name}: {cfg.dataset.name} {cfg.setting.name} seed {cfg.seed} is done "
            f"({output_dir}); delete its job.json to run it again"
        )
        return {}
    check_folder(output_dir, "paths.output_dir")
    check_folder(absolute(cfg.paths.cache_dir), "paths.cache_dir")
    validate_config(cfg)
    check_trainer_keys(cfg)  # imports Lightning: the heavy layers start here
    from transmiter.job import run_job

    return run_job(cfg)


def _stop(err: BaseException) -> None:
    """End the command on an error that is the user's to fix: its message, not a traceback
    (HYDRA_FULL_ERROR=1 shows the traceback)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


class CheckOutputFolder(Callback):
    """Before Hydra creates the run (or sweep) folder and its log file: the place must be a writable
    folder with free space, or the command stops naming the key and the fix (not Hydra's raw OSError)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        try:
            folder = absolute(str(OmegaConf.select(config, key)))
        except Exception:  # an interpolation only Hydra's job can resolve: Hydra checks it itself
            return
        try:  # the parent: the folder's own (timestamped) name is Hydra's to create
            check_folder(folder.parent, key)
        except WriteError as err:
            _stop(WriteError(str(err).replace(f"{key}={folder.parent}", f"{key}={folder}", 1), folder))


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = run(cfg)
    except (ConfigError, WriteError) as err:
        _stop(err)
    except OSError as err:
        if not is_disk_error(err):
            raise
        _stop(write_error(err.filename or "a file", err))
    return metrics.get("hm", metrics.get("base"))  # the number sweepers optimise
