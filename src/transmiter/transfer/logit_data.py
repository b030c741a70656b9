"""Datasets and a DataModule over cached logit tensors (no images, no features).

* fitting: ``(source_zs_logits[K], teacher_logits[C])`` pairs - labels never enter;
* TransMiter+: ``(target_zs_logits[K], label)`` pairs.

    dm = LogitPairDataModule(train=(zs, teacher), val=(zs_val, teacher_val), batch_size=128, seed=1)
    trainer.fit(AdapterFitModule(...), datamodule=dm)

``batch_size`` is GLOBAL: under DDP each process loads ``batch_size // world_size`` rows (it must
divide evenly). Shuffling uses the DataLoader's own seeded generator; under DDP Lightning swaps in a
DistributedSampler (seeded from ``seed_everything``).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["LogitPairDataModule", "LogitPairDataset"]


class LogitPairDataset(Dataset):
    """Row-aligned pair of tensors: ``inputs[i]`` (K logits) and ``targets[i]`` (teacher logits or label)."""

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        if inputs.ndim != 2:
            raise ValueError(f"inputs must be [N, K] logits, got shape {tuple(inputs.shape)}")
        if targets.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same number of rows, got {inputs.shape[0]} and "
                f"{targets.shape[0]}"
            )
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.inputs[i], self.targets[i]


def _as_dataset(obj: Dataset | tuple[Tensor, Tensor] | None) -> Dataset | None:
    if obj is None or isinstance(obj, Dataset):
        return obj
    inputs, targets = obj
    return LogitPairDataset(torch.as_tensor(inputs), torch.as_tensor(targets))


class LogitPairDataModule(L.LightningDataModule):
    """Train (and optional val) loaders over logit pairs; ``batch_size`` is the global batch."""

    def __init__(
        self,
        train: Dataset | tuple[Tensor, Tensor],
        val: Dataset | tuple[Tensor, Tensor] | None = None,
        *,
        batch_size: int = 128,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_set = _as_dataset(train)
        self.val_set = _as_dataset(val)
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or max(batch_size, 512))
        self.num_workers = int(num_workers)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        if self.val_set is None:
            # Lightning treats a None hook as "not overridden": no validation loop, no empty-loader warning
            self.val_dataloader = None  # type: ignore[assignment]

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.world_size) if trainer is not None else 1

    def per_device_batch_size(self) -> int:
        world = self._world_size()
        if self.batch_size % world:
            raise ValueError(
                f"global batch_size={self.batch_size} is not divisible by world_size={world}; fix: choose "
                f"a batch size that is a multiple of the number of processes"
            )
        return self.batch_size // world

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.per_device_batch_size(),
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set, batch_size=self.val_batch_size, shuffle=False, num_workers=self.num_workers
        )
