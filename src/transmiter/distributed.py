"""Process-group hygiene for Lightning's spawn-based DDP (``strategy=ddp_spawn``, e.g. ``trainer=ddp_cpu``).

Usage::

    trainer = L.Trainer(strategy="ddp_spawn", devices=2, callbacks=[ShutdownSpawnedProcessGroup()])

:func:`transmiter.instantiate.build_trainer` adds the callback to every trainer it builds; it is a no-op
outside spawned workers.

Why: a spawned worker that leaves ``fit`` while its gloo process group is still alive races its peer at
interpreter exit. Rank 1 returns at once while rank 0 still writes the weights it hands back to the parent,
and gloo's background threads can then abort the exiting process ("terminate called without an active
exception", SIGABRT), which fails a run that had finished correctly. The callback makes every rank meet at a
barrier once the stage is over and then tears the group down in order.
"""

from __future__ import annotations

import lightning as L
import torch.distributed as dist


def _in_spawned_worker(trainer: L.Trainer) -> bool:
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


class ShutdownSpawnedProcessGroup(L.Callback):
    """At the end of a stage inside a ``ddp_spawn`` worker: barrier, then ``destroy_process_group``."""

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if dist.is_available() and dist.is_initialized() and _in_spawned_worker(trainer):
            dist.barrier()
            dist.destroy_process_group()
