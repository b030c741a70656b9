"""`transmiter features export [--out DIR] [overrides]`: a study's features and fine-tuned logits written
in the TransMiter authors' layout (see `transmiter.features.released`), for other code bases or for
`transmiter features import`.

    transmiter features export experiment=smoke_study --out exported      # one job
    transmiter features export experiment=demo --out exported             # every base2novel job of a sweep
    transmiter features export method=study pair=vit_b16_to_vit_l14 dataset=dtd seed=1,2,3 --out exported

The overrides are the study's own (comma lists and the experiment's sweep expand into jobs). For each
base-to-novel job, `<out>/<dataset folder>/<seed>/<shots>/` receives:

* train_features.pt: the rows the TransMiter row fits on (its fitting images x `views` augmented views,
  in the study's order), with `<source>_features`, `<target>_features` (the feature cache's values),
  `<source>_ft_logits` (the fine-tuned source's logits over the C classes: the fitting teacher) and,
  when the study fine-tuned the target too, `<target>_ft_logits`; labels are the rows' classes;
* test_features.pt: the same keys on the test split;
* export.json: provenance (model identities, fine-tuning method, settings, the overrides, code version).

Model keys are the model configs' `name` (e.g. ViT-B-16). Nothing is trained: a study whose source
fine-tuning stage is not done is refused with the command to run first. Image features missing from
the cache are computed (they are a cache).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser

from transmiter.config import compose_config
from transmiter.config.instantiate import instantiate
from transmiter.config.validate import validate_config
from transmiter.context import RunContext
from transmiter.data.subsample import base_novel_class_ids
from transmiter.features.extract import ViewSpec
from transmiter.features.released import EXPORT_FILE, TEST_FILE, TRAIN_FILE, model_key, write_feature_file
from transmiter.io import atomic_write
from transmiter.methods.study import needs_tower_split, skip_tuning_unsupported, source_finetune_plan
from transmiter.methods.transmiter import TransferMethod
from transmiter.reporting.records import code_version
from transmiter.stages import StageStore

EXPORT_FORMAT = "transmiter.features/1"


class StageNotDoneError(RuntimeError):
    """A stage the export would have to train; the message says which and what to run first."""


class _ReuseOnlyContext(RunContext):
    """A run context that reuses finished stages and refuses to run any (an export never trains)."""

    def run_stage(self, name: str, identity: dict, fn):

        store = StageStore(self.cache_dir / "stages")
        if not store.is_done(name, identity):
            raise StageNotDoneError(
                f"the study's {name!r} stage ({store.path(name, identity)}) is not done, and an export never "
                "trains. Run the study first with the same overrides (transmiter method=study ...), then export"
            )
        return store.run(name, identity, fn)


def expand_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """One override list per job: comma lists on the command line and the experiment's
    `hydra.sweeper.params` expand into their product, as `transmiter -m` would."""

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps: dict[str, list[str]] = {}
    params = compose_config(fixed).hydra.sweeper.get("params") or {}
    for key, values in params.items():
        (o,) = parser.parse_overrides([f"{key}={values}"])
        sweeps[o.get_key_element()] = (
            list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(values)]
        )
    for o in parsed:
        if o.is_sweep_override():
            sweeps[o.get_key_element()] = list(o.sweep_string_iterator())
    fixed = [f for f in fixed if f.split("=", 1)[0] not in sweeps]
    keys = list(sweeps)
    return [
        fixed + [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
        for combo in itertools.product(*sweeps.values())
    ]


def _transfer_method(cfg):
    """The TransMiter recipe whose fitting rows are exported, and its config node's path."""

    node, where = cfg.method, "method"
    if "methods" in cfg.method:
        if "transmiter" not in cfg.method.methods:
            raise ValueError("method.methods has no `transmiter` entry: the export writes its fitting rows")
        node, where = cfg.method.methods.transmiter, "method.methods.transmiter"
    method = instantiate(node)
    if not isinstance(method, TransferMethod):
        raise ValueError(
            f"{where} is not a transfer method: export a study (method=study) or method=transmiter"
        )
    return method


def _finetuner(ctx, method):
    """The source fine-tuner the study's transfer rows use (Skip Tuning falls back to FT for sources it
    cannot split, as in the study)."""

    fallback = None
    if "methods" in ctx.cfg.method:
        ft = [n for n in ctx.cfg.method.methods.values() if n.get("kind") == "ft"]
        fallback = instantiate(ft[0]) if ft else None
    unsupported = None
    if needs_tower_split(method.source_finetune):
        unsupported = skip_tuning_unsupported(ctx.load_model(ctx.cfg.pair.source))
    finetuner, notice = source_finetune_plan(method, unsupported, fallback)
    if finetuner is None:
        raise ValueError(notice)
    method = copy.copy(method)
    method.source_finetune = finetuner
    return method


def export_job(overrides: Sequence[str], out: str | os.PathLike) -> Path | None:
    """Write one job's folder; returns it (None for a job that is not base-to-novel)."""

    cfg = compose_config(list(overrides))
    if cfg.setting.name != "base2novel" or list(cfg.setting.eval_groups) == ["all"]:
        print(
            f"[skipped] {cfg.dataset.name} {cfg.setting.name} seed {cfg.seed}: the layout holds base-to-novel runs"
        )
        return None
    validate_config(cfg)
    folder = Path(out) / str(cfg.dataset.folder) / str(cfg.seed) / str(cfg.setting.shots)
    ctx = _ReuseOnlyContext.from_config(cfg, output_dir=folder)
    method = _finetuner(ctx, _transfer_method(cfg))
    classnames, _ = method.label_space(ctx)
    data = method.fit_data(ctx)
    source, tuned = method.source_models(ctx)
    target = ctx.load_model(cfg.pair.target)
    teacher_templates = method._teacher_templates(ctx)
    src, tgt = model_key(cfg.pair.source), model_key(cfg.pair.target)
    tuned_target = None
    try:
        tuned_target = ctx.load_model(method.source_finetune.tuned_spec(ctx, cfg.pair.target))
    except StageNotDoneError:
        print(
            f"  {tgt}_ft_logits left out: the study did not fine-tune the target with {method.source_finetune.name}"
        )
    test_items = method._all_splits(ctx).test
    test_view = [ViewSpec("test")]
    tables = {}
    for split, items, views, subset in (
        ("train", data.items, data.views, "fit"),
        ("test", test_items, test_view, "all"),
    ):
        features = {
            m: torch.cat(method.view_features(ctx, b, items, views, subset))
            for m, b in ((src, source), (tgt, target))
        }
        ft_logits = {src: method.logits(ctx, tuned, items, views, classnames, teacher_templates, subset)}
        if tuned_target is not None:
            ft_logits[tgt] = method.logits(
                ctx, tuned_target, items, views, classnames, teacher_templates, subset
            )
        labels = torch.tensor([d.label for d in items] * len(views), dtype=torch.long)
        tables[split] = (labels, features, ft_logits)
    base, novel = base_novel_class_ids(len(classnames))
    for name, (labels, features, ft_logits) in zip((TRAIN_FILE, TEST_FILE), tables.values(), strict=True):
        write_feature_file(
            folder / name,
            labels=labels,
            classnames=classnames,
            base=base,
            novel=novel,
            features=features,
            ft_logits=ft_logits,
        )
    provenance: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "dataset": ctx.dataset_spec.name,
        "seed": int(cfg.seed),
        "shots": int(cfg.setting.shots),
        "models": {src: source.identity, tgt: target.identity},
        "fine_tuned_models": {src: tuned.identity, **({tgt: tuned_target.identity} if tuned_target else {})},
        "fine_tuning": method.source_finetune.row_name,
        "train_rows": data.description,
        "templates": method._templates(ctx),
        "teacher_templates": teacher_templates,
        "overrides": list(overrides),
        "code": code_version(),
    }
    atomic_write(folder / EXPORT_FILE, json.dumps(provenance, indent=1))
    rows = {split: len(t[0]) for split, t in tables.items()}
    print(
        f"[exported] {cfg.dataset.name} seed {cfg.seed}: {rows['train']} train rows ({data.description}), "
        f"{rows['test']} test rows, models {src} -> {tgt} -> {folder}"
    )
    return folder


def export_study(overrides: Sequence[str], out: str | os.PathLike) -> list[Path]:
    """Every base-to-novel job of the (possibly sweeping) overrides; returns the written folders."""
    folders = []
    for job in expand_jobs(overrides):
        folder = export_job(job, out)
        if folder is not None:
            folders.append(folder)
    return folders


__all__ = ["StageNotDoneError", "expand_jobs", "export_job", "export_study"]
