"""Pins what transmiter.distributed.exclude_from_ddp_sync relies on in torch (no public API exists): a
buffer it names is neither broadcast from rank 0 nor touched by DDP, while the others are."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

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
