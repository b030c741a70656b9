"""Tables of the settings beyond base-to-novel: source + targets + average (cross-dataset, domain
generalisation, checked on the papers' own rows) and one column per shots value with curves (few-shot)."""

from __future__ import annotations

import csv

import pytest

from transmiter.reporting.report import main as report_main
from transmiter.reporting.tables import AVERAGE, latest_records, results_table, to_markdown

# protocol reference rows (ViT-B/16, mean of 3 seeds): the papers' averages are over the targets only
COOP_XD = {
    "ImageNet": 71.51,
    "Caltech101": 93.70,
    "OxfordPets": 89.14,
    "StanfordCars": 64.51,
    "OxfordFlowers": 68.71,
    "Food101": 85.30,
    "FGVCAircraft": 18.47,
    "SUN397": 64.15,
    "DescribableTextures": 41.92,
    "EuroSAT": 46.39,
    "UCF101": 66.55,
}
CLIP_DG = {
    "ImageNet": 66.73,
    "ImageNetV2": 60.83,
    "ImageNetSketch": 46.15,
    "ImageNetA": 47.77,
    "ImageNetR": 73.96,
}


def _rec(dataset, row, seed, base, setting, source="ImageNet", shots=16, created="2026-01-01T00:00:00"):
    return {
        "schema": 1,
        "setting": setting,
        "dataset": dataset,
        "source_dataset": source,
        "row": row,
        "seed": seed,
        "shots": shots,
        "metrics": {"base": base},
        "protocol": "coop-separate",
        "created": created,
    }


def test_cross_dataset_table_averages_the_ten_targets_not_the_source():
    records = [_rec(d, "CoOp", 1, acc, "cross_dataset") for d, acc in COOP_XD.items()]
    rows = results_table(records)
    avg = next(r for r in rows if r.dataset == AVERAGE)
    assert avg.base_mean == pytest.approx(63.88, abs=0.005)  # the paper's Avg(10)
    assert "ImageNet" not in avg.datasets and len(avg.datasets) == 10
    md = to_markdown(rows)
    header = next(line for line in md.splitlines() if line.startswith("| Method |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert (
        cells[1] == "ImageNet (source)" and cells[-2] == f"**{AVERAGE}**" and len(cells) == 1 + 1 + 10 + 1 + 1
    )
    line = next(line for line in md.splitlines() if line.startswith("| CoOp |"))
    assert line.startswith("| CoOp | 71.51 | 93.70 | 89.14 |") and "| 63.88 | 1 |" in line


def test_domain_generalization_table_and_a_partial_average_is_labelled():
    records = [_rec(d, "CLIP", 1, acc, "domain_generalization") for d, acc in CLIP_DG.items()]
    records += [_rec(d, "Other", 1, 50.0, "domain_generalization") for d in ("ImageNet", "ImageNetV2")]
    rows = results_table(records)
    clip = next(r for r in rows if r.dataset == AVERAGE and r.method == "CLIP")
    assert clip.base_mean == pytest.approx(57.18, abs=0.005)
    md = to_markdown(rows)
    assert "| CLIP | 66.73 | 60.83 | 46.15 | 47.77 | 73.96 | 57.18 | 1 |" in md
    assert "| Other | 50.00 | 50.00 | – | – | – | 50.00 (1/4) | 1 |" in md


def test_fewshot_table_has_one_column_per_shots_value_and_records_of_each_shots_are_kept():
    records = [
        _rec(d, m, seed, base + k + seed, "fewshot", source=d, shots=k)
        for d, base in (("OxfordPets", 80.0), ("EuroSAT", 60.0))
        for m in ("Skip Tuning", "TransMiter")
        for k in (1, 2, 4, 8, 16)
        for seed in (1, 2)
    ]
    assert len(latest_records(records)) == len(records)  # shots are part of a record's key
    rows = results_table(records)
    pets = next(r for r in rows if r.dataset == "OxfordPets" and r.method == "Skip Tuning" and r.shots == 4)
    assert pets.base == [85.0, 86.0] and pets.seeds == [1, 2]
    avg = next(r for r in rows if r.dataset == AVERAGE and r.method == "TransMiter" and r.shots == 8)
    assert avg.base_mean == pytest.approx((80 + 8 + 1.5 + 60 + 8 + 1.5) / 2)
    md = to_markdown(rows)
    assert "| Dataset | Method | 1 shot | 2 shots | 4 shots | 8 shots | 16 shots | Seeds |" in md
    assert "| OxfordPets | Skip Tuning | 82.50 | 83.50 | 85.50 | 89.50 | 97.50 | 1,2 |" in md
    assert f"| **{AVERAGE}** | TransMiter | 72.50 |" in md


def test_report_command_writes_fewshot_curves_and_the_settings_columns(tmp_path):
    import json

    records = [
        _rec("OxfordPets", "Skip Tuning", 1, 70.0 + k, "fewshot", source="OxfordPets", shots=k)
        for k in (1, 2, 4, 8, 16)
    ] + [_rec(d, "CoOp", 1, acc, "cross_dataset") for d, acc in COOP_XD.items()]
    for i, rec in enumerate(records):
        folder = tmp_path / "runs" / str(i)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(rec))
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert (out / "fewshot_curves.png").stat().st_size > 10_000
    assert "(fewshot_curves.png)" in (out / "results.md").read_text()
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    fewshot = [r for r in table if r["setting"] == "fewshot"]
    assert sorted(int(r["shots"]) for r in fewshot) == [1, 2, 4, 8, 16]
    xd_avg = next(r for r in table if r["setting"] == "cross_dataset" and r["dataset"] == AVERAGE)
    assert float(xd_avg["base"]) == pytest.approx(63.88, abs=0.005) and xd_avg["source_dataset"] == "ImageNet"
