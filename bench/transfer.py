"""Benchmark 1, transfer overhead: the whole transfer stage ÷ the target's feature pass alone.

The "whole transfer" repeats what `TransferMethod.transferred_adapter` does once the source adapter is
fitted, with the project's own functions: load + verify the fitted artifact, the source logits from the
caches (written while fitting), the target feature pass (`extract_image_features`, a Lightning predict
pass that publishes a cache entry, cold cache), the target logits through the cached text head, the
closed-form transfer (`transfer_adapter_with_details`: statistics, SVD, rotation) and writing the
transferred artifact. The denominator is the same feature pass alone, cold cache, measured in
alternation with the whole (median of the repeats). The target's text head over the K names is a
one-off per (model, names), cached and shared with evaluation: it is read from the cache in both the
tiny and the real-architecture cases (for ViT-B-16 the cache holds a synthetic head, because encoding
1024 prompts with a random-init text tower on a CPU costs a minute and measures nothing of interest).

Cases: `tiny` (a plumbing check on 160 images, no goal: the fixed part dominates), `synth-strong` (the
transfer pass of a demo base2novel job: the synthetic world's strong ViT over 15 classes x 16 shots x 4
views = 960 images, K = 256) and `ViT-B-16` (the real architecture, K = 1024; skipped with `--tiny`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.core import (
    BenchOptions,
    BenchRecord,
    Goal,
    Phases,
    failed,
    median,
    median_phases,
    quiet,
)
from bench.fixtures import fake_run, load_model

TITLE = "Transfer overhead"
GOAL = Goal("<=", 1.10)
TEMPLATES = ["a photo of a {}."]


def run(opts: BenchOptions) -> list[BenchRecord]:
    small = dict(image_size=32, K=256, repeats=2 if opts.quick else 3, eval_batch=128, synthetic_head=False)
    cases = [
        # plumbing check: too few images for the ratio to mean much (no goal)
        dict(
            small,
            label="tiny",
            model=None,
            has_goal=False,
            classes=10,
            per_class=(8 if opts.quick else 16, 1, 1),
        ),
        # the transfer pass of a demo base2novel job: the synthetic world's strong ViT (random init:
        # cost does not depend on the weights) over 15 base classes x 16 shots x 4 augmented views
        dict(
            small,
            label="synth-strong",
            model="tiny_random",
            extra=("model.arch=SynthViT-S-8", "model.name=synth-strong-random"),
            classes=15,
            per_class=(16 if opts.quick else 64, 1, 1),
        ),
    ]
    if not opts.tiny:
        cases.append(
            dict(
                label="ViT-B-16",
                model="vit_b16_random",
                classes=4,
                per_class=(2 if opts.quick else 6, 1, 1),
                image_size=224,
                K=1024,
                repeats=1,
                eval_batch=32,
                synthetic_head=True,
            )
        )
    records = []
    for case in cases:
        name = f"transfer[{case['label']}]"
        try:
            with opts.tempdir("transfer") as tmp:
                records.append(_case(opts, Path(tmp), name=name, **case))
        except Exception as err:  # reported, the suite goes on
            records.append(failed(name, "transfer", TITLE, err))
    return records


def _case(
    opts: BenchOptions,
    tmp: Path,
    *,
    name: str,
    label: str,
    model: str | None,
    classes: int,
    per_class: tuple[int, int, int],
    image_size: int,
    K: int,
    repeats: int,
    eval_batch: int,
    synthetic_head: bool,
    extra: tuple[str, ...] = (),
    has_goal: bool = True,
) -> BenchRecord:
    from transmiter.features.extract import ViewSpec, extract_image_features
    from transmiter.features.store import ArrayCache
    from transmiter.models.clip import ModelSpec
    from transmiter.models.heads import text_head
    from transmiter.transfer.adapter import LogitAdapter
    from transmiter.transfer.artifact import load_adapter_artifact, save_adapter_artifact
    from transmiter.transfer.procrustes import accumulate_cross_covariance, regularized_procrustes
    from transmiter.transfer.transfer import rotate_adapter, transfer_adapter_with_details
    from transmiter.transfer.vocabulary import select_auxiliary_names

    ctx = fake_run(
        tmp,
        model=model,
        classes=classes,
        per_class=per_class,
        image_size=image_size,
        eval_batch=eval_batch,
        extra=extra,
    )
    target = load_model(ctx, ctx.cfg.model)
    source = load_model(ctx, ModelSpec(arch="tm-tiny-ViT", init_seed=1, name="bench-source"))
    splits = ctx.splits("all")
    items = list(splits.train)
    classnames = list(splits.classnames)
    aux = select_auxiliary_names(classnames, K, seed=ctx.seed)
    names = classnames + aux
    view = ViewSpec("train", 0, seed=ctx.seed)
    identity = {"dataset": splits.name, "split": "train", "subset": "fit", "shots": -1, "seed": ctx.seed}

    def features(bundle, cache: ArrayCache) -> torch.Tensor:
        with quiet():
            return extract_image_features(
                bundle,
                items,
                view=view,
                cache=cache,
                identity=identity,
                make_trainer=lambda: ctx.make_trainer("features"),
                batch_size=eval_batch,
                num_workers=int(ctx.cfg.eval.num_workers),
            )

    def head(bundle) -> torch.Tensor:
        return text_head(bundle, names, TEMPLATES, cache=ctx.head_cache)

    # ---- what the fitting stage leaves behind: source features + head cached, a fitted artifact
    source_cache = ArrayCache(tmp / "cache" / "source-features")
    features(source, source_cache)
    head(source)
    fig: dict = {"images": len(items), "K": K, "repeats": repeats}
    if synthetic_head:
        _write_synthetic_head(ctx, target, names)
    else:
        seconds, _ = _seconds(lambda: head(target))
        fig["target text head, K names (s; one-off, cached, not in the ratio)"] = seconds
    _assert_head_cached(target, head)
    adapter = LogitAdapter(K, seed=opts.seed, projection="frozen")
    with torch.no_grad():
        for block in adapter.blocks:  # a non-identity MLP, as after fitting
            block.fc2.weight.normal_(0.0, 0.02)
    fitted = save_adapter_artifact(
        tmp / "fitted" / "adapter.safetensors",
        adapter,
        stage="fitted",
        source_model=source.identity,
        dataset=splits.name,
        classnames=classnames,
        aux_names=aux,
        data_used="bench",
        seed=ctx.seed,
    )

    def whole(run_dir: Path) -> Phases:
        ph = Phases()
        with ph("load fitted artifact"):
            loaded = load_adapter_artifact(
                fitted, expect_classnames=classnames, expect_aux=aux, expect_k=K, expect_dataset=splits.name
            )
        with ph("source logits (cached)"):
            src = features(source, source_cache) @ head(source).T
        with ph("target feature pass"):
            feats = features(target, ArrayCache(run_dir / "features"))
        with ph("target logits (cached head)"):
            tgt = feats @ head(target).T
        with ph("statistics + SVD + rotation"):
            moved = transfer_adapter_with_details(loaded.adapter, src, tgt, lam=500.0)
        with ph("write artifact"):
            save_adapter_artifact(
                run_dir / "transferred" / "adapter.safetensors",
                moved.adapter,
                stage="transferred",
                source_model=source.identity,
                target_model=target.identity,
                dataset=splits.name,
                classnames=classnames,
                aux_names=aux,
                data_used="bench",
                lam=moved.lam,
                lam_effective=moved.lam_effective,
                scale_lam_by_n=moved.scale_lam_by_n,
                num_samples=moved.num_samples,
                seed=ctx.seed,
            )
        return ph

    alone, wholes = [], []
    for i in range(repeats):  # alternate, so that load drift hits both sides alike
        seconds, _ = _seconds(lambda i=i: features(target, ArrayCache(tmp / f"alone-{i}")))
        alone.append(seconds)
        wholes.append(whole(tmp / f"whole-{i}"))
    t_alone = median(alone)
    t_whole = median([w.total for w in wholes])
    fig["target feature pass alone (s)"] = t_alone
    fig["feature pass rate (images/s)"] = len(items) / t_alone if t_alone > 0 else math.nan
    fig["whole transfer (s)"] = t_whole
    phases = median_phases(wholes)
    for phase, seconds in phases.items():
        fig[f"  {phase} (s)"] = seconds
    inner = phases.get("target feature pass", math.nan)
    fixed = t_whole - inner
    fig["whole / its own feature-pass phase (drift-free cross-check)"] = t_whole / inner
    per_image = t_alone / len(items)
    fig["images for ≤ 1.10 at this rate (fixed part / (0.1 × s per image))"] = math.ceil(
        fixed / (0.1 * per_image)
    )
    if image_size >= 224:
        fig["decode + test transform alone (images/s, 1 process)"] = _decode_rate(
            items, target.test_transform
        )

    # ---- the closed-form part, step by step (outside the ratio)
    loaded = load_adapter_artifact(fitted)
    src = features(source, source_cache) @ head(source).T
    tgt = features(target, ArrayCache(tmp / "whole-0" / "features")) @ head(target).T
    W = loaded.adapter.W.detach()
    stats_s, cc = _seconds(
        lambda: accumulate_cross_covariance(((src, tgt),), projection=W, eps=loaded.adapter.config.eps)
    )
    svd_s, Q = _seconds(lambda: regularized_procrustes(cc, lam=500.0))
    rot_s, _ = _seconds(lambda: rotate_adapter(loaded.adapter, Q))
    fig["    statistics alone (s)"] = stats_s
    fig["    SVD alone (s)"] = svd_s
    fig["    rotation -> new frozen adapter (s)"] = rot_s
    notes = [
        f"{label} ({target.identity}): {len(items)} fake {image_size}-px images, 1 augmented view, K = {K} "
        f"({len(classnames)} classes + {len(aux)} auxiliary names), lam = 500, CPU trainer.",
        "ratio = median whole transfer / median target feature pass alone (cold feature cache both times); "
        "the source is a random-init tm-tiny-ViT whose features and head are already cached.",
    ]
    if synthetic_head:
        notes.append(
            "target text head: a synthetic [K, D] head pre-written to the head cache (read, not computed)."
        )
    if not has_goal:
        notes.append(
            "no goal: with this few images the fixed part (load, SVD, write; see the phases) dominates; "
            "the goal is checked on the demo-sized synthetic case and on ViT-B-16."
        )
    return BenchRecord(
        name=name,
        benchmark="transfer",
        title=TITLE,
        ratio=t_whole / t_alone,
        ratio_label="whole transfer / target feature pass",
        goal=GOAL if has_goal else None,
        figures=fig,
        notes=notes,
    )


def _decode_rate(items, transform) -> float:
    """Images/s of JPEG decoding + the test transform alone (what `num_workers=0` serialises with the model)."""
    from transmiter.data.dataset import ImageListDataset

    dataset = ImageListDataset(list(items), transform)
    seconds, _ = _seconds(lambda: [dataset[i] for i in range(len(dataset))])
    return len(dataset) / seconds if seconds > 0 else math.nan


def _seconds(fn):
    import time

    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _write_synthetic_head(ctx, bundle, names: list[str]) -> None:
    """Put a random unit-norm head (times the logit scale) where `text_head` will look for it."""
    import numpy as np

    from transmiter.features.store import ArrayCache

    identity = {
        "kind": "text-head/v1",
        "model": bundle.identity,
        "classnames": list(names),
        "templates": list(TEMPLATES),
    }
    gen = torch.Generator().manual_seed(0)
    head = F.normalize(torch.randn(len(names), bundle.embed_dim, generator=gen), dim=-1) * bundle.logit_scale
    ctx.head_cache.save(
        ArrayCache.key(identity),
        {"head": head.numpy().astype(np.float32)},
        meta={"identity": identity, "synthetic": True},
    )


def _assert_head_cached(bundle, head_fn) -> None:
    """Fail fast (instead of encoding K prompts inside the timed region) if the head is not cached."""

    def refuse(*args, **kwargs):
        raise RuntimeError(
            "the target text head is not in the head cache (did text_head's cache key change?)"
        )

    bundle.model.encode_text = refuse
    try:
        head_fn(bundle)
    finally:
        del bundle.model.encode_text
