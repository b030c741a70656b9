"""Benchmark 9, CPU thread contention: the same steps with OpenMP's default wait policy vs PASSIVE.

On a CPU shared with other processes (load ≈ core count), PyTorch's intra-op threads spin at every
OpenMP barrier waiting for a sibling thread that the kernel has descheduled; short ops then cost orders
of magnitude more than their arithmetic. `OMP_WAIT_POLICY=PASSIVE` makes waiting threads sleep instead.
The variable is read when the OpenMP runtime loads (at `import torch`), so each side runs in a fresh
subprocess: one with the variable unset, one with PASSIVE. Measured in each (median of 2 after a warm-up):

* an adapter fitting step (K = 1024, batch 128, orthogonal projection: AdamW, `distillation_kl`);
* an FT step of the tiny ViT (`FinetuneCLIP.compute_loss` + backward, C = 100 prompts, batch 4).

ratio = PASSIVE / default time of the adapter step (informational: no goal). On an idle machine the two
are close; under co-tenancy the default policy is the slow one.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.core import BenchOptions, BenchRecord, failed, skipped

TITLE = "CPU thread contention (OpenMP wait policy)"


def skipped_by_default(opts: BenchOptions) -> BenchRecord:
    return skipped(
        "threads[omp wait policy]",
        "threads",
        TITLE,
        "skipped by default (two fresh subprocesses, ~1 min on a loaded 2-core machine, and its figures move "
        "with the co-tenants' load); run it with `python -m bench --only threads`",
    )


def run(opts: BenchOptions) -> list[BenchRecord]:
    try:
        return [_run(opts)]
    except Exception as err:
        return [failed("threads[omp wait policy]", "threads", TITLE, err)]


def _child_result(policy: str | None, steps: int) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("KMP_BLOCKTIME", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    proc = subprocess.run(
        [sys.executable, "-m", "bench.threads", str(steps)],
        env=env,
        cwd=Path(__file__).resolve().parents[1],  # the repository root, where `bench` is importable
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"thread-policy child failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
        )
    return json.loads(lines[-1])


def _run(opts: BenchOptions) -> BenchRecord:
    steps = 1 if opts.quick else 2
    default = _child_result(None, steps)
    passive = _child_result("PASSIVE", steps)
    fig = {
        "torch threads": default["threads"],
        "adapter step, default policy (s)": default["adapter_step_s"],
        "adapter step, PASSIVE (s)": passive["adapter_step_s"],
        "tiny FT step, default policy (s)": default["tiny_ft_step_s"],
        "tiny FT step, PASSIVE (s)": passive["tiny_ft_step_s"],
        "tiny FT step speed-up with PASSIVE": default["tiny_ft_step_s"] / passive["tiny_ft_step_s"],
    }
    return BenchRecord(
        name="threads[omp wait policy]",
        benchmark="threads",
        title=TITLE,
        ratio=passive["adapter_step_s"] / default["adapter_step_s"],
        ratio_label="PASSIVE / default adapter-step time",
        figures=fig,
        notes=[
            f"each side in a fresh subprocess (OMP_WAIT_POLICY unset vs PASSIVE), median of {steps} steps "
            "after one warm-up; the load average next to this row says how contended the CPU was."
        ],
    )


def _median_step(step, steps: int) -> float:
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _child(steps: int) -> dict:
    import torch

    from bench.core import quiet
    from transmiter.transfer.adapter import LogitAdapter
    from transmiter.transfer.training import distillation_kl

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 1024, generator=gen), torch.randn(128, 100, generator=gen)
    adapter = LogitAdapter(1024, seed=0, projection="orthogonal")
    opt = torch.optim.AdamW(adapter.parameters(), lr=1e-3)

    def adapter_step():
        loss = distillation_kl(adapter(x)[:, :100], y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    import open_clip

    from tests.toys import register_tiny_config
    from transmiter.methods.finetune import FinetuneCLIP

    name = register_tiny_config()
    with quiet():
        model = open_clip.create_model(name, pretrained=None)
    module = FinetuneCLIP(model, open_clip.get_tokenizer(name), [f"class {i}" for i in range(100)]).train()
    images, labels = torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 100, (4,), generator=gen)

    def ft_step():
        module.compute_loss(images, labels).backward()

    return {
        "threads": torch.get_num_threads(),
        "adapter_step_s": _median_step(adapter_step, steps),
        "tiny_ft_step_s": _median_step(ft_step, steps),
    }


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]) if len(sys.argv) > 1 else 3)))
