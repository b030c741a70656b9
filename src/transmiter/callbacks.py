"""The project's Lightning callbacks; `conf/callbacks/default.yaml` says which callbacks every trainer gets,
and `transmiter.trainers.build_trainer` builds them (the one place).

    trainer = L.Trainer(callbacks=[NonFiniteLossGuard(), RandomStateCheckpoint(), ...])
    make_train_loader_resumable(datamodule)      # its train DataLoader puts the saved random state back

RandomStateCheckpoint saves the random state of the data stream with every checkpoint (the training
DataLoader's generator and the global torch / numpy / Python RNGs, which drive augmentations and seed
workers), one per DDP rank, and a resumable train DataLoader puts it back right before the resumed epoch's
iterator is created, so that epoch sees the same order and the same augmentations.

NonFiniteLossGuard stops training before a NaN / inf loss reaches the weights: it raises
NonFiniteLossError on every rank (the ranks agree through one reduction), so the checkpoint of the last
finished epoch stays the last good one.

ShutdownSpawnedProcessGroup (on every trainer): a ``ddp_spawn`` worker that leaves ``fit`` while its gloo
process group is alive races its peer at interpreter exit; gloo's background threads can then abort the
exiting process (SIGABRT) and fail a run that had finished. Every rank meets at a barrier once the stage is
over, then the group is torn down in order.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import time
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from torch.utils.data import DataLoader


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stops so the last good checkpoint survives."""


class NonFiniteLossGuard(L.Callback):
    """Raise NonFiniteLossError on every rank, before the backward pass, when any rank's loss is NaN / inf."""

    def __init__(self) -> None:
        self.batch_idx: int | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(
                f"{type(pl_module).__name__}: non-finite training loss ({loss.detach().float().item()} on this "
                f"rank) at epoch {trainer.current_epoch}, global step {trainer.global_step}, batch "
                f"{self.batch_idx}. Training stopped; a ModelCheckpoint keeps the last good checkpoint. Try a "
                "lower learning rate, fp32 or bf16-mixed precision (not fp16), and check the inputs (images, "
                "cached logits) for NaN/inf."
            )


class ShutdownSpawnedProcessGroup(L.Callback):
    """At the end of a stage inside a spawned DDP worker (``ddp_spawn``): barrier, then ``destroy_process_group``.

    A no-op elsewhere: the main process of ``ddp_spawn`` has no process group, and ranks started by a
    launcher (torchrun, SLURM, Lightning's ``ddp``) are not multiprocessing children and exit on their own."""

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        spawned = multiprocessing.parent_process() is not None
        if spawned and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------------------


def progress_bar(leave: bool = False, every_s: float = 30.0, stream: Any = None) -> ProgressBar:
    """A live rich bar on a terminal; elsewhere (a log file, a SLURM job, CI) plain lines every `every_s`
    seconds, since a redrawn bar only leaves its last frame in a file."""
    stream = stream if stream is not None else sys.stderr
    if stream.isatty():
        return RichProgressBar(leave=leave)
    return PlainProgress(every_s=every_s, stream=stream)


class PlainProgress(ProgressBar):
    """Progress as lines (`train epoch 2/10, batch 40/125, loss 0.53, 61 s`) at most every `every_s` seconds
    of a loop; loops shorter than that print nothing. Lightning's own metrics appear as they are logged."""

    def __init__(self, every_s: float = 30.0, stream: Any = None) -> None:
        super().__init__()
        self.every_s = float(every_s)
        self.stream = stream if stream is not None else sys.stderr
        self._enabled = True
        self._loop_start = 0.0
        self._last = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _start(self) -> None:
        self._loop_start = self._last = time.monotonic()

    def _maybe_print(
        self, trainer: L.Trainer, pl_module: L.LightningModule, what: str, done: int, total
    ) -> None:
        now = time.monotonic()
        if not self._enabled or not trainer.is_global_zero or now - self._last < self.every_s:
            return
        self._last = now
        total_text = "?" if total in (None, float("inf")) else str(int(total))
        parts = [f"{type(pl_module).__name__}: {what} batch {done}/{total_text}"]
        if what == "train":
            parts[0] = (
                f"{type(pl_module).__name__}: train epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, "
                f"batch {done}/{total_text}"
            )
            for name, value in self.get_metrics(trainer, pl_module).items():
                if name != "v_num" and isinstance(value, int | float):
                    parts.append(f"{name} {value:.4g}")
        parts.append(f"{now - self._loop_start:.0f} s")
        print(", ".join(parts), file=self.stream, flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_print(trainer, pl_module, "train", batch_idx + 1, trainer.num_training_batches)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._start()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        total = trainer.num_predict_batches[dataloader_idx]
        self._maybe_print(trainer, pl_module, "predict", batch_idx + 1, total)

    def on_test_start(self, trainer, pl_module) -> None:
        self._start()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._maybe_print(trainer, pl_module, "test", batch_idx + 1, trainer.num_test_batches[dataloader_idx])


# ---------------------------------------------------------------------------------------------------------
# random state travelling with the checkpoint
# ---------------------------------------------------------------------------------------------------------


# At most one saved random state waiting for the next resumable training iterator of this process. A
# process-wide slot rather than an attribute of the loader: Lightning may re-create the DataLoader (to add a
# DDP sampler) after the checkpoint was read, and the slot survives that.
_PENDING_STATE: list[dict[str, Any]] = []


class ResumableDataLoader(DataLoader):
    """A DataLoader that, when a resumed run creates its first iterator, first puts back the random state
    saved with the checkpoint (its own generator and the global RNGs; see :class:`RandomStateCheckpoint`).
    Lightning creates that iterator right after reading the checkpoint, so nothing in between draws."""

    def __iter__(self):
        if _PENDING_STATE:
            states = _PENDING_STATE.pop()["ranks"]
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            if rank < len(states):  # resumed on more processes than saved: the new ranks start afresh
                restore_random_state(states[rank], self.generator)
        return super().__iter__()


class RandomStateCheckpoint(L.Callback):
    """Saves the random state of the data stream with every checkpoint (the training DataLoader's generator
    and the global torch / numpy / Python RNGs, which drive augmentations and seed workers), one per DDP
    rank, and hands it to the first training iterator of a resumed run.

    Lightning's own hook for stateful loaders is not enough: it only reloads their state when resuming in the
    middle of an epoch, and these checkpoints are written at epoch ends."""

    def __init__(self) -> None:
        self.trainer: L.Trainer | None = None  # the trainer this callback serves (set in setup)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = self.trainer
        loader = trainer.train_dataloader if trainer is not None else None
        mine = capture_random_state(getattr(loader, "generator", None))
        states = [mine]
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            # Every rank dumps the checkpoint (Lightning's save_checkpoint runs on all ranks; rank 0 writes),
            # so this collective is matched on every rank.
            states = [None] * trainer.world_size
            torch.distributed.all_gather_object(states, mine)
        return {"format": 2, "ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _PENDING_STATE[:] = [state_dict] if state_dict.get("format") == 2 else []


def clear_pending_random_state() -> None:
    """Forget a saved random state no iterator has taken (before and after each training stage)."""
    _PENDING_STATE.clear()


def capture_random_state(generator: torch.Generator | None) -> dict[str, Any]:
    """The state of ``generator`` and of the global RNGs, as plain values and tensors (weights-only loadable)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "generator": None if generator is None else generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": [
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class _ResumableTrainLoader:
    """Replaces ``owner.train_dataloader`` on the instance: calls the class's method, then turns the plain
    DataLoader it returns into a :class:`ResumableDataLoader` (same object, same arguments: the subclass
    only adds ``__iter__``). A class rather than a closure, so the owner still pickles (``ddp_spawn``)."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def __call__(self) -> Any:
        loader = type(self.owner).train_dataloader(self.owner)
        if type(loader) is DataLoader:
            # Lightning may re-create it (DDP samplers) from the recorded arguments: it keeps the class.
            loader.__class__ = ResumableDataLoader
        return loader


def make_train_loader_resumable(owner: Any) -> None:
    """Make the train DataLoader of ``owner`` (a DataModule, or a module serving its own batches) stateful."""
    if owner is None or not callable(getattr(type(owner), "train_dataloader", None)):
        return
    if not isinstance(owner.__dict__.get("train_dataloader"), _ResumableTrainLoader):
        owner.train_dataloader = _ResumableTrainLoader(owner)
