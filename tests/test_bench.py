"""The benchmark suite (`python -m bench`): records are well formed, ratios finite, reports written.

No timing is asserted anywhere: these are measurements, and the machine may be loaded.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench import BenchOptions, BenchRecord, Goal, resolve, run_suite
from bench.__main__ import main
from bench.core import STATUSES, loglog_slope
from bench.report import fmt, markdown

CHEAP = ["transfer", "flops", "cache", "scaling"]  # benchmarks 1, 2, 5, 7


def test_quick_suite_of_the_cheap_benchmarks(tmp_path):
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = ["--quick", "--tiny", "--only", *CHEAP, "--write", str(md), "--json", str(js)]
    argv += ["--workdir", str(tmp_path / "work")]
    threads = torch.get_num_threads()
    try:  # one thread: no OpenMP contention tails when the test machine is shared (nothing is timed-asserted)
        code = main([*argv, "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0  # whatever the verdicts
    payload = json.loads(js.read_text())
    records = payload["records"]
    assert {r["benchmark"] for r in records} == set(CHEAP)
    names = {r["name"] for r in records}
    expected = {
        "transfer[tiny]",
        "transfer[synth-strong]",
        "flops[tm-tiny-ViT]",
        "cache[tiny]",
        "cache[synth-strong]",
    }
    assert expected | {"scaling[fit]", "scaling[svd]"} <= names
    for r in records:
        assert r["status"] in STATUSES and r["status"] != "error", (r["name"], r["notes"])
        assert r["title"] and r["ratio_label"] and r["figures"]
        assert isinstance(r["ratio"], float) and math.isfinite(r["ratio"]), r["name"]
        assert r["seconds"] >= 0 and len(r["load"]) == 2
    by_name = {r["name"]: r for r in records}
    for case in ("cache[tiny]", "cache[synth-strong]"):
        assert by_name[case]["figures"]["image / text tower calls, second run"] == "0 / 0"
        image_calls, text_calls = map(
            int, by_name[case]["figures"]["image / text tower calls, first run"].split(" / ")
        )
        assert image_calls > 0 and text_calls > 0  # the counters see the encoders run
    assert by_name["cache[tiny]"]["goal"] is None and by_name["cache[synth-strong]"]["goal"] is not None
    assert by_name["flops[tm-tiny-ViT]"]["figures"]["CPU-built model gives the same count"] is True
    text = md.read_text()
    for needle in ("## Machine", "cpu count", "torch", "load average", "## Summary", "transfer[tiny]"):
        assert needle in text
    assert payload["machine"]["cpu count"] >= 1
    assert by_name["transfer[tiny]"]["goal"] is None  # plumbing case; the goal is checked on synth-strong


def test_rewriting_the_report_keeps_the_hand_written_reading(tmp_path):
    from bench.report import READING_END, READING_START, write_markdown

    record = BenchRecord(
        name="x[a]", benchmark="x", title="X", ratio=1.0, ratio_label="a / b", figures={"n": 1}
    )
    path = tmp_path / "README.md"
    write_markdown(path, [record], {"cpu count": 2}, "python -m bench")
    assert READING_START not in path.read_text()
    reading = f"{READING_START}\n## Reading this run\n\n* the ratio moved with the load\n{READING_END}"
    text = path.read_text().replace("## Summary", reading + "\n\n## Summary")
    path.write_text(text)
    write_markdown(path, [record], {"cpu count": 2}, "python -m bench")
    again = path.read_text()
    assert again.count(READING_START) == 1 and "* the ratio moved with the load" in again
    assert again.index(READING_END) < again.index("## Summary")


def test_flops_of_the_real_architectures_on_the_meta_device():
    from bench import flops

    records = flops.run(BenchOptions(), archs=("ViT-B-16", "ViT-L-14"))
    b16, l14 = records
    assert b16.figures["encoder FLOPs / image"] < l14.figures["encoder FLOPs / image"]
    assert l14.goal is not None and b16.goal is None
    assert 0 < l14.ratio < b16.ratio  # percent of the encoder's FLOPs


def test_demo_benchmark_runs_a_command_cold_then_warm(tmp_path):
    from bench import demo

    (rec,) = demo.run(BenchOptions(demo_cmd='test -n "$TRANSMITER_CACHE"', workdir=tmp_path))
    assert rec.status == "n/a" and math.isfinite(rec.ratio)
    assert set(rec.figures) >= {"cold (s)", "warm (s)"}
    (bad,) = demo.run(BenchOptions(demo_cmd="exit 3", workdir=tmp_path))
    assert bad.status == "error" and bad.figures["cold exit code"] == 3
    assert demo.skipped_by_default(BenchOptions()).status == "skipped"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_benchmark_says_skipped_without_a_gpu():
    (rec,) = run_suite(["gpu"], BenchOptions())
    assert rec.status == "skipped" and len(rec.notes) == 1
    assert rec.notes[0].startswith("gpu-check skipped: no CUDA device")


def test_selection_and_defaults():
    assert resolve(None) == ["transfer", "flops", "skip", "framework", "cache", "scaling", "gpu"]
    assert resolve(["cache,transfer", "inference"]) == ["transfer", "flops", "cache"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        resolve(["nope"])
    assert main(["--only", "nope"]) == 2


def test_records_goals_and_rendering():
    rec = BenchRecord(
        name="x[a|b]",
        benchmark="x",
        title="X",
        ratio=1.2,
        ratio_label="a / b",
        goal=Goal("<=", 1.1),
        figures={"n": 3, "  part (s)": 0.5, "flops": 35_126_906_880, "ok": True},
    )
    assert rec.status == "fail" and Goal(">=", 0.9).met(0.95) and Goal("abs<=", 0.25).met(-0.1)
    assert (
        BenchRecord(name="y", benchmark="y", title="Y", ratio=float("nan"), goal=Goal("<=", 1)).status
        == "n/a"
    )
    assert fmt(35_126_906_880) == "35.13 G" and fmt(True) == "yes" and fmt(float("inf")) == "n/a"
    text = markdown([rec], {"cpu count": 2}, "python -m bench")
    assert "x[a\\|b]" in text and "↳ part (s)" in text and "**fail**" in text
    assert loglog_slope([1, 10, 100], [2, 200, 20000]) == pytest.approx(2.0)
    assert to_json_roundtrip(rec)["status"] == "fail"


def to_json_roundtrip(rec: BenchRecord) -> dict:
    return json.loads(json.dumps(rec.to_dict(), default=str))
