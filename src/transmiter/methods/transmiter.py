"""TransMiter, TransMiter+ and EFT-style baselines on images: the pipeline around the logit-space core.

    transmiter method=transmiter      pair=synth_weak_to_strong dataset=synth_shapes setting=base2novel
    transmiter method=transmiter_plus pair=vit_b16_to_vit_l14  dataset=oxford_pets  setting=base2base
    transmiter method=eft             pair=...

Stages (each content-addressed, so TransMiter, TransMiter+ and EFT of one (dataset, seed, pair) share
them, and a re-run reuses them):
 1. source fine-tuning (the `source_finetune` method: Skip Tuning or FT) on the training classes;
 2. logits, all from the feature cache: the source's zero-shot logits over K names (C task classes +
    K-C auxiliary names, one seeded list shared by every model) and the fine-tuned source's logits over
    the C classes, on the unlabelled fitting images (by default the few-shot training images of the
    training classes, seen through `views` augmented views); the target's zero-shot logits over the
    same K names on the same images and on the test split;
 3. adapter fitting (knowledge extraction, `AdapterFitModule`, no labels);
 4. transfer to the target in closed form (regularised orthogonal Procrustes, no backpropagation);
 5. TransMiter+ only: few-shot labelled refinement on the target's logits of the training classes.

Evaluation follows the TransMiter reference protocol ("masked-joint"): one head over all C classes;
in base2novel, base-class test images are scored with the novel columns masked and vice versa.
Never is a checkpoint, epoch, lambda or alpha chosen on test data: schedules are fixed in advance
(TransMiter+ may select its epoch on the few-shot validation split with `refine.select_on_val`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transmiter.context import dataset_templates
from transmiter.evaluation.clip_eval import split_features
from transmiter.evaluation.evaluate import evaluate_scores
from transmiter.evaluation.metrics import summarize_groups
from transmiter.features.extract import ViewSpec
from transmiter.methods.base import MethodResult
from transmiter.models.heads import text_head
from transmiter.models.templates import template_set

PROTOCOL = "masked-joint"
_FIT_DEFAULTS = {
    "epochs": 10,
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 1e-3,
    "warmup_ratio": 0.05,
    "teacher_temperature": 0.5,
    "temperature": 1.0,
    "noise_alpha": 0.5,
    "noise_p": 0.5,
    "noise_mode": "batch",
    "mlp_ratio": 4,
    "depth": 1,
}
_REFINE_DEFAULTS = {
    "epochs": 10,
    "batch_size": 128,
    "lr": 1e-4,
    "weight_decay": 1e-3,
    "warmup_ratio": 0.1,
    "noise_alpha": 0.5,
    "noise_p": 0.5,
    "noise_mode": "batch",
    "projection": "orthogonal",
    "select_on_val": False,
}


class MaskedHead(nn.Module):
    """Scores pre-computed inputs: optional adapter, first C columns, additive 0/-inf group mask."""

    def __init__(self, num_classes: int, adapter: nn.Module | None = None, mask: torch.Tensor | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.adapter = adapter
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (self.adapter(x) if self.adapter is not None else x)[:, : self.num_classes].float()
        return out if self.mask is None else out + self.mask


@dataclass
class FitData:
    """The unlabelled fitting images (and their labels, used only by TransMiter+ and evaluation)."""

    items: list[Any]  # Datum, labels in the global C-class space
    views: list[ViewSpec]
    description: str
    fingerprint: str

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([d.label for d in self.items] * len(self.views), dtype=torch.long)


def _digest(values: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]


class TransferMethod:
    """Shared machinery of TransMiter, TransMiter+ and EFT (one instance per method config)."""

    row_name = "TransMiter"

    def __init__(
        self,
        name: str,
        source_finetune: Any,
        K: int = 1024,
        grow_k: bool = False,
        aux_vocabulary: str | None = None,
        aux_strategy: str = "random",
        views: int = 4,
        fit_images: str = "fewshot",
        lam: float = 500.0,
        scale_lam_by_n: bool = False,
        templates: str = "coop",
        fit: Mapping[str, Any] | None = None,
        refine: Mapping[str, Any] | None = None,
        alpha: float = 1.0,
    ):
        if fit_images not in ("fewshot", "all"):
            raise ValueError(f"method.fit_images={fit_images!r}: use 'fewshot' (default) or 'all'")
        if views < 1:
            raise ValueError(f"method.views={views}: use at least one view")
        if lam < 0:
            raise ValueError(f"method.lam={lam}: the Procrustes regulariser must be >= 0")
        self.name, self.source_finetune = name, source_finetune
        self.K, self.grow_k = int(K), bool(grow_k)
        self.aux_vocabulary, self.aux_strategy = aux_vocabulary, aux_strategy
        self.views, self.fit_images = int(views), fit_images
        self.lam, self.scale_lam_by_n = float(lam), bool(scale_lam_by_n)
        self.templates = templates
        self.fit_cfg = {**_FIT_DEFAULTS, **dict(fit or {})}
        self.refine_cfg = {**_REFINE_DEFAULTS, **dict(refine or {})}
        self.alpha = float(alpha)

    # ------------------------------------------------------------------ data and label space
    def _all_splits(self, ctx, shots: int | None = None):
        return ctx.splits(subsample="all", shots=shots)

    @staticmethod
    def _groups(ctx, num_classes: int) -> dict[str, list[int]]:
        from transmiter.data.subsample import base_novel_class_ids

        if list(ctx.cfg.setting.eval_groups) == ["all"]:
            return {"all": list(range(num_classes))}
        base, novel = base_novel_class_ids(num_classes)
        return {"base": list(base), "new": list(novel)}

    def _train_ids(self, ctx, num_classes: int) -> list[int]:
        from transmiter.data.subsample import base_novel_class_ids

        subset = str(ctx.cfg.setting.train_subsample)
        if subset == "all":
            return list(range(num_classes))
        base, novel = base_novel_class_ids(num_classes)
        return list(base if subset == "base" else novel)

    def fit_data(self, ctx) -> FitData:
        shots = -1 if self.fit_images == "all" else int(ctx.cfg.setting.shots)
        splits = self._all_splits(ctx, shots)
        keep = set(self._train_ids(ctx, len(splits.classnames)))
        items = [d for d in splits.train if d.label in keep]
        views = [ViewSpec("train", v, seed=ctx.seed) for v in range(self.views)]
        what = "all training images" if self.fit_images == "all" else f"{shots}-shot training images"
        description = (
            f"{what} of the {len(keep)} training classes ({ctx.cfg.setting.train_subsample}), "
            f"{len(items)} images x {self.views} augmented views, no labels"
        )
        fingerprint = _digest(
            [f"{d.impath}\t{d.label}" for d in items]
            + [repr(v) for v in views]
            + [repr(ctx.train_crop_scale)]
        )
        return FitData(items, views, description, fingerprint)

    def label_space(self, ctx) -> tuple[list[str], list[str]]:
        """(task class names in global label order, auxiliary names): one list for every model."""
        from transmiter.transfer.vocabulary import select_auxiliary_names

        classnames = list(self._all_splits(ctx).classnames)
        aux = select_auxiliary_names(
            classnames,
            self.K,
            seed=ctx.seed,
            vocabulary=self.aux_vocabulary,
            strategy=self.aux_strategy,
            grow_k=self.grow_k,
        )
        return classnames, aux

    def _templates(self, ctx, kind: str | None = None) -> list[str]:
        return template_set(
            ctx.dataset_spec.name, kind or self.templates, overrides=dataset_templates(ctx.cfg.dataset)
        )

    # ------------------------------------------------------------------ logits from the caches
    def logits(
        self,
        ctx,
        bundle,
        items,
        views: Sequence[ViewSpec],
        names: Sequence[str],
        templates: Sequence[str],
        subset: str,
    ) -> torch.Tensor:
        """[len(views) * N, len(names)] logits of `bundle` (features and heads from the caches)."""
        with ctx.timed("text_head_s"):
            head = text_head(bundle, list(names), list(templates), cache=ctx.head_cache)
        splits = _ItemSplit(ctx.dataset_spec.name, items)
        split = "test" if views[0].transform == "test" else "train"
        chunks = []
        for view in views:
            feats, _ = split_features(ctx, bundle, splits, split, subset, view=view)
            chunks.append(feats @ head.T)
        return torch.cat(chunks)

    def source_models(self, ctx):
        """(zero-shot source bundle, fine-tuned source bundle)."""
        source = ctx.load_model(ctx.cfg.pair.source)
        with ctx.timed("source_finetune_s"):
            tuned_spec = self.source_finetune.tuned_spec(ctx, ctx.cfg.pair.source)
        return source, ctx.load_model(tuned_spec)

    # ------------------------------------------------------------------ stages
    def fitted_adapter(self, ctx):
        """Stage 3: the adapter fitted on the source (path of its artifact)."""
        from transmiter.transfer.artifact import save_adapter_artifact

        classnames, aux = self.label_space(ctx)
        names = classnames + aux
        data = self.fit_data(ctx)
        source, tuned = self.source_models(ctx)
        identity = {
            "stage": "adapter_fit/v1",
            "source": source.identity,
            "teacher": tuned.identity,
            "dataset": ctx.dataset_spec.name,
            "names": _digest(names),
            "data": data.fingerprint,
            "templates": self._templates(ctx),
            "teacher_templates": self._teacher_templates(ctx),
            "fit": self.fit_cfg,
            "K": len(names),
            "seed": ctx.seed,
        }

        def work(stage_dir: Path) -> dict:
            inputs = self.logits(ctx, source, data.items, data.views, names, self._templates(ctx), "fit")
            teacher = self.logits(
                ctx, tuned, data.items, data.views, classnames, self._teacher_templates(ctx), "fit"
            )
            adapter = self._train_fit(ctx, inputs, teacher, len(names), stage_dir)
            path = save_adapter_artifact(
                stage_dir / "adapter.safetensors",
                adapter,
                stage="fitted",
                source_model=source.identity,
                dataset=ctx.dataset_spec.name,
                classnames=classnames,
                aux_names=aux,
                data_used=data.description,
                seed=ctx.seed,
                config={"fit": self.fit_cfg},
                extra={"teacher_model": tuned.identity},
            )
            return {"artifact": str(path), "num_rows": int(inputs.shape[0])}

        with ctx.timed("fit_s"):
            result = ctx.run_stage("adapter_fit", identity, work)
        ctx.stage_outputs["adapter_fit"] = {"seconds": result.seconds, "reused": result.reused}
        return result, classnames, aux, data, source

    def _teacher_templates(self, ctx) -> list[str]:
        return self._templates(ctx, getattr(self.source_finetune, "templates", self.templates))

    def _train_fit(self, ctx, inputs, teacher, K: int, stage_dir: Path):
        from transmiter.methods.adapter_fit import AdapterFitModule
        from transmiter.transfer.logit_data import LogitPairDataModule

        f = self.fit_cfg
        module = AdapterFitModule(
            K=K,
            adapter_kwargs={"mlp_ratio": f["mlp_ratio"], "depth": f["depth"], "seed": ctx.seed},
            lr=f["lr"],
            weight_decay=f["weight_decay"],
            warmup_ratio=f["warmup_ratio"],
            teacher_temperature=f["teacher_temperature"],
            temperature=f["temperature"],
            noise_alpha=f["noise_alpha"],
            noise_p=f["noise_p"],
            noise_mode=f["noise_mode"],
            seed=ctx.seed,
        )
        dm = LogitPairDataModule(
            train=(inputs, teacher), batch_size=_global_batch(f["batch_size"], ctx), seed=ctx.seed
        )
        _fit_resumable(ctx, module, dm, int(f["epochs"]), stage_dir, "fit")
        return module.fitted_adapter()

    def transferred_adapter(self, ctx):
        """Stage 4: the fitted adapter moved to the target without backpropagation."""
        from transmiter.transfer.artifact import load_adapter_artifact, save_adapter_artifact
        from transmiter.transfer.transfer import transfer_adapter_with_details

        fitted, classnames, aux, data, source = self.fitted_adapter(ctx)
        target = ctx.load_model(ctx.cfg.pair.target)
        names = classnames + aux
        identity = {
            "stage": "adapter_transfer/v1",
            "fitted": fitted.key,
            "target": target.identity,
            "lam": self.lam,
            "scale_lam_by_n": self.scale_lam_by_n,
        }

        def work(stage_dir: Path) -> dict:
            loaded = load_adapter_artifact(
                fitted.outputs["artifact"],
                expect_classnames=classnames,
                expect_aux=aux,
                expect_k=len(names),
                expect_dataset=ctx.dataset_spec.name,
            )
            src = self.logits(ctx, source, data.items, data.views, names, self._templates(ctx), "fit")
            tgt = self.logits(ctx, target, data.items, data.views, names, self._templates(ctx), "fit")
            with ctx.timed("transfer_compute_s"):
                moved = transfer_adapter_with_details(
                    loaded.adapter, src, tgt, lam=self.lam, scale_lam_by_n=self.scale_lam_by_n
                )
            path = save_adapter_artifact(
                stage_dir / "adapter.safetensors",
                moved.adapter,
                stage="transferred",
                source_model=source.identity,
                target_model=target.identity,
                dataset=ctx.dataset_spec.name,
                classnames=classnames,
                aux_names=aux,
                data_used=data.description,
                lam=moved.lam,
                lam_effective=moved.lam_effective,
                scale_lam_by_n=moved.scale_lam_by_n,
                num_samples=moved.num_samples,
                seed=ctx.seed,
            )
            return {
                "artifact": str(path),
                "num_samples": moved.num_samples,
                "lam_effective": moved.lam_effective,
            }

        with ctx.timed("transfer_s"):
            result = ctx.run_stage("adapter_transfer", identity, work)
        ctx.stage_outputs["adapter_transfer"] = {"seconds": result.seconds, "reused": result.reused}
        return result, classnames, aux, data, source, target

    # ------------------------------------------------------------------ evaluation
    def evaluate_inputs(
        self, ctx, inputs: torch.Tensor, labels: torch.Tensor, num_classes: int, adapter: nn.Module | None
    ) -> dict[str, float]:
        """Masked-joint accuracies of `adapter(inputs)[:, :C]` (or of `inputs` itself) per group."""
        accuracies = {}
        for group, ids in self._groups(ctx, num_classes).items():
            keep = torch.isin(labels, torch.tensor(ids))
            mask = None
            if group != "all":
                mask = torch.full((num_classes,), -math.inf)
                mask[ids] = 0.0
            scorer = MaskedHead(num_classes, adapter, mask)
            with ctx.timed("scoring_s"):
                accuracies[group] = evaluate_scores(
                    inputs[keep],
                    labels[keep],
                    scorer,
                    lambda: ctx.make_trainer("eval"),
                    num_classes=num_classes,
                )
        return accuracies

    def test_logits(self, ctx, bundle, names: Sequence[str], templates: Sequence[str] | None = None):
        splits = self._all_splits(ctx)
        logits = self.logits(
            ctx, bundle, splits.test, [ViewSpec("test")], names, templates or self._templates(ctx), "all"
        )
        labels = torch.tensor([d.label for d in splits.test], dtype=torch.long)
        return logits, labels

    def costs(self, adapter, target) -> dict[str, float]:
        from transmiter.models.costs import image_encoder_flops
        from transmiter.transfer.costs import adapter_cost

        cost = adapter_cost(adapter)
        encoder = image_encoder_flops(target)
        return {
            "adapter_params": cost["params"],
            "adapter_flops_per_image": cost["flops_per_sample"],
            "encoder_flops_per_image": encoder,
            "inference_flops_per_image": encoder + cost["flops_per_sample"],
            "adapter_flops_ratio": cost["flops_per_sample"] / encoder,
            "trainable_params": cost["params"],
        }  # trained on the source, none on the target

    def _row(self, ctx) -> str:
        src, tgt = (
            ctx.cfg.pair.source.get("name") or ctx.cfg.pair.source.arch,
            ctx.cfg.pair.target.get("name") or ctx.cfg.pair.target.arch,
        )
        return f"{self.row_name} {src}→{tgt}"


class TransMiter(TransferMethod):
    """The transferred adapter applied to the target's zero-shot logits (no labels on the target)."""

    row_name = "TransMiter"

    def __call__(self, ctx) -> MethodResult:
        from transmiter.transfer.artifact import load_adapter_artifact

        moved, classnames, aux, data, source, target = self.transferred_adapter(ctx)
        adapter = load_adapter_artifact(
            moved.outputs["artifact"],
            expect_classnames=classnames,
            expect_aux=aux,
            expect_target_model=target.identity,
        ).adapter
        return self._result(ctx, adapter, classnames, aux, data, source, target, moved.outputs["artifact"])

    def _result(self, ctx, adapter, classnames, aux, data, source, target, artifact) -> MethodResult:
        logits, labels = self.test_logits(ctx, target, classnames + aux)
        accuracies = self.evaluate_inputs(ctx, logits, labels, len(classnames), adapter)
        costs = self.costs(adapter, target)
        # Training cost of the method itself: fitting + transfer (+ refinement), as first measured; the
        # source fine-tuning is reported apart (it is the weak model's own adaptation, done once).
        stages = ctx.stage_outputs
        costs["train_time_s"] = sum(
            stages.get(k, {}).get("seconds", 0.0)
            for k in ("adapter_fit", "adapter_transfer", "adapter_refine")
        )
        costs["transfer_time_s"] = stages.get("adapter_transfer", {}).get("seconds", 0.0)
        for kind in ("skip_tuning", "ft"):
            if kind in stages:
                costs["source_finetune_time_s"] = stages[kind]["train_time_s"]
        return MethodResult(
            metrics=summarize_groups(accuracies),
            row=self._row(ctx),
            protocol=PROTOCOL,
            method=self.name,
            models={"source": source.identity, "target": target.identity},
            costs=costs,
            artifacts={"adapter": artifact},
            extra={"K": len(classnames) + len(aux), "lam": self.lam, "fit_data": data.description},
        )


class TransMiterPlus(TransMiter):
    """TransMiter followed by few-shot labelled refinement on the target (base classes)."""

    row_name = "TransMiter+"

    def __call__(self, ctx) -> MethodResult:
        from transmiter.transfer.artifact import load_adapter_artifact, save_adapter_artifact

        moved, classnames, aux, data, source, target = self.transferred_adapter(ctx)
        names = classnames + aux
        train_ids = self._train_ids(ctx, len(classnames))
        identity = {
            "stage": "adapter_refine/v1",
            "transferred": moved.key,
            "refine": self.refine_cfg,
            "class_ids": train_ids,
            "data": data.fingerprint,
            "seed": ctx.seed,
        }

        def work(stage_dir: Path) -> dict:
            from transmiter.methods.transmiter_plus import TransMiterPlusModule
            from transmiter.transfer.logit_data import LogitPairDataModule

            start = load_adapter_artifact(
                moved.outputs["artifact"],
                expect_classnames=classnames,
                expect_aux=aux,
                expect_target_model=target.identity,
            ).adapter
            inputs = self.logits(ctx, target, data.items, data.views, names, self._templates(ctx), "fit")
            r = self.refine_cfg
            val = None
            if r["select_on_val"]:
                val_items = [d for d in self._all_splits(ctx).val if d.label in set(train_ids)]
                val_logits = self.logits(
                    ctx, target, val_items, [ViewSpec("test")], names, self._templates(ctx), "val"
                )
                val = (val_logits, torch.tensor([d.label for d in val_items]))
            module = TransMiterPlusModule(
                start,
                class_ids=train_ids,
                projection=r["projection"],
                lr=r["lr"],
                weight_decay=r["weight_decay"],
                warmup_ratio=r["warmup_ratio"],
                noise_alpha=r["noise_alpha"],
                noise_p=r["noise_p"],
                noise_mode=r["noise_mode"],
                select_on_val=r["select_on_val"],
                seed=ctx.seed,
            )
            dm = LogitPairDataModule(
                train=(inputs, data.labels),
                val=val,
                batch_size=_global_batch(r["batch_size"], ctx),
                seed=ctx.seed,
            )
            _fit_resumable(ctx, module, dm, int(r["epochs"]), stage_dir, "refine")
            path = save_adapter_artifact(
                stage_dir / "adapter.safetensors",
                module.refined_adapter(),
                stage="refined",
                source_model=source.identity,
                target_model=target.identity,
                dataset=ctx.dataset_spec.name,
                classnames=classnames,
                aux_names=aux,
                seed=ctx.seed,
                data_used=f"{data.description}; labelled target refinement on classes {train_ids[:3]}...",
                config={"refine": r},
            )
            return {"artifact": str(path)}

        with ctx.timed("refine_s"):
            refined = ctx.run_stage("adapter_refine", identity, work)
        ctx.stage_outputs["adapter_refine"] = {"seconds": refined.seconds, "reused": refined.reused}
        adapter = load_adapter_artifact(
            refined.outputs["artifact"],
            expect_classnames=classnames,
            expect_aux=aux,
            expect_target_model=target.identity,
        ).adapter
        return self._result(ctx, adapter, classnames, aux, data, source, target, refined.outputs["artifact"])


class EFT(TransferMethod):
    """EFT-style logit arithmetic: log p_t^zs + alpha (log p_s^ft - log p_s^zs) over the C classes.

    Needs the fine-tuned source at test time (three encoders per image). PromptTransfer, also named as
    a baseline in the TransMiter paper, is not defined in the available material and is not provided.
    """

    row_name = "EFT"

    def __call__(self, ctx) -> MethodResult:
        from transmiter.transfer.logit_arithmetic import eft_logits

        classnames, _ = self.label_space(ctx)
        source, tuned = self.source_models(ctx)
        target = ctx.load_model(ctx.cfg.pair.target)
        t_zs, labels = self.test_logits(ctx, target, classnames)
        s_zs, _ = self.test_logits(ctx, source, classnames)
        s_ft, _ = self.test_logits(ctx, tuned, classnames, self._teacher_templates(ctx))
        combined = eft_logits(t_zs, s_ft, s_zs, alpha=self.alpha)
        accuracies = self.evaluate_inputs(ctx, combined, labels, len(classnames), None)
        from transmiter.models.costs import image_encoder_flops

        flops = image_encoder_flops(target) + 2 * image_encoder_flops(source)
        return MethodResult(
            metrics=summarize_groups(accuracies),
            row=self._row(ctx),
            protocol=PROTOCOL,
            method=self.name,
            models={"source": source.identity, "source_finetuned": tuned.identity, "target": target.identity},
            costs={"inference_flops_per_image": flops, "trainable_params": 0},
            extra={"alpha": self.alpha},
        )


@dataclass
class _ItemSplit:
    """A minimal DatasetSplits stand-in: one list of items under both split names."""

    name: str
    items: list[Any]

    @property
    def train(self):
        return self.items

    @property
    def test(self):
        return self.items

    @property
    def val(self):
        return self.items


def _global_batch(batch_size: int, ctx) -> int:
    """The largest size <= batch_size that the trainer's world size divides."""
    world = int(ctx.cfg.trainer.get("devices", 1) or 1) * int(ctx.cfg.trainer.get("num_nodes", 1) or 1)
    world = max(world, 1)
    return max(world, (int(batch_size) // world) * world)


def _fit_resumable(ctx, module, datamodule, epochs: int, stage_dir: Path, purpose: str) -> None:
    """trainer.fit with checkpoints in the stage folder; resumes from `last.ckpt` after an interruption."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt_dir = stage_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_epochs=1)
    trainer = ctx.make_trainer(
        "train",
        max_epochs=epochs,
        callbacks=[checkpoint],
        enable_checkpointing=True,
        default_root_dir=str(stage_dir),
        logger=ctx.training_logger(purpose),
    )
    with ctx.timed(f"{purpose}_train_s"):
        try:
            trainer.fit(
                module,
                datamodule=datamodule,
                ckpt_path=str(last) if last.is_file() else None,
                weights_only=True,
            )  # never unpickle arbitrary objects
        except FloatingPointError as err:
            raise FloatingPointError(
                f"{err} The last good checkpoint is {last if last.is_file() else '(none yet)'}; a re-run of the "
                "same command resumes from it."
            ) from err
