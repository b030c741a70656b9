"""Data layer: CoOp-protocol datasets, few-shot sampling, base/new split, transforms, torch/Lightning wrappers.

Usage (the one call most code needs)::

    from transmiter.data import DatasetSpec, build_splits
    spec = DatasetSpec("OxfordPets", "oxford_pets", "json_split", "images", "split_zhou_OxfordPets.json", 37)
    splits = build_splits(spec, "/data", shots=16, seed=1, subsample="base")

Modules: ``datum`` (Datum, DatasetSplits, split_identity), ``spec`` (DatasetSpec, the protocol's dataset NAMEs),
``loaders`` (load_dataset), ``fewshot`` (sample_few_shot), ``subsample`` (subsample_classes,
base_novel_class_ids), ``protocol`` (build_splits), ``transforms`` (build_transforms), ``dataset``
(ImageListDataset), ``samplers`` (UnrepeatedDistributedSampler), ``datamodule`` (ClassificationDataModule),
``fake`` (write_fake_dataset), ``check`` (check_dataset), ``errors`` (DatasetError).
The torch/Lightning modules are not imported here, so config validation stays light.
"""

from transmiter.data.check import DatasetCheckReport, check_dataset
from transmiter.data.datum import DatasetSplits, Datum, split_identity
from transmiter.data.errors import DatasetError
from transmiter.data.fewshot import sample_few_shot
from transmiter.data.loaders import load_dataset
from transmiter.data.protocol import build_splits
from transmiter.data.spec import DatasetSpec
from transmiter.data.subsample import base_novel_class_ids, subsample_classes

__all__ = [
    "DatasetCheckReport",
    "DatasetError",
    "DatasetSpec",
    "DatasetSplits",
    "Datum",
    "base_novel_class_ids",
    "build_splits",
    "check_dataset",
    "load_dataset",
    "sample_few_shot",
    "split_identity",
    "subsample_classes",
]
