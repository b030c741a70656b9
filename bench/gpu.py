"""Benchmark 8 and `make gpu-check`: what the code costs on a CUDA GPU (a few minutes on one H100/H200).

    python -m bench.gpu --write experiments/bench/README.md      # make gpu-check
    python -m bench --only gpu                                    # the same checks inside the suite

Without CUDA it prints `gpu-check skipped: no CUDA device ...` and exits 0, leaving the README alone. On a
GPU, three checks, each on random-init weights (nothing is downloaded):

* Training steps: FT and Skip Tuning of ViT-B-16 and ViT-L-14 at 224 px, C = 100 and C = 1000 classes, bf16
  autocast over fp32 weights (the `gpu` trainer's bf16-mixed), the protocol's batch of 4: seconds per step,
  the Skip Tuning front pass per image, peak memory added by training (max_memory_allocated), through
  bench.ft_vs_skip (the methods' own compute_loss).
* Feature pass: images/s of ViT-L-14's `encode_image` under bf16 autocast on device-resident batches,
  against the rate the card's dense bf16 peak implies (FLOPs per image counted with FlopCounterMode):
  achieved / implied is the model FLOP utilisation.
* TransMiter at scale: `transmiter.fit_adapter` and `transmiter.transfer_adapter` (the library API, the
  study's own modules) on 100k cached logit rows of K = 1024 names (C = 1000) held on the GPU.

Every figure is printed and, with --write, put in the README's GPU section (between its gpu-check markers;
`python -m bench --write` keeps that section when it regenerates the file). The card's peak comes from a
small table of datasheet dense bf16 figures, or from TRANSMITER_PEAK_TFLOPS. The same functions run on
the CPU at toy sizes in tests/test_bench_gpu.py, so only the device differs on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.core import BenchOptions, BenchRecord, failed, quiet, skipped
from bench.report import GPU_END, GPU_START

TITLE = "GPU"
SKIP_LINE = "gpu-check skipped: no CUDA device"
# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s), by a substring of the
# device name, most specific first. SXM boards; PCIe / NVL ones run lower clocks.
PEAK_BF16_TFLOPS: list[tuple[str, float | None]] = [
    ("GH200", 989.4),
    ("H200 NVL", 835.0),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10G", None),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
]


@dataclass(frozen=True)
class Sizes:
    """What the checks run: the GPU sizes by default; tests use toy ones on the CPU."""

    archs: tuple[str, ...] = ("ViT-B-16", "ViT-L-14")
    classes: tuple[int, ...] = (100, 1000)
    image_size: int = 224
    batch: int = 4  # the protocol's training batch (FT and Skip Tuning)
    steps: int = 10  # timed training steps per method, after one warm-up step
    precision: str = "bf16-mixed"
    feature_arch: str = "ViT-L-14"
    feature_batch: int = 256
    feature_iters: int = 20
    rows: int = 100_000
    K: int = 1024
    C: int = 1000
    fit_epochs: int = 2
    matmul_size: int = 8192


def peak_tflops(device_name: str) -> float | None:
    env = os.environ.get("TRANSMITER_PEAK_TFLOPS")
    if env:
        return float(env)
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def matmul_tflops(dev: torch.device, size: int, repeats: int = 10) -> float:
    """The bf16 matrix rate this card reaches on random data: a ceiling nearer than the datasheet's."""
    a = torch.randn(size, size, device=dev, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(dev)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize(dev)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


# ---------------------------------------------------------------------------------------------------------
# the three checks
# ---------------------------------------------------------------------------------------------------------


def training_steps(device: str, sizes: Sizes) -> list[BenchRecord]:
    """FT and Skip Tuning steps per (architecture, C): s/step and peak training memory."""
    from bench.ft_vs_skip import compare_ft_vs_skip

    records = []
    for arch in sizes.archs:
        for classes in sizes.classes:
            name = f"gpu_steps[{arch}, C={classes}]"
            try:
                with quiet():
                    rep = compare_ft_vs_skip(
                        arch,
                        num_classes=classes,
                        image_size=sizes.image_size,
                        steps=sizes.steps,
                        batch=sizes.batch,
                        device=device,
                        isolate=False,  # on CUDA the peak is measured per method (max_memory_allocated)
                        precision=sizes.precision,
                    )
            except Exception as err:
                records.append(failed(name, "gpu", TITLE, err))
                continue
            ft, sk = rep["ft"], rep["skip"]
            per_image = sk["extract_s_per_image"] + sk["time_per_step_s"] / sizes.batch
            records.append(
                BenchRecord(
                    name=name,
                    benchmark="gpu",
                    title=TITLE,
                    ratio=per_image / (ft["time_per_step_s"] / sizes.batch),
                    ratio_label="SkipT / FT time per epoch",
                    figures={
                        "FT s/step": ft["time_per_step_s"],
                        "SkipT s/step (back blocks, CSkip-kept classes)": sk["time_per_step_s"],
                        "SkipT front pass s/image (per epoch)": sk["extract_s_per_image"],
                        "FT training peak (MB)": ft["peak_mem_mb"],
                        "SkipT training peak (MB)": sk["peak_mem_mb"],
                        "SkipT epoch token cache (MB, CPU memory)": sk["cache_mb"],
                        "prompt tokens (trimmed)": ft["text_tokens"],
                        "trainable params FT / SkipT": f"{ft['trainable_params']:,} / {sk['trainable_params']:,}",
                    },
                    notes=[
                        f"{device_name(device)}; {arch} random init, {sizes.image_size} px, C = {classes}, batch "
                        f"{sizes.batch}, {sizes.precision} (autocast, fp32 weights), {sizes.steps} timed SGD steps "
                        "after a warm-up step; peak = memory added by training on top of weights and caches."
                    ],
                )
            )
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return records


def feature_pass(device: str, sizes: Sizes) -> BenchRecord:
    """images/s of encode_image under bf16 autocast, against the rate implied by the card's peak."""
    import open_clip

    from bench.fixtures import meta_model
    from transmiter.models.encoder_flops import image_encoder_flops

    arch = sizes.feature_arch
    flops = image_encoder_flops(meta_model(arch))
    dev = torch.device(device)
    with quiet():
        model = (
            open_clip.create_model(arch, pretrained=None, force_image_size=sizes.image_size).to(dev).eval()
        )
    x = torch.randn(sizes.feature_batch, 3, sizes.image_size, sizes.image_size, device=dev)
    dtype = torch.bfloat16

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype):
        for _ in range(3):
            model.encode_image(x)
        sync()
        start = time.perf_counter()
        for _ in range(sizes.feature_iters):
            torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1)
        sync()
    rate = sizes.feature_batch * sizes.feature_iters / (time.perf_counter() - start)
    measured = matmul_tflops(dev, sizes.matmul_size) if dev.type == "cuda" else None
    name = device_name(device)
    peak = peak_tflops(name) if dev.type == "cuda" else None
    implied = peak * 1e12 / flops if peak else None
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return BenchRecord(
        name=f"gpu_feature_pass[{arch}]",
        benchmark="gpu",
        title=TITLE,
        ratio=rate / implied if implied else None,
        ratio_label="achieved / peak-implied images/s (model FLOP utilisation)",
        figures={
            "encoder GFLOP / image (counted)": flops / 1e9,
            "batch": sizes.feature_batch,
            "achieved (images/s)": rate,
            "card dense bf16 peak (TFLOP/s)": peak if peak else "unknown (set TRANSMITER_PEAK_TFLOPS)",
            "implied by the peak (images/s)": implied if implied else "n/a",
            f"measured bf16 matmul {sizes.matmul_size}^3 (TFLOP/s)": measured if measured else "n/a",
            "implied by the measured matmul (images/s)": measured * 1e12 / flops if measured else "n/a",
        },
        notes=[
            f"{name}; random-init {arch}, bf16 autocast, device-resident batches of {sizes.feature_batch}, "
            f"{sizes.feature_iters} timed batches after 3 warm-up ones (no JPEG decoding, no data loader)."
        ],
    )


def transmiter_at_scale(device: str, sizes: Sizes) -> BenchRecord:
    """fit_adapter + transfer_adapter on `rows` cached logit rows of K names, all on `device`."""
    import transmiter
    from bench.framework import synthetic_logits

    dev = torch.device(device)
    source_zs, teacher = synthetic_logits(sizes.rows, sizes.K, C=sizes.C, seed=0)
    target_zs = source_zs + 0.5 * torch.randn(source_zs.shape, generator=torch.Generator().manual_seed(1))
    source_zs, teacher, target_zs = source_zs.to(dev), teacher.to(dev), target_zs.to(dev)
    epochs = sizes.fit_epochs
    default_epochs = int(transmiter.default_settings()["fit"]["epochs"])

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync()
    start = time.perf_counter()
    with quiet():
        adapter = transmiter.fit_adapter(source_zs, teacher, num_classes=sizes.C, seed=0, epochs=epochs)
    sync()
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    moved = transmiter.transfer_adapter(adapter, source_zs, target_zs)
    sync()
    transfer_s = time.perf_counter() - start
    finite = bool(torch.isfinite(moved(target_zs[:1024])).all())
    figures = {
        "rows x K (C)": f"{sizes.rows:,} x {sizes.K} ({sizes.C})",
        f"fit, {epochs} epochs (s, Trainer start included)": fit_s,
        "fit rows/s": sizes.rows * epochs / fit_s,
        f"implied fit at the default {default_epochs} epochs (s)": fit_s / epochs * default_epochs,
        "transfer (s: Procrustes SVD of K x K, no backward)": transfer_s,
        "moved adapter's logits finite": finite,
    }
    if dev.type == "cuda":
        figures["peak GPU memory (MB)"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return BenchRecord(
        name=f"gpu_transmiter[{sizes.rows} x {sizes.K}]",
        benchmark="gpu",
        title=TITLE,
        figures=figures,
        notes=[
            f"{device_name(device)}; transmiter.fit_adapter / transfer_adapter (the study's modules, default "
            "settings but the epochs) on synthetic CLIP-scale logits held on the device."
        ],
    )


def run_checks(device: str, sizes: Sizes = Sizes(), progress=print) -> list[BenchRecord]:
    """Every check on `device`; a check that raises becomes an error row, the others still run."""
    records: list[BenchRecord] = []
    progress(f"training steps: {', '.join(sizes.archs)} at C = {', '.join(map(str, sizes.classes))}")
    records += training_steps(device, sizes)
    for check, name in (
        (feature_pass, f"gpu_feature_pass[{sizes.feature_arch}]"),
        (transmiter_at_scale, "gpu_transmiter"),
    ):
        progress(name)
        try:
            records.append(check(device, sizes))
        except Exception as err:
            records.append(failed(name, "gpu", TITLE, err))
    return records


def run(opts: BenchOptions) -> list[BenchRecord]:
    """The suite's benchmark 8."""
    if not torch.cuda.is_available():
        return [skipped("gpu", "gpu", TITLE, f"{SKIP_LINE} (torch {torch.__version__})")]
    sizes = Sizes(steps=3, feature_iters=5, rows=20_000, fit_epochs=1) if opts.quick else Sizes()
    return run_checks("cuda", sizes, progress=lambda _: None)


# ---------------------------------------------------------------------------------------------------------
# the README's GPU section
# ---------------------------------------------------------------------------------------------------------


def gpu_section(records: list[BenchRecord], machine: dict, command: str, seconds: float) -> str:
    from bench.report import fmt, fmt_ratio

    lines = [
        GPU_START,
        "## GPU check (`make gpu-check`)",
        "",
        f"Generated by `{command}` on {machine.get('gpu', '?')} ({machine.get('date', '?')}); "
        f"{seconds:.0f} s in all. torch {machine.get('torch', '?')}.",
        "",
    ]
    for r in records:
        lines += [f"### {r.name}", ""]
        if r.ratio is not None:
            lines += [f"{r.ratio_label}: **{fmt_ratio(r)}**", ""]
        if r.figures:
            lines += ["| figure | value |", "|---|---:|"]
            lines += [f"| {k} | {fmt(v)} |" for k, v in r.figures.items()]
            lines.append("")
        lines += [f"- {n}" for n in r.notes] + [""]
    lines.append(GPU_END)
    return "\n".join(lines)


def replace_gpu_section(text: str, section: str) -> str:
    """`text` with its GPU section replaced by `section` (inserted before the summary if it has none)."""
    start, end = text.find(GPU_START), text.find(GPU_END)
    if start >= 0 and end > start:
        return text[:start] + section + text[end + len(GPU_END) :]
    anchor = text.find("## Summary")
    if anchor < 0:
        return text.rstrip() + "\n\n" + section + "\n"
    return text[:anchor] + section + "\n\n" + text[anchor:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="README", help="put the figures in this file's GPU section")
    parser.add_argument(
        "--quick", action="store_true", help="fewer steps and rows (a smoke run of the checks)"
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            f"{SKIP_LINE} (torch {torch.__version__}, torch.cuda.is_available() is False); nothing measured"
        )
        return 0
    from bench.core import machine_info
    from bench.report import print_rich

    sizes = Sizes(steps=3, feature_iters=5, rows=20_000, fit_epochs=1) if args.quick else Sizes()
    start = time.perf_counter()
    records = run_checks("cuda", sizes, progress=lambda msg: print(f"gpu-check: {msg}", flush=True))
    seconds = time.perf_counter() - start
    machine = machine_info()
    print_rich(records, machine)
    if args.write:
        path = Path(args.write)
        command = "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:])
        section = gpu_section(records, machine, command.strip(), seconds)
        path.write_text(replace_gpu_section(path.read_text() if path.exists() else "", section))
        print(f"wrote the GPU section of {path}")
    errors = [r.name for r in records if r.status == "error"]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
