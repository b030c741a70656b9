"""The benchmark registry and the loop that runs a selection of it.

    records = run_suite(["transfer", "cache"], BenchOptions(quick=True))

Every benchmark returns records; one that raises becomes an "error" record and the suite goes on. The
wall time and the 1-min load average before and after each benchmark are attached to its records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.core import BenchOptions, BenchRecord, failed, load_average


@dataclass(frozen=True)
class Benchmark:
    name: str
    number: int
    title: str
    run: Callable[[BenchOptions], list[BenchRecord]]
    default: bool = True  # run without --only
    skipped: Callable[[BenchOptions], BenchRecord] | None = None  # the row shown when not run by default


def _lazy(module: str, attr: str = "run") -> Callable:
    def call(opts: BenchOptions):
        import importlib

        return getattr(importlib.import_module(f"bench.{module}"), attr)(opts)

    return call


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("transfer", 1, "Transfer overhead", _lazy("transfer")),
        Benchmark("flops", 2, "Inference overhead", _lazy("flops")),
        Benchmark("skip", 3, "Skip Tuning vs FT", _lazy("skip")),
        Benchmark("framework", 4, "Framework overhead", _lazy("framework")),
        Benchmark("cache", 5, "Cache effectiveness", _lazy("cache")),
        Benchmark(
            "demo", 6, "End to end", _lazy("demo"), default=False, skipped=_lazy("demo", "skipped_by_default")
        ),
        Benchmark("scaling", 7, "Scaling", _lazy("scaling")),
        Benchmark("gpu", 8, "GPU", _lazy("gpu")),
        Benchmark(
            "threads",
            9,
            "CPU thread contention",
            _lazy("threads"),
            default=False,
            skipped=_lazy("threads", "skipped_by_default"),
        ),
    )
}
ALIASES = {"inference": "flops", "e2e": "demo", "end-to-end": "demo", "ft": "skip", "omp": "threads"}


def resolve(names: Sequence[str] | None) -> list[str]:
    """Benchmark names in suite order; None = the default selection. Unknown names raise ValueError."""
    if not names:
        return [n for n, b in BENCHMARKS.items() if b.default]
    wanted = []
    for raw in names:
        for part in str(raw).split(","):
            key = ALIASES.get(part.strip().lower(), part.strip().lower())
            if not key:
                continue
            if key not in BENCHMARKS:
                raise ValueError(f"unknown benchmark {part!r}; choose from {', '.join(BENCHMARKS)}")
            wanted.append(key)
    return [n for n in BENCHMARKS if n in wanted]


def run_suite(
    names: Sequence[str] | None, opts: BenchOptions, progress: Callable[[str], None] | None = None
) -> list[BenchRecord]:
    selected = resolve(names)
    records: list[BenchRecord] = []
    for name, bench in BENCHMARKS.items():
        if name not in selected:
            if not names and bench.skipped is not None:  # say so in the table
                records.append(bench.skipped(opts))
            continue
        if progress is not None:
            progress(f"[{bench.number}/{len(BENCHMARKS)}] {bench.title} ...")
        before, start = load_average(), time.perf_counter()
        try:
            produced = bench.run(opts)
        except Exception as err:  # a benchmark that fails outside its own guards
            produced = [failed(name, name, bench.title, err)]
        seconds, after = time.perf_counter() - start, load_average()
        for record in produced:
            record.seconds = seconds
            record.load = (before, after)
        records.extend(produced)
        if progress is not None:
            progress(f"      done in {seconds:.1f} s (load {before:.2f} -> {after:.2f})")
    return records
