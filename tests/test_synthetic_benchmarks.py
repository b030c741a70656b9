"""Fast tests of the synthetic downstream benchmarks (CoOp layout, atomic generation, caching)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from transmiter.synthetic.benchmarks import (
    BENCHMARKS,
    KIND_BENCHMARKS,
    MARKER_NAME,
    SPLIT_SIZES,
    benchmark_status,
    generate_benchmark,
)
from transmiter.synthetic.world import COLOURS, SHAPES, TEXTURES


def test_registry_fields():
    assert len(BENCHMARKS) >= 2
    for name, spec in BENCHMARKS.items():
        assert spec.name == name
        assert spec.num_classes >= 20
        assert len(set(spec.classnames)) == spec.num_classes
        assert "{}" in spec.template and spec.template in spec.templates and len(spec.templates) >= 3
        cfg = spec.dataset_config()
        assert cfg == {
            "name": name,
            "folder": spec.folder,
            "loader": "json_split",
            "image_dir": "images",
            "split_file": f"split_zhou_{name}.json",
        }
        for cname in spec.classnames:
            assert cname == cname.strip() and " " not in cname
    assert len({s.folder for s in BENCHMARKS.values()}) == len(BENCHMARKS)


def test_base_and_novel_halves_cover_every_attribute_value():
    for spec in BENCHMARKS.values():
        m = math.ceil(spec.num_classes / 2)
        attrs = [dict(a) for a in spec.class_attributes]
        for key in attrs[0]:
            values = {a[key] for a in attrs}
            assert {a[key] for a in attrs[:m]} == values, (spec.name, key)
            assert {a[key] for a in attrs[m:]} == values, (spec.name, key)


def test_classnames_name_the_attributes():
    for spec in BENCHMARKS.values():
        for cname, attrs in zip(spec.classnames, spec.class_attributes):
            words = cname.split("_")
            for key, value in attrs:
                if key == "shape":
                    assert words[-1].startswith(value)
                elif key == "count":
                    assert words[0] == {1: "one", 2: "two", 3: "three"}[value]
                else:
                    assert value in words
                    assert value in (*COLOURS, *TEXTURES)
            assert any(words[-1].startswith(s) for s in SHAPES)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    for spec in BENCHMARKS.values():
        generate_benchmark(spec, data, scale="tiny", progress=False)
    return data


def test_coop_layout(tiny_data):
    train, val, test = SPLIT_SIZES["tiny"]
    for spec in BENCHMARKS.values():
        root = tiny_data / spec.folder
        split = json.loads((root / spec.split_file).read_text())
        assert set(split) == {"train", "val", "test"}
        for name, per_class in zip(("train", "val", "test"), (train, val, test)):
            items = split[name]
            assert len(items) == per_class * spec.num_classes
            labels = [y for _, y, _ in items]
            assert sorted(set(labels)) == list(range(spec.num_classes))
            for rel, label, cname in items:
                assert isinstance(rel, str) and isinstance(label, int)
                assert cname == spec.classnames[label]
                assert rel.startswith(f"{cname}/") and rel.endswith(".png")
        rel, _, _ = split["test"][0]
        img = Image.open(root / "images" / rel)
        assert img.size == (32, 32) and img.mode == "RGB"
        all_paths = [it[0] for v in split.values() for it in v]
        assert len(set(all_paths)) == len(all_paths)
        assert benchmark_status(spec, tiny_data, "tiny") == "complete"


def test_generation_is_deterministic(tiny_data, tmp_path):
    spec = BENCHMARKS["SynthShapes"]
    generate_benchmark(spec, tmp_path, scale="tiny", progress=False)
    a = json.loads((tiny_data / spec.folder / MARKER_NAME).read_text())
    b = json.loads((tmp_path / spec.folder / MARKER_NAME).read_text())
    assert a["content_sha256"] == b["content_sha256"]


def test_complete_folder_is_reused(tiny_data):
    spec = BENCHMARKS["SynthPatterns"]
    marker = tiny_data / spec.folder / MARKER_NAME
    mtime = marker.stat().st_mtime_ns
    # files the framework adds later (few-shot cache) are not part of the content hash
    (tiny_data / spec.folder / "split_fewshot").mkdir(exist_ok=True)
    (tiny_data / spec.folder / "split_fewshot" / "shot_16-seed_1.json").write_text("{}")
    generate_benchmark(spec, tiny_data, scale="tiny", progress=False)
    assert marker.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["no_marker", "missing_image", "corrupt_image", "truncated_split"])
def test_half_written_or_damaged_folder_is_regenerated(tiny_data, tmp_path, damage):
    spec = BENCHMARKS["SynthCounts"]
    shutil.copytree(tiny_data / spec.folder, tmp_path / spec.folder)
    root = tmp_path / spec.folder
    reference = json.loads((root / MARKER_NAME).read_text())["content_sha256"]
    split = json.loads((root / spec.split_file).read_text())
    victim = root / "images" / split["test"][-1][0]
    if damage == "no_marker":  # e.g. a copy interrupted before the marker arrived
        (root / MARKER_NAME).unlink()
    elif damage == "missing_image":
        victim.unlink()
    elif damage == "corrupt_image":
        victim.write_bytes(victim.read_bytes()[:20])
    else:
        text = (root / spec.split_file).read_text()
        (root / spec.split_file).write_text(text[: len(text) // 2])
    assert benchmark_status(spec, tmp_path, "tiny") == "corrupt"
    generate_benchmark(spec, tmp_path, scale="tiny", progress=False)
    assert benchmark_status(spec, tmp_path, "tiny") == "complete"
    assert json.loads((root / MARKER_NAME).read_text())["content_sha256"] == reference
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{spec.folder}.") and p.is_dir()]


def test_folder_written_at_another_scale_is_stale(tiny_data):
    spec = BENCHMARKS["SynthCounts"]
    assert benchmark_status(spec, tiny_data, "tiny") == "complete"
    assert benchmark_status(spec, tiny_data, "demo") == "stale"


def _split_contents(root, split_file, split_name):
    """(label, SHA-256 of the image bytes) of every item of one split, in split order."""
    split = json.loads((root / split_file).read_text())
    return [
        (label, hashlib.sha256((root / "images" / rel).read_bytes()).hexdigest())
        for rel, label, _ in split[split_name]
    ]


def test_a_larger_validation_split_leaves_the_train_and_test_images_unchanged(tiny_data, tmp_path):
    """Each split is drawn from its own random stream: more validation images per class change neither the
    training images nor the test images (pixels, labels, order), so test figures stay comparable."""
    spec = BENCHMARKS["SynthShapes"]
    larger = dataclasses.replace(spec, val_per_class=(("tiny", 7),))
    assert larger.split_sizes("tiny") == (SPLIT_SIZES["tiny"][0], 7, SPLIT_SIZES["tiny"][2])
    assert larger.key("tiny") != spec.key("tiny") and larger.key("demo") == spec.key("demo")
    generate_benchmark(larger, tmp_path, scale="tiny", progress=False)
    assert benchmark_status(spec, tmp_path, "tiny") == "stale"
    before, after = tiny_data / spec.folder, tmp_path / spec.folder
    for name in ("train", "test"):
        assert _split_contents(after, spec.split_file, name) == _split_contents(before, spec.split_file, name)
    val = _split_contents(after, spec.split_file, "val")
    assert len(val) == 7 * spec.num_classes and len({digest for _, digest in val}) == len(val)


@pytest.mark.parametrize("item", [("huge", 8), ("tiny", 0), ("tiny", 2.5), ("tiny",)])
def test_a_bad_validation_count_is_refused(item):
    with pytest.raises(ValueError, match="SynthShapes: val_per_class"):
        dataclasses.replace(BENCHMARKS["SynthShapes"], val_per_class=(item,))


def test_the_named_kind_benchmarks_are_measured_on_as_many_val_as_test_images():
    """The class_knowledge world is calibrated on its validation split: at demo scale it holds at least as
    many images per class as the test split, not the few of the other benchmarks."""
    for spec in KIND_BENCHMARKS.values():
        train, val, test = spec.split_sizes("demo")
        assert (train, test) == (SPLIT_SIZES["demo"][0], SPLIT_SIZES["demo"][2]) and val >= test


def test_leftover_temporary_folder_does_not_count(tmp_path):
    spec = BENCHMARKS["SynthShapes"]
    tmp = tmp_path / f".{spec.folder}.tmp-crashed"
    (tmp / "images").mkdir(parents=True)
    assert benchmark_status(spec, tmp_path, "tiny") == "missing"
    generate_benchmark(spec, tmp_path, scale="tiny", progress=False)
    assert benchmark_status(spec, tmp_path, "tiny") == "complete"


def test_class_images_show_their_class(tiny_data):
    """The pinned attributes reach the pixels: SynthShapes objects carry their class colour."""
    spec = BENCHMARKS["SynthShapes"]
    root = tiny_data / spec.folder
    split = json.loads((root / spec.split_file).read_text())
    tint = np.array(spec.distribution.tint)
    palette = {
        c: np.clip(np.array(COLOURS[c], dtype=float) * tint, 0, 255) for c in spec.distribution.colours
    }
    hits = 0
    for rel, label, _ in split["train"]:
        img = np.asarray(Image.open(root / "images" / rel), dtype=float).reshape(-1, 3)
        colour = dict(spec.class_attributes[label])["colour"]
        # the class colour is (nearly) present in some pixels, closer than the other class colours
        dists = {c: np.sqrt(((img - p) ** 2).sum(1)).min() for c, p in palette.items()}
        hits += min(dists, key=dists.get) == colour
    assert hits / len(split["train"]) > 0.8


def test_committed_dataset_configs_match_the_registry():
    """conf/dataset/synth_*.yaml are generated from BENCHMARKS; a changed benchmark must regenerate them."""
    from pathlib import Path

    from transmiter.synthetic.benchmarks import BENCHMARKS

    conf = Path(__file__).resolve().parents[1] / "conf" / "dataset"
    for spec in BENCHMARKS.values():
        committed = (conf / f"{spec.folder}.yaml").read_text()
        assert committed == spec.dataset_yaml(), (
            f"conf/dataset/{spec.folder}.yaml is stale: run write_dataset_configs('conf') "
            "from transmiter.synthetic.benchmarks"
        )
