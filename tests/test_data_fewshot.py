"""Few-shot sampler and its portable cache."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from transmiter.config.instantiate import shipped_dataset_spec
from transmiter.data.datum import DatasetSplits, Datum
from transmiter.data.errors import DatasetError
from transmiter.data.fake import write_fake_dataset
from transmiter.data.fewshot import fewshot_cache_path, sample_few_shot
from transmiter.data.loaders import load_dataset
from transmiter.data.protocol import build_splits
from transmiter.data.spec import DatasetSpec

GENERIC = DatasetSpec("Toy", "toy", "json_split", "images", "split_toy.json")


@pytest.fixture
def toy(tmp_path):
    """A 5-class json_split dataset with 6 train, 5 val and 2 test images per class."""
    spec = write_fake_dataset(GENERIC, tmp_path, num_classes=5, per_class=(6, 5, 2))
    return spec, tmp_path


def reference_sample(items, shots):
    """The rule written out with the global `random` stream, as Dassl runs it after set_random_seed."""
    groups = {}
    for datum in items:
        groups.setdefault(datum.label, []).append(datum)
    out = []
    for class_items in groups.values():
        out.extend(random.sample(class_items, shots) if len(class_items) >= shots else class_items)
    return out


def test_matches_reference_stream_and_first_appearance_order(toy):
    spec, data_dir = toy
    full = load_dataset(spec, data_dir)
    # Interleave classes so that first-appearance order (3, 0, 1, ...) differs from label order.
    train = sorted(full.train, key=lambda d: ((d.label + 2) % 5, d.impath))
    full = DatasetSplits(full.name, full.root, full.classnames, train, full.val, full.test)
    few = sample_few_shot(full, shots=2, seed=3, cache=False)

    random.seed(3)
    expected_train = reference_sample(full.train, 2)
    expected_val = reference_sample(full.val, 2)
    assert few.train == expected_train and few.val == expected_val
    assert [d.label for d in few.train][::2] == [3, 4, 0, 1, 2]
    assert few.test == full.test


def test_same_seed_same_draw_other_seed_differs(toy):
    spec, data_dir = toy
    full = load_dataset(spec, data_dir)
    a = sample_few_shot(full, 2, seed=1, cache=False)
    b = sample_few_shot(full, 2, seed=1, cache=False)
    c = sample_few_shot(full, 2, seed=2, cache=False)
    assert a.train == b.train and a.val == b.val
    assert a.train != c.train


@pytest.mark.parametrize(
    ("shots", "train_per_class", "val_per_class"), [(1, 1, 1), (4, 4, 4), (5, 5, 4), (16, 6, 4)]
)
def test_val_gets_min_k_4_and_small_classes_keep_everything(toy, shots, train_per_class, val_per_class):
    spec, data_dir = toy
    few = sample_few_shot(load_dataset(spec, data_dir), shots, seed=1, cache=False)
    assert len(few.train) == 5 * train_per_class and len(few.val) == 5 * val_per_class


def test_all_shots_and_invalid_shots(toy):
    spec, data_dir = toy
    full = load_dataset(spec, data_dir)
    assert sample_few_shot(full, -1, seed=1) is full and sample_few_shot(full, 0, seed=1) is full
    for bad in (-2, 1.5, True, "16"):
        with pytest.raises(DatasetError, match="shots"):
            sample_few_shot(full, bad, seed=1)
    assert not (full.root / "split_fewshot").exists()


def test_strict_names_class_and_counts(toy):
    spec, data_dir = toy
    full = load_dataset(spec, data_dir)
    with pytest.raises(
        DatasetError, match=r"class 'class_000' \(label 0\) has 6 train image\(s\), 8 requested"
    ):
        sample_few_shot(full, 8, seed=1, strict=True)
    assert len(sample_few_shot(full, 4, seed=1, strict=True, cache=False).train) == 20


def test_cache_is_portable_json_with_relative_paths(toy, tmp_path):
    spec, data_dir = toy
    first = build_splits(spec, data_dir, shots=2, seed=1)
    cache = fewshot_cache_path(first.root, 2, 1)
    assert cache == data_dir / "toy" / "split_fewshot" / "shot_2-seed_1.json"
    text = cache.read_text()
    assert str(data_dir) not in text
    payload = json.loads(text)
    assert payload["train"][0][0].startswith("images/") and set(payload) >= {"train", "val", "shots", "seed"}
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temp file left behind

    moved_dir = tmp_path / "elsewhere"
    shutil.move(str(data_dir / "toy"), str(moved_dir / "toy"))
    moved = build_splits(spec, moved_dir, shots=2, seed=1)
    assert [first.relative_path(d) for d in first.train] == [moved.relative_path(d) for d in moved.train]
    assert all(d.impath.startswith(str(moved_dir)) for d in moved.train + moved.val)


def test_existing_cache_wins_over_resampling(toy):
    spec, data_dir = toy
    first = build_splits(spec, data_dir, shots=2, seed=1)
    cache = fewshot_cache_path(first.root, 2, 1)
    payload = json.loads(cache.read_text())
    payload["train"].reverse()
    cache.write_text(json.dumps(payload))
    again = build_splits(spec, data_dir, shots=2, seed=1)
    assert again.train == first.train[::-1]


def test_base_and_new_share_one_draw(toy):
    spec, data_dir = toy
    full_few = build_splits(spec, data_dir, shots=2, seed=1)
    base = build_splits(spec, data_dir, shots=2, seed=1, subsample="base")
    new = build_splits(spec, data_dir, shots=2, seed=1, subsample="new")
    assert list((data_dir / "toy" / "split_fewshot").iterdir()) == [fewshot_cache_path(full_few.root, 2, 1)]
    assert base.num_classes == 3 and new.num_classes == 2
    assert {d.impath for d in base.train} | {d.impath for d in new.train} == {
        d.impath for d in full_few.train
    }


def test_corrupt_cache_names_file_and_suggests_deleting(toy):
    spec, data_dir = toy
    full = load_dataset(spec, data_dir)
    cache = fewshot_cache_path(full.root, 2, 1)
    cache.parent.mkdir()
    cache.write_text('{"train": [')
    with pytest.raises(DatasetError, match="corrupt") as err:
        sample_few_shot(full, 2, seed=1)
    assert str(cache) in str(err.value) and "delete" in str(err.value)


def test_cache_referencing_missing_image(toy):
    spec, data_dir = toy
    few = build_splits(spec, data_dir, shots=2, seed=1)
    Path(few.train[0].impath).unlink()
    full = load_dataset(spec, data_dir, verify_images=False)
    with pytest.raises(DatasetError, match="no longer exist") as err:
        sample_few_shot(full, 2, seed=1)
    assert str(fewshot_cache_path(full.root, 2, 1)) in str(err.value) and few.train[0].impath in str(
        err.value
    )


def test_stale_cache_from_another_split_is_rejected(toy):
    spec, data_dir = toy
    few = build_splits(spec, data_dir, shots=2, seed=1)
    full = load_dataset(spec, data_dir)
    shrunk = DatasetSplits(
        full.name,
        full.root,
        full.classnames,
        [d for d in full.train if d != few.train[0]],
        full.val,
        full.test,
    )
    with pytest.raises(DatasetError, match="split changed"):
        sample_few_shot(shrunk, 2, seed=1)


def test_imagenet_samples_train_only_and_val_stays_test(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("ImageNet"), tmp_path, per_class=(5, 1, 3))
    few = build_splits(spec, tmp_path, shots=2, seed=1)
    assert len(few.train) == 10 and few.val == few.test and len(few.test) == 15
    payload = json.loads(fewshot_cache_path(few.root, 2, 1).read_text())
    assert "val" not in payload


def test_test_only_dataset_is_untouched_and_not_cached(tmp_path):
    spec = write_fake_dataset(shipped_dataset_spec("ImageNetR"), tmp_path)
    few = build_splits(spec, tmp_path, shots=16, seed=1)
    assert few.train == [] and len(few.test) == 10
    assert not (few.root / "split_fewshot").exists()


def test_cache_dir_override_keeps_paths_relative_to_root(toy, tmp_path):
    spec, data_dir = toy
    cache_dir = tmp_path / "caches"
    few = build_splits(spec, data_dir, shots=1, seed=2, cache_dir=cache_dir)
    payload = json.loads((cache_dir / "shot_1-seed_2.json").read_text())
    assert payload["train"][0][0] == few.relative_path(few.train[0])
    assert not (data_dir / "toy" / "split_fewshot").exists()


def test_datum_is_frozen():
    datum = Datum("/x.jpg", 0, "x")
    with pytest.raises(AttributeError):
        datum.label = 1  # type: ignore[misc]
