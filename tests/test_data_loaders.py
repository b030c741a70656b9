"""Loaders on fake copies of all 15 built-in layouts, with each quirk of the CoOp layouts."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from transmiter.config.instantiate import shipped_dataset_spec
from transmiter.data.datum import split_identity
from transmiter.data.errors import DatasetError
from transmiter.data.fake import write_fake_dataset
from transmiter.data.loaders import load_dataset
from transmiter.data.spec import BASE_TO_NEW_DATASETS, DOMAIN_GENERALIZATION_DATASETS, DatasetSpec

PROTOCOL_DATASETS = [*BASE_TO_NEW_DATASETS, *DOMAIN_GENERALIZATION_DATASETS]

PER_CLASS = (3, 2, 2)


@pytest.mark.parametrize("name", PROTOCOL_DATASETS)
def test_every_builtin_layout_loads(tmp_path, name):
    spec = write_fake_dataset(shipped_dataset_spec(name), tmp_path, per_class=PER_CLASS)
    splits = load_dataset(spec, tmp_path)

    assert splits.name == name
    assert splits.root == tmp_path / spec.folder
    assert splits.num_classes == spec.num_classes == 5
    train_n, val_n, test_n = (count * splits.num_classes for count in PER_CLASS)
    if spec.test_only:
        assert (len(splits.train), len(splits.val), len(splits.test)) == (0, 0, test_n)
    elif spec.loader == "imagenet":
        assert (len(splits.train), len(splits.test)) == (train_n, test_n)
    else:
        assert (len(splits.train), len(splits.val), len(splits.test)) == (train_n, val_n, test_n)
    for items in (splits.train, splits.val, splits.test):
        for datum in items:
            assert os.path.isabs(datum.impath) and os.path.isfile(datum.impath)
            assert splits.classnames[datum.label] == datum.classname
            assert not os.path.basename(datum.impath).startswith(".")  # hidden files ignored
    assert sorted({d.label for d in splits.test}) == list(range(splits.num_classes))


def test_caltech_label_order_follows_split_file(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("Caltech101"), tmp_path)
    splits = load_dataset(spec, tmp_path)
    # Capitalised folders sort first and are renamed, so label 0 is "face".
    assert splits.classnames == ["face", "leopard", "motorbike", "accordion", "airplane"]
    assert splits.train[0].impath.endswith("101_ObjectCategories/Faces/image_0001.jpg")
    raw = json.loads((splits.root / "split_zhou_Caltech101.json").read_text())
    assert [(d.label, d.classname) for d in splits.train] == [
        (label, name) for _, label, name in raw["train"]
    ]


def test_stanford_cars_image_dir_is_dataset_folder(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("StanfordCars"), tmp_path)
    splits = load_dataset(spec, tmp_path)
    assert splits.train[0].impath.startswith(str(splits.root / "cars_train"))
    assert splits.test[0].impath.startswith(str(splits.root / "cars_test"))
    assert splits.classnames[0] == "2000 AM General Hummer SUV"


def test_fgvc_variant_names_with_spaces(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("FGVCAircraft"), tmp_path, num_classes=8)
    splits = load_dataset(spec, tmp_path)
    assert splits.classnames[:8] == [
        "707-320",
        "727-200",
        "737-200",
        "A300B4",
        "Boeing 717",
        "Cessna 172",
        "F-16A/B",
        "Falcon 2000",
    ]
    cessna = [d for d in splits.test if d.classname == "Cessna 172"]
    assert cessna and all(d.label == 5 for d in cessna)
    assert all(d.impath.startswith(str(splits.root / "images")) and d.impath.endswith(".jpg") for d in cessna)
    first_line = (splits.root / "images_variant_train.txt").read_text().splitlines()[0]
    assert splits.train[0].impath.endswith(f"images/{first_line.split(' ')[0]}.jpg")


def test_imagenet_val_is_test_and_labels_follow_sorted_wnids(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("ImageNet"), tmp_path)
    splits = load_dataset(spec, tmp_path)
    assert splits.val_is_test and splits.val == splits.test and splits.val is not splits.test
    assert splits.classnames == ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]
    assert "/images/train/n01440764/" in splits.train[0].impath and splits.train[0].label == 0
    assert "/images/val/" in splits.test[0].impath


def test_imagenet_v2_numeric_folders_map_to_classnames_file_order(tmp_path):
    # 12 classes: as text, folder "10" sorts before "2"; the label must still be 10.
    spec = write_fake_dataset(shipped_dataset_spec("ImageNetV2"), tmp_path, num_classes=12)
    splits = load_dataset(spec, tmp_path)
    lines = (splits.root / "classnames.txt").read_text().splitlines()
    assert splits.classnames == [line.split(" ", 1)[1] for line in lines]
    in_folder_10 = [d for d in splits.test if f"{os.sep}10{os.sep}" in d.impath]
    assert in_folder_10 and {d.label for d in in_folder_10} == {10}
    assert in_folder_10[0].classname == lines[10].split(" ", 1)[1]


@pytest.mark.parametrize("name", ["ImageNetA", "ImageNetR"])
def test_imagenet_a_r_label_space_is_present_folders(tmp_path, name):
    spec = write_fake_dataset(shipped_dataset_spec(name), tmp_path, num_classes=4)
    splits = load_dataset(spec, tmp_path)
    listed = [line.split(" ", 1) for line in (splits.root / "classnames.txt").read_text().splitlines()]
    assert len(listed) == 9 and splits.num_classes == 4
    present = sorted(entry.name for entry in os.scandir(splits.root / spec.image_dir) if entry.is_dir())
    names = dict(listed)
    assert splits.classnames == [names[wnid] for wnid in present]
    assert (splits.root / spec.image_dir / "README.txt").is_file()
    # A 200-way dataset under the real spec: a fake with 200 present folders loads with the unmodified spec.
    assert shipped_dataset_spec(name).num_classes == 200


def test_real_class_count_loads_with_unmodified_builtin_spec(tmp_path):
    spec = shipped_dataset_spec("EuroSAT")
    write_fake_dataset(spec, tmp_path, num_classes=10, per_class=(1, 1, 1))
    splits = load_dataset(spec, tmp_path)
    assert splits.classnames[3] == "Highway or Road" and splits.num_classes == 10


def test_class_count_mismatch_is_an_error(tmp_path):
    write_fake_dataset(shipped_dataset_spec("OxfordPets"), tmp_path)  # 5 classes, spec expects 37
    with pytest.raises(DatasetError, match="expected 37 classes"):
        load_dataset(shipped_dataset_spec("OxfordPets"), tmp_path)


def test_generic_json_split_spec(tmp_path):
    spec = DatasetSpec("MyBirds", "my_birds", "json_split", "pics", "split_MyBirds.json")
    spec = write_fake_dataset(spec, tmp_path, num_classes=3, per_class=(2, 1, 1))
    splits = load_dataset(spec, tmp_path)
    assert splits.classnames == ["class_000", "class_001", "class_002"]
    assert splits.train[0].impath == str(tmp_path / "my_birds" / "pics" / "class_000" / "class_000_0001.jpg")


def test_invalid_specs_fail_at_construction():
    with pytest.raises(DatasetError, match="unknown loader"):
        DatasetSpec("X", "x", "csv", "images")
    with pytest.raises(DatasetError, match="split_file"):
        DatasetSpec("X", "x", "json_split", "images")
    with pytest.raises(DatasetError, match="test_only"):
        DatasetSpec("X", "x", "imagenet_v2", "images")
    with pytest.raises(DatasetError, match="known: .*ImageNet"):
        shipped_dataset_spec("Pets")


def test_split_identity_is_stable_and_portable(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("DescribableTextures"), tmp_path / "a")
    first = load_dataset(spec, tmp_path / "a")
    os.rename(tmp_path / "a", tmp_path / "b")
    moved = load_dataset(spec, tmp_path / "b")
    assert split_identity(first) == split_identity(moved)
    assert split_identity(first).startswith("sha256:") and len(split_identity(first)) == 7 + 64
    fewer = dataclasses.replace(moved, train=moved.train[1:])
    assert split_identity(fewer) != split_identity(moved)
