"""Benchmark 3, Skip Tuning vs full fine-tuning: time and memory PER EPOCH, side by side.

Runs `bench.ft_vs_skip.compare_ft_vs_skip` (both methods' real `compute_loss`, an SGD
step, random-init weights, each method in its own spawned process) and turns its per-step figures into
per-epoch ones. For an epoch of N images at batch B (N/B steps):

    FT    epoch = N/B x t_step(FT)                 full image tower + text tower over ALL C prompts per step
    SkipT epoch = N x t_front + N/B x t_step(SkipT) per-epoch no-grad front pass (blocks < omega) over every
                                                    image, then steps through the tuned back blocks only, with
                                                    the text back half over the CSkip-kept classes only

so time ratio = SkipT / FT = (B x t_front + t_step(SkipT)) / t_step(FT). FT runs its prompts trimmed after the
end token, as the project does; "FT reference" is FT as the reference runs it, every prompt at the full 77
tokens through open_clip's encode_text, so the ratio can be read against the paper's 0.25x too. Each case
also gets its FLOP-count bound (bench.skip_flops: what the ratio would be if every FLOP took the same time)
at its own sizes (ω, C, prompt tokens) and at C = 1000. The static text-front cache and
the CSkip prototypes are built once per RUN (not per epoch) and are not charged. Memory ratio = SkipT / FT
of the training peak (gradients + optimiser state + activation peak, on top of the weights; on CPU the
rise of the process's peak RSS, on CUDA max_memory_allocated); the epoch's token cache lives in CPU memory
and is reported separately (and in a with-cache ratio). Data loading is excluded from FT's steps (batches
are pre-built) but included in SkipT's front pass: a small bias against SkipT.
"""

from __future__ import annotations

import math

from bench.core import BenchOptions, BenchRecord, Goal, failed, skipped

TITLE = "Skip Tuning vs FT (per epoch)"
TIME_GOAL = Goal("<=", 0.25)
MEM_GOAL = Goal("<=", 0.5)


def run(opts: BenchOptions) -> list[BenchRecord]:
    import torch

    from tests.toys import register_tiny_config
    from transmiter.synthetic.architectures import STRONG_MODEL, WEAK_MODEL, register_synthetic_models

    register_synthetic_models()
    # the small models' steps take 10-60 ms, where a handful of steps measures the scheduler more than the
    # method: they get enough steps for about a second or more of timing per method
    steps = 10 if opts.quick else 40
    # (label, open_clip name, image px, classes C, timed steps, batch); the synthetic world's two ViTs at
    # SynthShapes' 30 classes and the demo's Skip Tuning batch of 16
    cases = [
        ("tiny", register_tiny_config(), 32, 100, steps, 4),
        ("synth-weak", WEAK_MODEL, 32, 30, steps, 16),
        ("synth-strong", STRONG_MODEL, 32, 30, steps, 16),
    ]
    records: list[BenchRecord] = []
    if not opts.tiny:
        if torch.cuda.is_available() or "skip" in opts.explicit:
            cases.append(("ViT-B-16", "ViT-B-16", 224, 100, 1 if opts.quick else 2, 4))
        else:
            records.append(
                skipped(
                    "skip_vs_ft[ViT-B-16]",
                    "skip",
                    TITLE,
                    "not in the default CPU run: one FT step of ViT-B-16 over C = 100 prompts costs ~15-55 s on "
                    "2 cores and the pair takes ~8 min; run `python -m bench --only skip` (it runs "
                    "by default when CUDA is available)",
                )
            )
    for label, model_name, size, classes, n_steps, batch in cases:
        try:
            records.extend(_case(opts, label, model_name, size, classes, n_steps, batch))
        except Exception as err:
            records.append(failed(f"skip_vs_ft[{label}]", "skip", TITLE, err))
    return records


def _case(
    opts: BenchOptions, label: str, model_name: str, image_size: int, classes: int, steps: int, batch: int = 4
) -> list[BenchRecord]:
    from bench.core import quiet
    from bench.ft_vs_skip import compare_ft_vs_skip
    from transmiter.methods.cskip import expected_kept_classes

    with quiet():
        rep = compare_ft_vs_skip(
            model_name,
            num_classes=classes,
            image_size=image_size,
            steps=steps,
            batch=batch,
            seed=opts.seed,
            isolate=True,
            kinds=("ft", "ft_reference", "skip"),
        )
    ft, ft_ref, sk = rep["ft"], rep["ft_reference"], rep["skip"]
    ft_img = ft["time_per_step_s"] / batch
    sk_img = sk["extract_s_per_image"] + sk["time_per_step_s"] / batch
    time_ratio = sk_img / ft_img
    ref_ratio = sk_img / (ft_ref["time_per_step_s"] / batch)
    setup = (
        f"{label}: {model_name} random init, {image_size} px, C = {classes} classes, batch {batch}, "
        f"{steps} timed steps per method after a warm-up step, device {rep['setup']['device']}, "
        "each method in its own spawned process."
    )
    t_fig = {
        "FT s/step": ft["time_per_step_s"],
        "SkipT s/step (back blocks, CSkip-kept classes)": sk["time_per_step_s"],
        "per-step ratio SkipT / FT": sk["time_per_step_s"] / ft["time_per_step_s"],
        "SkipT front pass s/image (per epoch)": sk["extract_s_per_image"],
        "FT epoch s/image": ft_img,
        "SkipT epoch s/image (front + steps)": sk_img,
        f"FT reference s/step ({ft_ref['text_tokens']}-token prompts; FT: {ft['text_tokens']})": ft_ref[
            "time_per_step_s"
        ],
        "SkipT / FT reference time per epoch": ref_ratio,
        "CSkip expected kept classes of C": round(expected_kept_classes(classes), 1),
        "trainable params FT / SkipT": f"{ft['trainable_params']:,} / {sk['trainable_params']:,}",
    }
    ft_mem, sk_mem = ft["peak_mem_mb"], sk["peak_mem_mb"]
    m_fig = {
        "FT training peak (MB)": ft_mem,
        "SkipT training peak (MB)": sk_mem,
        "SkipT epoch token cache (MB, CPU memory)": sk.get("cache_mb", math.nan),
        "with-cache ratio (SkipT peak + cache) / FT": _div(sk_mem + sk.get("cache_mb", 0.0), ft_mem),
        "saved activations FT / SkipT (MB)": f"{ft['saved_activations_mb']:.1f} / {sk['saved_activations_mb']:.1f}",
        "saved-activation ratio SkipT / FT": _div(sk["saved_activations_mb"], ft["saved_activations_mb"]),
    }
    mem_notes = [
        setup,
        "ratio = SkipT / FT training peak (see the module docstring of bench.skip).",
    ]
    if rep["setup"]["device"] == "cpu":
        mem_notes.append(
            "CPU peaks are process peak-RSS rises: coarse (allocator granularity) for small "
            "models; the saved-activation ratio is the deterministic signal."
        )
    bound = _bound_record(
        label, model_name, image_size, classes, batch, sk, ft, ft_ref, time_ratio, ref_ratio
    )
    return [
        BenchRecord(
            name=f"skip_vs_ft_time[{label}]",
            benchmark="skip",
            title=TITLE,
            ratio=time_ratio,
            ratio_label="SkipT / FT time per epoch",
            goal=TIME_GOAL,
            figures=t_fig,
            notes=[
                setup,
                "ratio = (B x front s/image + SkipT s/step) / FT s/step: the per-epoch front "
                "pass and CSkip's smaller text batch are included.",
            ],
        ),
        BenchRecord(
            name=f"skip_vs_ft_memory[{label}]",
            benchmark="skip",
            title=TITLE,
            ratio=_div(sk_mem, ft_mem),
            ratio_label="SkipT / FT peak training memory",
            goal=MEM_GOAL,
            figures=m_fig,
            notes=mem_notes,
        ),
        bound,
    ]


def _bound_record(label, model_name, image_size, classes, batch, sk, ft, ft_ref, time_ratio, ref_ratio):
    """The FLOP-count bound of SkipT / FT at this case's sizes, with FT's prompts trimmed and at full length,
    at the case's C and at C = 1000."""
    from bench.fixtures import meta_model
    from bench.skip_flops import skip_flop_bound

    model = meta_model(model_name).model
    omega, tokens, full = sk["omega"], ft["text_tokens"], ft_ref["text_tokens"]
    fig: dict = {}
    measured = None
    for c in dict.fromkeys((classes, 1000)):
        for length, which in ((tokens, "trimmed"), (full, "full length")):
            b = skip_flop_bound(model, c, omega, batch, length, image_size)
            fig[f"C = {c}, {length}-token prompts ({which}): FLOP ratio"] = b["ratio"]
            if c == classes and length == tokens:
                measured = b
    assert measured is not None
    fig["at the measured sizes: FT GFLOP/image (image / text)"] = (
        f"{measured['ft_image_per_image'] / 1e9:.4g} / {measured['ft_text_per_image'] / 1e9:.4g}"
    )
    fig["at the measured sizes: SkipT GFLOP/image (front / image back / text)"] = (
        f"{measured['skip_front_per_image'] / 1e9:.4g} / {measured['skip_image_per_image'] / 1e9:.4g} / "
        f"{measured['skip_text_per_image'] / 1e9:.4g}"
    )
    fig["CSkip expected kept classes at C (K')"] = round(measured["kept"], 1)
    fig["measured time ratio SkipT / FT (trimmed prompts)"] = time_ratio
    fig["measured time ratio SkipT / FT reference (full-length prompts)"] = ref_ratio
    return BenchRecord(
        name=f"skip_flop_bound[{label}]",
        benchmark="skip",
        title=TITLE,
        ratio=measured["ratio"],
        ratio_label=f"SkipT / FT FLOPs per epoch at the measured sizes (ω = {omega}, C = {classes}, {tokens} tokens)",
        figures=fig,
        notes=[
            f"{model_name}: FLOPs counted with FlopCounterMode on the meta device through the towers the methods "
            f"train with (bench.skip_flops; a test checks the counts against the methods' own code), batch {batch}, "
            "per training image per epoch: FT = forward + backward of every block over the image and, per step, "
            "all C prompts; SkipT = the front pass (blocks < ω, no grad) + forward + backward of the upper blocks "
            "over the image and the K' CSkip-kept prompts. The paper reports 0.25x (full-length prompts, its own "
            "timing without the first cache pass).",
        ],
    )


def _div(a: float, b: float) -> float:
    return a / b if b and math.isfinite(b) and b > 0 else math.nan
