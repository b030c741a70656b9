"""One job after its config passed validation: seed, build the run's services, run the method, write
the results records and `job.json`, log to the tracker.

    from transmiter.job import run_job
    metrics = run_job(cfg)          # the app calls it once the config is valid

This is where torch, Lightning and open_clip are first imported on the way from the command line.
"""

from __future__ import annotations

import logging

import lightning as L
from omegaconf import DictConfig

from transmiter.config.instantiate import instantiate
from transmiter.context import RunContext
from transmiter.distributed import begin_job
from transmiter.planning import mark_done
from transmiter.reporting.records import resolved_config, write_record

log = logging.getLogger("transmiter")


def run_job(cfg: DictConfig) -> dict[str, float]:
    # Name the job for its DDP ranks: they share stage decisions through it (transmiter.stages)
    begin_job()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    ctx = RunContext.from_config(cfg)
    method = instantiate(cfg.method)
    try:
        metrics = _run_method(cfg, ctx, method)
    except BaseException:  # the tracker run ends as failed, whatever stopped the job
        finish_tracking(ctx, failed=True)
        raise
    finish_tracking(ctx, failed=False)
    return metrics


def _run_method(cfg: DictConfig, ctx, method) -> dict[str, float]:
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


def finish_tracking(ctx, failed: bool) -> None:
    """Close the job's wandb run, as finished or as failed (exit code 1). Always called: several jobs of a
    multirun may share one process, and the next job must start its own run."""
    ctx.finalize_logger("failed" if failed else "success")
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.run.finish(exit_code=1 if failed else 0)
