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
Settings with targets (cross-dataset, domain generalisation) train every stage on the job's own dataset
(`ctx.training`) and score each target: over its own classes plus K - C auxiliary names drawn for it
(`target_label_space: own`), or over the source's K names with the predictions restricted to the target's
classes through its class map (`source`, the reference's `dg_class_idx`).
Never is a checkpoint, epoch, lambda or alpha chosen on test data: schedules are fixed in advance
(TransMiter+ may select its epoch on the few-shot validation split with `refine.select_on_val`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transmiter.config.schema import FitConfig, RefineConfig, defaults_of
from transmiter.data.datum import files_identity
from transmiter.evaluation.clip_eval import split_features
from transmiter.evaluation.evaluate import evaluate_scores
from transmiter.evaluation.metrics import summarize_groups
from transmiter.features.extract import ViewSpec
from transmiter.methods.base import MethodResult
from transmiter.models.heads import text_head

PROTOCOL = "masked-joint"
log = logging.getLogger("transmiter")
# Keys of the fit block left out of a fitted stage's identity at these values: with them the adapter is the
# reference's (square W, no dropout), so the identity names only settings that change it.
_FIT_IDENTITY_DEFAULTS = {"proj_dim": None, "dropout": 0.0}


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


def masked_joint_accuracies(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    groups: Mapping[str, Sequence[int]],
    num_classes: int,
    adapter: nn.Module | None,
    make_trainer,
    class_map: Sequence[int] | None = None,
) -> dict[str, float]:
    """Top-1 accuracy (%) per group of `adapter(inputs)[:, :C]` (or of `inputs`): one head over the C classes,
    each group's images scored with the other groups' classes masked (group "all": nothing masked). With a
    `class_map` (label -> column: a dataset holding some of the C classes in its own label space), the labels
    become columns and only the mapped columns compete, as the reference's `dg_class_idx` does."""
    allowed = None
    if class_map is not None:
        columns = torch.tensor(list(class_map), dtype=torch.long)
        labels = columns[labels]
        allowed = torch.full((num_classes,), -math.inf)
        allowed[columns] = 0.0
    accuracies = {}
    for group, ids in groups.items():
        keep = torch.isin(labels, torch.tensor(list(ids)))
        mask = allowed
        if group != "all":
            mask = torch.full((num_classes,), -math.inf)
            mask[list(ids)] = 0.0
            if allowed is not None:
                mask = mask + allowed
        scorer = MaskedHead(num_classes, adapter, mask)
        accuracies[group] = evaluate_scores(
            inputs[keep], labels[keep], scorer, make_trainer, num_classes=num_classes
        )
    return accuracies


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


@dataclass
class Transfer:
    """What the transfer step gives a row: the stage (its outputs hold the moved adapter's artifact), the
    label space, the fitting data, both models, the transfer figures and the pre-transfer guard."""

    stage: Any  # StageResult of `adapter_transfer`
    classnames: list[str]
    aux: list[str]
    data: FitData
    source: Any
    target: Any
    figures: dict[str, Any]
    guard: dict[str, Any]

    def extra(self) -> dict[str, Any]:
        """The record fields every row built on this transfer carries."""
        return {"transfer_figures": dict(self.figures), "guard": dict(self.guard)}


def _digest(values: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]


def _load_stage_artifact(path: str, **expect: Any):
    """The adapter saved by a stage, checked against what the caller expects; a damaged file names the
    stage folder to delete."""
    from transmiter.stages import unreadable_output
    from transmiter.transfer.artifact import ArtifactCorruptedError, load_adapter_artifact

    try:
        return load_adapter_artifact(path, **expect).adapter
    except (ArtifactCorruptedError, FileNotFoundError) as err:
        raise unreadable_output(path, err) from err


_WARNED: set[tuple[str, str]] = set()


def _warn_once(ctx, message: str) -> None:
    """Log `message` once per job (several rows of a study job meet the same condition)."""
    key = (str(ctx.output_dir), message)
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)


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
        self.fit_cfg = {**defaults_of(FitConfig), **dict(fit or {})}
        self.refine_cfg = {**defaults_of(RefineConfig), **dict(refine or {})}
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
        """The unlabelled fitting images: the few-shot split's or, with `fit_images: all`, every training
        image of the training classes."""
        if self.fit_images == "all":
            return self._training_images(ctx, -1, "all training images", "no labels")
        return self._fewshot_images(ctx, "no labels")

    def refine_data(self, ctx) -> FitData:
        """TransMiter+'s labelled set: ALWAYS the setting's K-shot training images of the training (base)
        classes, whatever `fit_images` says (the fitting images may be all unlabelled training images; the
        labelled refinement must stay few-shot)."""
        return self._fewshot_images(ctx, "labelled")

    def _fewshot_images(self, ctx, use: str) -> FitData:
        shots = int(ctx.cfg.setting.shots)
        return self._training_images(ctx, shots, f"{shots}-shot training images", use)

    def _training_images(self, ctx, shots: int, what: str, use: str) -> FitData:
        splits = self._all_splits(ctx, shots)
        keep = set(self._train_ids(ctx, len(splits.classnames)))
        items = [d for d in splits.train if d.label in keep]
        views = [ViewSpec("train", v, seed=ctx.seed) for v in range(self.views)]
        description = (
            f"{what} of the {len(keep)} training classes ({ctx.cfg.setting.train_subsample}), "
            f"{len(items)} images x {self.views} augmented views, {use}"
        )
        fingerprint = _digest(
            [f"{d.impath}\t{d.label}" for d in items]
            + [repr(v) for v in views]
            + [repr(ctx.train_crop_scale), files_identity(items)]
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

    def scoring_space(
        self, ctx, classnames: list[str], aux: list[str]
    ) -> tuple[list[str], int, tuple[int, ...] | None]:
        """(names the test logits of `ctx`'s dataset are computed over, how many of them are its classes, the
        class map into them or None) for the training label space `classnames + aux` (K names). A setting
        target scored in its own label space gets its classes plus K - C auxiliary names drawn for it (the
        adapter reads K logits, whatever the dataset); in the source's, the training names themselves."""
        from transmiter.transfer.vocabulary import select_auxiliary_names

        target = ctx.target
        if target is None or target.label_space == "source":
            return classnames + aux, len(classnames), None if target is None else target.class_map
        own = list(self._all_splits(ctx).classnames)
        own_aux = select_auxiliary_names(
            own,
            len(classnames) + len(aux),
            seed=ctx.seed,
            vocabulary=self.aux_vocabulary,
            strategy=self.aux_strategy,
        )
        return own + own_aux, len(own), None

    def _templates(self, ctx, kind: str | None = None) -> list[str]:
        return ctx.templates(kind or self.templates)

    def artifact_config(self, K: int) -> dict[str, Any]:
        """The settings an adapter artifact's `config_hash` covers (fitting, transfer, label space)."""
        return {
            "fit": self.fit_cfg,
            "lam": self.lam,
            "scale_lam_by_n": self.scale_lam_by_n,
            "K": int(K),
            "aux": {"vocabulary": self.aux_vocabulary, "strategy": self.aux_strategy, "grow_k": self.grow_k},
            "views": self.views,
            "fit_images": self.fit_images,
            "templates": self.templates,
        }

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
        return torch.cat([feats @ head.T for feats in self.view_features(ctx, bundle, items, views, subset)])

    def view_features(self, ctx, bundle, items, views: Sequence[ViewSpec], subset: str) -> list[torch.Tensor]:
        """The cached image features of `items` under each view ([N, D] per view) that `logits` scores."""
        splits = _ItemSplit(ctx.dataset_spec.name, items)
        split = "test" if views[0].transform == "test" else "train"
        return [split_features(ctx, bundle, splits, split, subset, view=view)[0] for view in views]

    def source_models(self, ctx):
        """(zero-shot source bundle, fine-tuned source bundle)."""
        source = ctx.load_model(ctx.cfg.pair.source)
        with ctx.timed("source_finetune_s"):
            tuned_spec = self.source_finetune.tuned_spec(ctx, ctx.cfg.pair.source)
        return source, self.source_finetune.load_tuned(ctx, tuned_spec)

    # ------------------------------------------------------------------ stages
    def fitted_adapter(self, ctx):
        """Stage 3: the adapter fitted on the source (path of its artifact)."""
        classnames, aux = self.label_space(ctx)
        data = self.fit_data(ctx)
        source, tuned = self.source_models(ctx)
        result = self._fit_stage(ctx, source, tuned, classnames, aux, data)
        return result, classnames, aux, data, source

    def _fit_stage(self, ctx, model, tuned, classnames, aux, data: FitData):
        """The adapter fitted to map `model`'s zero-shot logits (K names) to those of its fine-tuned
        version `tuned` (C classes) on the fitting images: the source for TransMiter, the target for
        the target-oracle diagnostic. One content-addressed stage per (model, teacher, data, recipe)."""
        from transmiter.transfer.artifact import save_adapter_artifact

        names = classnames + aux
        identity = {
            "stage": "adapter_fit/v1",
            "source": model.identity,
            "teacher": tuned.identity,
            "dataset": ctx.dataset_spec.name,
            "names": _digest(names),
            "data": data.fingerprint,
            "templates": self._templates(ctx),
            "teacher_templates": self._teacher_templates(ctx),
            "fit": _fit_identity(self.fit_cfg),
            "K": len(names),
            "seed": ctx.seed,
        }

        def work(stage_dir: Path) -> dict:
            features_before = ctx.timings.get("feature_pass_s", 0.0)
            inputs = self.logits(ctx, model, data.items, data.views, names, self._templates(ctx), "fit")
            teacher = self.logits(
                ctx, tuned, data.items, data.views, classnames, self._teacher_templates(ctx), "fit"
            )
            feature_pass_s = ctx.timings.get("feature_pass_s", 0.0) - features_before
            # curves per fitted model: a study fits the source, and the target for its oracle row
            adapter = self._train_fit(ctx, inputs, teacher, len(names), stage_dir, f"fit/{model.spec.label}")
            path = save_adapter_artifact(
                stage_dir / "adapter.safetensors",
                adapter,
                stage="fitted",
                source_model=model.identity,
                dataset=ctx.dataset_spec.name,
                classnames=classnames,
                aux_names=aux,
                data_used=data.description,
                seed=ctx.seed,
                config={"fit": self.fit_cfg},
                extra={"teacher_model": tuned.identity},
            )
            return {
                "artifact": str(path),
                "num_rows": int(inputs.shape[0]),
                "feature_pass_s": feature_pass_s,
            }

        with ctx.timed("fit_s"):
            result = ctx.run_stage("adapter_fit", identity, work)
        ctx.stage_outputs["adapter_fit"] = _stage_entry(result)
        return result

    def load_fitted(self, ctx, stage, classnames, aux, model):
        """The fitted adapter of a fit stage, checked against the label space and the model it was fitted on."""
        return _load_stage_artifact(
            stage.outputs["artifact"],
            expect_classnames=classnames,
            expect_aux=aux,
            expect_k=len(classnames) + len(aux),
            expect_dataset=ctx.dataset_spec.name,
            expect_stage="fitted",
            expect_source_model=model.identity,
        )

    def _teacher_templates(self, ctx) -> list[str]:
        return self._templates(ctx, getattr(self.source_finetune, "templates", self.templates))

    def _train_fit(self, ctx, inputs, teacher, K: int, stage_dir: Path, curves: str = "fit"):
        from transmiter.methods.adapter_fit import AdapterFitModule
        from transmiter.transfer.logit_data import LogitPairDataModule

        f = self.fit_cfg
        module = AdapterFitModule.from_settings(K, f, seed=ctx.seed)
        dm = LogitPairDataModule(
            train=(inputs, teacher), batch_size=_global_batch(f["batch_size"], ctx), seed=ctx.seed
        )
        _fit_resumable(ctx, module, dm, int(f["epochs"]), stage_dir, "fit", curves)
        return module.fitted_adapter()

    def transferred_adapter(self, ctx) -> Transfer:
        """Stage 4: the fitted adapter moved to the target without backpropagation, with the transfer
        figures on the fitting set (kept in the stage's outputs) and the pre-transfer guard."""
        from transmiter.transfer.artifact import save_adapter_artifact

        fitted, classnames, aux, data, source = self.fitted_adapter(ctx)
        target = ctx.load_model(ctx.cfg.pair.target)
        guard = self.pre_transfer_guard(ctx, classnames, target)
        names = classnames + aux
        identity = {
            "stage": "adapter_transfer/v1",
            "fitted": fitted.key,
            "target": target.identity,
            "lam": self.lam,
            "scale_lam_by_n": self.scale_lam_by_n,
        }

        def work(stage_dir: Path) -> dict:
            features_before = ctx.timings.get("feature_pass_s", 0.0)
            loaded = self.load_fitted(ctx, fitted, classnames, aux, source)
            moved, figures = self._rotate_to_target(ctx, loaded, source, target, data, names)
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
                config=self.artifact_config(len(names)),
            )
            return {
                "artifact": str(path),
                "num_samples": moved.num_samples,
                "lam_effective": moved.lam_effective,
                "feature_pass_s": ctx.timings.get("feature_pass_s", 0.0) - features_before,
                "figures": figures,
            }

        with ctx.timed("transfer_s"):
            result = ctx.run_stage("adapter_transfer", identity, work)
        ctx.stage_outputs["adapter_transfer"] = _stage_entry(result)
        figures = result.outputs.get("figures")
        if figures is None:  # a stage stored before the figures were: the same computation, on cached logits
            loaded = self.load_fitted(ctx, fitted, classnames, aux, source)
            figures = self._rotate_to_target(ctx, loaded, source, target, data, names)[1]
        return Transfer(result, classnames, aux, data, source, target, figures, guard)

    def _rotate_to_target(self, ctx, adapter, source, target, data: FitData, names, rotation=None):
        """(TransferResult, transfer figures) of moving `adapter` to `target` on the fitting rows; the
        rotation is the regularised Procrustes solution, or `rotation` when given (e.g. the identity)."""
        from transmiter.transfer.alignment import transfer_figures
        from transmiter.transfer.transfer import rotate_adapter, transfer_adapter_with_details

        src = self.logits(ctx, source, data.items, data.views, names, self._templates(ctx), "fit")
        tgt = self.logits(ctx, target, data.items, data.views, names, self._templates(ctx), "fit")
        moved = None
        if rotation is None:
            with ctx.timed("transfer_compute_s"):
                # distributed=False: every process holds ALL the pairs here (the logits come from the
                # shared feature cache, not from a per-rank shard), so summing the statistic over a
                # process group would multiply M = Z_t^T Z_s and N by the world size.
                moved = transfer_adapter_with_details(
                    adapter,
                    src,
                    tgt,
                    lam=self.lam,
                    scale_lam_by_n=self.scale_lam_by_n,
                    distributed=False,
                )
            rotation = moved.rotation
        figures = transfer_figures(adapter, src, tgt, rotation)
        return (moved if moved is not None else rotate_adapter(adapter, rotation)), figures

    def pre_transfer_guard(self, ctx, classnames: Sequence[str], target) -> dict[str, Any]:
        """Is the fine-tuned source better than the target's zero-shot model at all? Both are scored on
        the few-shot VALIDATION images of the training classes (never test), over the training classes.
        When the source is below, its adaptation has little to teach the target: warn, do not stop."""
        train_ids = self._train_ids(ctx, len(classnames))
        keep = set(train_ids)
        splits = self._all_splits(ctx)
        if splits.val_is_test:  # ImageNet: its protocol's val split is the test set, never looked at here
            return {"checked": False, "reason": f"{splits.name} has no validation split (val = test)"}
        items = [d for d in splits.val if d.label in keep]
        if not items:
            return {"checked": False, "reason": "no validation images of the training classes"}
        _, tuned = self.source_models(ctx)
        labels = torch.tensor([d.label for d in items])
        position = {c: i for i, c in enumerate(train_ids)}
        local = torch.tensor([position[int(y)] for y in labels])
        accuracy = {}
        for key, bundle, templates in (
            ("source_finetuned_val_acc", tuned, self._teacher_templates(ctx)),
            ("target_zeroshot_val_acc", target, self._templates(ctx)),
        ):
            logits = self.logits(ctx, bundle, items, [ViewSpec("test")], classnames, templates, "val")
            accuracy[key] = 100.0 * float((logits[:, train_ids].argmax(1) == local).float().mean())
        fires = accuracy["source_finetuned_val_acc"] < accuracy["target_zeroshot_val_acc"]
        guard = {
            "checked": True,
            "fires": fires,
            **accuracy,
            "split": "val",
            "num_images": len(items),
            "classes": str(ctx.cfg.setting.train_subsample),
        }
        if fires:
            src_acc, tgt_acc = accuracy["source_finetuned_val_acc"], accuracy["target_zeroshot_val_acc"]
            _warn_once(
                ctx,
                f"transfer guard: the fine-tuned source ({src_acc:.2f} %) is below the target's zero-shot "
                f"({tgt_acc:.2f} %) on the few-shot validation images of the training classes ({len(items)}): "
                "its adaptation is unlikely to help the target (the run goes on; records say so in extra.guard)",
            )
        return guard

    # ------------------------------------------------------------------ evaluation
    def evaluate_inputs(
        self,
        ctx,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int,
        adapter: nn.Module | None,
        class_map: Sequence[int] | None = None,
    ) -> dict[str, float]:
        """Masked-joint accuracies of `adapter(inputs)[:, :C]` (or of `inputs` itself) per group; with a
        `class_map` (a setting target scored in the source's label space) only its mapped columns compete."""
        with ctx.timed("scoring_s"):
            return masked_joint_accuracies(
                inputs,
                labels,
                self._groups(ctx, num_classes),
                num_classes,
                adapter,
                lambda: ctx.make_trainer("eval"),
                class_map=class_map,
            )

    def test_logits(self, ctx, bundle, names: Sequence[str], templates: Sequence[str] | None = None):
        splits = self._all_splits(ctx)
        logits = self.logits(
            ctx, bundle, splits.test, [ViewSpec("test")], names, templates or self._templates(ctx), "all"
        )
        labels = torch.tensor([d.label for d in splits.test], dtype=torch.long)
        return logits, labels

    def costs(self, adapter, target) -> dict[str, float]:
        from transmiter.models.encoder_flops import image_encoder_flops
        from transmiter.transfer.adapter_cost import adapter_cost

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

    def _row(self, ctx, label: str | None = None) -> str:
        from transmiter.models.labels import node_label

        return f"{label or self.row_name} {node_label(ctx.cfg.pair.source)}→{node_label(ctx.cfg.pair.target)}"


class TransMiter(TransferMethod):
    """The transferred adapter applied to the target's zero-shot logits (no labels on the target)."""

    row_name = "TransMiter"

    def __call__(self, ctx) -> MethodResult:
        t = self.transferred_adapter(ctx.training)  # fitted and moved once, on the job's own dataset
        adapter = self._load_moved(t.stage, t)
        return self._result(
            ctx,
            adapter,
            t.classnames,
            t.aux,
            t.data,
            t.source,
            t.target,
            t.stage.outputs["artifact"],
            extra=t.extra(),
        )

    @staticmethod
    def _load_moved(stage, t: Transfer):
        return _load_stage_artifact(
            stage.outputs["artifact"],
            expect_classnames=t.classnames,
            expect_aux=t.aux,
            expect_target_model=t.target.identity,
        )

    def _result(
        self, ctx, adapter, classnames, aux, data, source, target, artifact, extra=None, on=None
    ) -> MethodResult:
        """The row of `adapter` (fitted over `classnames + aux`) applied to the zero-shot test logits of `on`
        (default: the target model) on the dataset `ctx` scores."""
        on = target if on is None else on
        names, num_classes, class_map = self.scoring_space(ctx, classnames, aux)
        logits, labels = self.test_logits(ctx, on, names)
        accuracies = self.evaluate_inputs(ctx, logits, labels, num_classes, adapter, class_map)
        costs = {**self.costs(adapter, on), **_stage_costs(ctx.stage_outputs)}
        return MethodResult(
            metrics=summarize_groups(accuracies),
            row=self._row(ctx),
            protocol=PROTOCOL,
            method=self.name,
            models={"source": source.identity, "target": target.identity},
            costs=costs,
            artifacts={"adapter": artifact} if artifact else {},
            extra={
                "K": len(names),
                "lam": self.lam,
                "fit_data": data.description,
                "source_finetune": getattr(self.source_finetune, "name", None),
                # per stage: reused in this run or not; `timings` hold this run's own wall times (a
                # reused stage costs ~0 there), costs.*_time_s the seconds it took when it first ran
                "stages_reused": {k: v["reused"] for k, v in ctx.stage_outputs.items() if "reused" in v},
                **dict(extra or {}),
            },
        )


class TransMiterPlus(TransMiter):
    """TransMiter followed by few-shot labelled refinement on the target (base classes)."""

    row_name = "TransMiter+"

    def __call__(self, ctx) -> MethodResult:
        from transmiter.transfer.artifact import save_adapter_artifact

        scored, ctx = ctx, ctx.training  # refined once on the job's own dataset, then scored on `scored`
        t = self.transferred_adapter(ctx)
        moved, classnames, aux, data, source, target = (
            t.stage,
            t.classnames,
            t.aux,
            t.data,
            t.source,
            t.target,
        )
        names = classnames + aux
        train_ids = self._train_ids(ctx, len(classnames))
        labelled = self.refine_data(ctx)  # the K-shot labelled images, also under fit_images=all
        identity = {
            "stage": "adapter_refine/v1",
            "transferred": moved.key,
            "refine": self.refine_cfg,
            "class_ids": train_ids,
            "data": labelled.fingerprint,
            "seed": ctx.seed,
        }

        def work(stage_dir: Path) -> dict:
            from transmiter.methods.transmiter_plus import TransMiterPlusModule
            from transmiter.transfer.logit_data import LogitPairDataModule

            start = self._load_moved(moved, t)
            features_before = ctx.timings.get("feature_pass_s", 0.0)
            inputs = self.logits(
                ctx, target, labelled.items, labelled.views, names, self._templates(ctx), "fit"
            )
            r = self.refine_cfg
            val = None
            if r["select_on_val"]:
                if self._all_splits(ctx).val_is_test:
                    raise ValueError(
                        f"method.refine.select_on_val=true: {ctx.dataset_spec.name} has no validation split "
                        "(its protocol's val is the test set), so selecting an epoch on it would select on "
                        "test; set method.refine.select_on_val=false (the last epoch is kept)"
                    )
                val_items = [d for d in self._all_splits(ctx).val if d.label in set(train_ids)]
                val_logits = self.logits(
                    ctx, target, val_items, [ViewSpec("test")], names, self._templates(ctx), "val"
                )
                val = (val_logits, torch.tensor([d.label for d in val_items]))
            module = TransMiterPlusModule.from_settings(start, train_ids, r, seed=ctx.seed)
            feature_pass_s = ctx.timings.get("feature_pass_s", 0.0) - features_before
            dm = LogitPairDataModule(
                train=(inputs, labelled.labels),
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
                data_used=f"labelled target refinement: {labelled.description}; fitted on: {data.description}",
                config={"refine": r, **self.artifact_config(len(names))},
            )
            return {
                "artifact": str(path),
                "num_rows": int(inputs.shape[0]),
                "num_images": len(labelled.items),
                "feature_pass_s": feature_pass_s,
            }

        with ctx.timed("refine_s"):
            refined = ctx.run_stage("adapter_refine", identity, work)
        ctx.stage_outputs["adapter_refine"] = _stage_entry(refined)
        adapter = self._load_moved(refined, t)
        return self._result(
            scored,
            adapter,
            classnames,
            aux,
            data,
            source,
            target,
            refined.outputs["artifact"],
            extra={"refine_data": labelled.description, **t.extra()},
        )


# The diagnostic rows of a TransMiter transfer: record `extra.diagnostic` -> row label. Reports show them
# in their own block, by that field.
DIAGNOSTIC_ROWS: dict[str, str] = {
    "source": "TransMiter (source)",  # the fitted adapter on the source's own zero-shot logits
    "no_rotation": "TransMiter (no rotation)",  # the source adapter on the target with Q = I
    "target_oracle": "TransMiter (target oracle)",  # an adapter fitted on the target's own fine-tuning
}


class TransMiterDiagnostics(TransMiter):
    """Where a transfer gains or loses, one row each (`rows`, default all three, see DIAGNOSTIC_ROWS):

    * source: the fitted adapter applied to the SOURCE's zero-shot test logits - how well it imitates
      the fine-tuned source (the reference's knowledge-extraction evaluation);
    * no_rotation: the source adapter moved to the target with Q = I (lambda -> infinity, the
      reference's "before basis change"), through the same rotation code as the transfer;
    * target_oracle: an adapter fitted exactly like the source's (same recipe, images and views) on the
      TARGET's zero-shot -> fine-tuned logits (the source's fine-tuner applied to the target), applied
      to the target: what logit-space adaptation can give the target at all.

    Same recipe and stages as TransMiter: in a study all but the oracle's fit are reused. Returns one
    result per row; a row that cannot run (the fine-tuner cannot train the target) comes back marked
    `extra.skipped` with the reason, which the job prints and lists in job.json instead of a record.
    """

    def __init__(self, *args: Any, rows: Sequence[str] = tuple(DIAGNOSTIC_ROWS), **kwargs: Any):
        super().__init__(*args, **kwargs)
        rows = list(rows)
        unknown = [r for r in rows if r not in DIAGNOSTIC_ROWS]
        if not rows or unknown or len(set(rows)) != len(rows):
            raise ValueError(
                f"method.rows={rows}: use a non-empty list of distinct diagnostics among {list(DIAGNOSTIC_ROWS)}"
            )
        self.rows = rows

    def __call__(self, ctx) -> list[MethodResult]:
        runners = {"source": self._source, "no_rotation": self._no_rotation, "target_oracle": self._oracle}
        results = []
        for kind in self.rows:
            row_ctx = ctx.fresh_timings()  # each row its own timings and stage books
            with row_ctx.timed("total_s"):
                result = runners[kind](row_ctx)
            result.row = self._row(row_ctx, DIAGNOSTIC_ROWS[kind])
            result.extra = {**result.extra, "diagnostic": kind}
            result.timings = dict(row_ctx.timings)
            results.append(result)
        return results

    # Each row trains (or reuses) on the job's own dataset and scores the dataset of the context it gets.
    def _source(self, scored) -> MethodResult:
        ctx = scored.training
        fitted, classnames, aux, data, source = self.fitted_adapter(ctx)
        target = ctx.load_model(ctx.cfg.pair.target)
        adapter = self.load_fitted(ctx, fitted, classnames, aux, source)
        extra = {"evaluated_on": "source"}
        return self._result(
            scored,
            adapter,
            classnames,
            aux,
            data,
            source,
            target,
            fitted.outputs["artifact"],
            extra,
            on=source,
        )

    def _no_rotation(self, scored) -> MethodResult:
        ctx = scored.training
        fitted, classnames, aux, data, source = self.fitted_adapter(ctx)
        target = ctx.load_model(ctx.cfg.pair.target)
        guard = self.pre_transfer_guard(ctx, classnames, target)
        fitted_adapter = self.load_fitted(ctx, fitted, classnames, aux, source)
        identity = torch.eye(fitted_adapter.W.shape[0], dtype=torch.float64)
        adapter, figures = self._rotate_to_target(
            ctx, fitted_adapter, source, target, data, classnames + aux, rotation=identity
        )
        extra = {"evaluated_on": "target", "transfer_figures": figures, "guard": guard}
        return self._result(scored, adapter, classnames, aux, data, source, target, None, extra)

    def _oracle(self, scored) -> MethodResult:
        from transmiter.methods.study import needs_tower_split, skip_tuning_unsupported

        ctx = scored.training
        classnames, aux = self.label_space(ctx)
        data = self.fit_data(ctx)
        source = ctx.load_model(ctx.cfg.pair.source)
        target = ctx.load_model(ctx.cfg.pair.target)
        reason = skip_tuning_unsupported(target) if needs_tower_split(self.source_finetune) else None
        if reason:
            log.warning("%s: row skipped: %s", self._row(ctx, DIAGNOSTIC_ROWS["target_oracle"]), reason)
            return MethodResult(metrics={}, row="", method=self.name, extra={"skipped": reason})
        with ctx.timed("target_finetune_s"):
            tuned_spec = self.source_finetune.tuned_spec(ctx, ctx.cfg.pair.target)
            tuned = self.source_finetune.load_tuned(ctx, tuned_spec)
        fitted = self._fit_stage(ctx, target, tuned, classnames, aux, data)
        adapter = self.load_fitted(ctx, fitted, classnames, aux, target)
        result = self._result(
            scored,
            adapter,
            classnames,
            aux,
            data,
            source,
            target,
            fitted.outputs["artifact"],
            {"evaluated_on": "target", "target_finetuned": tuned.identity},
        )
        # the fine-tuning this row's teacher comes from is the target's own, not the source's
        if "source_finetune_time_s" in result.costs:
            result.costs["target_finetune_time_s"] = result.costs.pop("source_finetune_time_s")
        return result


# EFT-style logit-arithmetic variants (reference `eval_baseline_table`): the function of
# transmiter.transfer.logit_arithmetic, the row label, and the logits each needs at test time
# ("t" target zero-shot, "f" fine-tuned source, "s" source zero-shot).
EFT_VARIANTS: dict[str, tuple[str, str, str]] = {
    "eft": ("eft_logits", "EFT", "tfs"),  # log p_t^zs + a (log p_s^ft - log p_s^zs)
    "base_change": ("base_change", "EFT base-change", "tfs"),  # log p_s^ft + a (log p_t^zs - log p_s^zs)
    "ensemble": ("ensemble", "EFT ensemble", "tf"),  # a log p_s^ft + (1 - a) log p_t^zs
    "self_ensemble": ("self_ensemble", "EFT self-ensemble", "sf"),  # a log p_s^ft + (1 - a) log p_s^zs
}


def combine_logits(variant: str, t_zs, s_ft, s_zs, alpha: float = 1.0) -> torch.Tensor:
    """The scores of one EFT variant (see EFT_VARIANTS); unused inputs may be None."""
    from transmiter.transfer import logit_arithmetic

    if variant not in EFT_VARIANTS:
        raise ValueError(f"method.variant={variant!r}: use one of {sorted(EFT_VARIANTS)}")
    fn = getattr(logit_arithmetic, EFT_VARIANTS[variant][0])
    if variant == "ensemble":
        return fn(t_zs, s_ft, alpha=alpha)
    if variant == "self_ensemble":
        return fn(s_zs, s_ft, alpha=alpha)
    return fn(t_zs, s_ft, s_zs, alpha=alpha)


class EFT(TransferMethod):
    """EFT-style logit arithmetic over the C classes, evaluated like TransMiter (masked-joint).

    `variant` (default "eft": log p_t^zs + alpha (log p_s^ft - log p_s^zs)) picks one of the reference's
    baselines, EFT_VARIANTS; each gets its own row label. alpha is fixed in the config (default 1, as the
    reference's `--baseline_alpha`), never selected on test data. Note that at alpha = 1 "ensemble" and
    "self_ensemble" reduce to the fine-tuned source alone (log p_s^ft).

    Needs the fine-tuned source at test time (up to three encoders per image). PromptTransfer, also named
    as a baseline in the TransMiter paper, is not defined in the available material and is not provided.
    """

    row_name = "EFT"

    def __init__(self, *args: Any, variant: str = "eft", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if variant not in EFT_VARIANTS:
            raise ValueError(f"method.variant={variant!r}: use one of {sorted(EFT_VARIANTS)}")
        self.variant = variant
        self.row_name = EFT_VARIANTS[variant][1]

    def __call__(self, ctx) -> MethodResult:
        from transmiter.models.encoder_flops import image_encoder_flops

        uses = EFT_VARIANTS[self.variant][2]
        training = ctx.training  # the source is fine-tuned on the job's own dataset
        classnames, aux = self.label_space(training)
        names, num_classes, class_map = self.scoring_space(ctx, classnames, aux)
        names = names[:num_classes]  # logit arithmetic over the classes only
        source, tuned = self.source_models(training)
        target = ctx.load_model(ctx.cfg.pair.target)
        t_zs = s_zs = None
        s_ft, labels = self.test_logits(ctx, tuned, names, self._teacher_templates(ctx))
        if "t" in uses:
            t_zs, _ = self.test_logits(ctx, target, names)
        if "s" in uses:
            s_zs, _ = self.test_logits(ctx, source, names)
        combined = combine_logits(self.variant, t_zs, s_ft, s_zs, alpha=self.alpha)
        accuracies = self.evaluate_inputs(ctx, combined, labels, num_classes, None, class_map)
        # image encoders run per test image: the target's (if used), the fine-tuned source's and the
        # zero-shot source's (if used)
        flops = image_encoder_flops(source) * (1 + ("s" in uses))
        if "t" in uses:
            flops += image_encoder_flops(target)
        costs = {"inference_flops_per_image": flops, "trainable_params": 0}
        costs.update(
            {k: v for k, v in _stage_costs(ctx.stage_outputs).items() if k == "source_finetune_time_s"}
        )
        return MethodResult(
            metrics=summarize_groups(accuracies),
            row=self._row(ctx),
            protocol=PROTOCOL,
            method=self.name,
            models={"source": source.identity, "source_finetuned": tuned.identity, "target": target.identity},
            costs=costs,
            extra={
                "alpha": self.alpha,
                "variant": self.variant,
                "source_finetune": getattr(self.source_finetune, "name", None),
                "guard": self.pre_transfer_guard(training, classnames, target),
            },
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


def _stage_costs(stages: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Training cost of a transfer row from its stages, each as FIRST measured (so a row that reuses a
    stage, e.g. TransMiter+ after TransMiter in a study, still reports its real cost): fit_time_s,
    transfer_time_s, refine_time_s, their sum train_time_s, and feature_pass_time_s (image-feature passes
    inside those stages, when recorded). The source fine-tuning is reported apart
    (source_finetune_time_s: the weak model's own adaptation, done once)."""
    names = {
        "adapter_fit": "fit_time_s",
        "adapter_transfer": "transfer_time_s",
        "adapter_refine": "refine_time_s",
    }
    costs = {names[k]: float(stages[k]["seconds"]) for k in names if k in stages}
    costs["train_time_s"] = sum(costs.values())
    features = [stages[k].get("feature_pass_s") for k in names if k in stages]
    if any(f is not None for f in features):
        costs["feature_pass_time_s"] = sum(f for f in features if f is not None)
    for kind in ("skip_tuning", "ft"):
        if kind in stages and "train_time_s" in stages[kind]:
            costs["source_finetune_time_s"] = float(stages[kind]["train_time_s"])
    return costs


def _fit_identity(fit_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The fit settings a fitted stage is keyed on (see `_FIT_IDENTITY_DEFAULTS`)."""
    return {
        k: v
        for k, v in fit_cfg.items()
        if not (k in _FIT_IDENTITY_DEFAULTS and v == _FIT_IDENTITY_DEFAULTS[k])
    }


def _stage_entry(result) -> dict[str, Any]:
    """A stage's entry in `ctx.stage_outputs`: the seconds it took when it first ran (also when reused
    now), whether it was reused, and the image-feature seconds spent inside it (None: not recorded,
    a stage cached before this was measured)."""
    features = result.outputs.get("feature_pass_s")
    return {
        "seconds": float(result.seconds),
        "reused": bool(result.reused),
        "feature_pass_s": None if features is None else float(features),
    }


def _global_batch(batch_size: int, ctx) -> int:
    """The largest size <= batch_size that the trainer's world size divides."""
    world = int(ctx.cfg.trainer.get("devices", 1) or 1) * int(ctx.cfg.trainer.get("num_nodes", 1) or 1)
    world = max(world, 1)
    return max(world, (int(batch_size) // world) * world)


def _fit_resumable(
    ctx, module, datamodule, epochs: int, stage_dir: Path, purpose: str, curves: str | None = None
) -> None:
    """trainer.fit with checkpoints in the stage folder; resumes from `last.ckpt` after an interruption
    (exactly: see transmiter.methods.resume)."""
    from transmiter.methods.resume import fit_resumable

    with ctx.timed(f"{purpose}_train_s"):
        fit_resumable(
            ctx, module, datamodule, epochs=epochs, stage_dir=stage_dir, purpose=purpose, curves=curves
        )
