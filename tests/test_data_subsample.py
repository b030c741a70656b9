"""Base / new class selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from transmiter.config.instantiate import shipped_dataset_spec
from transmiter.data.datum import DatasetSplits, Datum
from transmiter.data.errors import DatasetError
from transmiter.data.spec import BASE_TO_NEW_DATASETS
from transmiter.data.subsample import base_novel_class_ids, subsample_classes

# The protocol's class counts (base/new) per dataset.
EXPECTED_BASE_NEW = {
    "ImageNet": (500, 500),
    "Caltech101": (50, 50),
    "OxfordPets": (19, 18),
    "StanfordCars": (98, 98),
    "OxfordFlowers": (51, 51),
    "Food101": (51, 50),
    "FGVCAircraft": (50, 50),
    "SUN397": (199, 198),
    "DescribableTextures": (24, 23),
    "EuroSAT": (5, 5),
    "UCF101": (51, 50),
}


def one_image_per_class(num_classes: int) -> DatasetSplits:
    def items(split):
        return [Datum(f"/d/{split}/{label}.jpg", label, f"c{label}") for label in range(num_classes)]

    return DatasetSplits(
        "D", Path("/d"), [f"c{i}" for i in range(num_classes)], items("train"), items("val"), items("test")
    )


@pytest.mark.parametrize("name", BASE_TO_NEW_DATASETS)
def test_base_new_counts_of_the_11_datasets(name):
    num_classes = shipped_dataset_spec(name).num_classes
    base, novel = base_novel_class_ids(num_classes)
    assert (len(base), len(novel)) == EXPECTED_BASE_NEW[name]
    assert base + novel == list(range(num_classes))
    splits = one_image_per_class(num_classes)
    assert subsample_classes(splits, "base").num_classes == EXPECTED_BASE_NEW[name][0]
    assert len(subsample_classes(splits, "new").test) == EXPECTED_BASE_NEW[name][1]


def test_relabelling_in_sorted_original_order_across_all_splits():
    splits = one_image_per_class(5)
    base, new = subsample_classes(splits, "base"), subsample_classes(splits, "new")
    assert base.classnames == ["c0", "c1", "c2"] and new.classnames == ["c3", "c4"]
    for part in (base, new):
        for items in (part.train, part.val, part.test):
            assert [d.label for d in items] == list(range(part.num_classes))
            assert all(part.classnames[d.label] == d.classname for d in items)
    assert new.test[0] == Datum("/d/test/3.jpg", 0, "c3")


def test_label_set_comes_from_train():
    # Train holds labels {1, 3, 5, 7} only (in shuffled order): base = {1, 3} -> 0, 1; new = {5, 7} -> 0, 1.
    classnames = [f"c{i}" for i in range(8)]
    train = [Datum(f"/d/{label}.jpg", label, f"c{label}") for label in (7, 3, 1, 5)]
    test = [Datum(f"/d/t{label}.jpg", label, f"c{label}") for label in range(8)]
    splits = DatasetSplits("D", Path("/d"), classnames, train, [], test)
    base = subsample_classes(splits, "base")
    assert base.classnames == ["c1", "c3"]
    assert [(d.label, d.classname) for d in base.train] == [(1, "c3"), (0, "c1")]
    assert [d.classname for d in base.test] == ["c1", "c3"]
    assert subsample_classes(splits, "new").classnames == ["c5", "c7"]


def test_all_is_identity_and_bad_values_fail():
    splits = one_image_per_class(3)
    assert subsample_classes(splits, "all") is splits
    with pytest.raises(DatasetError, match="subsample"):
        subsample_classes(splits, "novel")
    with pytest.raises(DatasetError):
        base_novel_class_ids(0)
