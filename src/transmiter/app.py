"""The transmiter Hydra application: compose -> validate -> build -> run the method -> record.

    transmiter method=zeroshot model=ViT-B-16 dataset=oxford_pets setting=base2novel seed=1
    transmiter -m dataset=oxford_pets,dtd seed=1,2,3            # a sweep (basic launcher)
    python -m transmiter experiment=smoke

Returns (and prints) the run's metrics; the results record is `<run dir>/results.json`.
"""

from __future__ import annotations

import logging
import os

import hydra
from omegaconf import DictConfig

from transmiter.config.compose import CONFIG_DIR
from transmiter.config.validate import validate_config

log = logging.getLogger("transmiter")


def guard_multirun_ddp(cfg: DictConfig) -> None:
    """Refuse multirun + Lightning's re-executing `ddp` launcher (engineering.md §3, pitfall 3)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    devices = cfg.trainer.get("devices", 1)
    many = (
        devices == -1
        or (isinstance(devices, int) and devices > 1)
        or (isinstance(devices, list | str) and str(devices) not in ("1", "[0]"))
    )
    if (
        hc.mode == RunMode.MULTIRUN
        and cfg.trainer.get("strategy") == "ddp"
        and many
        and "SLURM_JOB_ID" not in os.environ
        and hc.launcher._target_.endswith("BasicLauncher")
    ):
        from transmiter.config.validate import ConfigError

        raise ConfigError(
            "trainer=ddp cannot run under --multirun with a local launcher: Lightning re-executes the "
            "command once per GPU and every copy starts its own sweep (Lightning issue 11300). Use "
            "hydra/launcher=slurm (one SLURM task per GPU), or trainer=ddp_cpu / "
            "trainer.strategy=ddp_spawn, or a shell loop of single runs with trainer=ddp."
        )


def run(cfg: DictConfig) -> dict[str, float]:
    """One job: everything a Hydra run does, callable from tests with a composed config."""
    from pathlib import Path

    import lightning as L

    from transmiter.context import RunContext
    from transmiter.instantiate import instantiate
    from transmiter.planning import describe_job, job_status, mark_done
    from transmiter.reporting.records import write_record

    guard_multirun_ddp(cfg)
    output_dir = Path(str(cfg.paths.output_dir)).resolve()
    if cfg.get("dry_run"):
        print(describe_job(cfg, output_dir))
        return {}
    if cfg.get("skip_done", True) and job_status(output_dir)[0] == "done":
        print(f"[skipped] {cfg.task_name}: {cfg.dataset.name} {cfg.setting.name} seed {cfg.seed} is done "
              f"({output_dir}); delete its job.json to run it again")
        return {}
    validate_config(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    ctx = RunContext.from_config(cfg)
    method = instantiate(cfg.method)
    with ctx.timed("total_s"):
        outcome = method(ctx)
    # A study job returns several rows (one record each); a single method returns one.
    results = outcome if isinstance(outcome, list) else [outcome]
    paths = []
    for result in results:
        path = write_record(ctx, result, subdir=None if len(results) == 1 else result.slug)
        metrics = {k: round(v, 2) for k, v in result.metrics.items()}
        log.info("%s | %s | %s | seed %s: %s  (record: %s)", result.row, cfg.dataset.name,
                 cfg.setting.name, cfg.seed, metrics, path)
        print(f"{result.row} | {cfg.dataset.name} | {cfg.setting.name} | seed {cfg.seed}: {metrics}")
        paths.append(str(path))
    mark_done(ctx.output_dir, paths, {r.row: r.metrics for r in results})
    return results[-1].metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    return metrics.get("hm", metrics.get("base"))  # the number sweepers optimise
