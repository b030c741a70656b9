"""One job after its config passed validation: seed, build the run's services, run the method, write
the results records and `job.json`, log to the tracker.

A setting with targets (cross-dataset, domain generalisation) runs the method once on the job's own dataset
and then once per target (`RunContext.for_target`): every training stage is keyed on the job's dataset, so
the targets reuse it, and each (row, scored dataset) gets its own record under `<run dir>/<dataset>/<row>/`.

    from transmiter.job import run_job
    metrics = run_job(cfg)          # the app calls it once the config is valid

This is where torch, Lightning and open_clip are first imported on the way from the command line.
"""

from __future__ import annotations

import logging

import lightning as L
from omegaconf import DictConfig

from transmiter.config.instantiate import instantiate, target_dataset_nodes
from transmiter.console import quiet_library_notices
from transmiter.context import RunContext
from transmiter.distributed import begin_job, is_global_zero
from transmiter.planning import mark_done
from transmiter.reporting.records import resolved_config, write_record

log = logging.getLogger("transmiter")


def run_job(cfg: DictConfig) -> dict[str, float]:
    # Name the job for its DDP ranks: they share stage decisions through it (transmiter.stages)
    begin_job()
    quiet_library_notices()
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


def scored_contexts(ctx) -> list:
    """The job's own context, then one per setting target (their class maps built here, before any
    training, so a target that does not fit stops the job at once)."""
    targets = target_dataset_nodes(ctx.cfg)
    return [ctx, *(ctx.for_target(name, node) for name, node in targets.items())]


def _run_method(cfg: DictConfig, ctx, method) -> dict[str, float]:
    if ctx.logger:
        ctx.logger.log_hyperparams(resolved_config(cfg))
    contexts = scored_contexts(ctx)
    scored: list[tuple] = []  # (context, result) of every row on every scored dataset
    with ctx.timed("total_s"):
        for scored_ctx in contexts:
            outcome = method(scored_ctx)
            # A study job returns several rows (one record each); a single method returns one.
            scored += [(scored_ctx, r) for r in (outcome if isinstance(outcome, list) else [outcome])]
    # A row that cannot run here (Skip Tuning on a ResNet tower) is said once with its reason, never
    # recorded as an empty row.
    returned, not_run = len(scored), {}
    for scored_ctx, result in (pair for pair in scored if pair[1].extra.get("skipped")):
        row = result.row or result.method or "?"
        reason = str(result.extra["skipped"])
        not_run[_scored_label(scored_ctx, result, len(contexts)) if result.row else row] = reason
        if is_global_zero():
            print(
                f"{row} | {scored_ctx.cfg.dataset.name} | {cfg.setting.name} | seed {cfg.seed}: not run ({reason})"
            )
    scored = [(c, r) for c, r in scored if not r.extra.get("skipped")]
    trained_on = _train_split_identity(ctx)
    paths = []
    for scored_ctx, result in scored:
        # every record names the images its models trained on and, on a setting target, those it scored
        result.splits = {"train": trained_on, **result.splits}
        if scored_ctx.target is not None and "all" not in result.splits:
            result.splits["all"] = _test_split_identity(scored_ctx)
        dataset = scored_ctx.cfg.dataset.name
        subdir = None if returned == 1 else result.slug
        if len(contexts) > 1:
            subdir = f"{dataset}/{result.slug}"
        path = write_record(scored_ctx, result, subdir=subdir)
        log.debug("%s: record %s", result.row, path)
        paths.append(str(path))
    if is_global_zero():
        reused = ctx.reused_stages_line()
        if reused:
            log.info(reused)
        # one table per scored dataset, the last thing a job prints; in a sweep one line per job instead,
        # because `transmiter report` tables every job together at the end
        one_line = in_sweep()
        for scored_ctx in contexts:
            rows = [r for c, r in scored if c is scored_ctx]
            if not rows:
                continue
            name = scored_ctx.cfg.dataset.name
            if one_line:
                log.info(
                    "%s | %s | seed %s: %d rows in %s",
                    name,
                    cfg.setting.name,
                    cfg.seed,
                    len(rows),
                    ctx.output_dir,
                )
            else:
                log.info("%s | %s | seed %s\n%s", name, cfg.setting.name, cfg.seed, results_table(rows))
    log_results(ctx, scored)
    mark_done(
        ctx.output_dir,
        paths,
        {_scored_label(c, r, len(contexts)): r.metrics for c, r in scored},
        not_run=not_run,
    )
    return scored[-1][1].metrics if scored else {}


def _train_split_identity(ctx) -> str:
    from transmiter.data.datum import split_identity

    return split_identity(ctx.splits(subsample=str(ctx.cfg.setting.train_subsample)), ("train",))


def _test_split_identity(ctx) -> str:
    from transmiter.data.datum import split_identity

    return split_identity(ctx.splits(subsample="all"), ("test",))


def _scored_label(scored_ctx, result, n_contexts: int) -> str:
    return result.row if n_contexts == 1 else f"{result.row} @ {scored_ctx.cfg.dataset.name}"


def log_results(ctx, scored) -> None:
    """Final figures of every row (on every scored dataset), and a results table, into the job's tracker
    run. `scored`: (context, result) pairs."""
    logger = ctx.logger
    if not logger:
        return
    several = len({c.cfg.dataset.name for c, _ in scored}) > 1
    flat = {}
    for c, r in scored:
        prefix = f"results/{c.cfg.dataset.name}/{r.row}" if several else f"results/{r.row}"
        for k, v in {
            **r.metrics,
            **{f"cost/{name}": x for name, x in r.costs.items() if isinstance(x, int | float)},
        }.items():
            flat[f"{prefix}/{k}"] = float(v)
    logger.log_metrics(flat)
    if hasattr(logger, "log_table"):
        columns = ["dataset", "setting", "seed", "method", "base", "novel", "hm", "protocol"]
        rows = [
            [
                c.cfg.dataset.name,
                ctx.cfg.setting.name,
                ctx.seed,
                r.row,
                r.metrics.get("base"),
                r.metrics.get("novel"),
                r.metrics.get("hm"),
                r.protocol,
            ]
            for c, r in scored
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


def in_sweep() -> bool:
    """Whether this job is one of a Hydra multirun (`-m`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def results_table(results) -> str:
    """The job's rows as an aligned text table (metrics in %, two decimals), the last thing a job prints."""
    columns: list[str] = []
    for r in results:
        columns += [k for k in r.metrics if k not in columns]
    width = max(len("row"), *(len(r.row) for r in results))
    lines = ["  " + "row".ljust(width) + "".join(f"{c:>9}" for c in columns)]
    for r in results:
        cells = "".join(
            f"{r.metrics[c]:>9.2f}" if isinstance(r.metrics.get(c), int | float) else f"{'':>9}"
            for c in columns
        )
        lines.append("  " + r.row.ljust(width) + cells)
    return "\n".join(lines)
