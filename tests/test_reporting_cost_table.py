"""Cost table, accuracy-versus-cost scatter and the README results block of `transmiter report`."""

from __future__ import annotations

import csv
import json

import pytest

from transmiter.reporting.cost_table import cost_table, costs_markdown, format_si, training_time
from transmiter.reporting.report import README_END, README_START, replace_block
from transmiter.reporting.report import main as report_main


def _rec(dataset, row, seed, base, novel=None, method=None, costs=None, timings=None, setting="base2novel"):
    metrics = {"base": base} if novel is None else {"base": base, "novel": novel}
    rec = {
        "schema": 1,
        "setting": setting,
        "dataset": dataset,
        "row": row,
        "method": method,
        "seed": seed,
        "metrics": metrics,
        "protocol": "coop-separate",
        "study": "demo",
    }
    if costs is not None:
        rec["costs"] = costs
    if timings is not None:
        rec["timings"] = timings
    return rec


TM_COSTS = {
    "train_time_s": 0.0,  # replaced per record
    "trainable_params": 2_000_000,
    "adapter_flops_per_image": 40e6,
    "encoder_flops_per_image": 4e9,
    "inference_flops_per_image": 4.04e9,
}


def _study_records():
    recs = []
    for d, dataset in enumerate(["A", "B"]):
        for seed in (1, 2):
            recs.append(
                _rec(dataset, "Zero-shot weak", seed, 60 + d, 65, "zeroshot", timings={"total_s": 3.0})
            )
            tm = {**TM_COSTS, "train_time_s": 10.0 * (1 + d) + seed}  # 11, 12, 21, 22 -> mean 16.5
            recs.append(_rec(dataset, "TransMiter weak→strong", seed, 80, 70 + d, "transmiter", costs=tm))
            # no costs.train_time_s: the training-like timings are summed (fit 5 + transfer 1 + refine 2)
            timings = {
                "total_s": 100.0,
                "feature_pass_s": 50.0,
                "fit_s": 5.0,
                "transfer_s": 1.0,
                "refine_s": 2.0,
            }
            recs.append(_rec(dataset, "EFT weak→strong", seed, 75, 68, "eft", timings=timings))
            recs.append(_rec(dataset, "FT weak", seed, 85, 55, "finetune"))  # no costs, no timings at all
    return recs


def test_cost_table_means_ratios_and_fallbacks():
    rows = {r.method: r for r in cost_table(_study_records())}
    assert list(rows) == ["Zero-shot weak", "FT weak", "EFT weak→strong", "TransMiter weak→strong"]
    tm = rows["TransMiter weak→strong"]
    assert tm.runs == 4
    assert tm.train_time_s == pytest.approx(16.5)  # mean over datasets × seeds
    assert tm.adapter_encoder_ratio == pytest.approx(0.01)
    assert tm.inference_flops_per_image == pytest.approx(4.04e9)
    assert tm.trainable == pytest.approx(2e6)
    eft = rows["EFT weak→strong"]
    assert eft.train_time_s == pytest.approx(8.0) and eft.train_time_sources == {"timings"}
    zs = rows["Zero-shot weak"]
    assert zs.train_time_s == 0.0 and zs.trainable == 0.0  # nothing trained
    ft = rows["FT weak"]
    assert ft.train_time_s is None and ft.inference_flops_per_image is None and ft.trainable is None

    md = costs_markdown(list(rows.values()))
    assert "| TransMiter weak→strong | 16.5 s | 4.04 G | 1.00 % | 2.00 M | 4 |" in md
    assert "| EFT weak→strong | 8.0 s † | – | – | – | 4 |" in md
    assert "| FT weak | – | – | – | – | 4 |" in md  # missing cost fields render "–"
    assert "| Zero-shot weak | 0 s | – | – | 0 | 4 |" in md


def test_training_time_and_flops_fallbacks():
    assert training_time({"costs": {"train_time_s": 7}, "timings": {"train_s": 99}}) == (7.0, "costs")
    assert training_time({"timings": {"source_train_s": 2, "train_s": 3, "total_s": 9}}) == (5.0, "timings")
    assert training_time({"method": "finetune", "timings": {"total_s": 9}}) == (None, "")
    assert training_time({"row": "Zero-shot ViT-B-16"}) == (0.0, "zero-shot")
    # inference FLOPs fall back to encoder + adapter only when both are recorded
    (row,) = cost_table(
        [_rec("A", "X", 1, 50, costs={"encoder_flops_per_image": 1e9, "adapter_flops_per_image": 5e6})]
    )
    assert row.inference_flops_per_image == pytest.approx(1.005e9)
    assert row.adapter_encoder_ratio == pytest.approx(0.005)
    (row,) = cost_table([_rec("A", "X", 1, 50, costs={"encoder_flops_per_image": 1e9})])
    assert row.inference_flops_per_image is None and row.adapter_encoder_ratio is None
    assert [format_si(v) for v in (17.56e9, 86e6, 999.6e3, 512, None)] == [
        "17.6 G",
        "86.0 M",
        "1.00 M",
        "512",
        "–",
    ]


def test_scatter_png_is_written_and_not_blank(tmp_path):
    import matplotlib.image

    from transmiter.reporting.plots import plot_cost_scatter
    from transmiter.reporting.tables import results_table

    recs = _study_records()
    path = plot_cost_scatter(results_table(recs), cost_table(recs), tmp_path / "cost_scatter.png")
    assert path.stat().st_size > 10_000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05  # points, labels and axes drawn, not an empty canvas


def _write_runs(root, recs):
    for i, rec in enumerate(recs):
        d = root / f"run{i:03d}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(rec))


def test_report_writes_cost_outputs_and_readme_block_idempotently(tmp_path):
    _write_runs(tmp_path / "runs", _study_records())
    readme = tmp_path / "experiments" / "demo" / "README.md"
    readme.parent.mkdir(parents=True)
    before, after = "# Demo study\n\nIntro text.\n\n", "\n\n## Notes\n\nKept as is.\n"
    readme.write_text(f"{before}{README_START}\nstale table\n{README_END}{after}")
    args = [
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "rep"),
        "--study",
        "demo",
        "--readme",
        str(readme),
    ]
    assert report_main(args) == 0

    out = tmp_path / "rep"
    md = (out / "results.md").read_text()
    assert "# Results: demo" in md and "## Cost" in md and "| FT weak | – | – | – | – | 4 |" in md
    assert "![" in md and "(results.png)" in md and "(cost_scatter.png)" in md
    costs = {r["method"]: r for r in csv.DictReader(open(out / "costs.csv"))}
    assert float(costs["TransMiter weak→strong"]["adapter_encoder_flops_ratio"]) == pytest.approx(0.01)
    assert costs["FT weak"]["train_time_s"] == ""
    for png in ("results.png", "cost_scatter.png"):
        assert (out / png).stat().st_size > 5_000

    text = readme.read_text()
    assert text.startswith(before + README_START) and text.endswith(README_END + after)
    assert "stale table" not in text and "| **Average** | TransMiter weak→strong |" in text
    assert "### Accuracy" in text and "#### base2novel" in text and "### Cost" in text
    assert report_main(args) == 0
    assert readme.read_text() == text  # a second run with the same records changes nothing


def test_readme_markers_appended_when_absent_then_replaced(tmp_path):
    text = replace_block("# Study\n\nSome text.", "| a |\n")
    assert text == f"# Study\n\nSome text.\n\n{README_START}\n| a |\n{README_END}\n"
    assert replace_block(text, "| a |\n") == text
    assert replace_block(text, "| b |") == text.replace("| a |", "| b |")
    assert replace_block("", "x") == f"{README_START}\nx\n{README_END}\n"
    with pytest.raises(ValueError, match="malformed"):
        replace_block(f"{README_END}\n{README_START}\n", "x")

    _write_runs(tmp_path / "runs", _study_records()[:4])
    readme = tmp_path / "README.md"  # does not exist yet: created with the block
    args = [str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--readme", str(readme)]
    assert report_main(args) == 0
    first = readme.read_text()
    assert first.startswith(README_START) and first.rstrip().endswith(README_END)
    assert report_main(args) == 0 and readme.read_text() == first
