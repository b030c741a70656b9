"""The transmiter Hydra application: compose -> validate -> build -> run the method -> record.

    transmiter method=zeroshot model=ViT-B-16 dataset=oxford_pets setting=base2novel seed=1
    transmiter -m dataset=oxford_pets,dtd seed=1,2,3            # a sweep (basic launcher)
    python -m transmiter experiment=smoke

Returns (and prints) the run's metrics; the results record is `<run dir>/results.json`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from transmiter.config.compose import CONFIG_DIR
from transmiter.config.validate import ConfigError, validate_config
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
    validate_config(cfg)
    from transmiter.job import run_job  # the heavy layers (torch, Lightning, open_clip) start here

    return run_job(cfg)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    return metrics.get("hm", metrics.get("base"))  # the number sweepers optimise
