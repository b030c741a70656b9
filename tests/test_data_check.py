"""Bad input: every failure names the path and the fix; check_dataset reports without raising."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from transmiter.config.instantiate import shipped_dataset_spec
from transmiter.data.check import check_dataset
from transmiter.data.dataset import ImageListDataset
from transmiter.data.errors import DatasetError
from transmiter.data.fake import write_fake_dataset
from transmiter.data.loaders import load_dataset


def test_complete_dataset_checks_ok(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("OxfordPets"), tmp_path)
    report = check_dataset(spec, tmp_path)
    assert (
        report.ok and report.split_sizes == {"train": 20, "val": 10, "test": 10} and report.num_classes == 5
    )
    assert report.format().startswith("[ok] OxfordPets")


def test_missing_root(tmp_path):
    spec = shipped_dataset_spec("OxfordPets")
    report = check_dataset(spec, tmp_path)
    assert not report.ok and len(report.problems) == 1 and str(tmp_path / "oxford_pets") in report.problems[0]
    with pytest.raises(DatasetError, match="dataset folder missing") as err:
        load_dataset(spec, tmp_path)
    assert str(tmp_path / "oxford_pets") in str(err.value)


def test_missing_split_file_says_download_never_regenerate(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("OxfordPets"), tmp_path)
    split_file = tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json"
    split_file.unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(spec, tmp_path)
    message = str(err.value)
    assert str(split_file) in message and "download split_zhou_OxfordPets.json" in message
    assert not split_file.exists()  # never regenerated
    report = check_dataset(spec, tmp_path)
    assert report.missing_paths == [split_file] and report.format().startswith("[MISSING]")
    assert "split file missing" in report.format()


def test_missing_metadata_files_are_listed_together(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("FGVCAircraft"), tmp_path)
    (tmp_path / "fgvc_aircraft" / "variants.txt").unlink()
    (tmp_path / "fgvc_aircraft" / "images_variant_val.txt").unlink()
    report = check_dataset(spec, tmp_path)
    assert len(report.problems) == 2 and "fgvc-aircraft-2013b.tar.gz" in report.problems[0]


@pytest.mark.parametrize(
    ("name", "folder_to_remove", "expected"),
    [
        ("ImageNet", "imagenet/images/train/n01484850", "n01484850"),
        ("ImageNet", "imagenet/images/val/n01491361", "n01491361"),
        ("ImageNetV2", "imagenetv2/imagenetv2-matched-frequency-format-val/3", "'3'"),
    ],
)
def test_missing_class_folder(tmp_path, name, folder_to_remove, expected):
    spec = write_fake_dataset(shipped_dataset_spec(name), tmp_path)
    shutil.rmtree(tmp_path / folder_to_remove)
    with pytest.raises(DatasetError, match="class folder") as err:
        load_dataset(spec, tmp_path)
    assert expected in str(err.value) and str((tmp_path / folder_to_remove).parent) in str(err.value)
    assert not check_dataset(spec, tmp_path).ok


def test_missing_class_folder_of_a_json_dataset(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("Food101"), tmp_path)
    missing_folder = tmp_path / "food-101" / "images" / "baklava"
    shutil.rmtree(missing_folder)
    with pytest.raises(DatasetError, match="missing folders") as err:
        load_dataset(spec, tmp_path)
    assert str(missing_folder) in str(err.value)


def test_split_refers_to_missing_image(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("DescribableTextures"), tmp_path)
    image = tmp_path / "dtd" / "images" / "banded" / "banded_0002.jpg"
    image.unlink()
    with pytest.raises(DatasetError, match="1 image") as err:
        load_dataset(spec, tmp_path)
    assert str(image) in str(err.value) and "split_zhou_DescribableTextures.json" in str(err.value)
    report = check_dataset(spec, tmp_path)
    assert report.missing_images == 1 and report.missing_examples == [str(image)]
    assert report.format().startswith("[MISSING]")
    assert len(load_dataset(spec, tmp_path, verify_images=False).train) == 20


def test_malformed_split_file(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("EuroSAT"), tmp_path)
    split_file = tmp_path / "eurosat" / "split_zhou_EuroSAT.json"
    split_file.write_text('{"train": [["a.jpg", "zero", "x"]], "val": [], "test": []}')
    with pytest.raises(DatasetError, match=r"train\[0\]") as err:
        load_dataset(spec, tmp_path)
    assert str(split_file) in str(err.value)
    split_file.write_text("not json")
    report = check_dataset(spec, tmp_path)
    assert "not valid JSON" in report.problems[0] and report.format().startswith("[BROKEN]")


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 truncated jpeg", b"hello, not an image"])
def test_corrupt_image_names_the_file(tmp_path, content):
    spec = write_fake_dataset(shipped_dataset_spec("UCF101"), tmp_path)
    splits = load_dataset(spec, tmp_path)
    Path(splits.test[1].impath).write_bytes(content)
    dataset = ImageListDataset(splits.test)
    dataset[0]
    with pytest.raises(DatasetError, match="cannot read image") as err:
        dataset[1]
    assert splits.test[1].impath in str(err.value)


def test_image_deleted_after_loading(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("SUN397"), tmp_path)
    splits = load_dataset(spec, tmp_path)
    Path(splits.val[0].impath).unlink()
    with pytest.raises(DatasetError, match="image not found") as err:
        ImageListDataset(splits.val)[0]
    assert splits.val[0].impath in str(err.value)
