"""Pretrain several synthetic CLIPs side by side on a CPU, sharing its cores between them (opt-in).

Usage::

    from transmiter.synthetic.concurrent import pretrain_all_or_load
    paths = pretrain_all_or_load([weak_cfg, strong_cfg], cache_dir, side_by_side=True)  # {model: path}
    # or: transmiter world build --side-by-side

Why: the synthetic models are small, so one training gains little from a second torch thread, while two
trainings side by side with one thread each both run at nearly full speed. Each
missing checkpoint is trained in its own spawned process, at most one per core at a time. The processes
share the count of trainings still running, and before every step each one sets its torch threads to
``cores // running``: one thread each while both run, every core for the one left at the end
(:class:`CoreShare`; the schedule is recorded in the checkpoint's sidecar as ``thread_schedule``,
``[[step, threads], ...]``). The parent shows one progress bar per model; a failure in a worker stops the
others and is raised here with the worker's traceback.

Why opt-in: the recipe, the data stream and the cache key are those of :func:`pretrain_or_load`, but CPU
kernels are not bit-identical across thread counts, so the weights differ in the last bits from a
one-at-a-time build, which is bit-reproducible on a given machine (the demo tables were made from it). And
the saving is modest on 2 cores (experiments/demo/README.md has the timings): the two trainings share the
cores only until the weak one ends, and the cache and memory traffic of two processes slows each step.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from transmiter.synthetic import pretrain as pt
from transmiter.synthetic.architectures import register_synthetic_models

log = logging.getLogger(__name__)


class CoreShare(L.Callback):
    """Before each step: torch threads = ``cores // trainings still running`` (shared counter)."""

    def __init__(self, running: Any, cores: int, steps_done: Any | None = None) -> None:
        self.running, self.cores, self.steps_done = running, cores, steps_done
        self.schedule: list[list[int]] = []

    def threads_now(self) -> int:
        return max(1, self.cores // max(1, int(self.running.value)))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        n = self.threads_now()
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        if not self.schedule or self.schedule[-1][1] != n:
            self.schedule.append([batch_idx, n])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.steps_done is not None:
            self.steps_done.value = batch_idx + 1

    def stats(self) -> dict[str, Any]:
        return {"thread_schedule": self.schedule}


def side_by_side_refusal(accelerator: str = "auto") -> str | None:
    """Why side-by-side training cannot help here (None: it can)."""
    if pt.uses_gpu(accelerator):
        return "side by side is for CPUs (on a GPU each training runs fastest alone)"
    if pt.cpu_cores() < 2:
        return "this process may use only one CPU core"
    if os.environ.get("TRANSMITER_TORCH_THREADS", "").strip():
        return "TRANSMITER_TORCH_THREADS fixes the thread count of every training"
    return None


def pretrain_all_or_load(
    cfgs: Sequence[pt.PretrainConfig],
    cache_dir: str | Path,
    *,
    progress: bool = True,
    accelerator: str = "auto",
    side_by_side: bool = False,
) -> dict[str, Path]:
    """Checkpoint path of every config, training the missing ones (side by side when asked and possible)."""
    register_synthetic_models()
    names = [c.model_name for c in cfgs]
    if len(set(names)) != len(names):
        raise ValueError(f"pretrain_all_or_load: one config per model, got {names}")
    missing = [c for c in cfgs if pt.read_valid_meta(c, cache_dir) is None]
    if side_by_side and len(missing) >= 2:
        refusal = side_by_side_refusal(accelerator)
        if refusal is None:
            _train_side_by_side(missing, Path(cache_dir), progress=progress, accelerator=accelerator)
        else:
            log.warning("pretraining one model at a time: %s", refusal)
    # after a side-by-side run every entry is a verified cache hit; otherwise this trains one at a time
    return {
        c.model_name: pt.pretrain_or_load(c, cache_dir, progress=progress, accelerator=accelerator)
        for c in cfgs
    }


def _worker(cfg, cache_dir, accelerator, running, steps_done, results, log_level) -> None:  # noqa: ANN001
    logging.basicConfig(level=log_level, format="%(message)s")
    logging.getLogger().setLevel(log_level)  # also when the re-imported main module configured logging
    try:
        share = CoreShare(running, pt.cpu_cores(), steps_done)
        path = pt.pretrain_or_load(
            cfg,
            cache_dir,
            progress=False,
            accelerator=accelerator,
            threads=share.threads_now(),
            callbacks=[share],
        )
        results.put((cfg.model_name, str(path), None))
    except BaseException:  # reported to the parent, which raises it
        results.put((cfg.model_name, None, traceback.format_exc()))


def _train_side_by_side(
    cfgs: Sequence[pt.PretrainConfig], cache_dir: Path, *, progress: bool, accelerator: str
) -> None:
    ctx = mp.get_context("spawn")  # never fork a process whose OpenMP/torch threads are running
    cores = pt.cpu_cores()
    running = ctx.Value("i", 0)
    results = ctx.Queue()
    pending = list(cfgs)
    steps = {c.model_name: ctx.Value("i", 0) for c in cfgs}
    alive: dict[str, Any] = {}
    finished: dict[str, tuple[str | None, str | None]] = {}
    # workers log step lines only when there is no progress bar to show them
    log_level = logging.WARNING if progress else log.getEffectiveLevel()
    log.info("pretraining %s side by side on %d cores", ", ".join(c.model_name for c in cfgs), cores)
    bar = _Bars(cfgs) if progress else None
    try:
        while pending or alive:
            while pending and len(alive) < cores:
                cfg = pending.pop(0)
                with running.get_lock():
                    running.value += 1
                proc = ctx.Process(
                    target=_worker,
                    args=(cfg, cache_dir, accelerator, running, steps[cfg.model_name], results, log_level),
                    name=f"pretrain-{cfg.model_name}",
                )
                proc.start()
                alive[cfg.model_name] = proc
            time.sleep(0.5)
            while not results.empty():
                name, path, error = results.get()
                finished[name] = (path, error)
            for name, proc in list(alive.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del alive[name]
                with running.get_lock():
                    running.value -= 1
                if name not in finished:  # a message may still be in flight: wait for it briefly
                    try:
                        got = results.get(timeout=5)
                        finished[got[0]] = (got[1], got[2])
                    except Exception:  # noqa: BLE001 - a killed worker sends nothing
                        pass
                path, error = finished.get(name, (None, _silent_exit(proc.exitcode)))
                if error is not None:
                    raise RuntimeError(f"pretraining {name} failed in its worker process:\n{error}")
                pt.TRAINING_RUNS += 1
            if bar is not None:
                bar.update({n: v.value for n, v in steps.items()})
    finally:
        for proc in alive.values():
            proc.terminate()
            proc.join()
        if bar is not None:
            bar.close()


def _silent_exit(code: int | None) -> str:
    return (
        f"the worker exited with code {code} without a report (killed, e.g. out of memory; or a script "
        "that starts this without an `if __name__ == '__main__':` guard, which spawned workers re-run); "
        "train one at a time instead (side_by_side=False)"
    )


class _Bars:
    """One rich progress bar per model, fed from the workers' step counters."""

    def __init__(self, cfgs: Sequence[pt.PretrainConfig]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("pretraining {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.tasks = {c.model_name: self.progress.add_task(c.model_name, total=c.steps) for c in cfgs}
        self.progress.start()

    def update(self, done: dict[str, int]) -> None:
        for name, n in done.items():
            self.progress.update(self.tasks[name], completed=n)

    def close(self) -> None:
        self.progress.stop()
