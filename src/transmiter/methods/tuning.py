"""Fine-tuning methods (FT and Skip Tuning) as recipes: train once per content-addressed stage, then
evaluate the tuned CLIP like a zero-shot one (CoOp protocol: base and novel in separate label spaces).

    transmiter method=ft          model=synth_weak dataset=synth_shapes setting=base2novel
    transmiter method=skip_tuning model=ViT-B-16   dataset=oxford_pets  setting=base2novel

The tuned weights are written as `model.safetensors` in the stage folder, an ordinary open_clip
checkpoint: `ModelSpec(arch, pretrained=<that file>)` loads it, and every cache keys on its weights.
The last epoch is evaluated (never a checkpoint chosen on test data).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transmiter.evaluation.clip_eval import evaluate_clip
from transmiter.evaluation.metrics import summarize_groups
from transmiter.methods.base import MethodResult

KINDS = ("ft", "skip_tuning")


class FineTune:
    """A fine-tuning recipe. `module` is a partial LightningModule (FinetuneCLIP or SkipTuningCLIP)
    whose remaining arguments (model, tokenizer, class names, template, data) the recipe supplies."""

    def __init__(
        self,
        name: str,
        kind: str,
        module: Callable[..., Any],
        row_name: str | None = None,
        templates: str = "skip",
        batch_size: int = 4,
        num_workers: int = 0,
        per_setting: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"method.kind={kind!r}: use one of {KINDS}")
        if batch_size < 1:
            raise ValueError(f"method.batch_size={batch_size}: use a positive global batch size (default 4)")
        self.name, self.kind, self.module = name, kind, module
        self.row_name = row_name or {"ft": "FT", "skip_tuning": "Skip Tuning"}[kind]
        self.templates = templates
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.per_setting = {k: dict(v) for k, v in (per_setting or {}).items()}

    # ------------------------------------------------------------------ hyper-parameters
    def module_kwargs(self, ctx) -> dict[str, Any]:
        """The partial's keywords, with this setting's overrides (e.g. Skip Tuning's few-shot schedule); a
        setting names its entry of `per_setting` by `recipe`, else by its name."""
        kwargs = dict(self.module.keywords) if isinstance(self.module, functools.partial) else {}
        setting = ctx.cfg.setting
        kwargs.update(self.per_setting.get(str(setting.get("recipe") or setting.name), {}))
        return kwargs

    def _template(self, ctx) -> str:
        return ctx.templates(self.templates)[0]

    # ------------------------------------------------------------------ the training stage
    def tuned_spec(self, ctx, model_node):
        """The fine-tuned model's ModelSpec (training it first unless the stage is already done)."""
        from transmiter.data.datum import files_identity, split_identity
        from transmiter.models.clip import ModelSpec, resolve_quick_gelu

        base_bundle = ctx.load_model(model_node)
        spec: ModelSpec = base_bundle.spec
        splits = ctx.splits(subsample=str(ctx.cfg.setting.train_subsample))
        kwargs = self.module_kwargs(ctx)
        identity = {
            "stage": f"{self.kind}/v1",
            "model": base_bundle.identity,
            "dataset": splits.name,
            "train": split_identity(splits, ("train",)),
            "train_files": files_identity(splits.train),  # a replaced image trains the stage again
            "template": self._template(ctx),
            # where Skip Tuning keeps its token cache changes no result: not part of the identity
            "hparams": {k: v for k, v in kwargs.items() if k != "cache_dir"},
            "batch_size": self.batch_size,
            "epoch_divisor": int(ctx.cfg.dataset.get("epoch_divisor", 1)),
            "train_crop_scale": list(ctx.train_crop_scale),
            "seed": ctx.seed,
            "precision": str(ctx.cfg.trainer.get("precision")),
        }

        def work(stage_dir: Path) -> dict:
            return self._train(ctx, spec, splits, kwargs, stage_dir)

        result = ctx.run_stage(self.kind, identity, work)
        if not result.reused:
            ctx.timings[f"{self.kind}_train_s"] = (
                ctx.timings.get(f"{self.kind}_train_s", 0.0) + result.seconds
            )
        ctx.stage_outputs[self.kind] = result.outputs
        # The file holds weights only: rebuild the network it was trained as (QuickGELU for OpenAI weights,
        # any extra open_clip arguments), or the tuned weights would be evaluated under another activation.
        return ModelSpec(
            arch=spec.arch,
            pretrained=str(result.path / "model.safetensors"),
            name=f"{spec.label}+{self.row_name}",
            precision=spec.precision,
            force_quick_gelu=resolve_quick_gelu(spec),
            extra=dict(spec.extra),
        )

    @staticmethod
    def load_tuned(ctx, tuned_spec):
        """The fine-tuned model of `tuned_spec` (from `tuned_spec()`); weights that cannot be read name the
        stage folder to delete, not `model.pretrained` (a key the user never set)."""
        from transmiter.models.clip import ModelError
        from transmiter.stages import unreadable_output

        try:
            return ctx.load_model(tuned_spec)
        except ModelError as err:
            raise unreadable_output(tuned_spec.pretrained, err) from err

    def _train(self, ctx, spec, splits, kwargs: dict[str, Any], stage_dir: Path) -> dict:
        from safetensors.torch import save_file

        from transmiter.io import atomic_path
        from transmiter.methods.resume import fit_resumable
        from transmiter.models.clip import load_clip

        bundle = load_clip(
            spec, train_crop_scale=ctx.train_crop_scale
        )  # a private copy: training must not touch the shared zero-shot model
        model = bundle.model
        template = self._template(ctx)
        module, datamodule = self._build(ctx, bundle, splits, template, kwargs)
        start = time.perf_counter()
        # checkpoints every epoch in the stage folder; a re-run after a kill resumes from the last one
        fit_resumable(
            ctx,
            module,
            datamodule,
            epochs=module.max_epochs,
            stage_dir=stage_dir,
            purpose=self.kind,
            curves=f"{self.kind}/{_label(ctx.cfg.model)}",  # a study tunes two models: one curve set each
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        seconds = time.perf_counter() - start
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        path = stage_dir / "model.safetensors"
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"arch": spec.arch, "method": self.kind})
        trainable = (
            sum(p.numel() for p in module.trainable_parameters())
            if hasattr(module, "trainable_parameters")
            else sum(p.numel() for p in model.parameters() if p.requires_grad)
        )
        return {
            "checkpoint": str(path),
            "train_time_s": seconds,
            "trainable_params": int(trainable),
            "epochs": int(module.max_epochs),
            "num_train_images": len(splits.train),
        }

    def _build(self, ctx, bundle, splits, template: str, kwargs: dict[str, Any]):
        from transmiter.data.datamodule import ClassificationDataModule
        from transmiter.data.dataset import ImageListDataset

        classnames = list(splits.classnames)
        if self.kind == "ft":
            module = self.module(
                bundle.model, bundle.tokenizer, classnames, template, **_only_new(self.module, kwargs)
            )
            dm = ClassificationDataModule(
                splits,
                bundle.train_transform,
                bundle.test_transform,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                seed=ctx.seed,
            )
            return module, dm
        extra = {
            "train_dataset": ImageListDataset(list(splits.train), bundle.train_transform),
            "train_labels": [d.label for d in splits.train],
            "shots": int(ctx.cfg.setting.shots),
            "batch_size": self.batch_size,
            "seed": ctx.seed,
            "epoch_divisor": int(ctx.cfg.dataset.get("epoch_divisor", 1)),
        }
        module = self.module(
            bundle.model,
            bundle.tokenizer,
            classnames,
            template,
            **_only_new(self.module, {**kwargs, **extra}),
        )
        return module, None

    # ------------------------------------------------------------------ the method row
    def __call__(self, ctx) -> MethodResult:
        from transmiter.data.datum import split_identity
        from transmiter.models.encoder_flops import image_encoder_flops

        # trained on the job's own dataset; scored on the dataset of `ctx` (a setting target, if any)
        tuned = self.load_tuned(ctx, self.tuned_spec(ctx.training, ctx.cfg.model))
        templates = [self._template(ctx)]
        accuracies, split_ids = {}, {}
        for group in ctx.cfg.setting.eval_groups:
            splits = ctx.splits(subsample=str(group))
            split_ids[str(group)] = split_identity(splits)
            accuracies[str(group)] = evaluate_clip(ctx, tuned, splits, templates, subset=str(group))
        outputs = ctx.stage_outputs[self.kind]
        return MethodResult(
            metrics=summarize_groups(accuracies),
            row=f"{self.row_name} {_label(ctx.cfg.model)}",
            method=self.name,
            models={"model": tuned.identity},
            splits=split_ids,
            costs={
                "train_time_s": outputs["train_time_s"],
                "trainable_params": outputs["trainable_params"],
                "inference_flops_per_image": image_encoder_flops(tuned),
            },
            artifacts={"checkpoint": outputs["checkpoint"]},
            extra={"templates": templates},
        )


def _label(node) -> str:
    from transmiter.models.labels import node_label

    return str(node_label(node))


def _only_new(partial: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keywords not already bound in the partial (a partial's own keywords are applied by it)."""
    bound = partial.keywords if isinstance(partial, functools.partial) else {}
    return {k: v for k, v in kwargs.items() if k not in bound or bound[k] != v}
