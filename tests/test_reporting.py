"""Tables from results records: seed mean ± std, HM from seed-averaged B/N, Average = HM of averages."""

from __future__ import annotations

import csv

import pytest

from transmiter.evaluation.metrics import harmonic_mean
from transmiter.reporting.report import main as report_main
from transmiter.reporting.tables import AVERAGE, results_table, to_markdown


def _rec(dataset, method, seed, base, novel=None, setting="base2novel"):
    metrics = (
        {"base": base} if novel is None else {"base": base, "novel": novel, "hm": harmonic_mean(base, novel)}
    )
    return {
        "schema": 1,
        "setting": setting,
        "dataset": dataset,
        "row": method,
        "seed": seed,
        "metrics": metrics,
        "protocol": "coop-separate",
    }


def test_reference_clip_average_row():
    """The base-to-novel protocol: the CLIP row averages to 69.34 / 74.22 and HM(avg) 71.70, mean of HMs 71.59."""
    rows = [
        ("ImageNet", 72.43, 68.14),
        ("Caltech101", 96.84, 94.00),
        ("OxfordPets", 91.17, 97.26),
        ("StanfordCars", 63.37, 74.89),
        ("Flowers102", 72.08, 77.80),
        ("Food101", 90.10, 91.22),
        ("FGVCAircraft", 27.19, 36.29),
        ("SUN397", 69.36, 75.35),
        ("DTD", 53.24, 59.90),
        ("EuroSAT", 56.48, 64.05),
        ("UCF101", 70.53, 77.50),
    ]
    table = results_table([_rec(d, "CLIP", 1, b, n) for d, b, n in rows])
    avg = next(r for r in table if r.dataset == AVERAGE)
    assert avg.base_mean == pytest.approx(69.34, abs=0.01)
    assert avg.novel_mean == pytest.approx(74.22, abs=0.01)
    assert avg.hm == pytest.approx(71.70, abs=0.01)
    assert avg.mean_of_hms == pytest.approx(71.59, abs=0.02)


def test_seed_mean_and_std_and_hm_of_means():
    recs = [_rec("Pets", "FT", 1, 80, 60), _rec("Pets", "FT", 2, 90, 70), _rec("Pets", "FT", 3, 85, 80)]
    (row,) = results_table(recs)
    assert row.base_mean == pytest.approx(85) and row.novel_mean == pytest.approx(70)
    assert row.base_std == pytest.approx(5) and row.hm == pytest.approx(harmonic_mean(85, 70))
    md = to_markdown([row])
    assert "85.00 ± 5.00" in md and "| Pets | FT |" in md


def test_rerun_of_a_seed_replaces_not_duplicates():
    (row,) = results_table([_rec("Pets", "ZS", 1, 50, 50), _rec("Pets", "ZS", 1, 60, 40)])
    assert row.seeds == [1] and row.base == [60]


def test_report_command_writes_markdown_csv_png(tmp_path):
    import json

    for i, rec in enumerate(
        [_rec("A", "ZS", 1, 70, 60), _rec("B", "ZS", 1, 80, 65), _rec("A", "ZS", 1, 75, setting="base2base")]
    ):
        d = tmp_path / "runs" / str(i)
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(rec))
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "### base2novel" in md and "### base2base" in md and "**Average**" in md
    rows = list(csv.DictReader(open(tmp_path / "rep" / "results.csv")))
    avg = next(r for r in rows if r["dataset"] == AVERAGE)
    assert float(avg["hm"]) == pytest.approx(harmonic_mean(75, 62.5), abs=1e-3)
    assert (tmp_path / "rep" / "results.png").stat().st_size > 1000


def test_canonical_method_order_with_alphabetical_fallback():
    from transmiter.reporting.ordering import method_sort_key

    rows = [  # (method config name, row label), in the paper's order
        ("zeroshot", "Zero-shot synth-weak"),
        ("zeroshot", "Zero-shot synth-strong"),
        ("finetune", "FT synth-weak"),
        ("skip_tuning", "Skip Tuning synth-weak"),
        ("finetune", "FT synth-strong"),
        ("skip_tuning", "Skip Tuning synth-strong"),
        ("eft", "EFT synth-weak→synth-strong"),
        ("eft_base_change", "EFT base-change synth-weak→synth-strong"),
        ("eft_ensemble", "EFT ensemble synth-weak→synth-strong"),
        ("eft_self_ensemble", "EFT self-ensemble synth-weak→synth-strong"),
        ("transmiter", "TransMiter synth-weak→synth-strong"),
        ("transmiter_plus", "TransMiter+ synth-weak→synth-strong"),
        (None, "Another baseline"),
        ("zzz_custom", "Custom"),
    ]
    shuffled = rows[::-1][3:] + rows[::-1][:3]
    assert sorted(shuffled, key=lambda mr: method_sort_key(*mr)) == rows


def test_eft_variant_rows_follow_plain_eft_by_config_name_or_label():
    from transmiter.methods.transmiter import EFT_VARIANTS
    from transmiter.reporting.ordering import eft_variant, method_family, method_sort_key

    labels = {variant: f"{label} RN50→ViT-B-16" for variant, (_, label, _) in EFT_VARIANTS.items()}
    for variant, label in labels.items():
        assert method_family(label) == "eft" and eft_variant(None, label) == variant
        config_name = "eft" if variant == "eft" else f"eft_{variant}"
        assert eft_variant(config_name, "EFT") == variant
    order = ["eft", "base_change", "ensemble", "self_ensemble"]
    # plain EFT first although "EFT ensemble ..." sorts before "EFT RN50..." alphabetically
    assert sorted(order[::-1], key=lambda v: method_sort_key(None, labels[v])) == order
    assert method_sort_key(None, labels["self_ensemble"]) < method_sort_key("transmiter", "TransMiter x")


def test_table_rows_in_canonical_order_and_partial_average_labelled():
    recs = [
        {**_rec("DTD", "TransMiter w→s", 1, 80, 70), "method": "transmiter"},
        {**_rec("DTD", "Zero-shot strong", 1, 60, 65), "method": "zeroshot"},
        {**_rec("DTD", "Zero-shot weak", 1, 50, 55), "method": "zeroshot"},
        {**_rec("ImageNet", "Zero-shot weak", 1, 52, 57), "method": "zeroshot"},
    ]
    table = results_table(recs)
    assert [(r.dataset, r.method) for r in table] == [
        ("ImageNet", "Zero-shot weak"),  # paper dataset order: ImageNet first
        ("DTD", "Zero-shot weak"),
        ("DTD", "Zero-shot strong"),
        ("DTD", "TransMiter w→s"),
        (AVERAGE, "Zero-shot weak"),
        (AVERAGE, "Zero-shot strong"),
        (AVERAGE, "TransMiter w→s"),
    ]
    md = to_markdown(table)
    assert "| **Average** | Zero-shot weak | 51.00 | 56.00 |" in md
    assert "| **Average** (1/2) | TransMiter w→s |" in md  # averaged over fewer datasets: flagged
    alphabetical = [r.method for r in results_table(recs, order="alphabetical") if r.dataset == "DTD"]
    assert alphabetical == ["TransMiter w→s", "Zero-shot strong", "Zero-shot weak"]


def test_newest_created_record_wins_regardless_of_order():
    old = {**_rec("Pets", "ZS", 1, 50, 50), "created": "2024-01-01T00:00:00+00:00"}
    new = {**_rec("Pets", "ZS", 1, 60, 40), "created": "2024-06-01T00:00:00+00:00"}
    (row,) = results_table([new, old])
    assert row.base == [60] and row.novel == [40]


def test_records_without_metrics_are_skipped():
    recs = [_rec("Pets", "ZS", 1, 70, 60), {**_rec("Pets", "FT", 1, 0), "metrics": {}}]
    assert [r.method for r in results_table(recs)] == ["ZS"]


def test_console_summary_shows_averages_methods_then_diagnostics():
    from transmiter.reporting.report import console_summary

    diag = {"extra": {"diagnostic": "source"}, "method": "transmiter_diagnostics"}
    records = [
        _rec("Pets", "TransMiter a→b", 1, 80.0, 70.0),
        _rec("Cars", "TransMiter a→b", 1, 60.0, 50.0),
        {**_rec("Pets", "TransMiter (source) a→b", 1, 90.0, 60.0), **diag},
        {**_rec("Cars", "TransMiter (source) a→b", 1, 70.0, 40.0), **diag},
        _rec("Pets", "Zero-shot b", 1, 50.0, 55.0),
        _rec("Cars", "Zero-shot b", 1, 30.0, 35.0),
        _rec("Pets", "Zero-shot b", 1, 40.0, setting="base2base"),
    ]
    lines = console_summary(results_table(records)).splitlines()
    assert lines[0] == "base2novel (average of 2 datasets; seeds 1)"
    assert lines[1].split() == ["base", "novel", "hm"]
    body = [ln.strip() for ln in lines[2:6]]
    assert body[0].split()[-3:] == ["40.00", "45.00", "42.35"] and body[0].startswith("Zero-shot b")
    assert body[1].startswith("TransMiter a→b") and body[1].split()[-3:-1] == ["70.00", "60.00"]
    assert body[2] == "diagnostics:" and body[3].startswith("TransMiter (source) a→b")
    assert "Pets" not in "\n".join(lines[:6])  # dataset rows stay in results.md
    # a setting with one dataset shows that dataset's rows
    assert lines[-3] == "base2base (Pets; seeds 1)" and lines[-1].split()[-1] == "40.00"
