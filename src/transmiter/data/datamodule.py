"""Lightning ``DataModule`` over one :class:`DatasetSplits`.

Usage::

    from transmiter.data.datamodule import ClassificationDataModule

    splits = build_splits(spec, data_dir, shots=16, seed=1, subsample="base")
    train_tf, test_tf = build_transforms()          # or the transforms of the ClipBundle
    datamodule = ClassificationDataModule(splits, train_tf, test_tf, batch_size=32, eval_batch_size=100, num_workers=8)
    trainer.fit(method, datamodule=datamodule)      # batches are (images, labels, indices)

Batch sizes are GLOBAL (what the protocol and the papers state). ``setup`` divides them by the trainer's
world size, and refuses sizes that do not divide evenly, so one config means the same optimisation on 1
or 8 GPUs.

Samplers:

* train: shuffled; under DDP a ``DistributedSampler`` (seeded with ``seed``, epoch set by Lightning).
  ``drop_last_train=None`` follows Dassl: drop the last incomplete batch when the train set holds at least
  one full batch.
* val / test / predict: in order; under DDP an :class:`UnrepeatedDistributedSampler`, so every image is
  evaluated exactly once across ranks (torch's sampler would pad and count some images twice).
  The ``index`` in each batch maps results back to ``splits.<split>[index]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from transmiter.data.dataset import ImageListDataset
from transmiter.data.datum import DatasetSplits
from transmiter.data.errors import DatasetError
from transmiter.data.samplers import UnrepeatedDistributedSampler


class ClassificationDataModule(L.LightningDataModule):
    """Train/val/test/predict dataloaders for ``splits``.

    Args:
        splits: the data of the run (already few-shot sampled and base/new selected).
        train_transform: applied to training images (random augmentation).
        test_transform: applied to val/test/predict images.
        batch_size: GLOBAL training batch size (summed over all devices).
        num_workers: DataLoader workers per device.
        eval_batch_size: GLOBAL batch size for val/test/predict (default: ``batch_size``).
        pin_memory: default: True when CUDA is available.
        drop_last_train: None = Dassl rule (drop the incomplete last batch if the train set has a full one).
        persistent_workers: keep workers alive between epochs (default: True when ``num_workers > 0``).
        seed: seed of the training shuffle order.
    """

    def __init__(
        self,
        splits: DatasetSplits,
        train_transform: Callable[[Any], Any] | None,
        test_transform: Callable[[Any], Any] | None,
        batch_size: int,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        pin_memory: bool | None = None,
        drop_last_train: bool | None = None,
        persistent_workers: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise DatasetError(
                    f"{key} must be a positive int (global, summed over devices), got {value!r}"
                )
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise DatasetError(f"num_workers must be an int >= 0, got {num_workers!r}")
        self.splits = splits
        self.train_transform = train_transform
        self.test_transform = test_transform
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.drop_last_train = drop_last_train
        self.persistent_workers = num_workers > 0 if persistent_workers is None else persistent_workers
        self.seed = seed
        self.world_size = 1
        self.rank = 0
        self.per_device_batch_size = batch_size
        self.per_device_eval_batch_size = self.eval_batch_size
        self._is_set_up = False

    @property
    def classnames(self) -> list[str]:
        return self.splits.classnames

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def val_is_test(self) -> bool:
        """True for ImageNet: its val loader serves the test set, so nothing may be selected on it."""
        return self.splits.val_is_test

    def setup(self, stage: str | None = None) -> None:
        """Read world size and rank (from the trainer, else torch.distributed) and split the global batch sizes."""
        self.world_size, self.rank = self._world()
        for key, value in (("batch_size", self.batch_size), ("eval_batch_size", self.eval_batch_size)):
            if value % self.world_size:
                raise DatasetError(
                    f"{key}={value} is global and must be divisible by the number of devices ({self.world_size}); "
                    f"use a multiple of {self.world_size}"
                )
        self.per_device_batch_size = self.batch_size // self.world_size
        self.per_device_eval_batch_size = self.eval_batch_size // self.world_size
        self._is_set_up = True

    def train_dataloader(self) -> DataLoader:
        self._ensure_setup()
        if not self.splits.train:
            raise DatasetError(
                f"{self.splits.name} has no train split (test-only dataset); it can only be evaluated"
            )
        dataset = ImageListDataset(self.splits.train, self.train_transform)
        drop_last = self.drop_last_train
        if drop_last is None:
            drop_last = len(dataset) >= self.batch_size
        sampler: Sampler | None = None
        generator = None
        if self.world_size > 1:
            sampler = DistributedSampler(
                dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=self.seed
            )
        else:
            generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
            drop_last=drop_last,
            **self._loader_options(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.splits.val)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.splits.test)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.splits.test)

    # ------------------------------------------------------------------------------------------------------

    def _eval_loader(self, data: list) -> DataLoader:
        self._ensure_setup()
        dataset = ImageListDataset(data, self.test_transform)
        sampler = None
        if self.world_size > 1:
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank)
        return DataLoader(
            dataset,
            batch_size=self.per_device_eval_batch_size,
            shuffle=False,
            sampler=sampler,
            **self._loader_options(),
        )

    def _loader_options(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
        }

    def _ensure_setup(self) -> None:
        # Allows using the dataloaders without a Trainer (e.g. feature extraction scripts).
        if not self._is_set_up:
            self.setup()

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0
