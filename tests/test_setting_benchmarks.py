"""The synthetic counterparts of cross-dataset and domain generalisation: a 120-class source and four shifted
renderings of its classes, generated in the CoOp layout, loaded through their shipped configs, mapped into
the source's label space, and refused as targets when their folder is missing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transmiter.config import CONFIG_DIR, ConfigError, validate_config
from transmiter.config.instantiate import dataset_config_node, dataset_spec_from_config
from transmiter.data.class_map import class_map
from transmiter.data.loaders import load_dataset
from transmiter.synthetic.benchmarks import MARKER_NAME, split_sizes
from transmiter.synthetic.setting_benchmarks import (
    GROUND,
    PAPER,
    RENDERINGS,
    SETTING_BENCHMARKS,
    SOURCE,
    _eroded,
    dataset_yaml,
    generate_setting_benchmarks,
    outline,
    rendering_status,
    sketch,
)


def test_shipped_dataset_configs_are_the_specs():
    for spec in SETTING_BENCHMARKS.values():
        shipped = (CONFIG_DIR / "dataset" / f"{spec.folder}.yaml").read_text()
        assert shipped == dataset_yaml(spec), f"rerun write_setting_dataset_configs('conf') ({spec.folder})"


def test_source_has_every_colour_shape_class_and_renderings_hold_its_classes():
    assert SOURCE.num_classes == 120 and len(set(SOURCE.classnames)) == 120
    seen = set()
    for spec in RENDERINGS.values():
        assert set(spec.classnames) <= set(SOURCE.classnames)
        mapping = class_map(SOURCE.classnames, spec.classnames, source=SOURCE.name, target=spec.name)
        assert mapping == list(spec.classes)
        if spec.num_classes < SOURCE.num_classes:
            seen.update(spec.classnames)
    # the two subsets are disjoint 40-class label spaces of their own (as ImageNet-A and -R)
    assert len(seen) == 80


def test_sketch_turns_flat_areas_into_paper_and_keeps_the_colour_of_edges():
    flat = np.full((1, 32, 32, 3), 90, dtype=np.uint8)
    assert np.array_equal(sketch(flat)[0], np.broadcast_to(PAPER.astype(np.uint8), (32, 32, 3)))
    square = flat.copy()
    square[0, 8:24, 8:24] = (220, 30, 30)
    drawn = sketch(square)[0].astype(int)
    assert (drawn[16, 16] == PAPER).all()  # the interior is flat: paper
    edge = drawn[16, 8]
    assert edge[0] > edge[1] + 60 and edge[0] > edge[2] + 60  # the stroke is red


def test_outline_keeps_only_the_boundary_ring():
    masks = np.zeros((1, 32, 32), dtype=bool)
    masks[0, 6:26, 6:26] = True
    images = np.full((1, 32, 32, 3), 200, dtype=np.uint8)
    drawn = outline(images, masks, width=2)[0]
    ring = masks[0] & ~_eroded(_eroded(masks))[0]
    assert ring.sum() == 20 * 20 - 16 * 16
    assert (drawn[ring] == 200).all() and (drawn[~ring] == GROUND.astype(np.uint8)).all()


def test_generated_datasets_load_through_their_configs_and_are_reused(tmp_path):
    roots = generate_setting_benchmarks(tmp_path, scale="tiny", progress=False)
    assert list(roots) == list(SETTING_BENCHMARKS)
    per_class = split_sizes("tiny")
    source = load_dataset(dataset_spec_from_config(dataset_config_node("synth_objects")), tmp_path)
    assert len(source.classnames) == 120 and len(source.train) == 120 * per_class[0]
    for spec in RENDERINGS.values():
        loaded = load_dataset(dataset_spec_from_config(dataset_config_node(spec.folder)), tmp_path)
        assert loaded.classnames == list(spec.classnames)
        assert not loaded.train and not loaded.val and len(loaded.test) == spec.num_classes * per_class[2]
        assert sorted({d.label for d in loaded.test}) == list(range(spec.num_classes))
    # a second call writes nothing; a damaged image is detected and the folder regenerated
    outline_root = roots["SynthObjectsOutline"]
    marker = (outline_root / MARKER_NAME).stat().st_mtime_ns
    generate_setting_benchmarks(tmp_path, scale="tiny", progress=False)
    assert (outline_root / MARKER_NAME).stat().st_mtime_ns == marker
    spec = RENDERINGS["SynthObjectsOutline"]
    first = json.loads((outline_root / spec.split_file).read_text())["test"][0][0]
    (outline_root / "images" / first).write_bytes(b"not a png")
    assert rendering_status(spec, tmp_path, "tiny") == "corrupt"
    generate_setting_benchmarks(tmp_path, scale="tiny", progress=False)
    assert rendering_status(spec, tmp_path, "tiny") == "complete"
    assert rendering_status(spec, tmp_path, "demo") == "stale"


def test_demo_dg_targets_map_into_the_source_and_a_missing_rendering_is_named(compose, tmp_path):
    unbuilt = ["pair.source.pretrained=null", "pair.target.pretrained=null"]  # no world weights needed
    cfg = compose(["experiment=demo_dg", f"paths.data_dir={tmp_path}", *unbuilt])
    generate_setting_benchmarks(tmp_path, scale="tiny", progress=False)
    validate_config(cfg)
    shutil.rmtree(tmp_path / "synth_objects_palette")
    with pytest.raises(ConfigError, match="synth_objects_palette") as err:
        validate_config(cfg)
    assert f"transmiter data synthetic paths.data_dir={tmp_path}" in str(err.value)
