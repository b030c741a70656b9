"""Base / new class selection for base-to-new generalisation.

Usage::

    from transmiter.data.subsample import subsample_classes, base_novel_class_ids

    base = subsample_classes(few_shot_splits, "base")   # first ceil(n/2) labels, relabelled 0..m-1
    new = subsample_classes(few_shot_splits, "new")     # the other n-m labels, relabelled 0..n-m-1
    base_novel_class_ids(37)                            # ([0..18], [19..36])  OxfordPets 19/18

The rule: take the labels present in train, sort them (n labels), m = ceil(n/2); base = the first m, new
= the rest. Items of the chosen group are kept in train, val and test alike and relabelled 0..size-1 in
sorted order of their original label; class names follow their items. Base and new are *separate* label
spaces (an m-way and an (n-m)-way classifier). ``"all"`` changes nothing.

For protocols that keep the global label space and mask instead (the TransMiter reference protocol),
use :func:`base_novel_class_ids` on the global class count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from transmiter.data.datum import DatasetSplits, Datum
from transmiter.data.errors import DatasetError

SUBSAMPLE_CHOICES = ("all", "base", "new")


def validate_subsample(subsample: object) -> str:
    if subsample not in SUBSAMPLE_CHOICES:
        raise DatasetError(f"subsample must be one of {', '.join(SUBSAMPLE_CHOICES)}, got {subsample!r}")
    return subsample


def split_base_new(labels: Sequence[int]) -> tuple[list[int], list[int]]:
    """Sort the distinct ``labels``; the first ceil(n/2) are base, the remaining n - ceil(n/2) are new."""
    ordered = sorted(set(labels))
    num_base = math.ceil(len(ordered) / 2)
    return ordered[:num_base], ordered[num_base:]


def base_novel_class_ids(num_classes: int) -> tuple[list[int], list[int]]:
    """Global class ids of the base and novel groups of a dataset with ``num_classes`` classes."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DatasetError(f"num_classes must be a positive int, got {num_classes!r}")
    return split_base_new(range(num_classes))


def subsample_classes(splits: DatasetSplits, subsample: str) -> DatasetSplits:
    """Keep the ``"base"`` or ``"new"`` classes of ``splits`` (relabelled), or everything for ``"all"``.

    The label set is taken from train, as in Dassl. Test-only splits (empty train) fall back to all
    class ids, so ``"base"``/``"new"`` still mean the halves of the class list.
    """
    validate_subsample(subsample)
    if subsample == "all":
        return splits
    labels = [datum.label for datum in splits.train] or list(range(splits.num_classes))
    base, new = split_base_new(labels)
    selected = base if subsample == "base" else new
    new_label_of = {old: new_label for new_label, old in enumerate(selected)}

    def relabel(items: list[Datum]) -> list[Datum]:
        return [
            Datum(datum.impath, new_label_of[datum.label], datum.classname)
            for datum in items
            if datum.label in new_label_of
        ]

    return DatasetSplits(
        name=splits.name,
        root=splits.root,
        classnames=[splits.classnames[old] for old in selected],
        train=relabel(splits.train),
        val=relabel(splits.val),
        test=relabel(splits.test),
        val_is_test=splits.val_is_test,
    )
