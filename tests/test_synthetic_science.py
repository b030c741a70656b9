"""Slow "science" checks on the demo-scale synthetic world `domain_shift`.

Builds the demo world (about 6 minutes of pretraining on 2 idle CPU cores the first time). Set
``TRANSMITER_SYNTHETIC_CACHE`` to a folder to reuse pretrained checkpoints across runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from transmiter.synthetic.benchmarks import BENCHMARKS
from transmiter.synthetic.build import build_world
from transmiter.synthetic.probe import zero_shot_accuracy

pytestmark = pytest.mark.slow
PAIR = "synth-weak→synth-strong"


@pytest.fixture(scope="module")
def built_world(tmp_path_factory):
    """(world, cache_dir, data_dir): the demo world, built and published as `transmiter world build` does."""
    from transmiter.cli.world import publish_world

    cache = Path(os.environ.get("TRANSMITER_SYNTHETIC_CACHE") or tmp_path_factory.mktemp("synthetic_cache"))
    data = tmp_path_factory.mktemp("synthetic_data")
    world = build_world(cache / "synthetic", data, world="domain_shift", scale="demo", progress=False)
    publish_world(world, cache, "demo")
    return world, cache, data


@pytest.fixture(scope="module")
def world(built_world):
    return built_world[0]


@pytest.fixture(scope="module")
def world_paths(built_world):
    return built_world[1:]


@pytest.fixture(scope="module")
def zero_shot(world):
    acc = {}
    for name, ds in world.datasets.items():
        for model in (world.weak_model, world.strong_model):
            acc[name, model] = zero_shot_accuracy(model, world.checkpoint(model), ds.root, ds.spec.template)
    print("\nzero-shot accuracy:", {f"{k[0]}/{k[1]}": round(v, 3) for k, v in acc.items()})
    return acc


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_both_models_far_above_chance_but_imperfect(world, zero_shot, name):
    chance = 1.0 / BENCHMARKS[name].num_classes
    for model in (world.weak_model, world.strong_model):
        acc = zero_shot[name, model]
        assert acc > 4 * chance and acc > chance + 0.15, (name, model, acc, chance)
        assert acc < 0.95, (name, model, acc)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_strong_beats_weak_zero_shot(world, zero_shot, name):
    weak, strong = zero_shot[name, world.weak_model], zero_shot[name, world.strong_model]
    assert strong > weak + 0.05, (name, weak, strong)


def test_strong_beats_weak_on_average(world, zero_shot):
    gaps = [zero_shot[n, world.strong_model] - zero_shot[n, world.weak_model] for n in BENCHMARKS]
    assert np.mean(gaps) > 0.10, gaps


@pytest.fixture(scope="module")
def demo_rows(world_paths, tmp_path_factory):
    """The demo study's base2novel job on both demo benchmarks, run through the Hydra app exactly as
    `make demo` runs it: {(dataset, row): metrics}."""
    from transmiter.app import run
    from transmiter.config import compose_config
    from transmiter.reporting.records import load_records

    cache, data = world_paths
    rows = {}
    for dataset in ("synth_shapes", "synth_counts"):
        out = tmp_path_factory.mktemp(f"demo_{dataset}")
        cfg = compose_config(
            [
                "experiment=demo",
                f"dataset={dataset}",
                "setting=base2novel",
                f"paths.cache_dir={cache}",
                f"paths.data_dir={data}",
                f"hydra.run.dir={out}",
                f"paths.output_dir={out}",
            ]
        )
        run(cfg)
        for rec in load_records([out]):
            rows[rec["dataset"], rec["row"]] = rec["metrics"]
    print("\ndemo base2novel:", {f"{k[0]}/{k[1]}": v for k, v in rows.items()})
    return rows


def _mean(rows, row: str, metric: str) -> float:
    return float(np.mean([rows[ds, row][metric] for ds in ("SynthShapes", "SynthCounts")]))


@pytest.mark.parametrize("dataset", ["SynthShapes", "SynthCounts"])
def test_fine_tuning_the_weak_model_on_base_classes_raises_its_base_accuracy(demo_rows, dataset):
    zero_shot, ft = (
        demo_rows[dataset, "Zero-shot synth-weak"]["base"],
        demo_rows[dataset, "FT synth-weak"]["base"],
    )
    assert ft > zero_shot + 5, (dataset, zero_shot, ft)


def test_transmiter_lifts_the_strong_model_and_transmiter_plus_lifts_it_further(demo_rows):
    """Averaged over the two demo benchmarks (base2novel, test split): TransMiter's moved adapter raises the
    strong model's base accuracy over its zero-shot, keeps novel accuracy near zero-shot (no collapse), and
    the few-shot refinement of TransMiter+ raises base accuracy again."""
    zs_strong = [_mean(demo_rows, "Zero-shot synth-strong", m) for m in ("base", "novel")]
    transmiter = [_mean(demo_rows, f"TransMiter {PAIR}", m) for m in ("base", "novel")]
    plus = _mean(demo_rows, f"TransMiter+ {PAIR}", "base")
    assert transmiter[0] > zs_strong[0] + 2, (zs_strong, transmiter)
    assert transmiter[1] > zs_strong[1] - 10, (zs_strong, transmiter)
    assert plus > transmiter[0] + 1, (transmiter, plus)
