"""Evaluating a CLIP model (zero-shot or fine-tuned) as a text-head classifier on one split.

    acc = evaluate_clip(ctx, bundle, splits, templates)      # % top-1 on splits.test

Image features come from the feature cache (keyed by the model's weights hash, so a fine-tuned model
gets its own entry) and the text head from the head cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from transmiter.evaluation.evaluate import LinearHead, evaluate_scores
from transmiter.features.extract import ViewSpec, extract_image_features
from transmiter.models.heads import text_head


def split_features(
    ctx, bundle, splits, split: str = "test", subset: str = "all", view: ViewSpec | None = None
):
    """Cached features of one split of `splits` ([N, D]) and its labels ([N])."""
    items = getattr(splits, split)
    view = view or ViewSpec("test")
    identity = {"dataset": splits.name, "split": split, "subset": subset}
    if split != "test":  # the test split is never few-shot sampled: share it across shots and seeds
        identity.update(shots=int(ctx.cfg.setting.shots), seed=ctx.seed)
    with ctx.timed("feature_pass_s"):
        feats = extract_image_features(
            bundle,
            items,
            view=view,
            cache=ctx.feature_cache,
            identity=identity,
            make_trainer=lambda: ctx.make_trainer("features"),
            batch_size=int(ctx.cfg.eval.batch_size),
            num_workers=int(ctx.cfg.eval.num_workers),
        )
    labels = torch.tensor([d.label for d in items], dtype=torch.long)
    return feats, labels


def evaluate_clip(ctx, bundle, splits, templates: Sequence[str], subset: str = "all") -> float:
    """Top-1 accuracy (%) of `bundle`'s text-head classifier on `splits.test`."""
    feats, labels = split_features(ctx, bundle, splits, "test", subset)
    with ctx.timed("text_head_s"):
        head = text_head(bundle, splits.classnames, templates, cache=ctx.head_cache)
    with ctx.timed("scoring_s"):
        return evaluate_scores(
            feats, labels, LinearHead(head), lambda: ctx.make_trainer("eval"), num_classes=head.shape[0]
        )
