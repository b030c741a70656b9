"""The regimes study (experiments/regimes): one point per transfer job from records with known values, the
gain / lead / diagnostic arithmetic and its exact identity, Spearman's rho against a hand computation, worlds
kept apart, missing rows reported, and `transmiter regimes` end to end with its input errors."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from transmiter.evaluation.metrics import harmonic_mean
from transmiter.reporting.regimes_study import (
    DIFFERENCES,
    GROUPS,
    NO_WORLD,
    POOLED,
    correlations,
    ranks,
    regime_points,
    spearman,
    study_markdown,
    world_of,
)

PAIR = {"source": {"name": "weak", "arch": "A"}, "target": {"name": "strong", "arch": "B"}}
WORLD_DATASETS = {
    "class_knowledge": ("synth_birds", "SynthBirds"),
    "domain_shift": ("synth_shapes", "SynthShapes"),
}

# one base2novel job's accuracies (base, novel) by row; the figures below follow from them by hand
ACCURACIES = {
    "target_zeroshot": (70.0, 75.0),
    "source_finetuned": (80.0, 72.0),
    "transmiter": (78.0, 71.0),
    "transmiter_plus": (82.0, 73.0),
    "diag_source": (79.0, 70.0),
    "diag_no_rotation": (74.0, 69.0),
    "diag_target_oracle": (85.0, 77.0),
}
EXPECTED_BASE = {
    "gain": 8.0,
    "plus_gain": 12.0,
    "lead": 10.0,
    "imitation_gap": 1.0,
    "swap": -5.0,
    "rotation_effect": 4.0,
    "headroom": 7.0,
    "oracle_gain": 15.0,
}


def _record(world, seed, row, method, role, accuracies, setting="base2novel", extra=None, shift=0.0):
    folder, name = WORLD_DATASETS[world]
    base, novel = accuracies[0] + shift, accuracies[1]
    metrics = (
        {"base": base}
        if setting == "base2base"
        else {"base": base, "novel": novel, "hm": harmonic_mean(base, novel)}
    )
    return {
        "schema": 1,
        "study": "demo_full",
        "setting": setting,
        "dataset": name,
        "seed": seed,
        "shots": 16,
        "row": row,
        "method": method,
        "eval_split": "test",
        "metrics": metrics,
        "extra": {"role": role, **(extra or {})},
        "config": {
            "pair": PAIR,
            "world": {"name": world, "datasets": f"{folder},other_one"},
            "dataset": {"name": name, "folder": folder},
        },
    }


def _job(world="class_knowledge", seed=1, setting="base2novel", lead_shift=0.0, cka=0.8, drop=(), guard=None):
    """A study job's records with ACCURACIES; `lead_shift` moves the source FT and TransMiter base accuracy
    together (a larger lead, a larger gain); `drop`: row keys left out."""
    transfer = {
        "source_finetune": "skip_tuning",
        "transfer_figures": {
            "cka": cka,
            "residual_before": 0.5,
            "residual_after": 0.2,
            "rotation_distance": 0.3,
        },
        "guard": guard
        or {
            "checked": True,
            "fires": False,
            "source_finetuned_val_acc": 81.0,
            "target_zeroshot_val_acc": 71.5,
        },
    }
    a = ACCURACIES
    rows = {
        "target_zeroshot": ("Zero-shot strong", "zeroshot", "target", a["target_zeroshot"], {}, 0.0),
        "source_zeroshot": ("Zero-shot weak", "zeroshot", "source", (60.0, 65.0), {}, 0.0),
        "source_finetuned": (
            "Skip Tuning weak",
            "skip_tuning",
            "source",
            a["source_finetuned"],
            {},
            lead_shift,
        ),
        "source_ft_other": (
            "FT weak",
            "ft",
            "source",
            (99.0, 99.0),
            {},
            0.0,
        ),  # not the transfer's fine-tuner
        "transmiter": ("TransMiter weak→strong", "transmiter", "pair", a["transmiter"], transfer, lead_shift),
        "transmiter_plus": (
            "TransMiter+ weak→strong",
            "transmiter_plus",
            "pair",
            a["transmiter_plus"],
            transfer,
            0.0,
        ),
        "eft": ("EFT weak→strong", "eft", "pair", (50.0, 50.0), {}, 0.0),
    }
    for kind, label in (
        ("source", "source"),
        ("no_rotation", "no rotation"),
        ("target_oracle", "target oracle"),
    ):
        extra = {"diagnostic": kind, **transfer}
        rows[f"diag_{kind}"] = (
            f"TransMiter ({label}) weak→strong",
            "transmiter_diagnostics",
            "pair",
            a[f"diag_{kind}"],
            extra,
            0.0,
        )
    return [
        _record(world, seed, row, method, role, acc, setting, extra, shift)
        for key, (row, method, role, acc, extra, shift) in rows.items()
        if key not in drop
    ]


def test_gain_lead_and_decomposition_by_hand_and_the_identity_holds_in_every_group():
    (point,) = regime_points(_job())
    assert (
        point.world == "class_knowledge"
        and point.dataset == "SynthBirds"
        and point.finetuner == "skip_tuning"
    )
    for figure, value in EXPECTED_BASE.items():
        assert point.get(f"{figure}_base") == pytest.approx(value), figure
    assert point.get("gain_novel") == pytest.approx(-4.0)  # TransMiter 71 against the target's 75
    assert point.get("lead_novel") == pytest.approx(-3.0)
    hm = {k: harmonic_mean(*v) for k, v in ACCURACIES.items()}
    assert point.get("gain_hm") == pytest.approx(hm["transmiter"] - hm["target_zeroshot"])
    for group in GROUPS:
        g = {f: point.get(f"{f}_{group}") for f in DIFFERENCES}
        assert g["gain"] == pytest.approx(
            g["lead"] - g["imitation_gap"] + g["swap"] + g["rotation_effect"], abs=1e-12
        )
        assert g["oracle_gain"] == pytest.approx(g["gain"] + g["headroom"], abs=1e-12)
    assert point.get("lead_val") == pytest.approx(9.5) and point.guard_fires is False
    assert (
        point.get("cka") == 0.8
        and point.get("residual_after") == 0.2
        and point.get("rotation_distance") == 0.3
    )
    assert point.missing == []


def test_base2base_points_have_no_novel_figures_and_val_rows_are_ignored():
    job = _job(setting="base2base")
    # the same rows scored on validation, written later: kept, they would replace the test records
    val = [{**r, "eval_split": "val", "metrics": {"base": 1.0}} for r in job]
    (point,) = regime_points(job + val)
    assert point.get("gain_base") == pytest.approx(8.0)
    assert point.get("gain_novel") is None and point.get("gain_hm") is None and not point.has_novel


def test_spearman_against_a_hand_computation_with_ties():
    xs, ys = [1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 6.0, 7.0, 8.0, 7.0]
    assert ranks(ys) == [1.0, 2.0, 3.5, 5.0, 3.5]
    # rank deviations (-2, -1, 0, 1, 2) and (-2, -1, 0.5, 2, 0.5): sum of products 8, squares 10 and 9.5
    assert spearman(xs, ys) == pytest.approx(8 / math.sqrt(10 * 9.5))
    # without ties, the textbook 1 - 6 sum d^2 / (n (n^2 - 1)): d = (0, 0, -1, 1) -> 1 - 12/60
    assert spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 2, 3], [4, 4, 4]) is None


def test_two_worlds_are_kept_apart_even_when_their_rows_share_every_label():
    records = []
    for world in ("class_knowledge", "domain_shift"):
        for seed, shift in ((1, 0.0), (2, 2.0), (3, 5.0)):
            records += _job(world, seed, lead_shift=shift if world == "class_knowledge" else -shift)
    # the same dataset label in both worlds must not let one world's re-run replace the other's record
    for rec in records:
        rec["dataset"] = "Same"
    points = regime_points(records)
    assert [(p.world, p.seed) for p in points] == [
        (w, s) for w in ("class_knowledge", "domain_shift") for s in (1, 2, 3)
    ]
    assert [p.get("lead_base") for p in points if p.world == "class_knowledge"] == [10.0, 12.0, 15.0]
    assert [p.get("lead_base") for p in points if p.world == "domain_shift"] == [10.0, 8.0, 5.0]
    table = {(c.scope, c.y, c.x): c for c in correlations(points)}
    assert table[("class_knowledge", "gain_base", "lead_base")].rho == pytest.approx(1.0)
    assert table[("domain_shift", "gain_base", "lead_base")].n == 3
    assert table[(POOLED, "gain_base", "lead_base")].n == 6
    assert table[("class_knowledge", "gain_base", "cka")].rho is None  # CKA constant within the world


def test_a_dataset_outside_the_world_is_not_counted_in_it():
    rec = _job()[0]
    assert world_of(rec) == "class_knowledge"
    rec["config"]["dataset"] = {"name": "DTD", "folder": "dtd"}
    assert world_of(rec) == NO_WORLD


def test_a_missing_row_is_reported_not_a_crash():
    points = regime_points(_job(drop=("diag_target_oracle",)) + _job(seed=2))
    lacking, whole = points
    assert lacking.missing == ["TransMiter (target oracle) row"] and whole.missing == []
    assert lacking.get("headroom_base") is None and lacking.get("gain_base") == pytest.approx(8.0)
    md = study_markdown(points)
    assert "### Missing" in md and "- TransMiter (target oracle) row: 1 of 2 points" in md
    (no_guard,) = regime_points(_job(guard={"checked": False, "reason": "no validation split"}))
    assert no_guard.get("lead_val") is None
    assert "validation lead (guard not checked: no validation split)" in no_guard.missing
    (no_source,) = regime_points(_job(drop=("source_finetuned",)))
    assert "source fine-tuned row (skip_tuning)" in no_source.missing and no_source.get("lead_base") is None


# ------------------------------------------------------------------------------------ the command
def _write(records, folder):
    for i, rec in enumerate(records):
        (folder / str(i)).mkdir(parents=True)
        (folder / str(i) / "results.json").write_text(json.dumps(rec))
    return folder


def test_command_writes_points_correlations_tables_plot_and_readme_block(tmp_path, capsys):
    from transmiter.cli import main

    worlds = {}
    for world in ("class_knowledge", "domain_shift"):
        records = []
        for seed, shift in ((1, 0.0), (2, 3.0), (3, 6.0)):
            records += _job(world, seed, "base2novel", lead_shift=shift, cka=0.5 + 0.1 * seed)
            records += _job(world, seed, "base2base", lead_shift=shift)
        worlds[world] = _write(records, tmp_path / world)
    readme = tmp_path / "experiments" / "regimes" / "README.md"
    readme.parent.mkdir(parents=True)
    readme.write_text(
        "# Study\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\n## What it shows\nkept\n"
    )
    out = tmp_path / "out"
    args = [
        "regimes",
        *map(str, worlds.values()),
        "--study",
        "demo_full",
        "--out",
        str(out),
        "--readme",
        str(readme),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "(12 points)" in printed and "| class_knowledge | base2novel | 3 |" in printed
    rows = list(csv.DictReader(open(out / "points.csv")))
    assert len(rows) == 12 and {r["world"] for r in rows} == {"class_knowledge", "domain_shift"}
    first = next(
        r
        for r in rows
        if r["world"] == "class_knowledge" and r["setting"] == "base2novel" and r["seed"] == "1"
    )
    assert float(first["gain_base"]) == 8.0 and float(first["lead_val"]) == 9.5 and first["missing"] == ""
    assert first["gain_novel"] == "-4.0" and first["guard_fires"] == "False"
    b2b = next(r for r in rows if r["setting"] == "base2base")
    assert b2b["gain_novel"] == "" and b2b["gain_hm"] == ""
    corr = {(r["scope"], r["gain"], r["against"]): r for r in csv.DictReader(open(out / "correlations.csv"))}
    assert float(corr[("class_knowledge", "gain_base", "lead_base")]["spearman_rho"]) == pytest.approx(1.0)
    assert corr[(POOLED, "gain_base", "lead_base")]["n"] == "12"
    assert corr[(POOLED, "gain_novel", "cka")]["n"] == "6"  # novel: base-to-novel points only
    assert (out / "regimes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "regimes.md").read_text()
    for heading in (
        "## Per world and setting",
        "## Where the gain comes from",
        "## Per dataset",
        "## Rank correlations",
    ):
        assert heading in md
    assert "Missing" not in md
    # every seed's TransMiter is 4 points below the target's zero-shot on novel classes: 3 of 3 lost
    novel = " | ".join(f"{v:+.2f} ± 0.00" for v in (-3.0, 2.0, -1.0, 2.0, -4.0))  # lead, gap, swap, rot, gain
    assert f"| class_knowledge | base2novel | Novel | {novel} | 3/3 |" in md
    # base-to-base scores all classes: its one accuracy is labelled so, not "Base"
    assert "| class_knowledge | base2base | Accuracy | +13.00 ± 3.00 |" in md  # lead 10 + 0, 3, 6
    text = readme.read_text()
    assert "\nold\n" not in text and "## What it shows\nkept" in text and "../../out/regimes.png" in text
    assert "| domain_shift | base2base | 3 |" in text
    assert main(args) == 0 and readme.read_text() == text  # same records: the README does not change


def test_bad_inputs_name_the_folder_and_the_fix_and_write_nothing(tmp_path, capsys):
    from transmiter.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    good = _write(_job(), tmp_path / "good")
    out = tmp_path / "out"
    assert main(["regimes", str(good), str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"no results records under {empty}" in err and "make reproduce-demo" in err
    assert main(["regimes", str(good), "--world", "no_such_world", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--world no_such_world" in err and "worlds found: class_knowledge" in err
    assert main(["regimes", str(good), "--study", "other", "--out", str(out)]) == 2
    assert "of study 'other'" in capsys.readouterr().err
    no_transfer = _write([r for r in _job() if r["extra"]["role"] != "pair"], tmp_path / "no_transfer")
    assert main(["regimes", str(no_transfer), "--out", str(out)]) == 2
    assert "no transfer study jobs" in capsys.readouterr().err
    assert main(["regimes", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    broken = tmp_path / "README.md"
    broken.write_text("# Study\n\n<!-- results:end -->\nkept\n<!-- results:start -->\n")
    assert main(["regimes", str(good), "--out", str(out), "--readme", str(broken)]) == 2
    assert "malformed results block" in capsys.readouterr().err
    assert broken.read_text() == "# Study\n\n<!-- results:end -->\nkept\n<!-- results:start -->\n"
    assert not out.exists()


def test_an_unreadable_record_is_listed_and_the_rest_reported(tmp_path, capsys):
    from transmiter.cli import main

    folder = _write(_job(), tmp_path / "runs")
    (folder / "torn").mkdir()
    (folder / "torn" / "results.json").write_text('{"row": "TransMiter')
    assert main(["regimes", str(folder), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "(1 points)" in printed and "left out 1 unusable record(s)" in printed
    assert str(folder / "torn" / "results.json") in printed


@pytest.mark.parametrize(
    ("target", "reads"),
    [("regimes", "outputs/demo/"), ("regimes-readme", "outputs/demo_full/")],
)
def test_make_targets_read_both_worlds_and_only_the_readme_target_writes_the_tracked_readme(target, reads):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["make", "-n", "-C", str(repo), target], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    command = next(line for line in proc.stdout.splitlines() if "transmiter regimes" in line)
    for world in ("domain_shift", "class_knowledge"):
        assert f"{reads}{world}" in command, command
    assert "--out outputs/regimes" in command
    has_readme = "--readme experiments/regimes/README.md" in command
    assert has_readme == (target == "regimes-readme"), command
