"""Benchmark 4, framework overhead: adapter fitting under Lightning vs a plain PyTorch loop.

Same adapter (`LogitAdapter(K, seed, projection="orthogonal")`), same loss (`distillation_kl`), same
noise (`LogitNoise`), same optimiser and schedule (AdamW + `WarmupCosine`), same rows, same global batch
(128), same device and determinism setting. Lightning side: `AdapterFitModule` + `LogitPairDataModule` +
the project's trainer (`conf/trainer/cpu.yaml`, or `gpu.yaml` when CUDA is available) built by
`build_trainer(purpose="train")`, no checkpointing, no logger, no progress bar. Timed from building the
Trainer / optimiser to the end of the last step; the runs alternate (plain, Lightning, Lightning, plain)
and each side's throughput is its total rows / total seconds.

Extra figures (outside the ratio): the data loader alone (per-row `__getitem__` + collate) and a plain
step with a free (unparametrised) projection, which isolates the cost of the orthogonal map
(`matrix_exp` on a K x K matrix, forward and backward, once per step).
"""

from __future__ import annotations

import math
import time

import torch
from omegaconf import OmegaConf

from bench.core import BenchOptions, BenchRecord, Goal, failed, quiet

TITLE = "Framework overhead"
GOAL = Goal(">=", 0.9)
BATCH = 128


def synthetic_logits(
    rows: int, K: int = 1024, C: int = 100, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-shot-like logits (scale ~ CLIP's: mean 20, std 3) and teacher logits over C <= K classes."""
    gen = torch.Generator().manual_seed(seed)
    inputs = 20.0 + 3.0 * torch.randn(rows, K, generator=gen)
    teacher = inputs[:, :C] + torch.randn(rows, C, generator=gen)
    return inputs, teacher


def trainer_config(device: str):
    from omegaconf import OmegaConf

    from transmiter.config.compose import CONFIG_DIR

    cpu = OmegaConf.load(CONFIG_DIR / "trainer" / "cpu.yaml")
    if device != "cuda":
        return cpu
    gpu = OmegaConf.load(CONFIG_DIR / "trainer" / "gpu.yaml")
    gpu.pop("defaults", None)
    return OmegaConf.merge(cpu, gpu)


def fit_lightning(
    inputs, teacher, *, epochs: int = 1, device: str = "cpu", seed: int = 0, limit_batches: int | None = None
) -> float:
    """Seconds of `trainer.fit(AdapterFitModule)` (Trainer construction included, module built before)."""
    from transmiter.methods.adapter_fit import AdapterFitModule
    from transmiter.trainers import build_trainer
    from transmiter.transfer.logit_data import LogitPairDataModule

    module = AdapterFitModule(K=inputs.shape[1], seed=seed)
    dm = LogitPairDataModule(train=(inputs, teacher), batch_size=BATCH, seed=seed)
    extra = {} if limit_batches is None else {"limit_train_batches": limit_batches}
    start = time.perf_counter()
    with quiet():
        trainer = build_trainer(
            trainer_config(device),
            purpose="train",
            callbacks_cfg=OmegaConf.create({}),  # the bare fitting loop: no checkpoint or guard callbacks
            max_epochs=epochs,
            enable_checkpointing=False,
            enable_progress_bar=False,
            logger=False,
            **extra,
        )
        trainer.fit(module, datamodule=dm)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def fit_plain(
    inputs,
    teacher,
    *,
    epochs: int = 1,
    device: str = "cpu",
    seed: int = 0,
    projection: str = "orthogonal",
    limit_batches: int | None = None,
) -> float:
    """Seconds of the same fitting written as a plain loop (adapter built before the clock starts)."""
    from torch.utils.data import DataLoader

    from transmiter.transfer.adapter import LogitAdapter
    from transmiter.transfer.logit_data import LogitPairDataset
    from transmiter.transfer.training import LogitNoise, WarmupCosine, distillation_kl

    cfg = trainer_config(device)
    dev = torch.device(device)
    adapter = LogitAdapter(inputs.shape[1], seed=seed, projection=projection).to(dev).train()
    noise = LogitNoise(0.5, 0.5, "batch", seed=seed)
    C = teacher.shape[1]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if str(cfg.precision).startswith("bf16")
        else torch.autocast(dev.type, enabled=False)
    )
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(bool(cfg.deterministic))
    try:
        start = time.perf_counter()
        loader = DataLoader(
            LogitPairDataset(inputs, teacher),
            batch_size=BATCH,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        per_epoch = len(loader) if limit_batches is None else min(len(loader), limit_batches)
        opt = torch.optim.AdamW(adapter.parameters(), lr=1e-3, weight_decay=1e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(epochs * per_epoch, 0.05))
        for _ in range(epochs):
            for i, (x, t) in enumerate(loader):
                if i >= per_epoch:
                    break
                x, t = x.to(dev, non_blocking=True), t.to(dev, non_blocking=True)
                with autocast:
                    out = adapter(noise(x))[:, :C]
                    loss = distillation_kl(out, t, teacher_temperature=0.5, temperature=1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start
    finally:
        torch.use_deterministic_algorithms(previous)


def loader_rate(inputs, teacher, batches: int = 50) -> float:
    """Rows/s of `LogitPairDataset` through a default DataLoader alone (no model)."""
    from torch.utils.data import DataLoader

    from transmiter.transfer.logit_data import LogitPairDataset

    loader = DataLoader(
        LogitPairDataset(inputs, teacher),
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    rows, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(loader):
        rows += x.shape[0]
        if i + 1 >= batches:
            break
    return rows / (time.perf_counter() - start)


def run(opts: BenchOptions) -> list[BenchRecord]:
    name = "framework[adapter fit]"
    try:
        return [_run(opts, name)]
    except Exception as err:
        return [failed(name, "framework", TITLE, err)]


def _run(opts: BenchOptions, name: str) -> BenchRecord:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        rows = 4096 if opts.quick else 20480
    else:  # the orthogonal map makes a CPU step ~1-2 s at K = 1024: keep the run short
        rows = 256 if opts.quick else 384
    K = 1024
    inputs, teacher = synthetic_logits(rows, K, seed=opts.seed)
    order = ["plain", "lightning"] if opts.quick else ["plain", "lightning", "lightning", "plain"]
    seconds = {"plain": 0.0, "lightning": 0.0}
    for side in order:
        fn = fit_plain if side == "plain" else fit_lightning
        seconds[side] += fn(inputs, teacher, device=device, seed=opts.seed)
    runs = {side: order.count(side) for side in seconds}
    rate = {side: runs[side] * rows / seconds[side] for side in seconds}
    steps = math.ceil(rows / BATCH)
    free_batches = 2 if opts.quick else 3
    free_s = fit_plain(
        inputs, teacher, device=device, seed=opts.seed, projection="free", limit_batches=free_batches
    )
    orth_step = seconds["plain"] / (runs["plain"] * steps)
    free_step = free_s / free_batches
    fig = {
        "rows x K": f"{rows} x {K}",
        "steps per run (batch 128)": steps,
        "runs per side": runs["plain"],
        "plain loop (rows/s)": rate["plain"],
        "Lightning (rows/s)": rate["lightning"],
        "plain s/step, orthogonal W": orth_step,
        "plain s/step, free W (no matrix_exp)": free_step,
        "orthogonal-map share of a step": max(0.0, 1.0 - free_step / orth_step),
        "data loader alone (rows/s)": loader_rate(inputs, teacher),
    }
    notes = [
        f"device {device}; {rows} synthetic rows x K = {K} (teacher over C = 100), 1 epoch per run, "
        "runs alternate plain / Lightning / Lightning / plain.",
        "ratio = Lightning rows/s ÷ plain-loop rows/s (the plain loop skips the module's agreement "
        "metric and logging, which therefore count as framework overhead).",
    ]
    if device == "cpu":
        notes.append(
            "CPU: few rows because one step costs ~1-2 s here (see the orthogonal-map share); "
            "a GPU run uses 20k rows."
        )
    return BenchRecord(
        name=name,
        benchmark="framework",
        title=TITLE,
        ratio=rate["lightning"] / rate["plain"],
        ratio_label="Lightning / plain loop throughput",
        goal=GOAL,
        figures=fig,
        notes=notes,
    )
