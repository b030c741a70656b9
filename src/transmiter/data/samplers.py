"""Distributed sampling for evaluation that counts every image exactly once.

Usage::

    from transmiter.data.samplers import UnrepeatedDistributedSampler

    sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank)
    loader = DataLoader(dataset, batch_size=100, sampler=sampler)   # rank r gets indices r, r+W, r+2W, ...

torch's ``DistributedSampler`` pads the index list so that every rank has the same length, which counts
some test images twice and biases DDP accuracy. This sampler gives rank ``r`` exactly ``indices[r::W]``:
no padding, no dropping, so the union over ranks is every index once. Ranks may get one item fewer than
others, so per-step collective ops (e.g. ``self.log(..., sync_dist=True)`` every step) must be avoided
during evaluation; accumulate metrics locally and reduce once at the end (torchmetrics does this).

It subclasses ``DistributedSampler`` on purpose: Lightning then keeps it instead of wrapping it in its own
(padding) distributed sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler


class UnrepeatedDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``W`` iterates over ``indices[r::W]`` (optionally of a seeded permutation)."""

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        # Override the padded sizes computed by DistributedSampler.
        self.total_size = len(dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.total_size, generator=generator).tolist()
        else:
            indices = list(range(self.total_size))
        return iter(indices[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
