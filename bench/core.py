"""Records, goals, timing helpers and machine information shared by every benchmark of the suite.

    rec = BenchRecord(name="transfer[tiny]", benchmark="transfer", title="Transfer overhead",
                      ratio=1.04, ratio_label="whole transfer / target feature pass",
                      goal=Goal("<=", 1.10))
    rec.figures["feature pass (s)"] = 2.31
    rec.status                       # "pass" (judged from ratio and goal), "fail", "n/a", "skipped", "error"

A benchmark function takes :class:`BenchOptions` and returns a list of records. Nothing here asserts a
timing: a missed goal is a "fail" row in the report, never an exception.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("pass", "fail", "n/a", "skipped", "error")


@dataclass(frozen=True)
class Goal:
    """`ratio <op> value`, e.g. Goal("<=", 1.10); `text` overrides the rendering (units, %)."""

    op: str
    value: float
    text: str | None = None

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">=", "abs<="):
            raise ValueError(f"goal operator must be '<=', '>=' or 'abs<=', got {self.op!r}")

    def met(self, ratio: float) -> bool:
        if self.op == "<=":
            return ratio <= self.value
        if self.op == ">=":
            return ratio >= self.value
        return abs(ratio) <= self.value

    def __str__(self) -> str:
        if self.text:
            return self.text
        sym = {"<=": "≤", ">=": "≥", "abs<=": "|x| ≤"}[self.op]
        return f"{sym} {self.value:g}"


@dataclass
class BenchRecord:
    """One row of the report: what was measured, the ratio, the goal and the verdict."""

    name: str
    benchmark: str
    title: str
    ratio: float | None = None
    ratio_label: str = ""
    goal: Goal | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    forced_status: str | None = None  # "skipped" / "error" / "fail" (e.g. the encoder ran again)
    seconds: float = 0.0  # wall time of the benchmark that produced the record
    load: tuple[float, float] | None = None  # 1-min load average before / after

    @property
    def status(self) -> str:
        if self.forced_status is not None:
            return self.forced_status
        if self.goal is None or self.ratio is None or not math.isfinite(self.ratio):
            return "n/a"
        return "pass" if self.goal.met(self.ratio) else "fail"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["goal"] = None if self.goal is None else str(self.goal)
        out["status"] = self.status
        out.pop("forced_status")
        return out


def skipped(name: str, benchmark: str, title: str, why: str) -> BenchRecord:
    return BenchRecord(name=name, benchmark=benchmark, title=title, notes=[why], forced_status="skipped")


def failed(name: str, benchmark: str, title: str, err: BaseException) -> BenchRecord:
    return BenchRecord(
        name=name,
        benchmark=benchmark,
        title=title,
        notes=[f"error: {type(err).__name__}: {err}"],
        forced_status="error",
    )


@dataclass
class BenchOptions:
    """What the command line chose; every benchmark reads its sizes from here."""

    quick: bool = False
    tiny: bool = False  # tiny architectures only (no ViT-B-16 / ViT-L-14 runs)
    demo_cmd: str = "make demo"
    demo_timeout_s: float = 3600.0
    seed: int = 0
    workdir: Path | None = None  # parent of the temporary folders (default: the system temp dir)
    explicit: frozenset[str] = frozenset()  # benchmarks named with --only: their heavy cases run on CPU too

    def tempdir(self, prefix: str) -> tempfile.TemporaryDirectory:
        if self.workdir is not None:
            Path(self.workdir).mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(
            prefix=f"transmiter-bench-{prefix}-", dir=None if self.workdir is None else str(self.workdir)
        )


# ---------------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------------
class Phases:
    """Named wall-clock phases: `with phases("statistics"): ...`; `phases.total` sums them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def timed(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> tuple[float, Any]:
    """(seconds, result) of one call; `sync` (e.g. torch.cuda.synchronize) runs before both clocks."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    result = fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def median_phases(runs: list[Phases]) -> dict[str, float]:
    names = list(dict.fromkeys(n for r in runs for n in r.seconds))
    return {n: median([r.seconds.get(n, 0.0) for r in runs]) for n in names}


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x): the growth exponent (1 = linear)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    return sxy / sxx if sxx > 0 else float("nan")


def load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return float("nan")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence library warnings and log lines (open_clip's 'No pretrained weights', Lightning tips)."""
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


# ---------------------------------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    """CPU count, threads, library versions, GPU and the load at the time of the call."""
    import torch

    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host cpu": _cpu_model(),
        "cpu count": os.cpu_count(),
        "usable cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "memory (GiB)": None if (m := _memory_gib()) is None else round(m, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for lib in ("lightning", "open_clip"):
        try:
            mod = __import__(lib)
            info[lib] = getattr(mod, "__version__", "?")
        except ImportError:
            info[lib] = "not installed"
    if torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    else:
        info["gpu"] = "none"
    try:
        info["load average (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        info["load average (1/5/15 min)"] = "unavailable"
    return info
