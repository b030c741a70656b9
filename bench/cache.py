"""Benchmark 5, cache effectiveness: a second zero-shot evaluation of the same model and dataset ÷ the first.

Both go through `transmiter.evaluation.clip_eval.evaluate_clip` (feature cache -> text-head cache ->
scoring under a Lightning Trainer) in one RunContext whose caches start empty. Forward hooks on the image
tower and the text transformer count how often each runs: the second evaluation must run neither (a
non-zero count fails the row whatever the ratio). The phase split comes from the context's own timings
(`feature_pass_s`, `text_head_s`, `scoring_s`).

Cases: `tiny` (a plumbing check without a goal: a 30-pixel toy encoder costs less than the ~15 ms fixed
cost of scoring under a Trainer, so the ratio measures that fixed cost, not the saving), `synth-strong`
(one demo evaluation: the synthetic world's strong ViT, random init, on a test split of the demo's size,
30 classes x 30 images) and `ViT-B-16` (224 px).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.core import BenchOptions, BenchRecord, Goal, failed
from bench.fixtures import fake_run, load_model

TITLE = "Cache effectiveness"
GOAL = Goal("<=", 0.05)
TEMPLATES = ["a photo of a {}."]


def run(opts: BenchOptions) -> list[BenchRecord]:
    cases = [
        dict(
            label="tiny",
            model=None,
            classes=10,
            per_test=10 if opts.quick else 30,
            image_size=32,
            has_goal=False,
        ),
        dict(
            label="synth-strong",
            model="tiny_random",
            extra=("model.arch=SynthViT-S-8", "model.name=synth-strong-random"),
            classes=30,
            per_test=10 if opts.quick else 30,
            image_size=32,
        ),
    ]
    if not opts.tiny:
        cases.append(
            dict(
                label="ViT-B-16",
                model="vit_b16_random",
                classes=4,
                per_test=4 if opts.quick else 8,
                image_size=224,
            )
        )
    records = []
    for case in cases:
        name = f"cache[{case['label']}]"
        try:
            with opts.tempdir("cache") as tmp:
                records.append(_case(Path(tmp), name, **case))
        except Exception as err:
            records.append(failed(name, "cache", TITLE, err))
    return records


def _case(
    tmp: Path,
    name: str,
    label: str,
    model: str | None,
    classes: int,
    per_test: int,
    image_size: int,
    extra: tuple[str, ...] = (),
    has_goal: bool = True,
) -> BenchRecord:
    from bench.core import quiet
    from transmiter.evaluation.clip_eval import evaluate_clip
    from transmiter.models.towers import text_blocks

    ctx = fake_run(
        tmp,
        model=model,
        classes=classes,
        per_class=(1, 1, per_test),
        image_size=image_size,
        eval_batch=64,
        extra=extra,
    )
    bundle = load_model(ctx, ctx.cfg.model)
    splits = ctx.splits("all")
    calls = {"image": 0, "text": 0}
    # hook the text tower's first block: `towers.encode_text` runs the blocks itself (after trimming the
    # prompts), so a hook on the tower module would never fire
    first_text_block = text_blocks(bundle.model)[0]
    hooks = [
        bundle.model.visual.register_forward_hook(lambda *a: calls.__setitem__("image", calls["image"] + 1)),
        first_text_block.register_forward_hook(lambda *a: calls.__setitem__("text", calls["text"] + 1)),
    ]
    runs = []
    try:
        for _ in range(2):
            before_calls, before_t = dict(calls), dict(ctx.timings)
            start = time.perf_counter()
            with quiet():
                acc = evaluate_clip(ctx, bundle, splits, TEMPLATES)
            seconds = time.perf_counter() - start
            phases = {
                k: ctx.timings.get(k, 0.0) - before_t.get(k, 0.0)
                for k in ("feature_pass_s", "text_head_s", "scoring_s")
            }
            runs.append(
                {"s": seconds, "acc": acc, "calls": {k: calls[k] - before_calls[k] for k in calls}, **phases}
            )
    finally:
        for h in hooks:
            h.remove()
    first, second = runs
    fig = {
        "test images": len(splits.test),
        "first evaluation (s)": first["s"],
        "  first: feature pass / text head / scoring (s)": _triple(first),
        "second evaluation (s)": second["s"],
        "  second: feature pass / text head / scoring (s)": _triple(second),
        "image / text tower calls, first run": f"{first['calls']['image']} / {first['calls']['text']}",
        "image / text tower calls, second run": f"{second['calls']['image']} / {second['calls']['text']}",
        "same accuracy": first["acc"] == second["acc"],
    }
    notes = [
        f"{label}: {len(splits.test)} fake {image_size}-px test images, {classes} classes, one template, "
        "CPU trainer; caches empty before the first evaluation."
    ]
    forced = None
    if second["calls"]["image"] or second["calls"]["text"] or first["acc"] != second["acc"]:
        forced = "fail"
        notes.append("the second evaluation ran an encoder again or changed the accuracy.")
    elif not (first["calls"]["image"] and first["calls"]["text"]):
        forced = "error"
        notes.append(
            "the first evaluation ran no encoder that the hooks saw: the counters are not measuring."
        )
    if not has_goal:
        notes.append(
            "no goal: a toy encoder costs less than the scoring Trainer, so this row measures the fixed "
            "cost of a cached evaluation, not the saving; the goal is checked on the demo-sized synthetic "
            "case and on ViT-B-16."
        )
    return BenchRecord(
        name=name,
        benchmark="cache",
        title=TITLE,
        ratio=second["s"] / first["s"],
        ratio_label="second / first evaluation",
        goal=GOAL if has_goal else None,
        figures=fig,
        notes=notes,
        forced_status=forced,
    )


def _triple(run: dict) -> str:
    return " / ".join(f"{run[k]:.3f}" for k in ("feature_pass_s", "text_head_s", "scoring_s"))
