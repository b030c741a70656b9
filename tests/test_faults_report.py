"""`transmiter report` on bad records (issue 19, item 7): a results.json holding a list, invalid JSON, a
record without metrics or from another schema is left out and listed with the reason; the others are
reported. No AttributeError, no matplotlib "Number of rows must be a positive integer"."""

from __future__ import annotations

import json
from pathlib import Path

from transmiter.reporting.report import main as report_main


def _record(dataset: str, row: str, base: float, novel: float) -> dict:
    hm = 2 * base * novel / (base + novel)
    return {
        "schema": 1,
        "setting": "base2novel",
        "dataset": dataset,
        "row": row,
        "seed": 1,
        "metrics": {"base": base, "novel": novel, "hm": hm},
        "protocol": "coop-separate",
    }


def _write(folder: Path, name: str, content: str) -> Path:
    path = folder / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    return path


BAD = {
    "list": ("[1, 2]", "holds a JSON list, not a results record"),
    "truncated": ('{"schema": 1, "row": "FT', "is not valid JSON"),
    "empty-metrics": (
        json.dumps({**_record("Pets", "Skip Tuning RN50", 1, 1), "metrics": {}}),
        "has no metrics (the row did not run)",
    ),
    "old-schema": (json.dumps({**_record("Pets", "FT", 1, 1), "schema": 0}), "schema 0, not 1"),
    "no-row": (json.dumps({k: v for k, v in _record("Pets", "FT", 1, 1).items() if k != "row"}), "lacks row"),
}


def test_bad_records_are_listed_and_the_rest_reported(tmp_path, capsys):
    runs = tmp_path / "runs"
    _write(runs, "good", json.dumps(_record("Pets", "Zero-shot ViT-B-16", 70.0, 60.0)))
    bad = {name: _write(runs, name, content) for name, (content, _) in BAD.items()}
    assert report_main([str(runs), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "Zero-shot ViT-B-16" in out and "wrote " in out and "from 1 records" in out
    assert f"left out {len(BAD)} unusable record(s)" in out
    for name, (_, why) in BAD.items():
        assert f"{bad[name]}: {why}" in out, (name, out)
    assert (tmp_path / "report" / "results.png").is_file()


def test_only_unusable_records_say_so_without_a_plotting_error(tmp_path, capsys):
    runs = tmp_path / "runs"
    _write(runs, "a", json.dumps({**_record("Pets", "FT", 1, 1), "metrics": {}}))
    _write(runs, "b", "[]")
    assert report_main([str(runs), "--out", str(tmp_path / "report")]) == 1
    out = capsys.readouterr().out
    assert "no results records found" in out and "has no metrics" in out and "holds a JSON list" in out
    assert "Number of rows" not in out and not (tmp_path / "report").exists()
