"""Benchmark 7, scaling with the number N of cached logit rows (K = 1024, synthetic).

* fitting: `trainer.fit(AdapterFitModule)` for one epoch (global batch 128) at each N;
* transfer: `transfer_adapter_with_details` (streamed statistics + SVD + rotation) plus writing the
  artifact, at each N; and, timed apart, the statistics pass alone (`accumulate_cross_covariance`) and
  the SVD alone (`regularized_procrustes` on the d x d statistic).

Each series gets its growth exponent: the least-squares slope of log(time) on log(N). Fitting should be
~1 (linear); the statistics ~1; the SVD ~0 (it works on a d x d matrix whatever N is), which is what makes
the transfer's slope < 1 while the fixed part dominates. Goals: fitting and transfer at most linear
(slope ≤ 1.15, noise allowance), SVD flat (|slope| ≤ 0.25). On a CPU the SVD series is timed single-threaded:
with the default threads, a CPU shared with other processes gives that one LAPACK call tails of 10-100x
(measured separately at the largest N).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from bench.core import BenchOptions, BenchRecord, Goal, failed, loglog_slope

TITLE = "Scaling with N"
LINEAR = Goal("<=", 1.15, text="≤ 1.15 (≈ linear)")
FLAT = Goal("abs<=", 0.25, text="|slope| ≤ 0.25 (flat)")
K = 1024


def run(opts: BenchOptions) -> list[BenchRecord]:
    cuda = torch.cuda.is_available()
    if opts.quick:
        fit_ns, transfer_ns = [128, 256], [1_000, 3_000, 9_000]
    elif cuda:
        fit_ns, transfer_ns = [1_000, 10_000, 100_000], [1_000, 10_000, 100_000]
    else:  # a CPU step costs ~1-2 s (orthogonal map): keep the fitting series short
        fit_ns, transfer_ns = [128, 256, 512], [1_000, 10_000, 100_000]
    records = []
    try:
        records.append(_fitting(opts, fit_ns, "cuda" if cuda else "cpu"))
    except Exception as err:
        records.append(failed("scaling[fit]", "scaling", TITLE, err))
    try:
        with opts.tempdir("scaling") as tmp:
            records.extend(_transfer(opts, transfer_ns, Path(tmp)))
    except Exception as err:
        records.append(failed("scaling[transfer]", "scaling", TITLE, err))
    return records


def _fitting(opts: BenchOptions, ns: list[int], device: str) -> BenchRecord:
    from bench.framework import fit_lightning, synthetic_logits

    inputs, teacher = synthetic_logits(max(ns), K, seed=opts.seed)
    times = [fit_lightning(inputs[:n], teacher[:n], device=device, seed=opts.seed) for n in ns]
    fig = {f"N = {n:,} (s)": t for n, t in zip(ns, times)}
    fig["rows/s at the largest N"] = ns[-1] / times[-1]
    return BenchRecord(
        name="scaling[fit]",
        benchmark="scaling",
        title=TITLE,
        ratio=loglog_slope(ns, times),
        ratio_label="growth exponent d log t / d log N",
        goal=LINEAR,
        figures=fig,
        notes=[
            f"AdapterFitModule under the project's {device} Trainer, 1 epoch, batch 128, K = {K}; "
            "the fixed Trainer cost pulls the slope below 1 at small N."
        ],
    )


def _transfer(opts: BenchOptions, ns: list[int], tmp: Path) -> list[BenchRecord]:
    from transmiter.transfer.adapter import LogitAdapter
    from transmiter.transfer.artifact import save_adapter_artifact
    from transmiter.transfer.procrustes import accumulate_cross_covariance
    from transmiter.transfer.transfer import transfer_adapter_with_details

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    adapter = LogitAdapter(K, seed=opts.seed, projection="frozen").to(device)
    gen = torch.Generator().manual_seed(opts.seed)
    source = 20.0 + 3.0 * torch.randn(max(ns), K, generator=gen)
    target = source + torch.randn(max(ns), K, generator=gen)
    names = [f"class_{i}" for i in range(K)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    whole, stats, svd = [], [], []
    for n in ns:
        s, t = source[:n], target[:n]
        sync()
        start = time.perf_counter()
        moved = transfer_adapter_with_details(adapter, s, t, lam=500.0)
        save_adapter_artifact(
            tmp / f"n{n}" / "adapter.safetensors",
            moved.adapter,
            stage="transferred",
            source_model="bench-source",
            target_model="bench-target",
            dataset="bench",
            classnames=names[:100],
            aux_names=names[100:],
            data_used=f"{n} synthetic rows",
            lam=500.0,
            num_samples=n,
        )
        sync()
        whole.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.inference_mode():
            cc = accumulate_cross_covariance(
                ((s[i : i + 4096].to(device), t[i : i + 4096].to(device)) for i in range(0, n, 4096)),
                projection=adapter.W,
                device=device,
            )
        sync()
        stats.append(time.perf_counter() - start)
        # the series runs single-threaded on a CPU: with several threads a shared CPU gives this one
        # LAPACK call a tail of up to ~100x (OpenMP barriers), which would drown the N-dependence
        svd.append(min(_svd_seconds(cc, sync, threads=1 if device.type == "cpu" else None) for _ in range(2)))
    svd_fig = {}
    if device.type == "cpu" and not opts.quick:
        default = [_svd_seconds(cc, sync) for _ in range(2)]
        svd_fig[f"largest N, the run's {torch.get_num_threads()} thread(s): best / worst of 2 (s)"] = (
            f"{min(default):.3f} / {max(default):.3f}"
        )
    where = f"{device.type}, K = {K}, lam = 500, synthetic logit pairs; N = {', '.join(f'{n:,}' for n in ns)}"

    def series(values: list[float]) -> dict:
        return {f"N = {n:,} (s)": v for n, v in zip(ns, values)}

    return [
        BenchRecord(
            name="scaling[transfer]",
            benchmark="scaling",
            title=TITLE,
            ratio=loglog_slope(ns, whole),
            ratio_label="growth exponent d log t / d log N",
            goal=LINEAR,
            figures={**series(whole), "fixed part at the smallest N (SVD share)": _share(svd[0], whole[0])},
            notes=[f"transfer_adapter_with_details + save_adapter_artifact; {where}."],
        ),
        BenchRecord(
            name="scaling[statistics]",
            benchmark="scaling",
            title=TITLE,
            ratio=loglog_slope(ns, stats),
            ratio_label="growth exponent d log t / d log N",
            goal=LINEAR,
            figures=series(stats),
            notes=[f"accumulate_cross_covariance alone (float64, chunks of 4096 rows); {where}."],
        ),
        BenchRecord(
            name="scaling[svd]",
            benchmark="scaling",
            title=TITLE,
            ratio=loglog_slope(ns, svd),
            ratio_label="growth exponent d log t / d log N",
            goal=FLAT,
            figures={**series(svd), **svd_fig},
            notes=[
                f"regularized_procrustes alone on the {K} x {K} statistic, best of 2, single-threaded on a "
                f"CPU (the figure at the run's thread setting shows any contention tail); {where}."
            ],
        ),
    ]


def _svd_seconds(cc, sync, threads: int | None = None) -> float:
    from transmiter.transfer.procrustes import regularized_procrustes

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            regularized_procrustes(cc, lam=500.0)
        sync()
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def _share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f} %" if whole > 0 and math.isfinite(whole) else "n/a"
