"""What every method receives: the composed config plus the shared services built from it
(paths, caches, trainers, datasets, models, timings).

    ctx = RunContext.from_config(cfg)
    splits = ctx.splits("base")                   # few-shot + base/novel per the setting
    bundle = ctx.load_model(cfg.model)
    with ctx.timed("feature_pass_s"): ...

A job whose setting has targets (cross-dataset, domain generalisation) scores its trained models on each of
them through `ctx.for_target(name, node)`: there `cfg.dataset` is the target being scored (its full splits,
never few-shot sampled), while `ctx.training` is the context of the job's own dataset, where every training
stage runs and is keyed, so all targets reuse the one training.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from transmiter.config.instantiate import dataset_spec_from_config, dataset_templates, instantiate
from transmiter.distributed import is_global_zero
from transmiter.features.store import ArrayCache
from transmiter.io import absolute
from transmiter.models.templates import template_set
from transmiter.trainers import StageLogger, build_logger, build_trainer


@dataclass(frozen=True)
class TargetEvaluation:
    """How a job scores one target of its setting with the models it trained on its own dataset."""

    name: str  # the target's dataset config name (conf/dataset/<name>.yaml)
    label_space: str  # "own": the target's classes | "source": mapped into the source's by class name
    templates: str  # "own": the target's hand-crafted template | "source": the source dataset's
    class_map: tuple[int, ...] | None = None  # label space "source": the source label of each target class


@dataclass
class RunContext:
    cfg: DictConfig
    output_dir: Path
    data_dir: Path
    cache_dir: Path
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    stage_outputs: dict[str, dict] = field(default_factory=dict)  # what each stage of this run produced
    # images left out under dataset.on_corrupt_image=skip: {path: reason} (shared by derived contexts)
    skipped_images: dict[str, str] = field(default_factory=dict)
    _models: dict[str, Any] = field(default_factory=dict)
    _splits: dict[tuple, Any] = field(default_factory=dict)
    _image_verdicts: dict[str, str | None] = field(default_factory=dict)
    # scoring a setting target: which one, and the job's config as it trains (dataset = the source)
    target: TargetEvaluation | None = None
    _training_cfg: DictConfig | None = None
    _stages_reported: set[str] = field(default_factory=set)  # one console line per stage and job
    # reused stages are summed up in one line per job (a warm sweep would otherwise print dozens)
    _stages_reused: dict[str, list[float]] = field(default_factory=dict)
    _stages_computed: set[str] = field(default_factory=set)  # stages this run computed (not reused)

    @classmethod
    def from_config(cls, cfg: DictConfig, output_dir: str | Path | None = None) -> RunContext:
        out = absolute(output_dir if output_dir is not None else cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        return cls(
            cfg=cfg,
            output_dir=out,
            data_dir=absolute(cfg.paths.data_dir),
            cache_dir=absolute(cfg.paths.cache_dir),
            seed=int(cfg.seed),
        )

    # --- derived contexts (study jobs) ---------------------------------------------------------
    def with_model(self, model_node) -> RunContext:
        """The same run with another `model` (caches, splits and loaded models shared)."""
        training = None if self._training_cfg is None else config_with_model(self._training_cfg, model_node)
        return dataclasses.replace(self, cfg=config_with_model(self.cfg, model_node), _training_cfg=training)

    def for_target(self, name: str, node: DictConfig) -> RunContext:
        """The same run scoring the setting target `name` (dataset node `node`) with no further training:
        `cfg.dataset` is the target, `training` still the job's own dataset. Under
        `setting.target_label_space=source` the target's classes are mapped into the source's here (reading
        both datasets' class lists), so a target that does not fit fails before any training."""
        from transmiter.data.class_map import class_map

        setting = self.cfg.setting
        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            cfg.dataset = copy.deepcopy(node)
        target = TargetEvaluation(name, str(setting.target_label_space), str(setting.target_templates))
        ctx = dataclasses.replace(self, cfg=cfg, target=target, _training_cfg=self.cfg)
        if target.label_space == "source":
            source, scored = self.splits("all"), ctx.splits("all")  # class lists do not depend on shots
            mapping = class_map(source.classnames, scored.classnames, source=source.name, target=scored.name)
            ctx.target = dataclasses.replace(target, class_map=tuple(mapping))
        return ctx

    @property
    def training(self) -> RunContext:
        """The context training stages run in: the job's own dataset (this context unless it scores a
        setting target). Timings, stage books and caches are shared with this one."""
        if self.target is None:
            return self
        return dataclasses.replace(self, cfg=self._training_cfg, target=None, _training_cfg=None)

    def fresh_timings(self) -> RunContext:
        """The same run with its own timing and stage-output books (one results record per row)."""
        return dataclasses.replace(self, timings={}, stage_outputs={})

    # --- caches -------------------------------------------------------------------------------
    @property
    def feature_cache(self) -> ArrayCache:
        return ArrayCache(self.cache_dir / "features")

    @property
    def head_cache(self) -> ArrayCache:
        return ArrayCache(self.cache_dir / "text_heads")

    # --- stages -------------------------------------------------------------------------------
    def run_stage(self, name: str, identity: dict, fn):
        """Run (or reuse) a content-addressed stage and note it in this job's ledger (`stages.json`),
        which dry runs read to say which stages of a job are done."""
        from transmiter.stages import StageStore

        result = StageStore(self.cache_dir / "stages").run(name, identity, fn)
        self._note_stage(name, result)
        if is_global_zero() and f"{name}/{result.key}" not in self._stages_reported:
            self._stages_reported.add(f"{name}/{result.key}")
            log = logging.getLogger("transmiter")
            if result.reused:
                self._stages_reused.setdefault(name, []).append(result.seconds)
                log.debug("stage %s%s: reused (ran %.1f s)", name, stage_label(identity), result.seconds)
            else:
                log.info("stage %s%s: done in %.1f s", name, stage_label(identity), result.seconds)
        return result

    def reused_stages_line(self) -> str | None:
        """One line for every stage this job reused from the cache, by name (None when it reused none)."""
        if not self._stages_reused:
            return None
        counts = ", ".join(f"{name} x{len(secs)}" for name, secs in self._stages_reused.items())
        total = sum(sum(secs) for secs in self._stages_reused.values())
        n = sum(len(secs) for secs in self._stages_reused.values())
        return f"{n} stage(s) reused from the cache ({counts}; they ran {total:.0f} s)"

    def _note_stage(self, name: str, result) -> None:
        import json

        from transmiter.io import atomic_write

        if not is_global_zero():  # one ledger per job: the other DDP ranks write nothing
            return
        ledger_path = self.output_dir / "stages.json"
        try:
            ledger = json.loads(ledger_path.read_text())
        except (OSError, ValueError):
            ledger = {}
        entry = f"{name}/{result.key}"
        # a stage this run computed stays noted as computed when later rows (or targets) reuse it; an entry
        # an earlier run of the same job left in the ledger does not count
        computed_here = entry in self._stages_computed and entry in ledger
        if not result.reused:
            self._stages_computed.add(entry)
        ledger[entry] = {
            "name": name,
            "key": result.key,
            "path": str(result.path),
            "seconds": ledger[entry]["seconds"] if computed_here else round(result.seconds, 3),
            "reused": result.reused and not computed_here,
        }
        atomic_write(ledger_path, json.dumps(ledger, indent=1))

    # --- trainers -----------------------------------------------------------------------------
    def make_trainer(self, purpose: str = "eval", **overrides: Any) -> L.Trainer:
        return build_trainer(
            self.cfg.trainer,
            purpose=purpose,
            callbacks_cfg=self.cfg.get("callbacks"),
            root_dir=self.output_dir,
            **overrides,
        )

    @property
    def logger(self) -> Any:
        """The job's experiment logger (one per job: one wandb run), or False."""
        if "_logger" not in self._models:
            self._models["_logger"] = build_logger(self.cfg.get("logger"))
        return self._models["_logger"]

    def training_logger(self, stage: str) -> Any:
        """The job's logger with metric keys prefixed by the training stage (e.g. `skip_tuning/ViT-B-16/...`),
        so every stage of a study job draws its own curves in the one run."""
        logger = self.logger
        return StageLogger(logger, stage) if logger else logger

    def finalize_logger(self, status: str = "success") -> None:
        """Let the job's logger write what it holds (no-op when none was built)."""
        logger = self._models.get("_logger")
        if logger:
            logger.finalize(status)

    # --- data ---------------------------------------------------------------------------------
    @property
    def dataset_spec(self):
        return dataset_spec_from_config(self.cfg.dataset)

    def templates(self, kind: str) -> list[str]:
        """The hand-crafted templates of `kind` (a template table) for the dataset being scored: its own, or
        the source dataset's when a setting target is scored under `setting.target_templates=source`."""
        node = self.cfg.dataset
        if self.target is not None and self.target.templates == "source":
            node = self.training.cfg.dataset
        return template_set(str(node.name), kind, overrides=dataset_templates(node))

    def splits(self, subsample: str, shots: int | None = None, dataset_cfg: DictConfig | None = None):
        """Few-shot sampled (seeded) then base/novel-subsampled splits, memoised per run. A setting target is
        never sampled (its full splits; only its test split is scored)."""
        from transmiter.data.protocol import build_splits

        spec = dataset_spec_from_config(dataset_cfg if dataset_cfg is not None else self.cfg.dataset)
        if shots is None:
            shots = -1 if self.target is not None else int(self.cfg.setting.shots)
        key = (spec.name, spec.folder, subsample, shots, self.seed)
        if key not in self._splits:
            splits = build_splits(spec, self.data_dir, shots=shots, seed=self.seed, subsample=subsample)
            scored = splits.val
            if self.eval_split == "val_full":  # the validation split before few-shot sampling
                scored = build_splits(spec, self.data_dir, shots=-1, seed=self.seed, subsample=subsample).val
            splits = self._evaluated_on(splits, scored)
            if self.on_corrupt_image == "skip":
                splits = self._without_unreadable(splits)
            self._splits[key] = splits
        return self._splits[key]

    @property
    def on_corrupt_image(self) -> str:
        return str(self.cfg.dataset.get("on_corrupt_image", "error"))

    def _without_unreadable(self, splits):
        """`splits` minus the images that cannot be decoded (dataset.on_corrupt_image=skip).

        Why a scan up front rather than skipping inside the DataLoader: every process (each DDP rank) builds
        its splits itself and decodes the same files, so all ranks drop the same items before any sampler
        shards them. Batch sizes, the number of steps per epoch and the DistributedSampler's shards stay
        identical across ranks (a rank that dropped a sample mid-epoch would desynchronise the collectives),
        and the split identity, which every cache and stage keys on, names exactly the images used."""
        import logging

        from transmiter.data.dataset import drop_unreadable_images

        kept, dropped = drop_unreadable_images(splits, known=self._image_verdicts)
        new = {path: reason for path, reason in dropped.items() if path not in self.skipped_images}
        if new:
            self.skipped_images.update(new)
            shown = "; ".join(f"{path} ({reason})" for path, reason in list(new.items())[:5])
            logging.getLogger("transmiter").warning(
                "dataset.on_corrupt_image=skip: left out %d unreadable image(s) of %s (%d in this run so far): %s%s",
                len(new),
                splits.name,
                len(self.skipped_images),
                shown,
                " ..." if len(new) > 5 else "",
            )
        return kept

    @property
    def train_crop_scale(self) -> tuple[float, float]:
        """The training dataset's training-crop area range (`dataset.train_crop_scale`, default the
        protocol's); a scored target keeps the source's, so models load once for every target."""
        from transmiter.data.transforms import DEFAULT_CROP_SCALE

        node = self.training.cfg.dataset
        low, high = node.get("train_crop_scale", None) or DEFAULT_CROP_SCALE
        return float(low), float(high)

    @property
    def eval_split(self) -> str:
        return str(self.cfg.get("eval", {}).get("split", "test"))

    def _evaluated_on(self, splits, scored):
        """`splits` with `scored` as their test list. `eval.split=val` scores the few-shot sampled val list,
        so every method evaluates on val without knowing; training never reads `test`, so stages are shared
        with test runs. `eval.split=val_full` scores the whole validation split (`scored`): a few images per
        class are enough to select a hyperparameter, too few to measure a dataset itself (e.g. to calibrate
        a synthetic world)."""
        if self.eval_split == "test":
            return splits
        if splits.val_is_test:
            from transmiter.config import ConfigError

            raise ConfigError(
                f"eval.split={self.eval_split}: {splits.name} has no validation split of its own (its protocol "
                "uses the test set as val), so it cannot be used for model selection; tune on another dataset "
                "or use eval.split=test"
            )
        return dataclasses.replace(splits, test=list(scored))

    # --- models -------------------------------------------------------------------------------
    def load_model(self, node: DictConfig | Any, device: str = "cpu"):
        from transmiter.models.clip import ModelSpec, load_clip

        spec = node if isinstance(node, ModelSpec) else instantiate(node)
        key = repr((spec, self.train_crop_scale))
        if key not in self._models:
            with self.timed("model_load_s"):
                self._models[key] = load_clip(spec, device=device, train_crop_scale=self.train_crop_scale)
        return self._models[key]

    # --- timings ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def timed(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def config_with_model(cfg: DictConfig, model_node) -> DictConfig:
    """A copy of `cfg` whose `model` is `model_node` (a study runs single-model methods on each role)."""
    new = copy.deepcopy(cfg)
    with open_dict(new):
        new.model = copy.deepcopy(model_node)
    return new


def stage_label(identity: dict) -> str:
    """` <model> <dataset> seed <n>` from a stage identity: which of a study's many stages a line is about
    (models as `arch@weights-hash`, shortened)."""

    def short(model: Any) -> str:
        arch, _, digest = str(model).partition("@")
        return f"{arch}@{digest[:8]}" if digest else arch

    parts = []
    if "model" in identity:
        parts.append(short(identity["model"]))
    elif "source" in identity:
        parts.append(short(identity["source"]))
    if "target" in identity:
        parts.append("-> " + short(identity["target"]))
    for key in ("dataset",):
        if key in identity:
            parts.append(str(identity[key]))
    if "seed" in identity:
        parts.append(f"seed {identity['seed']}")
    return (" " + " ".join(parts)) if parts else ""
