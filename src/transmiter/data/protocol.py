"""The one call the rest of the framework makes to get data: load -> few-shot -> base/new.

Usage::

    from transmiter.data.protocol import build_splits
    from transmiter.config.instantiate import shipped_dataset_spec

    spec = shipped_dataset_spec("OxfordPets")
    base = build_splits(spec, "/data", shots=16, seed=1, subsample="base")   # 19 classes, 16 shots each
    new = build_splits(spec, "/data", shots=16, seed=1, subsample="new")     # 18 classes, same draw
    full = build_splits(spec, "/data", shots=-1, seed=1)                     # everything (cross-dataset targets)

The order matters: few-shot sampling runs on *all* classes before the base/new selection, so the base and
new runs of one (shots, seed) share the cached draw ``<root>/split_fewshot/shot_16-seed_1.json``.
Arguments are validated before anything is read, so a bad request fails instantly.
"""

from __future__ import annotations

import os

from transmiter.data.datum import DatasetSplits
from transmiter.data.fewshot import sample_few_shot, validate_seed, validate_shots
from transmiter.data.loaders import load_dataset
from transmiter.data.spec import DatasetSpec
from transmiter.data.subsample import subsample_classes, validate_subsample


def build_splits(
    spec: DatasetSpec,
    data_dir: str | os.PathLike,
    shots: int = -1,
    seed: int = 1,
    subsample: str = "all",
    *,
    cache: bool = True,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    verify_images: bool = True,
) -> DatasetSplits:
    """The splits one run uses.

    Args:
        spec: the dataset (a ``DatasetSpec``, usually from the Hydra dataset config).
        data_dir: the folder holding all datasets.
        shots: K images per class for train (val gets min(K, 4)); -1 or 0 for all images.
        seed: seed of the few-shot draw (protocol seeds 1, 2, 3).
        subsample: ``"all"``, ``"base"`` or ``"new"`` classes.
        cache, strict, cache_dir: see :func:`transmiter.data.fewshot.sample_few_shot`.
        verify_images: see :func:`transmiter.data.loaders.load_dataset`.
    """
    validate_shots(shots)
    validate_seed(seed)
    validate_subsample(subsample)
    splits = load_dataset(spec, data_dir, verify_images=verify_images)
    splits = sample_few_shot(splits, shots, seed, cache=cache, strict=strict, cache_dir=cache_dir)
    return subsample_classes(splits, subsample)
