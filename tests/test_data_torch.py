"""Transforms, ImageListDataset, the unrepeated sampler and the DataModule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler
from torchvision.transforms import InterpolationMode

from transmiter.config.instantiate import shipped_dataset_spec
from transmiter.data.datamodule import ClassificationDataModule
from transmiter.data.dataset import ImageListDataset
from transmiter.data.errors import DatasetError
from transmiter.data.fake import write_fake_dataset
from transmiter.data.loaders import load_dataset
from transmiter.data.samplers import UnrepeatedDistributedSampler
from transmiter.data.transforms import CLIP_MEAN, build_transforms


def test_transforms_follow_protocol():
    train_tf, test_tf = build_transforms(image_size=16)
    rrc = train_tf.transforms[1]
    assert rrc.scale == (0.08, 1.0) and rrc.interpolation == InterpolationMode.BICUBIC
    resize = test_tf.transforms[1]
    assert resize.size == 16 and resize.interpolation == InterpolationMode.BICUBIC
    assert test_tf.transforms[-1].mean == list(CLIP_MEAN)

    grey_wide = Image.new("L", (40, 20), color=128)  # greyscale, not square
    assert train_tf(grey_wide).shape == (3, 16, 16)
    out = test_tf(grey_wide)
    assert out.shape == (3, 16, 16)
    # Shorter side to 16 keeps the aspect (32x16) and the centre crop then takes the middle: uniform input -> uniform output.
    assert torch.allclose(out[0], out[0, 0, 0].expand(16, 16), atol=1e-5)
    with pytest.raises(ValueError):
        build_transforms(rrc_scale=(0.5, 0.1))


@pytest.mark.parametrize(("size", "world"), [(10, 3), (7, 2), (2, 4), (0, 2), (9, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_unrepeated_sampler_covers_every_index_once(size, world, shuffle):
    dataset = list(range(size))
    seen = []
    for rank in range(world):
        sampler = UnrepeatedDistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=5
        )
        indices = list(sampler)
        assert len(indices) == len(sampler)
        if not shuffle:
            assert indices == list(range(rank, size, world))
        seen += indices
    assert sorted(seen) == list(range(size))
    # A DistributedSampler subclass, so Lightning keeps it instead of wrapping it in a padding sampler.
    assert isinstance(sampler, DistributedSampler)


@pytest.fixture
def toy_splits(tmp_path):
    spec = write_fake_dataset(
        shipped_dataset_spec("OxfordFlowers"), tmp_path, num_classes=3, per_class=(4, 2, 3), image_size=20
    )
    return load_dataset(spec, tmp_path)


def test_image_list_dataset_returns_tensor_label_index(toy_splits):
    _, test_tf = build_transforms(image_size=16)
    dataset = ImageListDataset(toy_splits.test, test_tf)
    image, label, index = dataset[4]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert (label, index) == (toy_splits.test[4].label, 4)
    assert ImageListDataset(toy_splits.test)[0][0].mode == "RGB"  # the fake's first image is greyscale


def test_datamodule_single_device(toy_splits):
    train_tf, test_tf = build_transforms(image_size=16)
    dm = ClassificationDataModule(toy_splits, train_tf, test_tf, batch_size=4, eval_batch_size=5)
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.classnames == toy_splits.classnames
    images, labels, indices = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and labels.shape == (4,) and indices.shape == (4,)
    assert len(dm.train_dataloader()) == 3  # 12 images, batch 4, Dassl drop_last rule
    test_indices = torch.cat([batch[2] for batch in dm.test_dataloader()])
    assert test_indices.tolist() == list(range(9))
    assert len(dm.val_dataloader().dataset) == 6


def test_datamodule_divides_global_batch_and_uses_unrepeated_sampler(toy_splits):
    train_tf, test_tf = build_transforms(image_size=16)
    dm = ClassificationDataModule(toy_splits, train_tf, test_tf, batch_size=4)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)  # stands in for a DDP Trainer
    dm.setup("test")
    assert dm.per_device_batch_size == 2
    loader = dm.test_dataloader()
    assert isinstance(loader.sampler, UnrepeatedDistributedSampler) and list(loader.sampler) == [1, 3, 5, 7]
    assert isinstance(dm.train_dataloader().sampler, DistributedSampler)

    odd = ClassificationDataModule(toy_splits, train_tf, test_tf, batch_size=5)
    odd.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(DatasetError, match="batch_size=5 is global and must be divisible"):
        odd.setup("fit")


def test_datamodule_refuses_training_on_test_only_data(tmp_path):
    spec = write_fake_dataset(
        shipped_dataset_spec("ImageNetSketch"), tmp_path, num_classes=2, per_class=(1, 0, 1)
    )
    train_tf, test_tf = build_transforms(image_size=16)
    dm = ClassificationDataModule(load_dataset(spec, tmp_path), train_tf, test_tf, batch_size=2)
    with pytest.raises(DatasetError, match="test-only"):
        dm.train_dataloader()
    assert len(dm.test_dataloader().dataset) == 2
