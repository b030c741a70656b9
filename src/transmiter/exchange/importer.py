"""`transmiter features import FOLDER [--out DIR] [overrides]`: the study's transfer rows computed from
feature files in the TransMiter authors' layout (`transmiter.features.released`), no images needed.

    transmiter features import data/base2new_promptsrc method.methods.transmiter.aux_vocabulary=data/classnames_dictionary.csv
    transmiter features import exported/ experiment=smoke_study --out outputs/imported
    transmiter report outputs/imported                # per-dataset table, both averages

For every `<dataset>/<seed>/<shots>/` folder, with the study's settings (`method=study`, default; every
`method.methods.*` override applies) and the pair whose model names match the files' keys (found among
conf/pair, or `pair=...`):

1. zero-shot heads of the source and the target (local open_clip weights) over the C class names and
   the seed's K - C auxiliary names, with the dataset's templates, as the study builds them; logits =
   L2-normalised features @ head;
2. TransMiter: `transmiter.fit_adapter` on (source zero-shot logits, `<source>_ft_logits`) of the train
   rows, `transmiter.transfer_adapter` to the target; TransMiter+: `transmiter.refine_adapter` on the
   train rows of the base classes; each a content-addressed stage (a re-run reuses it);
3. the study's EFT variants from `<source>_ft_logits` on the test rows, and TransMiter's diagnostics (the
   fitted adapter on the source and unrotated on the target; the target oracle when the train file holds
   `<target>_ft_logits`);
4. evaluation on the test rows, masked-joint as the study (base images with the novel columns masked and
   vice versa), with the file's `base` / `novel` groups; rows for the zero-shot models and the
   fine-tuned logits the files hold come alongside;
5. one results record per row under `<out>/<dataset>/<seed>/<shots>/`, and the table at the end.

Everything is checked before any model is loaded: each file (keys, sizes, NaN), the dataset name, the
pair, the local weights, the feature sizes against the models, the settings the files cannot serve.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from transmiter import api
from transmiter.config import compose_config, validate_config
from transmiter.config.compose import CONFIG_DIR
from transmiter.config.instantiate import dataset_templates, instantiate
from transmiter.context import RunContext
from transmiter.evaluation.metrics import summarize_groups
from transmiter.features.released import FeatureFile, FeatureRun, find_runs, model_key
from transmiter.methods.base import MethodResult
from transmiter.methods.transmiter import (
    DIAGNOSTIC_ROWS,
    EFT,
    EFT_VARIANTS,
    TransMiter,
    TransMiterDiagnostics,
    TransMiterPlus,
    combine_logits,
    masked_joint_accuracies,
)
from transmiter.models.clip import load_clip, weights_available
from transmiter.models.heads import text_head
from transmiter.models.templates import template_set
from transmiter.planning import JOB_FILE, job_status, mark_done
from transmiter.reporting.records import write_record
from transmiter.transfer.alignment import transfer_figures
from transmiter.transfer.artifact import load_adapter_artifact, save_adapter_artifact
from transmiter.transfer.vocabulary import select_auxiliary_names

# The reference scripts' dataset names (its argparse choices) -> this project's dataset configs.
REFERENCE_DATASET_NAMES = {
    "caltech": "caltech101",
    "eurosat": "eurosat",
    "food101": "food101",
    "sun397": "sun397",
    "aircraft": "fgvc_aircraft",
    "imagenet": "imagenet",
    "cars": "stanford_cars",
    "pets": "oxford_pets",
    "dtd": "dtd",
    "flowers": "oxford_flowers",
    "ucf": "ucf101",
}
# Set by the folders, not by overrides.
FOLDER_KEYS = ("dataset", "seed", "setting", "setting.shots", "paths.output_dir")


class FeatureImportError(ValueError):
    """An import that cannot run as asked; the message names the file or key and the fix."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def dataset_configs() -> dict[str, str]:
    """Every accepted dataset folder name (lower-case) -> dataset config name: the config's file name, its
    `folder`, its protocol `name`, and the reference's names."""

    names = {}
    for path in sorted((CONFIG_DIR / "dataset").glob("*.yaml")):
        node = OmegaConf.load(path)
        for alias in (path.stem, node.get("folder"), node.get("name")):
            if alias:
                names.setdefault(str(alias).lower(), path.stem)
    for alias, config in REFERENCE_DATASET_NAMES.items():
        names.setdefault(alias, config)
    return names


def dataset_config(folder_name: str, known: Mapping[str, str]) -> str:
    config = known.get(folder_name.lower())
    if config is None:
        raise FeatureImportError(
            f"dataset folder {folder_name!r} is not a known dataset; rename it to a dataset config "
            f"({', '.join(sorted(set(known.values())))}) or add conf/dataset/{folder_name}.yaml (its templates "
            "and name)"
        )
    return config


def _pair_models() -> dict[str, tuple[str, str]]:
    """conf/pair config name -> (source, target) model names, read from the YAML files (no composition)."""

    pairs = {}
    for path in sorted((CONFIG_DIR / "pair").glob("*.yaml")):
        node = OmegaConf.load(path)
        names = {}
        for entry in node.get("defaults") or []:
            if not OmegaConf.is_dict(entry):
                continue
            for group, choice in entry.items():
                role = str(group).rpartition("@")[2]
                model = OmegaConf.load(CONFIG_DIR / "model" / f"{choice}.yaml")
                names[role] = model_key(model)
        for role in ("source", "target"):
            if node.get(role) is not None and node[role].get("name"):
                names[role] = str(node[role].name)
        if {"source", "target"} <= set(names):
            pairs[path.stem] = (names["source"], names["target"])
    return pairs


def _serves(train: FeatureFile, source: str, target: str) -> bool:
    return source != target and source in train.ft_logits and {source, target} <= set(train.features)


def detect_pair(train: FeatureFile) -> str:
    """The conf/pair config whose source has features and fine-tuned logits in `train` and whose target has
    features; exactly one must match."""
    pairs = _pair_models()
    matches = [name for name, (src, tgt) in pairs.items() if _serves(train, src, tgt)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        shown = "; ".join(f"{name} ({src} -> {tgt})" for name, (src, tgt) in pairs.items())
        raise FeatureImportError(
            f"{train.path}: no pair config has its source (<source>_features and _ft_logits) and target "
            f"(_features) among the file's models ({', '.join(sorted(train.features))}; fine-tuned: "
            f"{', '.join(sorted(train.ft_logits)) or 'none'}). Pairs: {shown}. Fix: add conf/pair/<name>.yaml with "
            "models named as in the file"
        )
    raise FeatureImportError(
        f"{train.path} holds the models of several pairs ({', '.join(matches)}); choose one with pair=NAME"
    )


@dataclass
class ImportJob:
    """One folder to import, checked: its composed config and what it needs."""

    run: FeatureRun
    cfg: DictConfig
    source: str  # model keys in the files
    target: str
    aux: dict[str, list[str]] = field(default_factory=dict)  # transfer row -> auxiliary names

    @property
    def output_dir(self) -> Path:
        return Path(str(self.cfg.paths.output_dir))


def _check_overrides(overrides: Sequence[str]) -> None:
    clash = [o for o in overrides if _key(o) in FOLDER_KEYS or _key(o).startswith("dataset.")]
    if clash:
        raise FeatureImportError(
            f"{clash}: the dataset, seed, setting and shots come from the folders (<dataset>/<seed>/<shots>) and "
            "the output folder from --out; drop these overrides"
        )
    for o in overrides:
        if _key(o) == "method" and o.split("=", 1)[1] != "study":
            raise FeatureImportError(
                f"{o}: the import runs the study's rows; keep method=study (the default) and set a row's settings "
                "with method.methods.<row>.<key>=..., or choose rows with method.transfer=[transmiter,eft]"
            )


def plan_import(root: str | os.PathLike, overrides: Sequence[str], out: str | os.PathLike) -> list[ImportJob]:
    """Check every folder and compose its config; nothing heavy (no model is loaded)."""

    _check_overrides(overrides)
    runs = find_runs(root)
    known = dataset_configs()
    user = list(overrides)
    if not any(_key(o) == "method" for o in user) and not any(_key(o) == "experiment" for o in user):
        user.insert(0, "method=study")
    files = {run: run.load() for run in runs}  # every file checked first
    first = files[runs[0]][0]
    if not any(_key(o) == "pair" for o in user):
        # the composed pair (an experiment's, or the default) when the files hold its models, else the one that fits
        pair = compose_config(user, return_hydra_config=False).pair
        if not _serves(first, model_key(pair.source), model_key(pair.target)):
            user.append(f"pair={detect_pair(first)}")
    jobs = []
    for run in runs:
        train, test = files[run]
        folder = Path(out) / run.dataset / str(run.seed) / str(run.shots)
        cfg = compose_config(
            [
                *user,
                f"dataset={dataset_config(run.dataset, known)}",
                f"seed={run.seed}",
                "setting=base2novel",
                f"setting.shots={run.shots}",
                f"paths.output_dir={folder.resolve()}",
            ]
        )
        if "methods" not in cfg.method:
            raise FeatureImportError(
                "the composed method is not a study (method=study): the import runs the study's rows"
            )
        validate_config(cfg, check_data=False)  # no images are read
        expected = cfg.dataset.get("num_classes")
        if isinstance(expected, int) and expected != train.num_classes:
            raise FeatureImportError(
                f"{train.path}: 'label_names' names {train.num_classes} classes but dataset {cfg.dataset.name} has "
                f"{expected}: the folder name {run.dataset!r} picks the wrong dataset config; rename the folder"
            )
        novel_rows = int(torch.isin(train.labels, torch.tensor(train.novel)).sum())
        if novel_rows:  # base-to-novel fits on base-class images; the files decide what they hold
            print(
                f"note: {train.path} holds {novel_rows} rows of novel classes: the fit sees them (no labels), "
                "TransMiter+ refines on the base-class rows only"
            )
        src, tgt = model_key(cfg.pair.source), model_key(cfg.pair.target)
        for f in (train, test):
            f.require(src)
            f.require(tgt)
            f.require(src, "ft_logits")
        job = ImportJob(run, cfg, src, tgt)
        _check_models(job, train, test)
        for name in _transfer_rows(cfg):
            method = instantiate(cfg.method.methods[name])
            if not isinstance(method, EFT | TransMiter):
                raise FeatureImportError(
                    f"method.transfer row {name!r} ({type(method).__name__}) cannot be computed from feature files; "
                    "leave it out with method.transfer=[...]"
                )
            try:
                job.aux[name] = select_auxiliary_names(
                    train.classnames,
                    method.K,
                    seed=run.seed,
                    vocabulary=method.aux_vocabulary,
                    strategy=method.aux_strategy,
                    grow_k=method.grow_k,
                )
            except ValueError as err:
                raise FeatureImportError(f"method.methods.{name}: {err}") from err
            if isinstance(method, TransMiterPlus) and method.refine_cfg["select_on_val"]:
                raise FeatureImportError(
                    f"method.methods.{name}.refine.select_on_val=true needs a validation split, and feature files "
                    "hold train and test rows only: set it to false (fixed epochs)"
                )
        jobs.append(job)
    return jobs


def _transfer_rows(cfg) -> list[str]:
    """The study's transfer rows the import runs: EFT variants, TransMiter and TransMiter+."""
    rows = [str(n) for n in cfg.method.transfer]
    unknown = [n for n in rows if n not in cfg.method.methods]
    if unknown:
        raise FeatureImportError(f"method.transfer names {unknown}, not in method.methods")
    return rows


def _check_models(job: ImportJob, train: FeatureFile, test: FeatureFile) -> None:
    """Local weights and embedding sizes of the pair's models, against the files (no weights are loaded)."""
    import open_clip

    for role, key in (("source", job.source), ("target", job.target)):
        spec = instantiate(job.cfg.pair[role])
        spec.validate()
        ok, where = weights_available(spec)
        if not ok:
            raise FeatureImportError(
                f"pair.{role} ({key}: {spec.arch} pretrained={spec.pretrained}) has no local weights ({where}). Fix: "
                f"put the checkpoint in the open_clip / Hugging Face cache, or point pair.{role}.pretrained at a "
                f"local file (transmiter weights check pair=... lists what is missing)"
            )
        dims = {f.path.name: f.features[key].shape[1] for f in (train, test)}
        embed = (open_clip.get_model_config(spec.arch) or {}).get("embed_dim")
        if len(set(dims.values())) != 1 or (embed is not None and embed not in dims.values()):
            raise FeatureImportError(
                f"{job.run.folder}: '{key}_features' has {dims} dimensions but {spec.arch} embeds images in "
                f"{embed}: the features come from another model. Fix: a pair whose {role} is the model that "
                "computed them (pair=..., or the model config's `name`)"
            )


def _digest(values: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]


def _device(cfg) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    return torch.device("cpu")


class _Job:
    """The computation of one checked folder: zero-shot logits from the files' features, the stages
    (through the library API) and one MethodResult per row."""

    def __init__(self, job: ImportJob, bundles: Mapping[str, Any], ft_label: str | None):

        self.job, self.cfg, self.bundles = job, job.cfg, bundles
        self.ctx = RunContext.from_config(job.cfg)
        self.train, self.test = job.run.load()
        self.seed = job.run.seed
        self.base = self.train.base
        self.groups = {"base": self.train.base, "new": self.train.novel}
        self.classnames = self.train.classnames
        self.C = len(self.classnames)
        self.device = _device(job.cfg)
        self.ft_label = ft_label or job.run.provenance.get("fine_tuning") or "Fine-tuned"
        self.models = {"source": job.source, "target": job.target}  # keys in the files
        self._logits: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ inputs and evaluation
    def logits(self, role: str, split: str, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """[N, len(names)] zero-shot logits of `role` on `split`: the file's features @ the cached text head."""

        key = (role, split, _digest(names), tuple(templates))
        if key not in self._logits:
            with self.ctx.timed("text_head_s"):
                head = text_head(self.bundles[role], list(names), list(templates), cache=self.ctx.head_cache)
            file = self.train if split == "train" else self.test
            self._logits[key] = file.features[self.models[role]] @ head.T
        return self._logits[key]

    def accuracies(self, inputs: torch.Tensor, adapter=None) -> dict[str, float]:
        """Masked-joint accuracies on the test rows, with the files' base / novel groups."""

        with self.ctx.timed("scoring_s"):
            return masked_joint_accuracies(
                inputs.cpu(),
                self.test.labels,
                self.groups,
                self.C,
                None if adapter is None else adapter.cpu(),
                lambda: self.ctx.make_trainer("eval"),
            )

    def result(self, row: str, method: str, accuracies, **fields: Any):

        return MethodResult(
            metrics=summarize_groups(accuracies) if accuracies else {},
            row=row,
            protocol="masked-joint",
            method=method,
            splits={"train": self.train.sha256[:16], "test": self.test.sha256[:16]},
            **{**fields, "extra": {"features": str(self.job.run.folder), **fields.get("extra", {})}},
        )

    @property
    def identities(self) -> dict[str, str]:
        return {role: bundle.identity for role, bundle in self.bundles.items()}

    # ------------------------------------------------------------------ stages (content-addressed)
    def _save(
        self, stage: str, adapter, stage_dir: Path, method, aux, fitted_on: str = "source", **meta
    ) -> str:

        if stage != "fitted":
            meta["target_model"] = self.identities["target"]
        path = save_adapter_artifact(
            stage_dir / "adapter.safetensors",
            adapter.cpu(),
            stage=stage,
            source_model=self.identities[fitted_on],
            dataset=self.ctx.dataset_spec.name,
            classnames=self.classnames,
            aux_names=aux,
            data_used=f"{self.train.num_rows} rows of {self.train.path}",
            seed=self.seed,
            config=method.artifact_config(self.C + len(aux)),
            **meta,
        )
        return str(path)

    def load(self, stage, aux):

        artifact = stage.outputs["artifact"]
        return load_adapter_artifact(artifact, expect_classnames=self.classnames, expect_aux=aux).adapter

    def fitted(self, method, aux, role: str = "source"):
        """The adapter fitted on `role`'s zero-shot logits of the train rows against its `_ft_logits`."""

        names, templates = self.classnames + aux, method._templates(self.ctx)
        inputs = self.logits(role, "train", names, templates)
        teacher = self.train.ft_logits[self.models[role]]
        identity = {
            "stage": "adapter_fit/v1",
            "inputs": "feature-file",
            "train_file": self.train.sha256,
            "teacher": f"{self.models[role]}_ft_logits",
            "source": self.identities[role],
            "names": _digest(names),
            "templates": list(templates),
            "fit": method.fit_cfg,
            "K": len(names),
            "seed": self.seed,
        }

        def work(stage_dir: Path) -> dict:
            x, t = inputs.to(self.device), teacher.to(self.device)
            adapter = api.fit_adapter(x, t, num_classes=self.C, seed=self.seed, **method.fit_cfg)
            return {"artifact": self._save("fitted", adapter, stage_dir, method, aux, fitted_on=role)}

        with self.ctx.timed("fit_s"):
            return self.ctx.run_stage("adapter_fit", identity, work)

    def transferred(self, method, aux, fitted):
        """The fitted adapter moved to the target (closed form), with the transfer figures."""

        names, templates = self.classnames + aux, method._templates(self.ctx)
        src = self.logits("source", "train", names, templates)
        tgt = self.logits("target", "train", names, templates)
        identity = {
            "stage": "adapter_transfer/v1",
            "fitted": fitted.key,
            "target": self.identities["target"],
            "lam": method.lam,
            "scale_lam_by_n": method.scale_lam_by_n,
        }

        def work(stage_dir: Path) -> dict:
            adapter = self.load(fitted, aux).to(self.device)
            moved = api.transfer_adapter(
                adapter,
                src.to(self.device),
                tgt.to(self.device),
                lam=method.lam,
                scale_lam_by_n=method.scale_lam_by_n,
                return_details=True,
            )
            artifact = self._save(
                "transferred",
                moved.adapter,
                stage_dir,
                method,
                aux,
                lam=moved.lam,
                lam_effective=moved.lam_effective,
                scale_lam_by_n=moved.scale_lam_by_n,
                num_samples=moved.num_samples,
            )
            figures = transfer_figures(adapter.cpu(), src, tgt, moved.rotation)
            return {"artifact": artifact, "num_samples": moved.num_samples, "figures": figures}

        with self.ctx.timed("transfer_s"):
            return self.ctx.run_stage("adapter_transfer", identity, work)

    def refined(self, method, aux, moved):
        """TransMiter+: the moved adapter refined on the train rows of the base classes (their labels)."""

        tgt = self.logits("target", "train", self.classnames + aux, method._templates(self.ctx))
        rows = torch.isin(self.train.labels, torch.tensor(self.base))
        identity = {
            "stage": "adapter_refine/v1",
            "transferred": moved.key,
            "refine": method.refine_cfg,
            "class_ids": self.base,
            "rows": int(rows.sum()),
            "seed": self.seed,
        }

        def work(stage_dir: Path) -> dict:
            refined = api.refine_adapter(
                self.load(moved, aux).to(self.device),
                tgt[rows].to(self.device),
                self.train.labels[rows].to(self.device),
                class_columns=self.base,
                seed=self.seed,
                **method.refine_cfg,
            )
            return {"artifact": self._save("refined", refined, stage_dir, method, aux)}

        with self.ctx.timed("refine_s"):
            return self.ctx.run_stage("adapter_refine", identity, work)

    # ------------------------------------------------------------------ rows
    def rows(self) -> list:

        transfer = {name: instantiate(self.cfg.method.methods[name]) for name in _transfer_rows(self.cfg)}
        # the zero-shot rows score the heads the transfer rows start from
        templates = next(iter(transfer.values()))._templates(self.ctx) if transfer else self._coop_templates()
        results = [self.timed(self.zero_shot_row, role, templates) for role in ("source", "target")]
        results += [
            self.timed(self.finetuned_row, role)
            for role in ("source", "target")
            if self.models[role] in self.test.ft_logits
        ]
        for name, method in transfer.items():
            if isinstance(method, EFT):
                results.append(self.timed(self.eft_row, method))
            elif isinstance(method, TransMiterDiagnostics):
                results += self.diagnostic_rows(name, method)
            elif isinstance(method, TransMiter):  # TransMiter+ included
                results.append(
                    self.timed(self.transmiter_row, name, method, isinstance(method, TransMiterPlus))
                )
        return results

    @staticmethod
    def timed(make, *args):
        start = time.perf_counter()
        result = make(*args)
        result.timings = {"total_s": time.perf_counter() - start}
        return result

    def zero_shot_row(self, role: str, templates):
        key = self.models[role]
        acc = self.accuracies(self.logits(role, "test", self.classnames, templates))
        extra = {"role": role, "templates": list(templates)}
        return self.result(
            f"Zero-shot {key}", f"zeroshot_{role}", acc, models={"model": self.identities[role]}, extra=extra
        )

    def finetuned_row(self, role: str):
        key = self.models[role]
        acc = self.accuracies(self.test.ft_logits[key])
        extra = {"role": role, "logits": f"{key}_ft_logits of {self.test.path}"}
        return self.result(f"{self.ft_label} {key}", f"ft_{role}", acc, extra=extra)

    def eft_row(self, method):

        uses = EFT_VARIANTS[method.variant][2]
        templates = method._templates(self.ctx)
        t_zs = self.logits("target", "test", self.classnames, templates) if "t" in uses else None
        s_zs = self.logits("source", "test", self.classnames, templates) if "s" in uses else None
        s_ft = self.test.ft_logits[self.models["source"]]
        scores = combine_logits(method.variant, t_zs, s_ft, s_zs, alpha=method.alpha)
        extra = {"alpha": method.alpha, "variant": method.variant, "role": "pair"}
        return self.result(
            method._row(self.ctx), method.name, self.accuracies(scores), models=self.identities, extra=extra
        )

    def _adapter_row(self, method, row: str, stage, aux, stages: dict, on: str = "target", **extra):
        adapter = self.load(stage, aux)
        inputs = self.logits(on, "test", self.classnames + aux, method._templates(self.ctx))
        seconds = {f"{name}_time_s": s.seconds for name, s in stages.items()}
        costs = {**method.costs(adapter, self.bundles[on]), **seconds, "train_time_s": sum(seconds.values())}
        return self.result(
            row,
            method.name,
            self.accuracies(inputs, adapter),
            models=self.identities,
            costs=costs,
            artifacts={"adapter": stage.outputs["artifact"]},
            extra={
                "K": len(aux) + self.C,
                "lam": method.lam,
                "fit_rows": self.train.num_rows,
                "role": "pair",
                "stages_reused": {f"adapter_{name}": s.reused for name, s in stages.items()},
                # the pre-transfer guard reads few-shot validation images, which feature files do not hold
                "guard": {"checked": False, "reason": "feature files hold no validation split"},
                **extra,
            },
        )

    def transmiter_row(self, name: str, method, refine: bool):
        aux = self.job.aux[name]
        fitted = self.fitted(method, aux)
        moved = self.transferred(method, aux, fitted)
        stages = {"fit": fitted, "transfer": moved}
        if refine:
            stages["refine"] = self.refined(method, aux, moved)
        figures = {"transfer_figures": moved.outputs["figures"]}
        return self._adapter_row(
            method, method._row(self.ctx), stages[list(stages)[-1]], aux, stages, **figures
        )

    def diagnostic_rows(self, name: str, method) -> list:
        """TransMiter's diagnostics: the fitted adapter on the source and, unrotated, on the target; the
        target oracle (fitted on the target's own fine-tuned logits) when the train file holds them."""

        aux = self.job.aux[name]
        results = []
        for kind in method.rows:
            start = time.perf_counter()
            row = method._row(self.ctx, DIAGNOSTIC_ROWS[kind])
            extra = {"diagnostic": kind, "evaluated_on": "source" if kind == "source" else "target"}
            if kind == "target_oracle" and self.models["target"] not in self.train.ft_logits:
                reason = (
                    f"{self.train.path} holds no {self.models['target']}_ft_logits (the target's fine-tuning)"
                )
                result = self.result(row, method.name, {}, extra={**extra, "skipped": reason})
            elif kind == "target_oracle":
                fitted = self.fitted(method, aux, role="target")
                result = self._adapter_row(method, row, fitted, aux, {"fit": fitted}, **extra)
            else:
                fitted = self.fitted(method, aux)
                on = "source" if kind == "source" else "target"
                if kind == "no_rotation":
                    names, templates = self.classnames + aux, method._templates(self.ctx)
                    src, tgt = (self.logits(r, "train", names, templates) for r in ("source", "target"))
                    identity = torch.eye(self.load(fitted, aux).W.shape[0], dtype=torch.float64)
                    extra["transfer_figures"] = transfer_figures(self.load(fitted, aux), src, tgt, identity)
                result = self._adapter_row(method, row, fitted, aux, {"fit": fitted}, on=on, **extra)
            result.timings = {"total_s": time.perf_counter() - start}
            results.append(result)
        return results

    def _coop_templates(self) -> list[str]:

        return template_set(self.ctx.dataset_spec.name, "coop", overrides=dataset_templates(self.cfg.dataset))


def load_pair(jobs: Sequence[ImportJob]) -> dict[str, Any]:
    """The pair's two models, loaded once for every folder, and checked against each folder's export.json
    (the identity of the weights that computed the features, when the files say)."""

    cfg = jobs[0].cfg
    bundles = {role: load_clip(instantiate(cfg.pair[role])) for role in ("source", "target")}
    for job in jobs:
        expected = job.run.provenance.get("models", {})
        for role, key in (("source", job.source), ("target", job.target)):
            found = bundles[role].identity
            if key in expected and expected[key] != found:
                raise FeatureImportError(
                    f"{job.run.folder}/export.json: the features of {key} were computed by the weights {expected[key]}, "
                    f"and pair.{role} loads {found}. Fix: point pair.{role}.pretrained at the weights that computed "
                    "them, or export again"
                )
    return bundles


def run_job(
    job: ImportJob, bundles: Mapping[str, Any], *, force: bool = False, ft_label: str | None = None
) -> list[Path]:
    """Compute and record one folder's rows; a folder whose records are all written is skipped unless
    `force` (its stages are reused either way). Returns the record paths."""

    out = job.output_dir
    if not force and job_status(out)[0] == "done":
        print(f"[skipped] {job.run.folder}: done ({out}); --force runs it again")
        return [Path(p) for p in json.loads((out / JOB_FILE).read_text())["records"]]
    work = _Job(job, bundles, ft_label)
    results = work.rows()
    paths = []
    for result in results:
        paths.append(write_record(work.ctx, result, subdir=result.slug))
        metrics = {k: round(v, 2) for k, v in result.metrics.items()}
        print(f"{result.row} | {work.ctx.dataset_spec.name} | seed {job.run.seed}: {metrics}")
    mark_done(out, [str(p) for p in paths], {r.row: r.metrics for r in results})
    return paths


def import_features(
    root: str | os.PathLike,
    overrides: Sequence[str] = (),
    out: str | os.PathLike = "outputs/features_import",
    *,
    force: bool = False,
    ft_label: str | None = None,
) -> list[Path]:
    """Check every folder under `root`, then compute and record each one; returns the record paths."""
    jobs = plan_import(root, overrides, out)
    pair = f"{jobs[0].source} -> {jobs[0].target}"
    print(f"[import] {len(jobs)} folder(s) under {root}, pair {pair}, checked; results under {out}")
    bundles = load_pair(jobs)
    paths = []
    for i, job in enumerate(jobs, 1):
        start = time.perf_counter()
        print(f"[import {i}/{len(jobs)}] {job.run.dataset} seed {job.run.seed} ({job.run.shots} shots)")
        paths += run_job(job, bundles, force=force, ft_label=ft_label)
        print(f"[import {i}/{len(jobs)}] done in {time.perf_counter() - start:.1f} s")
    return paths


__all__ = ["FeatureImportError", "ImportJob", "import_features", "load_pair", "plan_import", "run_job"]
