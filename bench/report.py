"""Rendering the records: a rich table for the terminal, Markdown for `--write`, JSON for `--json`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.core import BenchRecord

STYLE = {"pass": "bold green", "fail": "bold red", "n/a": "dim", "skipped": "yellow", "error": "bold magenta"}
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"))
WIDTH = 160  # the table is wide; rich would fall back to 80 columns when stdout is not a terminal


def fmt(value: Any) -> str:
    """A figure as text: 4 significant digits, SI prefixes for big counts, yes/no for booleans."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        for scale, prefix in _SI:
            if abs(value) >= scale:
                return f"{value / scale:.4g} {prefix}"
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if value is None:
        return "—"
    return str(value)


def fmt_ratio(record: BenchRecord) -> str:
    r = record.ratio
    if r is None or not isinstance(r, float | int) or not math.isfinite(r):
        return "—"
    return f"{r:.4g}" if abs(r) >= 0.01 else f"{r:.3e}"


def fmt_load(record: BenchRecord) -> str:
    if not record.load:
        return "—"
    return f"{record.load[0]:.2f} → {record.load[1]:.2f}"


def summary_counts(records: Sequence[BenchRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r.status] = out.get(r.status, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------------
# terminal
# ---------------------------------------------------------------------------------------------------
def print_rich(records: Sequence[BenchRecord], machine: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=WIDTH)
    head = Table(title="Machine", show_header=False, box=None)
    for key, value in machine.items():
        head.add_row(f"[dim]{escape(key)}[/dim]", escape(fmt(value)))
    console.print(head)
    table = Table(title="transmiter benchmarks: side-by-side ratios", show_lines=True)
    table.add_column("Benchmark", style="bold", max_width=30)
    table.add_column("Ratio", justify="right", max_width=18)
    table.add_column("Goal", max_width=12)
    table.add_column("Result", no_wrap=True)
    table.add_column("Measured (absolute figures)", min_width=70)
    table.add_column("s / load", justify="right", no_wrap=True)
    for r in records:
        measured = "\n".join(f"{k}: {fmt(v)}" for k, v in r.figures.items())
        if r.status in ("skipped", "error"):
            measured = "\n".join([*r.notes, measured]).strip()
        table.add_row(
            f"{escape(r.name)}\n[dim]{escape(r.title)}[/dim]",
            f"{fmt_ratio(r)}\n[dim]{escape(r.ratio_label)}[/dim]" if r.ratio_label else fmt_ratio(r),
            escape(str(r.goal)) if r.goal else "—",
            f"[{STYLE.get(r.status, '')}]{r.status}[/]",
            escape(measured),
            f"{r.seconds:.1f}\n{fmt_load(r)}",
        )
    console.print(table)
    counts = summary_counts(records)
    console.print("  ".join(f"[{STYLE.get(k, '')}]{k}: {v}[/]" for k, v in counts.items()))


# ---------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------
def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def _indent(key: str) -> str:
    """Leading spaces of a figure name (sub-parts) as arrows, since Markdown drops them."""
    depth = (len(key) - len(key.lstrip(" "))) // 2
    return "↳ " * depth


READING_START, READING_END = "<!-- reading:start -->", "<!-- reading:end -->"
GPU_START, GPU_END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"


def kept_block(previous: str, start_marker: str, end_marker: str) -> str:
    """The block of an earlier report between two markers (markers included), or "" when there is none."""
    start, end = previous.find(start_marker), previous.find(end_marker)
    if start < 0 or end < start:
        return ""
    return previous[start : end + len(end_marker)]


def kept_reading(previous: str) -> str:
    """The hand-written "Reading this run" block of an earlier report (between the reading markers), so
    that regenerating the file keeps the analysis; empty when there is none."""
    return kept_block(previous, READING_START, READING_END)


def markdown(
    records: Sequence[BenchRecord], machine: dict[str, Any], command: str, reading: str = "", gpu: str = ""
) -> str:
    counts = summary_counts(records)
    lines = [
        "# Benchmarks: side-by-side ratios",
        "",
        "Question: what does each part of transmiter cost next to the thing it should be cheap against, and "
        "does it meet its goal? Every benchmark measures both sides in the same run, on the same machine, "
        "and reports the ratio with the absolute figures. A missed goal is reported, not raised. Timings on "
        "a shared machine move with its load: the 1-min load average before and after each benchmark is "
        "given next to its figures.",
        "",
        "Command (this file is generated by it; `make bench` runs the same):",
        "",
        "```bash",
        command,
        "```",
        "",
        "Options: `--only NAME ...` (transfer, flops, skip, framework, cache, demo, scaling, gpu, threads), `--quick` "
        "(smaller sizes), `--tiny` (tiny architectures only), `--threads N` (torch threads; `make bench` uses 1, "
        "`BENCH_THREADS=0` keeps torch's choice), `--demo-cmd CMD`, `--json PATH`. demo and threads run only "
        "when named; the ViT-B-16 Skip Tuning vs FT pair runs on a CPU only with `--only skip`.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {_cell(k)} | {_cell(fmt(v))} |" for k, v in machine.items()],
        "",
        *([reading, ""] if reading else []),
        *([gpu, ""] if gpu else []),
        "## Summary",
        "",
        "Result counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".",
        "",
        "| benchmark | ratio | ratio is | goal | result | time (s) | load 1-min before → after |",
        "|---|---:|---|---|---|---:|---|",
    ]
    for r in records:
        lines.append(
            f"| {_cell(r.name)} | {fmt_ratio(r)} | {_cell(r.ratio_label or '—')} | {_cell(r.goal or '—')} | "
            f"**{r.status}** | {r.seconds:.1f} | {fmt_load(r)} |"
        )
    lines += ["", "## Details", ""]
    for r in records:
        lines += [f"### {r.name}: {r.title}", ""]
        lines.append(
            f"Ratio ({r.ratio_label or 'none'}): **{fmt_ratio(r)}**; goal: {r.goal or '—'}; "
            f"result: **{r.status}**; {r.seconds:.1f} s, load {fmt_load(r)}."
        )
        lines.append("")
        if r.figures:
            lines += ["| figure | value |", "|---|---:|"]
            lines += [f"| {_indent(k)}{_cell(k.strip())} | {_cell(fmt(v))} |" for k, v in r.figures.items()]
            lines.append("")
        lines += [f"- {_cell(n)}" for n in r.notes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(
    path: str | Path, records: Sequence[BenchRecord], machine: dict[str, Any], command: str
) -> Path:
    """Write the report; a reading block (see `kept_reading`) already in the file is carried over verbatim
    (its author dates it and says which run it reads), and so is the GPU section `make gpu-check` writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.read_text() if path.exists() else ""
    reading, gpu = kept_reading(previous), kept_block(previous, GPU_START, GPU_END)
    path.write_text(markdown(records, machine, command, reading, gpu))
    return path


def write_json(path: str | Path, records: Sequence[BenchRecord], machine: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(obj):
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        return obj

    payload = {"machine": machine, "records": [clean(r.to_dict()) for r in records]}
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path
