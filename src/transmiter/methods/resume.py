"""Resumable training stages: a killed run, started again with the same command, continues from its
last epoch and ends with the same weights as a run that was never interrupted.

    from transmiter.methods.resume import fit_resumable

    fit_resumable(ctx, module, datamodule, epochs=10, stage_dir=stage_dir, purpose="ft")

Every training stage (FT, Skip Tuning, adapter fitting, TransMiter+ refinement) trains through
:func:`fit_resumable`. What makes the continuation exact:

* ``<stage_dir>/checkpoints/last.ckpt`` is written at the end of every epoch (by Lightning, atomically:
  a temporary file, then a rename), with the weights, optimiser, LR scheduler, loop counters and each
  module's own extra state (CSkip draws, logit-noise generators);
* the random state of the data stream, i.e. the training DataLoader's shuffling generator and the global
  torch / numpy / Python RNGs that drive the random augmentations, is saved with the checkpoint, one per
  DDP rank (:class:`RandomStateCheckpoint`), and put back by the DataLoader right before the resumed
  epoch's iterator is created (:class:`ResumableDataLoader`), so that epoch sees the same order and the
  same augmentations;
* the checkpoint is read with ``weights_only=True`` (nothing pickled is executed) and checked before
  use: a damaged file fails with its path and the fix instead of a deep Lightning traceback.

Limits: checkpoints are per epoch, so a kill in the middle of an epoch loses that epoch's steps (exact
mid-epoch resumption would need the data iterator's position as well). Under DDP every rank's random
state is saved and restored; resuming on a different number of processes changes the sharding anyway.
On GPU, kernels that are not bit-reproducible (cuDNN, bf16) make any two runs differ slightly.

Fault injection, for the kill/resume tests: ``TRANSMITER_FAULT_KILL=<purpose>:<n>`` SIGKILLs the
process after its n-th training step of stages called ``<purpose>`` (counted over the whole process,
so a sweep's second job can be hit). ``TRANSMITER_FAULT_HOLD=<purpose>:<n>:<folder>`` instead holds the
process there: it writes ``<folder>/held-<pid>.json`` (its pid and SLURM job ids) and waits, at most 10
minutes, until ``<folder>/release`` exists, so a test can cancel a job at a known point (``scancel``).
Unset, which is always the case outside tests, they do nothing.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from transmiter.callbacks import clear_pending_random_state, make_train_loader_resumable
from transmiter.stages import CHECKPOINT_DIR

log = logging.getLogger("transmiter")

LAST_CHECKPOINT = "last.ckpt"
FAULT_ENV = "TRANSMITER_FAULT_KILL"
HOLD_ENV = "TRANSMITER_FAULT_HOLD"
HOLD_LIMIT_S = 600


class CheckpointError(RuntimeError):
    """A resume checkpoint that cannot be used; the message names the file and what to do."""


def last_checkpoint_path(stage_dir: str | os.PathLike) -> Path:
    return Path(stage_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def resume_checkpoint(stage_dir: str | os.PathLike) -> Path | None:
    """The stage's ``last.ckpt`` when there is one (after checking it can be read), else None."""
    path = last_checkpoint_path(stage_dir)
    if not path.is_file():
        return None
    verify_checkpoint(path)
    return path


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a readable Lightning training checkpoint.

    The file is memory-mapped, not read: cheap even for ViT-L checkpoints."""
    path = Path(path)
    fix = (
        f"Delete it to restart this training stage from its first epoch (rm {path}); the stage folder "
        f"{path.parent.parent} is otherwise kept"
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated zips, foreign files and pickles raise many different types
        from transmiter.models.clip import checkpoint_problem

        raise CheckpointError(
            f"resume checkpoint {path} is damaged or not a checkpoint ({checkpoint_problem(err)}). {fix}."
        ) from err
    missing = [k for k in ("state_dict", "optimizer_states", "loops") if k not in checkpoint]
    if not isinstance(checkpoint, dict) or missing:
        raise CheckpointError(
            f"resume checkpoint {path} is not a Lightning training checkpoint (missing {missing}). {fix}."
        )


def fit_resumable(
    ctx,
    module: L.LightningModule,
    datamodule: L.LightningDataModule | None,
    *,
    epochs: int,
    stage_dir: str | os.PathLike,
    purpose: str,
    curves: str | None = None,
    callbacks: Sequence[L.Callback] = (),
    **trainer_overrides: Any,
) -> L.Trainer:
    """``trainer.fit`` with per-epoch checkpoints in ``stage_dir``, resuming from ``last.ckpt`` if present.

    The stage's metrics go to the job's tracker run under ``curves`` (default ``purpose``) as a key prefix.

    ``datamodule=None`` means the module serves its own training batches (Skip Tuning). A non-finite loss
    stops training with a FloatingPointError that names the last good checkpoint."""
    stage_dir = Path(stage_dir)
    last = last_checkpoint_path(stage_dir)
    resume = resume_checkpoint(stage_dir)
    extra: list[L.Callback] = list(callbacks)
    extra += [f for f in (FaultInjection.from_env(purpose), HoldInjection.from_env(purpose)) if f]
    # the training callbacks of conf/callbacks (per-epoch checkpoint as last.ckpt, random state, non-finite
    # guard) join these; the checkpoint writes into the stage folder
    trainer = ctx.make_trainer(
        "train",
        checkpoint_dir=last.parent,
        max_epochs=epochs,
        enable_checkpointing=True,
        callbacks=extra,
        default_root_dir=str(stage_dir),
        logger=ctx.training_logger(curves or purpose),
        **trainer_overrides,
    )
    make_train_loader_resumable(datamodule if datamodule is not None else module)
    if resume is not None:
        log.info("%s: resuming from %s", purpose, resume)
    clear_pending_random_state()
    try:
        # weights_only: a checkpoint never unpickles arbitrary objects
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=str(resume) if resume else None, weights_only=True
        )
    except FloatingPointError as err:  # NonFiniteLossError: the last good checkpoint is kept
        where = (
            f"the last good checkpoint is {last}"
            if last.is_file()
            else f"no checkpoint was written yet (the first epoch failed; {last} would hold it)"
        )
        message = (
            f"{err} Training of {purpose!r} stopped; {where}. A re-run of the same command resumes from it and, "
            "being deterministic, will likely meet the same values: change the hyper-parameters (e.g. a lower "
            "learning rate), which starts a new stage, or fix the inputs."
        )
        try:
            raise type(err)(message) from err
        except TypeError:
            raise FloatingPointError(message) from err
    finally:
        clear_pending_random_state()
    return trainer


# ---------------------------------------------------------------------------------------------------------
# fault injection (tests)
# ---------------------------------------------------------------------------------------------------------

_STEPS_BY_PURPOSE: dict[str, int] = {}


class FaultInjection(L.Callback):
    """SIGKILLs this process after its ``after_steps``-th training step of stages called ``purpose``."""

    def __init__(self, purpose: str, after_steps: int) -> None:
        self.purpose, self.after_steps = purpose, int(after_steps)

    @classmethod
    def from_env(cls, purpose: str) -> FaultInjection | None:
        spec = os.environ.get(FAULT_ENV, "").strip()
        if not spec:
            return None
        target, _, steps = spec.rpartition(":")
        if not target or not steps.isdigit():
            raise ValueError(f"{FAULT_ENV}={spec!r}: use <purpose>:<steps>, e.g. ft:4 (or unset it)")
        return cls(purpose, int(steps)) if target == purpose else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        count = _STEPS_BY_PURPOSE.get(self.purpose, 0) + 1
        _STEPS_BY_PURPOSE[self.purpose] = count
        if count >= self.after_steps:
            log.warning("%s=%s: killing the process (test fault injection)", FAULT_ENV, os.environ[FAULT_ENV])
            os.kill(os.getpid(), signal.SIGKILL)


class HoldInjection(L.Callback):
    """Holds this process after its ``after_steps``-th training step of ``purpose`` stages until released."""

    def __init__(self, purpose: str, after_steps: int, folder: str) -> None:
        self.purpose, self.after_steps, self.folder = purpose, int(after_steps), Path(folder)

    @classmethod
    def from_env(cls, purpose: str) -> HoldInjection | None:
        spec = os.environ.get(HOLD_ENV, "").strip()
        if not spec:
            return None
        target, steps, folder = ([*spec.split(":", 2), "", ""])[:3]
        if not target or not steps.isdigit() or not folder:
            raise ValueError(f"{HOLD_ENV}={spec!r}: use <purpose>:<steps>:<folder>, e.g. ft:4:/tmp/hold")
        return cls(purpose, int(steps), folder) if target == purpose else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import json
        import time

        key = f"hold:{self.purpose}"
        count = _STEPS_BY_PURPOSE.get(key, 0) + 1
        _STEPS_BY_PURPOSE[key] = count
        if count != self.after_steps:
            return
        ids = {k: os.environ.get(k) for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")}
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"held-{os.getpid()}.json").write_text(json.dumps({"pid": os.getpid(), **ids}))
        log.warning(
            "%s: holding the process until %s exists (test fault injection)",
            HOLD_ENV,
            self.folder / "release",
        )
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not (self.folder / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
