"""End-to-end runs of the few-shot, cross-dataset and domain-generalisation settings on fake data with tiny
random-init models: records per (row, scored dataset), one training per model and seed shared by every
target and by both settings, the class-map scoring equal to scoring in a target's own label space, and the
tables and curves `transmiter report` makes of them."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from transmiter.app import run
from transmiter.config.instantiate import dataset_spec_from_config, target_dataset_nodes
from transmiter.data.fake import write_fake_dataset
from transmiter.reporting.records import load_records
from transmiter.reporting.report import write_report
from transmiter.reporting.tables import AVERAGE, results_table

PAIR = "tiny-random→tiny-random-b"
# a light study: both models' zero-shot and Skip Tuning rows, the fine-tuned source through the fixed-label-
# space path (EFT self-ensemble at alpha 1 is log p_s^ft), TransMiter and TransMiter+
ROWS = [
    "method.single_model=[zeroshot,skip_tuning]",
    "method.transfer=[eft_self_ensemble,transmiter,transmiter_plus]",
]


def _write_fakes(cfg, classes: dict[str, int], per_class=(4, 1, 3)):
    """The job's dataset and every target, `classes[dataset config name]` classes each."""
    nodes = {"": cfg.dataset, **target_dataset_nodes(cfg)}
    for name, node in nodes.items():
        write_fake_dataset(
            dataset_spec_from_config(node), cfg.paths.data_dir, num_classes=classes[name], per_class=per_class
        )


def _ledger(out):
    return list(json.loads((out / "stages.json").read_text()).values())


def _by(records):
    table = defaultdict(dict)
    for rec in records:
        table[rec["row"]][rec["dataset"]] = rec
    return table


def test_cross_dataset_then_domain_generalization_train_once_and_score_every_target(compose, tmp_path):
    xd_out, dg_out = tmp_path / "xd", tmp_path / "dg"
    xd = compose(["experiment=smoke_xd", f"paths.output_dir={xd_out}", *ROWS])
    dg = compose(["experiment=smoke_dg", f"paths.output_dir={dg_out}", *ROWS])
    _write_fakes(xd, {"": 8, "caltech101": 6, "eurosat": 5})
    # V2 and Sketch hold ImageNet's 8 classes, A and R 3 of them (the fake ImageNet's classes 1, 3, 5)
    _write_fakes(dg, {"": 8, "imagenet_v2": 8, "imagenet_sketch": 8, "imagenet_a": 3, "imagenet_r": 3})

    run(xd)
    records = load_records([xd_out])
    rows = _by(records)
    assert len(rows) == 7 and all(set(r) == {"ImageNet", "Caltech101", "EuroSAT"} for r in rows.values())
    assert len(records) == 7 * 3 and all(r["source_dataset"] == "ImageNet" for r in records)
    for rec in records:
        scored_target = rec["dataset"] != "ImageNet"
        assert (rec["target"] is not None) == scored_target
        if scored_target:
            assert rec["target"]["label_space"] == "own" and rec["target"]["mapped_classes"] is None
            assert rec["splits"]["all"]  # which test images were scored
        assert rec["splits"]["train"] == records[0]["splits"]["train"]  # all trained on ImageNet's 4 shots
        assert rec["config"]["dataset"]["name"] == "ImageNet"  # the job's config
    # one training per model and seed: every target reused the ImageNet-trained stages
    ledger = _ledger(xd_out)
    trained = sorted(v["name"] for v in ledger if not v["reused"])
    assert trained == sorted(
        ["skip_tuning", "skip_tuning", "adapter_fit", "adapter_transfer", "adapter_refine"]
    )
    assert sorted(v["name"] for v in ledger) == trained  # no stage keyed on a target
    # TransMiter scored every target over its own classes plus aux names up to the adapter's K
    tm = rows[f"TransMiter {PAIR}"]
    assert {d: r["extra"]["K"] for d, r in tm.items()} == {"ImageNet": 64, "Caltech101": 64, "EuroSAT": 64}
    # ImageNet's val split is its test set: the pre-transfer guard does not look at it
    assert tm["ImageNet"]["extra"]["guard"] == {
        "checked": False,
        "reason": "ImageNet has no validation split (val = test)",
    }
    # the fine-tuned source's logits through the transfer path equal its own row, on every dataset
    for dataset, rec in rows[f"EFT self-ensemble {PAIR}"].items():
        assert rec["metrics"]["base"] == rows["Skip Tuning tiny-random"][dataset]["metrics"]["base"], dataset

    run(dg)  # the same recipe: every stage is the cross-dataset job's
    assert all(v["reused"] for v in _ledger(dg_out)) and len(_ledger(dg_out)) == len(ledger)
    dg_records = load_records([dg_out])
    dg_rows = _by(dg_records)
    variants = {"ImageNetV2": 8, "ImageNetSketch": 8, "ImageNetA": 3, "ImageNetR": 3}
    for rec in dg_records:
        if rec["dataset"] != "ImageNet":
            assert rec["target"]["label_space"] == "source"
            assert rec["target"]["mapped_classes"] == variants[rec["dataset"]]
    # scoring ImageNet's 8 classes restricted to a variant's mapped ones (EFT: source label space) equals
    # scoring the variant's own 3-way label space (the Skip Tuning row)
    for dataset in variants:
        eft = dg_rows[f"EFT self-ensemble {PAIR}"][dataset]["metrics"]["base"]
        assert eft == dg_rows["Skip Tuning tiny-random"][dataset]["metrics"]["base"], dataset
    assert dg_rows[f"TransMiter {PAIR}"]["ImageNetA"]["extra"]["K"] == 64  # ImageNet's names + aux

    report = results_table(records + dg_records)
    xd_avg = next(r for r in report if r.setting == "cross_dataset" and r.dataset == AVERAGE)
    assert sorted(xd_avg.datasets) == ["Caltech101", "EuroSAT"]  # the targets, not the source
    dg_avg = next(r for r in report if r.setting == "domain_generalization" and r.dataset == AVERAGE)
    assert sorted(dg_avg.datasets) == sorted(variants)
    md = write_report(records + dg_records, tmp_path / "report")["markdown"].read_text()
    assert "| Method | ImageNet (source) | Caltech101 | EuroSAT | **Average** | Seeds |" in md
    assert (
        "| Method | ImageNet (source) | ImageNetV2 | ImageNetSketch | ImageNetA | ImageNetR | **Average** |"
        in md
    )


def test_fewshot_study_runs_each_shots_value_and_reports_curves(compose, tmp_path):
    outs = {k: tmp_path / f"shots{k}" for k in (1, 4)}
    for k, out in outs.items():
        cfg = compose(["experiment=smoke_fewshot", f"setting.shots={k}", f"paths.output_dir={out}", *ROWS])
        if k == 1:
            write_fake_dataset(
                dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=6, per_class=(4, 2, 3)
            )
        run(cfg)
    records = load_records(list(outs.values()))
    assert {r["shots"] for r in records} == {1, 4} and all(r["setting"] == "fewshot" for r in records)
    for k, out in outs.items():  # each shots value trains its own models on its own draw
        assert sum(1 for v in _ledger(out) if v["name"] == "skip_tuning" and not v["reused"]) == 2, k
    trains = {r["shots"]: r["splits"]["train"] for r in records}
    assert trains[1] != trains[4]
    tm = {r["shots"]: r for r in records if r["row"] == f"TransMiter {PAIR}"}
    assert "1-shot training images of the 6 training classes" in tm[1]["extra"]["fit_data"]
    paths = write_report(records, tmp_path / "report")
    assert paths["curves_fewshot"].stat().st_size > 10_000
    assert "| Dataset | Method | 1 shot | 4 shots | Seeds |" in paths["markdown"].read_text()


def test_dry_run_line_reports_the_targets_data(compose, tmp_path, capsys):
    cfg = compose(["experiment=smoke_xd", f"paths.output_dir={tmp_path / 'job'}", "dry_run=true"])
    assert run(cfg) == {}
    line = capsys.readouterr().out
    assert "data: MISSING (3 folders absent under" in line and "caltech-101" in line and "eurosat" in line
    _write_fakes(cfg, {"": 8, "caltech101": 6, "eurosat": 5})
    run(cfg)
    assert "data: ok (+2 targets)" in capsys.readouterr().out


@pytest.mark.slow
def test_every_study_row_scores_every_target(compose, tmp_path):
    """The full smoke study (FT, the four EFT variants, TransMiter's diagnostic rows) under cross_dataset."""
    out = tmp_path / "xd"
    cfg = compose(["experiment=smoke_xd", f"paths.output_dir={out}"])
    _write_fakes(cfg, {"": 8, "caltech101": 6, "eurosat": 5})
    run(cfg)
    rows = _by(load_records([out]))
    assert len(rows) == 15 and all(len(r) == 3 for r in rows.values())
    oracle = rows[f"TransMiter (target oracle) {PAIR}"]
    assert all(r["extra"]["diagnostic"] == "target_oracle" and r["metrics"] for r in oracle.values())
    trained = [v["name"] for v in _ledger(out) if not v["reused"]]
    assert sorted(trained).count("skip_tuning") == 2 and sorted(trained).count("ft") == 2
