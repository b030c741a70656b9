"""Caches notice changed data (issue 19, item 2): a feature-cache entry is keyed on the size and
modification time of every image it encoded, so a replaced or corrupted image invalidates exactly the entries
that used it, and the run then applies the dataset's corrupt-image policy to it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.toys import write_fake_data
from transmiter.app import run
from transmiter.context import RunContext
from transmiter.data.errors import DatasetError


def _entries(cfg) -> set[Path]:
    root = Path(str(cfg.paths.cache_dir)) / "features"
    return {p.parent for p in root.glob("*/*/meta.json")}


def _replace_image(path: str) -> None:
    """Another valid image in place of `path` (same name, other pixels), as a re-extracted copy would be."""
    with Image.open(path) as old:
        size, fmt = old.size, old.format
    Image.new("RGB", size, (250, 10, 200)).save(path, format=fmt)


def _zeroshot(compose, tmp_path, *overrides):
    return compose(["experiment=smoke", "skip_done=false", f"paths.output_dir={tmp_path}/run", *overrides])


def test_a_replaced_image_recomputes_exactly_the_entries_that_used_it(compose, tmp_path):
    cfg = _zeroshot(compose, tmp_path)
    write_fake_data(cfg)
    run(cfg)
    before = _entries(cfg)
    assert len(before) == 2  # the test images of the base and of the novel classes

    run(cfg)
    assert _entries(cfg) == before  # nothing changed: every entry reused

    novel_image = RunContext.from_config(cfg).splits("new").test[0].impath
    _replace_image(novel_image)
    run(cfg)
    new = _entries(cfg) - before
    assert len(new) == 1, "exactly one entry (the novel classes' test images) is recomputed"
    meta = json.loads((next(iter(new)) / "meta.json").read_text())
    assert meta["meta"]["identity"]["subset"] == "new"


def test_a_corrupted_image_meets_the_corrupt_image_policy_not_the_old_features(compose, tmp_path, caplog):
    cfg = _zeroshot(compose, tmp_path)
    write_fake_data(cfg)
    run(cfg)
    bad = RunContext.from_config(cfg).splits("base").test[1].impath
    stat = os.stat(bad)
    Path(bad).write_bytes(Path(bad).read_bytes()[:40])
    os.utime(bad, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its old modification time

    with pytest.raises(DatasetError) as err:  # dataset.on_corrupt_image=error (default): named
        run(cfg)
    assert bad in str(err.value) and "dataset.on_corrupt_image=skip" in str(err.value)

    skip = _zeroshot(compose, tmp_path, "dataset.on_corrupt_image=skip")
    metrics = run(skip)
    assert set(metrics) == {"base", "novel", "hm"}
    from transmiter.reporting.records import load_records

    (record,) = load_records([tmp_path / "run"])
    assert list(record["skipped_images"]) == [bad]


def test_training_stages_key_on_the_image_files_too(compose, tmp_path):
    """A fine-tuning stage read the training images: replacing one trains it again (same split identity)."""
    from transmiter.data.datum import files_identity, split_identity

    cfg = _zeroshot(compose, tmp_path)
    write_fake_data(cfg)
    splits = RunContext.from_config(cfg).splits("base")
    ids = (split_identity(splits, ("train",)), files_identity(splits.train))
    _replace_image(splits.train[0].impath)
    again = RunContext.from_config(cfg).splits("base")
    assert split_identity(again, ("train",)) == ids[0]  # the portable data identity of the records
    assert files_identity(again.train) != ids[1]
