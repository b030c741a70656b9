"""The transmiter Hydra application: compose -> validate -> build -> run the method -> record.

    transmiter method=zeroshot model=ViT-B-16 dataset=oxford_pets setting=base2novel seed=1
    transmiter -m dataset=oxford_pets,dtd seed=1,2,3            # a sweep (basic launcher)
    python -m transmiter experiment=smoke

Returns (and prints) the run's metrics; the results record is `<run dir>/results.json`.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from transmiter.config.compose import CONFIG_DIR
from transmiter.config.validate import validate_config

log = logging.getLogger("transmiter")


def guard_multirun_ddp(cfg: DictConfig) -> None:
    """Refuse --multirun with Lightning's re-executing `ddp` strategy on more than one device unless
    SLURM (submitit) creates the processes (engineering.md §3, pitfall 3)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

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
        from transmiter.config.validate import ConfigError

        raise ConfigError(
            "trainer.strategy=ddp cannot run under --multirun with a local launcher: Lightning re-executes the "
            "command once per GPU and every copy starts its own sweep (Lightning issue 11300). Use "
            "hydra/launcher=slurm (SLURM starts one task per GPU), or trainer.strategy=ddp_spawn, or run "
            "the jobs one by one (a shell loop of single runs with trainer=ddp)."
        )


def run(cfg: DictConfig) -> dict[str, float]:
    """One job: everything a Hydra run does, callable from tests with a composed config."""
    from pathlib import Path

    import lightning as L

    from transmiter.context import RunContext
    from transmiter.distributed import begin_job
    from transmiter.config.instantiate import instantiate
    from transmiter.planning import describe_job, job_status

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
    # Name the job for its DDP ranks: they share stage decisions through it (transmiter.stages)
    begin_job()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    ctx = RunContext.from_config(cfg)
    method = instantiate(cfg.method)
    try:
        return _run_method(cfg, ctx, method)
    finally:
        finish_tracking(ctx)


def _run_method(cfg: DictConfig, ctx, method) -> dict[str, float]:
    from transmiter.planning import mark_done
    from transmiter.reporting.records import resolved_config, write_record

    if ctx.logger:
        ctx.logger.log_hyperparams(resolved_config(cfg))
    with ctx.timed("total_s"):
        outcome = method(ctx)
    # A study job returns several rows (one record each); a single method returns one.
    results = outcome if isinstance(outcome, list) else [outcome]
    paths = []
    for result in results:
        path = write_record(ctx, result, subdir=None if len(results) == 1 else result.slug)
        metrics = {k: round(v, 2) for k, v in result.metrics.items()}
        log.info(
            "%s | %s | %s | seed %s: %s  (record: %s)",
            result.row,
            cfg.dataset.name,
            cfg.setting.name,
            cfg.seed,
            metrics,
            path,
        )
        print(f"{result.row} | {cfg.dataset.name} | {cfg.setting.name} | seed {cfg.seed}: {metrics}")
        paths.append(str(path))
    log_results(ctx, results)
    mark_done(ctx.output_dir, paths, {r.row: r.metrics for r in results})
    return results[-1].metrics


def log_results(ctx, results) -> None:
    """Final figures of every row, and a results table, into the job's tracker run."""
    logger = ctx.logger
    if not logger:
        return
    if hasattr(logger, "_prefix"):
        logger._prefix = ""
    flat = {}
    for r in results:
        for k, v in {
            **r.metrics,
            **{f"cost/{c}": x for c, x in r.costs.items() if isinstance(x, int | float)},
        }.items():
            flat[f"results/{r.row}/{k}"] = float(v)
    logger.log_metrics(flat)
    if hasattr(logger, "log_table"):
        columns = ["dataset", "setting", "seed", "method", "base", "novel", "hm", "protocol"]
        rows = [
            [
                ctx.cfg.dataset.name,
                ctx.cfg.setting.name,
                ctx.seed,
                r.row,
                r.metrics.get("base"),
                r.metrics.get("novel"),
                r.metrics.get("hm"),
                r.protocol,
            ]
            for r in results
        ]
        logger.log_table(key="results", columns=columns, data=rows)


def finish_tracking(ctx) -> None:
    """Close the job's wandb run (always: several jobs may share a process under multirun)."""
    logger = ctx._models.get("_logger")
    if logger:
        logger.finalize("success")
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    return metrics.get("hm", metrics.get("base"))  # the number sweepers optimise
