"""The benchmark suite: side-by-side measurements reported as ratios with their absolute figures.

    make bench                                              # everything but the demo; writes experiments/bench/README.md
    python -m bench --only transfer cache --quick
    python -m bench --only demo --demo-cmd "make demo"

    from bench import BenchOptions, run_suite
    records = run_suite(["flops"], BenchOptions(tiny=True))   # [BenchRecord(name="flops[tm-tiny-ViT]", ...)]

Benchmarks (module, record names):
 1. transfer   whole transfer ÷ target feature pass              transfer[tiny|synth-strong|ViT-B-16]
 2. flops      adapter ÷ image-encoder FLOPs per image           flops[<arch>]
 3. skip       Skip Tuning ÷ FT time and peak memory per epoch   skip_vs_ft_time[...], skip_vs_ft_memory[...]
 4. framework  Lightning ÷ plain-loop fitting throughput         framework[adapter fit]
 5. cache      second ÷ first zero-shot evaluation               cache[tiny|synth-strong|ViT-B-16]
 6. demo       warm ÷ cold `make demo` (only with --only demo)   demo
 7. scaling    growth exponents of fitting / transfer / SVD in N scaling[fit|transfer|statistics|svd]
 8. gpu        bf16 feature-pass MFU, fitting at 1.28M rows      gpu_feature_pass[...], gpu_fit[...]
 9. threads    OpenMP wait policy PASSIVE vs default, CPU steps  threads[omp wait policy]

These are measurements, not tests: nothing asserts a timing, and the suite exits 0 when a goal is missed.
"""

from bench.core import BenchOptions, BenchRecord, Goal
from bench.suite import BENCHMARKS, resolve, run_suite

__all__ = ["BENCHMARKS", "BenchOptions", "BenchRecord", "Goal", "resolve", "run_suite"]
