"""Pins what transmiter.distributed.exclude_from_ddp_sync relies on (no public API exists): in torch, a
buffer it names is neither broadcast from rank 0 nor touched by DDP, while the others are; in Lightning, the
DDP strategy wraps the LightningModule itself, so the names (relative to it) reach DDP."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from transmiter.callbacks import ShutdownSpawnedProcessGroup
from transmiter.distributed import exclude_from_ddp_sync, excluded_from_ddp_sync


class _Module(nn.Module):
    def __init__(self, rank: int):
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.register_buffer("shared", torch.full((3,), float(rank)))
        self.register_buffer("kept_per_rank", torch.full((3,), float(rank)))

    def forward(self, x):
        return self.layer(x).sum() + self.shared.sum() + self.kept_per_rank.sum()


def _worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        module = _Module(rank)
        exclude_from_ddp_sync(module, ["kept_per_rank"])
        ddp = DistributedDataParallel(module, broadcast_buffers=True)
        ddp(torch.ones(1, 2)).backward()  # the forward broadcasts buffers from rank 0
        torch.save({"shared": module.shared, "kept_per_rank": module.kept_per_rank}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_excluded_buffer_stays_per_rank_while_the_others_follow_rank_zero(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    one = torch.load(tmp_path / "out.1", weights_only=True)
    assert torch.equal(one["shared"], torch.zeros(3))  # broadcast from rank 0
    assert torch.equal(one["kept_per_rank"], torch.ones(3))  # left alone


def test_exclusions_accumulate_without_duplicates():
    module = _Module(0)
    exclude_from_ddp_sync(module, ["shared"])
    exclude_from_ddp_sync(module, ["shared", "kept_per_rank"])
    assert excluded_from_ddp_sync(module) == ["shared", "kept_per_rank"]


class _TinyModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.register_buffer("kept_per_rank", torch.zeros(3))
        exclude_from_ddp_sync(self, ["kept_per_rank"])

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _SeesTheExclusion(L.Callback):
    """Inside each rank: DDP wraps this very LightningModule and ignores the excluded buffer."""

    def on_train_start(self, trainer, pl_module):
        ddp = trainer.strategy.model
        assert isinstance(ddp, DistributedDataParallel) and ddp.module is pl_module
        assert "kept_per_rank" in ddp.parameters_to_ignore


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lightning_ddp_strategy_hands_the_exclusions_to_ddp():
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[_SeesTheExclusion(), ShutdownSpawnedProcessGroup()],
    )
    trainer.fit(_TinyModule(), DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=1))
