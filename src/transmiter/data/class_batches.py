"""Skip Tuning's mini-batch plan as a DDP-aware batch sampler.

    from transmiter.data.class_batches import ClassBatchSampler
    sampler = ClassBatchSampler(labels, batch_size=4, shots=16, seed=1)      # class-homogeneous (shots >= 4)
    loader = DataLoader(dataset, batch_sampler=sampler)                       # Lightning: use_distributed_sampler=False
    sampler.set_epoch(epoch)                                                  # Lightning calls it for you

Modes:
* "class" (shots >= 4, the reference's 'batch_random'): each batch holds `batch_size` different images of
  ONE class. At every step a class is drawn uniformly among the classes that still have >= batch_size unused
  images, and batch_size of its unused images are drawn without replacement; a class is retired once fewer
  than batch_size images are left. 16 shots, batch 4 -> 4 batches per class per epoch.
* "random" (shots < 4): a uniform random permutation cut into batches; the remainder is dropped.
* shots None or <= 0 ("all images", no few-shot sampling): the label counts decide, "class" when every class
  has >= 4 images, else "random".

Classes with fewer than `batch_size` images get no batch in "class" mode, exactly as in the reference
(FeatureLoader retires a class once fewer than batch_size images are left, and never emits a short batch), so
they are never trained on. That is never silent: the sampler logs a warning naming them (a few-shot split keeps
all images of a class with fewer than K, so this happens on small datasets), and `strict=True` makes it a
ValueError. To train on them, use "random" mode (class_homogeneous=False) or a smaller batch_size.
The plan is redrawn every epoch from (seed, epoch) only, so it is reproducible and identical on every rank.

DDP: the epoch plan is dealt round-robin — rank r gets batches r, r + W, r + 2W, ... — and truncated to
floor(n_batches / W) per rank, so ranks hold disjoint batches and the same number of them (the few batches
beyond a multiple of W are dropped that epoch; which ones changes every epoch). World size and rank are taken
from the arguments or, when omitted, from torch.distributed at iteration time (1 / 0 when not initialised).

This class follows the batch-sampler protocol (iterable of index lists, `__len__`) but deliberately does not
subclass torch's BatchSampler: Lightning cannot inject a DistributedSampler into it and it does its own
sharding, so give Lightning `use_distributed_sampler=False` when you pass it in a DataLoader (SkipTuningCLIP
wraps it in an IterableDataset, which Lightning leaves alone).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["CLASS_MODE_MIN_SHOTS", "ClassBatchSampler", "choose_mode"]

log = logging.getLogger(__name__)

CLASS_MODE_MIN_SHOTS = 4  # the reference: NUM_SHOTS >= 4 -> class-homogeneous batches


def choose_mode(shots: int | None, labels: Sequence[int]) -> str:
    """'class' when shots >= 4 else 'random'. Shots None or <= 0 (all images, no few-shot sampling): 'class'
    when every class in `labels` has >= 4 images, else 'random'."""
    if shots is None or shots <= 0:
        counts: dict[int, int] = {}
        for y in labels:
            counts[int(y)] = counts.get(int(y), 0) + 1
        shots = min(counts.values()) if counts else 0
    return "class" if shots >= CLASS_MODE_MIN_SHOTS else "random"


def _dist_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class ClassBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices per epoch: class-homogeneous or uniformly random, sharded over ranks."""

    def __init__(
        self,
        labels: Sequence[int] | torch.Tensor,
        batch_size: int = 4,
        *,
        mode: str | None = None,
        shots: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        strict: bool = False,
        classnames: Sequence[str] | None = None,
    ):
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else [int(y) for y in labels]
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if mode is None:
            mode = choose_mode(shots, labels)
        if mode not in ("class", "random"):
            raise ValueError(f"mode={mode!r}: use 'class' (class-homogeneous) or 'random'")
        if num_replicas is not None and (rank is None or not 0 <= rank < num_replicas):
            raise ValueError(f"rank={rank} must be given and lie in [0, {num_replicas})")
        self.labels = labels
        self.batch_size = int(batch_size)
        self.mode = mode
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            self._by_class.setdefault(y, []).append(i)
        if self.total_batches() == 0:
            raise ValueError(
                f"no batch of {self.batch_size} can be formed from {len(labels)} training images in mode "
                f"{mode!r} (class mode needs a class with >= batch_size images)"
            )
        unbatched = self.unbatched_classes()
        if unbatched:
            shown = ", ".join(
                f"{c if classnames is None else repr(classnames[c])} ({len(self._by_class[c])})"
                for c in unbatched[:10]
            )
            message = (
                f"class-homogeneous batches of {self.batch_size}: {len(unbatched)} class(es) have fewer "
                f"images and get no batch, so they are never trained on (class (images): {shown}"
                f"{', ...' if len(unbatched) > 10 else ''}); the reference does the same. Use random batches "
                "(class_homogeneous=False) or a smaller batch_size to train on them"
            )
            if strict:
                raise ValueError(message)
            log.warning(message)

    # -- bookkeeping -------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def world(self) -> tuple[int, int]:
        """(num_replicas, rank) in effect."""
        if self.num_replicas is not None:
            return self.num_replicas, int(self.rank)
        return _dist_world()

    def unbatched_classes(self) -> list[int]:
        """Labels that never get a batch: fewer than batch_size images in "class" mode (none in "random")."""
        if self.mode != "class":
            return []
        return sorted(c for c, ix in self._by_class.items() if len(ix) < self.batch_size)

    def total_batches(self) -> int:
        """Batches in one epoch's full plan (all ranks together); the same every epoch."""
        if self.mode == "random":
            return len(self.labels) // self.batch_size
        return sum(len(ix) // self.batch_size for ix in self._by_class.values())

    def __len__(self) -> int:
        world, _ = self.world()
        return self.total_batches() // world

    # -- the plan ------------------------------------------------------------------------------------------
    def plan(self, epoch: int | None = None) -> list[list[int]]:
        """The full batch plan of `epoch` (default: the current epoch), before sharding."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = random.Random(self.seed * 1_000_003 + epoch)
        bs = self.batch_size
        if self.mode == "random":
            perm = list(range(len(self.labels)))
            rng.shuffle(perm)
            return [perm[i : i + bs] for i in range(0, len(perm) - bs + 1, bs)]
        pools = {c: list(ix) for c, ix in sorted(self._by_class.items()) if len(ix) >= bs}
        active = sorted(pools)
        batches: list[list[int]] = []
        while active:
            c = active[rng.randrange(len(active))]
            pool = pools[c]
            batch = []
            for _ in range(bs):  # without replacement inside the class
                batch.append(pool.pop(rng.randrange(len(pool))))
            batches.append(batch)
            if len(pool) < bs:
                active.remove(c)
        return batches

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's share of the plan: round-robin, truncated to the same count on every rank."""
        world, rank = self.world()
        full = self.plan(epoch)
        per_rank = len(full) // world
        return full[rank : per_rank * world : world]

    def indices_for_epoch(self, epoch: int | None = None) -> list[int]:
        """Sorted dataset indices this rank serves in `epoch` (what its token cache must hold)."""
        return sorted({i for b in self.rank_batches(epoch) for i in b})

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.rank_batches(self.epoch)
