"""Zero-shot CLIP: the hand-crafted-template text classifier. No training.

    transmiter method=zeroshot model=ViT-B-16 dataset=oxford_pets setting=base2novel

In base2novel the base and novel test images are scored in separate label spaces (CoOp protocol);
in base2base all classes are scored together.
"""

from __future__ import annotations

from transmiter.evaluation.clip_eval import evaluate_clip
from transmiter.evaluation.metrics import summarize_groups
from transmiter.methods.base import MethodResult


class ZeroShot:
    def __init__(self, name: str = "zeroshot", templates: str = "coop"):
        self.name = name
        self.templates = templates

    def __call__(self, ctx) -> MethodResult:
        from transmiter.data.datum import split_identity

        bundle = ctx.load_model(ctx.cfg.model)
        templates = ctx.templates(self.templates)
        accuracies, split_ids = {}, {}
        for group in ctx.cfg.setting.eval_groups:
            splits = ctx.splits(subsample=str(group))
            split_ids[str(group)] = split_identity(splits)
            accuracies[str(group)] = evaluate_clip(ctx, bundle, splits, templates, subset=str(group))
        from transmiter.models.encoder_flops import image_encoder_flops

        return MethodResult(
            metrics=summarize_groups(accuracies),
            costs={
                "inference_flops_per_image": image_encoder_flops(bundle),
                "trainable_params": 0,
                "train_time_s": 0.0,
            },
            row=f"Zero-shot {bundle.spec.label}",
            models={"model": bundle.identity},
            splits=split_ids,
            extra={"templates": templates},
        )
