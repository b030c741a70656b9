"""Benchmark 6, end to end: a command (default `make demo`) cold, then warm, wall time side by side.

Both runs get the same fresh cache folder through `TRANSMITER_CACHE` (feature caches, text heads, stage
outputs, pretrained synthetic models): the first run starts from an empty cache, the second finds
everything the first wrote. Skipped unless asked for (`--only demo`): it takes as long as the demo (the
Makefile says ~10 min cold, ~2 min warm on 2 cores), and `make demo` writes `outputs/demo` and
`experiments/demo/README.md` in the checkout on both runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

from bench.core import BenchOptions, BenchRecord, failed, skipped

TITLE = "End to end (demo)"


def skipped_by_default(opts: BenchOptions) -> BenchRecord:
    return skipped(
        "demo",
        "demo",
        TITLE,
        f"skipped by default (runs `{opts.demo_cmd}` twice); "
        "run it with `python -m bench --only demo [--demo-cmd CMD]`",
    )


def run(opts: BenchOptions) -> list[BenchRecord]:
    try:
        with opts.tempdir("demo-cache") as tmp:
            return [_run(opts, Path(tmp))]
    except Exception as err:
        return [failed("demo", "demo", TITLE, err)]


def _run(opts: BenchOptions, cache: Path) -> BenchRecord:
    env = dict(os.environ, TRANSMITER_CACHE=str(cache), TRANSMITER_PROGRESS="0")
    results = []
    for label in ("cold", "warm"):
        start = time.perf_counter()
        proc = subprocess.run(
            opts.demo_cmd,
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=opts.demo_timeout_s,
            check=False,
        )
        results.append((label, time.perf_counter() - start, proc))
        if proc.returncode != 0:
            break
    fig = {f"{label} (s)": seconds for label, seconds, _ in results}
    fig.update({f"{label} exit code": proc.returncode for label, _, proc in results})
    notes = [f"command: `{opts.demo_cmd}` (shell), TRANSMITER_CACHE={shlex.quote(str(cache))} for both runs."]
    bad = [(label, proc) for label, _, proc in results if proc.returncode != 0]
    if bad:
        label, proc = bad[0]
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        notes.append(f"the {label} run failed (exit {proc.returncode}): {' | '.join(tail)}")
        return BenchRecord(
            name="demo", benchmark="demo", title=TITLE, figures=fig, notes=notes, forced_status="error"
        )
    cold, warm = results[0][1], results[1][1]
    notes.append("no goal is set for this ratio; it shows what the caches save on a whole study.")
    return BenchRecord(
        name="demo",
        benchmark="demo",
        title=TITLE,
        ratio=warm / cold,
        ratio_label="warm / cold wall time",
        figures=fig,
        notes=notes,
    )
