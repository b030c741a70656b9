"""Benchmark 8, GPU (never required): feature-pass rate against the card's peak, and adapter fitting at scale.

* Encoder: images/s of `encode_image` for random-init ViT-B-16 and ViT-L-14 under bf16 autocast (what the
  `gpu` trainer's bf16-mixed precision does) on device-resident 224-px batches, against the rate implied
  by the card's dense bf16 peak (FLOPs per image counted with FlopCounterMode): ratio = achieved / implied
  (model FLOP utilisation). Also the project's own feature pass (`extract_image_features` under the `gpu`
  trainer, JPEG decoding with `eval.num_workers`) for ViT-B-16, to show what the input pipeline leaves.
* Fitting: `AdapterFitModule` under the `gpu` trainer on 1.28M x 1024 cached logits held in CPU memory
  (ImageNet scale, C = 1000), a bounded number of steps; rows/s and the implied epoch time.

Without CUDA every row is "skipped (no GPU)". The card's peak comes from a small table of dense bf16
tensor-core figures, or from TRANSMITER_PEAK_TFLOPS.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from bench.core import BenchOptions, BenchRecord, failed, quiet, skipped

TITLE = "GPU"
# Dense bf16 tensor-core peaks (TFLOP/s), by a substring of the device name, most specific first.
PEAK_BF16_TFLOPS: list[tuple[str, float | None]] = [
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10G", None),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
]


def peak_tflops(device_name: str) -> float | None:
    env = os.environ.get("TRANSMITER_PEAK_TFLOPS")
    if env:
        return float(env)
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def run(opts: BenchOptions) -> list[BenchRecord]:
    if not torch.cuda.is_available():
        return [skipped("gpu", "gpu", TITLE, "skipped (no GPU)")]
    records = []
    for arch in ("ViT-B-16", "ViT-L-14"):
        name = f"gpu_feature_pass[{arch}]"
        try:
            records.append(_encoder(opts, arch, name))
        except Exception as err:
            records.append(failed(name, "gpu", TITLE, err))
    try:
        records.append(_fitting(opts))
    except Exception as err:
        records.append(failed("gpu_fit[1.28M x 1024]", "gpu", TITLE, err))
    return records


def _encoder(opts: BenchOptions, arch: str, name: str) -> BenchRecord:
    import open_clip

    from bench.fixtures import meta_model
    from transmiter.models.encoder_flops import image_encoder_flops

    flops = image_encoder_flops(meta_model(arch))
    device = torch.device("cuda")
    with quiet():
        model = open_clip.create_model(arch, pretrained=None, device=device).eval()
    batch = 256
    iters = 5 if opts.quick else 20
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model.encode_image(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1)
        torch.cuda.synchronize()
    rate = batch * iters / (time.perf_counter() - start)
    dev_name = torch.cuda.get_device_name(0)
    peak = peak_tflops(dev_name)
    implied = peak * 1e12 / flops if peak else math.nan
    fig = {
        "encoder FLOPs / image": flops,
        "batch": batch,
        "achieved (images/s)": rate,
        "card peak bf16 (TFLOP/s)": peak if peak else "unknown (set TRANSMITER_PEAK_TFLOPS)",
        "implied by the peak (images/s)": implied,
    }
    notes = [
        f"{dev_name}; random-init {arch}, bf16 autocast, device-resident batches of {batch}, {iters} "
        "timed iterations after 3 warm-up ones."
    ]
    del model
    torch.cuda.empty_cache()
    if arch == "ViT-B-16":
        try:
            fig["project feature pass, JPEGs + gpu trainer (images/s)"] = _pipeline_rate(opts)
        except Exception as err:  # the synthetic figure stands on its own
            notes.append(f"pipeline feature pass not measured: {type(err).__name__}: {err}")
    return BenchRecord(
        name=name,
        benchmark="gpu",
        title=TITLE,
        ratio=rate / implied if peak else None,
        ratio_label="achieved / peak-implied images/s (MFU)",
        figures=fig,
        notes=notes,
    )


def _pipeline_rate(opts: BenchOptions) -> float:
    from bench.fixtures import fake_run, load_model
    from transmiter.features.extract import ViewSpec, extract_image_features
    from transmiter.features.store import ArrayCache

    per_class = 64 if opts.quick else 256
    with opts.tempdir("gpu-pipeline") as tmp:
        ctx = fake_run(
            Path(tmp),
            model="vit_b16_random",
            classes=4,
            per_class=(1, 1, per_class),
            image_size=224,
            eval_batch=256,
            trainer="gpu",
        )
        bundle = load_model(ctx, ctx.cfg.model)
        items = list(ctx.splits("all").test)
        start = time.perf_counter()
        with quiet():
            extract_image_features(
                bundle,
                items,
                view=ViewSpec("test"),
                cache=ArrayCache(Path(tmp) / "f"),
                identity={"bench": "gpu"},
                make_trainer=lambda: ctx.make_trainer("features"),
                batch_size=256,
                num_workers=int(ctx.cfg.eval.num_workers),
            )
        return len(items) / (time.perf_counter() - start)


def _fitting(opts: BenchOptions) -> BenchRecord:
    from bench.framework import BATCH, fit_lightning, synthetic_logits

    rows = 128_000 if opts.quick else 1_281_167
    steps = 300 if opts.quick else 2000
    inputs, teacher = synthetic_logits(rows, 1024, C=1000, seed=opts.seed)
    seconds = fit_lightning(inputs, teacher, device="cuda", seed=opts.seed, limit_batches=steps)
    rate = steps * BATCH / seconds
    fig = {
        "rows x K": f"{rows:,} x 1024",
        "steps timed": steps,
        "rows/s": rate,
        "implied epoch (s)": rows / rate,
        "implied 10 epochs (min)": 10 * rows / rate / 60,
    }
    return BenchRecord(
        name="gpu_fit[1.28M x 1024]",
        benchmark="gpu",
        title=TITLE,
        figures=fig,
        notes=[
            "AdapterFitModule, gpu trainer (bf16-mixed; the adapter itself runs fp32), global "
            f"batch {BATCH}, logits in CPU memory through LogitPairDataModule; "
            "Trainer start-up included in the rate."
        ],
    )
