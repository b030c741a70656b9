"""Lightning callbacks of every training stage (composed from `conf/callbacks/`, built by
`transmiter.trainers.build_trainer`).

    trainer = L.Trainer(callbacks=[NonFiniteLossGuard(), ...])

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

import lightning as L
import torch
import torch.distributed as dist


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
