"""The schema of every config: types, defaults and allowed values, in one place.

The dataclasses below are registered in Hydra's ConfigStore. `conf/config.yaml` starts from
`TransmiterConfig`, so every `conf/dataset`, `conf/model`, `conf/pair` and `conf/setting` file is merged onto
its typed node; each `conf/method` file starts from its method's schema (`- <name>_schema` in its defaults).
A YAML file therefore holds only what differs from these defaults, and composition rejects unknown keys and
values of the wrong type (naming the key). Allowed values and ranges are checked by `check_values`, which
`validate_config` runs first:

    cfg = compose_config(["setting.shots=-3"])
    check_values(cfg)     # ConfigError: setting.shots=-3 is invalid: use a positive number of shots ...

The methods read their Python defaults from the same classes (e.g. `FitConfig()`), so a default is never
written twice. Trainer, logger and Hydra nodes are Lightning's and Hydra's own arguments and stay untyped.
Machine-local overrides (`conf/local/default.yaml`) start with `# @package _global_`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from transmiter.data.spec import CORRUPT_IMAGE_POLICIES, LOADER_KINDS
from transmiter.models.templates import TEMPLATE_KINDS

SUBSETS = ("all", "base", "new")
EVAL_SPLITS = ("test", "val", "val_full")
NOISE_MODES = ("batch", "sample")


class ConfigError(ValueError):
    """An invalid config value; the message names the key and how to fix it."""


# ------------------------------------------------------------------------------------------------ rules


def checked(default: Any = MISSING, *, ok: Callable[[Any], bool], fix: str, factory: Callable | None = None):
    """A field whose value must satisfy `ok`; otherwise `check_values` raises naming the key and `fix`."""
    meta = {"ok": ok, "fix": fix}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def one_of(default: Any, choices: Sequence[Any], fix: str | None = None):
    return checked(
        default, ok=lambda v: v in choices, fix=fix or f"choose one of {', '.join(map(str, choices))}"
    )


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _positive(v: Any) -> bool:
    return _int(v) and v >= 1


def learning_rate(default: float):
    return checked(default, ok=lambda v: _number(v) and v > 0, fix="use a positive learning rate, e.g. 1e-5")


def decay(default: float):
    return checked(default, ok=lambda v: _number(v) and v >= 0, fix="use a weight decay >= 0 (0 = none)")


def fraction(default: float, what: str):
    return checked(default, ok=lambda v: _number(v) and 0 <= v < 1, fix=f"use {what} with 0 <= value < 1")


def positive_number(default: float, what: str):
    return checked(default, ok=lambda v: _number(v) and v > 0, fix=f"use a positive {what}")


# -------------------------------------------------------------------------------------------- the nodes


@dataclass
class PathsConfig:
    """Every path of a run; relative paths resolve against the launch folder (Hydra does not chdir)."""

    root_dir: str = MISSING
    data_dir: str = MISSING  # CoOp-format dataset folders live under it (e.g. <data_dir>/oxford_pets)
    cache_dir: str = MISSING  # feature caches, text heads, pretrained synthetic models, stage outputs
    output_root: str = MISSING
    # this run's folder (set by Hydra; null when composed outside a run); every file a run writes goes below it
    output_dir: str | None = MISSING


@dataclass
class EvalConfig:
    # test: the reported numbers; val: model selection (a sweep that picks a hyperparameter reads val,
    # never test; rows get a " [val]" suffix); val_full: the whole validation split, not few-shot sampled
    # (to measure a dataset itself, e.g. a synthetic world's calibration; rows get " [val_full]")
    split: str = one_of(
        "test",
        EVAL_SPLITS,
        "use test (reported numbers), val (hyperparameter selection) or val_full (the whole validation split)",
    )
    batch_size: int = checked(256, ok=_positive, fix="use a positive integer")  # images per feature batch
    # dataloader workers (0 = in process; raise on machines with many cores)
    num_workers: int = checked(0, ok=lambda v: _int(v) and v >= 0, fix="use 0 or a positive integer")


def _crop_ok(v: Any) -> bool:
    return v is None or (
        isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v) and 0 < v[0] <= v[1] <= 1
    )


@dataclass
class DatasetConfig:
    """A dataset on disk (`transmiter.data.spec.DatasetSpec`) plus how methods treat it."""

    _target_: str = "transmiter.data.spec.DatasetSpec"
    name: str = MISSING  # the protocol NAME, e.g. OxfordPets (also keys the template tables)
    folder: str = MISSING  # the dataset folder under paths.data_dir
    loader: str = one_of("json_split", LOADER_KINDS)
    image_dir: str = "images"  # relative to `folder` ('' = the folder itself)
    split_file: str | None = None  # json_split only, e.g. split_zhou_OxfordPets.json
    num_classes: int | None = None  # checked after loading (null: accept what is found)
    test_only: bool = False  # only a test split (ImageNet-V2 / Sketch / A / R)
    epoch_divisor: int = checked(
        1, ok=_positive, fix="use a positive integer (Skip Tuning divides epochs by it)"
    )
    # training-crop area range of RandomResizedCrop (null: the protocol's); synthetic data uses [1, 1]
    train_crop_scale: list[float] | None = checked(
        None, ok=_crop_ok, fix="use [low, high] with 0 < low <= high <= 1, e.g. [0.08, 1.0]"
    )
    templates: dict[str, list[str]] = field(
        default_factory=dict
    )  # per kind: overrides of the built-in tables
    # an image that cannot be decoded: error (stop, naming the file) or skip (every image of the run is
    # decoded up front and the bad ones are left out, counted and listed in the results record)
    on_corrupt_image: str = one_of(
        "error",
        CORRUPT_IMAGE_POLICIES,
        "use error (stop at the first unreadable image, naming it) or skip (leave unreadable images out; "
        "they are counted and listed in the results record)",
    )


@dataclass
class ModelConfig:
    """An open_clip model (`transmiter.models.clip.ModelSpec`)."""

    _target_: str = "transmiter.models.clip.ModelSpec"
    arch: str = MISSING  # an open_clip architecture, e.g. ViT-B-16
    pretrained: str | None = None  # an open_clip tag (e.g. openai), a checkpoint path, or null (random init)
    precision: str = "fp32"  # the weights' dtype; mixed precision is the trainer's business
    name: str | None = None  # short label in tables
    init_seed: int = 0  # seeds the random init when pretrained is null
    force_quick_gelu: bool | None = None  # null: as the pretrained tag says
    extra: dict[str, Any] = field(default_factory=dict)  # further open_clip.create_model arguments


@dataclass
class PairConfig:
    """Source -> target models of the transfer methods."""

    name: str = MISSING
    source: ModelConfig = MISSING
    target: ModelConfig = MISSING


def _shots_ok(v: Any) -> bool:
    return _int(v) and (v >= 1 or v == -1)


def _groups_ok(v: Any) -> bool:
    return isinstance(v, list) and (v == ["all"] or (len(v) == 2 and set(v) == {"base", "new"}))


def _shot_range_ok(v: Any) -> bool:
    return v is None or (
        isinstance(v, list) and len(v) == 2 and all(_positive(x) for x in v) and v[0] <= v[1]
    )


def _targets_ok(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v) and len(set(v)) == len(v)


@dataclass
class SettingConfig:
    """Which classes train and how the test split is scored."""

    name: str = MISSING
    shots: int = checked(
        16,
        ok=_shots_ok,
        fix="use a positive number of shots per class (e.g. 16), or -1 for the full training split",
    )
    train_subsample: str = one_of("base", SUBSETS)  # classes of the training images
    # [base, new]: base and novel scored in separate label spaces; [all]: one label space
    eval_groups: list[str] = checked(
        ok=_groups_ok,
        fix="use [base, new] (base-to-novel) or [all] (base-to-base)",
        factory=lambda: ["base", "new"],
    )
    # [low, high]: the shots this setting's protocol allows (the few-shot study: [1, 16]); null: any
    shot_range: list[int] | None = checked(
        None, ok=_shot_range_ok, fix="use [low, high] with 1 <= low <= high, e.g. [1, 16], or null"
    )
    # which `per_setting` schedule of the methods applies (null: this setting's name); domain generalisation
    # uses cross_dataset's, so both settings evaluate the very same ImageNet-trained models
    recipe: str | None = None
    # datasets scored after training on `dataset`, with no further training: names of conf/dataset files
    targets: list[str] = checked(
        ok=_targets_ok,
        fix="use a list of distinct dataset config names (conf/dataset/<name>.yaml), e.g. [caltech101, dtd]",
        factory=list,
    )
    # per target name: dataset keys that win over its conf/dataset file (e.g. {imagenet_a: {folder: ...}})
    target_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # own: each target is scored over its own classes, the classifier rebuilt from its names (cross-dataset);
    # source: the target's classes are a subset of the source's, matched by name through a class map, and
    # methods with a fixed label space score the source's and read the mapped columns (domain generalisation)
    target_label_space: str = one_of("own", ("own", "source"))
    # own: each evaluated dataset's hand-crafted template (the papers' protocols; for the ImageNet variants
    # Skip Tuning's table uses "a sketch of a {}." etc., knowledge of the target domain); source: the source
    # dataset's template everywhere (no target knowledge at test time)
    target_templates: str = one_of("own", ("own", "source"))


# ----------------------------------------------------------------------------------------------- methods


@dataclass
class ZeroShotConfig:
    """Zero-shot CLIP: the hand-crafted-template classifier, no training."""

    _target_: str = "transmiter.methods.zeroshot.ZeroShot"
    name: str = "zeroshot"
    templates: str = one_of("coop", TEMPLATE_KINDS)


@dataclass
class FinetuneModuleConfig:
    """FT's LightningModule (`FinetuneCLIP`): SGD with a cosine schedule over `epochs`."""

    _target_: str = "transmiter.methods.finetune.FinetuneCLIP"
    _partial_: bool = True
    lr: float = learning_rate(1.0e-5)
    momentum: float = fraction(0.9, "an SGD momentum")
    weight_decay: float = decay(5.0e-4)
    epochs: int = checked(10, ok=_positive, fix="use a positive number of epochs")


@dataclass
class SkipScheduleConfig:
    """Skip Tuning's learning-rate schedule: base-to-novel by default (the other settings in `per_setting`)."""

    text_lr: float = learning_rate(2.0e-5)
    image_lr: float = learning_rate(5.0e-6)
    epochs: int = checked(20, ok=_positive, fix="use a positive number of epochs")
    warmup_epochs: int = checked(1, ok=lambda v: _int(v) and v >= 0, fix="use 0 or a positive integer")
    warmup_lr: float | None = checked(  # null: no warm-up learning rate
        1.0e-6, ok=lambda v: v is None or (_number(v) and v > 0), fix="use a positive learning rate or null"
    )


@dataclass
class SkipTuningModuleConfig(SkipScheduleConfig):
    """Skip Tuning's LightningModule (`SkipTuningCLIP`): LSkip, CSkip, class-homogeneous batches."""

    _target_: str = "transmiter.methods.skip_tuning.SkipTuningCLIP"
    _partial_: bool = True
    omega: int | None = None  # blocks of the image tower frozen and cached; null = half its depth
    text_omega: int | None = None  # the same for the text tower; null = the same fraction of its depth
    momentum: float = fraction(0.9, "an SGD momentum")
    weight_decay: float = decay(5.0e-4)
    top_ratio: float = 0.5  # CSkip: share (<= 1) or number (> 1) of the top-ranked classes kept per step
    max_top: int = 50
    lam: float = 0.3  # CSkip: the other classes are kept with this probability
    cskip_mask: str = one_of(
        "step", ("step", "once"), "use step (a fresh draw every step) or once (one per run)"
    )
    drop_ratio: float = checked(0.0, ok=lambda v: _number(v) and 0 <= v < 1, fix="use 0 <= drop_ratio < 1")
    token_drop: str = one_of("batch", NOISE_MODES)
    cache_dtype: str = one_of("float16", ("float16", "float32"))
    # null: the image-token cache lives in CPU memory; a folder: a memory-mapped file there (one per rank and
    # job) for datasets whose cache does not fit in RAM. Not part of the stage identity.
    cache_dir: str | None = None


@dataclass
class FineTuneConfig:
    """Full fine-tuning (FT): every block of both towers; embeddings, ln_pre and logit scale frozen."""

    _target_: str = "transmiter.methods.tuning.FineTune"
    name: str = "ft"
    kind: str = one_of("ft", ("ft", "skip_tuning"))
    row_name: str = "FT"
    templates: str = one_of("skip", TEMPLATE_KINDS)  # the Skip Tuning per-dataset template table
    batch_size: int = checked(4, ok=_positive, fix="use a positive batch size")  # global batch
    num_workers: int = checked(0, ok=lambda v: _int(v) and v >= 0, fix="use 0 or a positive integer")
    module: FinetuneModuleConfig = field(default_factory=FinetuneModuleConfig)
    # per setting name (its `recipe`): module arguments that win over `module` in that setting; the Skip
    # Tuning paper's cross-dataset FT runs 4 epochs
    per_setting: dict[str, dict[str, Any]] = field(default_factory=lambda: {"cross_dataset": {"epochs": 4}})


def _skip_schedules() -> dict[str, SkipScheduleConfig]:
    few = SkipScheduleConfig(text_lr=1.0e-5, image_lr=1.0e-5, epochs=40, warmup_epochs=0, warmup_lr=None)
    return {
        "fewshot": few,
        "base2base": dataclasses.replace(few),
        # ImageNet -> 10 datasets and the ImageNet variants (domain generalisation reads it through its recipe)
        "cross_dataset": SkipScheduleConfig(
            text_lr=1.0e-5, image_lr=1.0e-6, epochs=20, warmup_epochs=1, warmup_lr=1.0e-8
        ),
    }


@dataclass
class SkipTuningConfig:
    """Skip Tuning (CVPR 2025). `module` holds the base-to-novel schedule, `per_setting` the others."""

    _target_: str = "transmiter.methods.tuning.FineTune"
    name: str = "skip_tuning"
    kind: str = one_of("skip_tuning", ("ft", "skip_tuning"))
    row_name: str = "Skip Tuning"
    templates: str = one_of("skip", TEMPLATE_KINDS)
    # PER-RANK batch (FT's is global): each rank takes whole class-homogeneous batches of this size, so on W
    # devices one optimiser step averages W batches and an epoch has 1/W of the steps
    batch_size: int = checked(4, ok=_positive, fix="use a positive batch size")
    num_workers: int = checked(0, ok=lambda v: _int(v) and v >= 0, fix="use 0 or a positive integer")
    module: SkipTuningModuleConfig = field(default_factory=SkipTuningModuleConfig)
    # per setting name: the schedule that wins over `module` (e.g. method.per_setting.base2base.epochs=10)
    per_setting: dict[str, SkipScheduleConfig] = field(default_factory=_skip_schedules)


@dataclass
class FitConfig:
    """Fitting the logit adapter on the source (zero-shot -> fine-tuned logits, no labels)."""

    epochs: int = checked(10, ok=_positive, fix="use a positive number of epochs")
    batch_size: int = checked(128, ok=_positive, fix="use a positive batch size")
    lr: float = learning_rate(1.0e-3)
    weight_decay: float = decay(1.0e-3)
    warmup_ratio: float = fraction(0.05, "a share of the steps")
    teacher_temperature: float = positive_number(0.5, "temperature")
    temperature: float = positive_number(1.0, "temperature")
    noise_alpha: float = 0.5
    noise_p: float = 0.5
    noise_mode: str = one_of("batch", NOISE_MODES)  # batch: one coin per batch (the reference) | sample
    mlp_ratio: int = 4
    depth: int = 1
    proj_dim: int | None = None  # width of the orthogonal projection W; null = K (the reference); >= K
    # dropout inside the residual MLP while fitting (the reference uses 0)
    dropout: float = checked(
        0.0,
        ok=lambda v: _number(v) and 0 <= v < 1,
        fix="use a dropout probability 0 <= dropout < 1 (the reference uses 0)",
    )


@dataclass
class RefineConfig:
    """TransMiter+'s few-shot labelled refinement of the moved adapter on the target."""

    epochs: int = checked(10, ok=_positive, fix="use a positive number of epochs")
    batch_size: int = checked(128, ok=_positive, fix="use a positive batch size")
    lr: float = learning_rate(1.0e-4)
    weight_decay: float = decay(1.0e-3)
    warmup_ratio: float = fraction(0.1, "a share of the steps")
    noise_alpha: float = 0.5
    noise_p: float = 0.5
    noise_mode: str = one_of("batch", NOISE_MODES)
    projection: str = one_of("orthogonal", ("orthogonal", "free"))  # free: W trained as a plain matrix
    select_on_val: bool = False  # true: keep the epoch with the best few-shot VALIDATION accuracy


@dataclass
class TransMiterConfig:
    """TransMiter: fit a logit adapter on the source, move it to the target in closed form."""

    _target_: str = "transmiter.methods.transmiter.TransMiter"
    name: str = "transmiter"
    source_finetune: Any = MISSING  # the source's fine-tuning method (a conf/method node)
    # logits the adapter works on: the C task classes + K - C auxiliary names
    K: int = checked(
        1024,
        ok=lambda v: _int(v) and v >= 2,
        fix="use the number of logits the adapter works on, e.g. 1024 (C task classes + K-C auxiliary names)",
    )
    grow_k: bool = False  # true: raise K to fit datasets with C >= K instead of failing
    aux_vocabulary: str | None = None  # null = the project's vocabulary; or a file of names
    aux_strategy: str = "random"
    views: int = checked(
        4, ok=_positive, fix="use at least one view"
    )  # augmented views of each fitting image
    # fewshot: the setting's K-shot training images | all: every training image of the training classes
    fit_images: str = one_of("fewshot", ("fewshot", "all"))
    # Procrustes regulariser, absolute as in the reference (M = Z_t^T Z_s + lam I); Z_t^T Z_s grows with the
    # number of fitting rows (images x views), so more views weaken a fixed lam
    lam: float = checked(
        500.0,
        ok=lambda v: _number(v) and v >= 0,
        fix="the Procrustes regulariser must be a number >= 0 (the reference uses 500; 0 = plain Procrustes)",
    )
    scale_lam_by_n: bool = False  # true: lambda * number of fitting rows
    templates: str = one_of("coop", TEMPLATE_KINDS)
    fit: FitConfig = field(default_factory=FitConfig)


@dataclass
class TransMiterPlusConfig(TransMiterConfig):
    """TransMiter+: TransMiter, then few-shot labelled refinement on the target."""

    _target_: str = "transmiter.methods.transmiter.TransMiterPlus"
    name: str = "transmiter_plus"
    refine: RefineConfig = field(default_factory=RefineConfig)


@dataclass
class EFTConfig(TransMiterConfig):
    """EFT-style logit arithmetic; `variant` picks one of the reference's baselines, `alpha` is fixed."""

    _target_: str = "transmiter.methods.transmiter.EFT"
    name: str = "eft"
    variant: str = one_of("eft", ("eft", "base_change", "ensemble", "self_ensemble"))
    alpha: float = 1.0


def _fit_values() -> dict[str, Any]:
    return dataclasses.asdict(FitConfig())


@dataclass
class TransMiterDiagnosticsConfig(TransMiterConfig):
    """TransMiter's diagnostic rows (adapter on the source, without rotation, target oracle)."""

    _target_: str = "transmiter.methods.transmiter.TransMiterDiagnostics"
    name: str = "transmiter_diagnostics"
    rows: list[str] = checked(
        ok=lambda v: (
            bool(v) and len(set(v)) == len(v) and set(v) <= {"source", "no_rotation", "target_oracle"}
        ),
        fix="use a non-empty list of distinct rows among source, no_rotation, target_oracle",
        factory=lambda: ["source", "no_rotation", "target_oracle"],
    )
    # FitConfig's values as a plain node: a study points it at its TransMiter row's fit block
    fit: Any = field(default_factory=_fit_values)


@dataclass
class StudyConfig:
    """Every method row of one (dataset, setting, seed, pair) job."""

    _target_: str = "transmiter.methods.study.Study"
    name: str = "study"
    # ft | skip_tuning: the source fine-tuning of EVERY transfer row
    source_finetuner: str = one_of("skip_tuning", ("ft", "skip_tuning"))
    single_model: list[str] = field(default_factory=lambda: ["zeroshot", "ft", "skip_tuning"])
    transfer: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=lambda: ["source", "target"])
    methods: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorldConfig:
    """The synthetic world the synth_* models and datasets come from (conf/world: the name must be one of
    transmiter.synthetic.worlds.WORLDS, checked by validate_config)."""

    name: str = MISSING
    # its benchmarks (conf/dataset names), comma-separated so that a study can sweep them
    datasets: str = MISSING
    demo_datasets: str = MISSING  # the ones `make demo` runs


# ---------------------------------------------------------------------------------------------- the root


@dataclass
class TransmiterConfig:
    """The whole config of a run (`conf/config.yaml` and the groups it composes)."""

    paths: PathsConfig = MISSING
    model: ModelConfig = MISSING  # the backbone of single-model methods
    dataset: DatasetConfig = MISSING
    method: Any = MISSING
    setting: SettingConfig = MISSING
    pair: PairConfig = MISSING  # source -> target models of transfer methods
    trainer: Any = MISSING
    logger: Any = MISSING
    callbacks: Any = MISSING  # Lightning callbacks of every trainer (conf/callbacks)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = checked(1, ok=lambda v: _int(v) and v >= 0, fix="use a non-negative integer, e.g. seed=1")
    task_name: str = MISSING  # names the run folder and the results record
    tags: list[str] = field(default_factory=list)  # copied into the results record (and wandb tags)
    study: str | None = None  # records of one study are grouped by it in reports (and the wandb group)
    world: WorldConfig = MISSING  # the synthetic world (conf/world)
    world_scale: str = one_of("demo", ("demo", "tiny"))  # its size: demo (make demo) or tiny (tests)
    dry_run: bool = False  # print what this job would run and which of its stages are done; run nothing
    skip_done: bool = True  # a job whose folder already holds job.json is skipped


METHOD_SCHEMAS: dict[str, type] = {
    "zeroshot_schema": ZeroShotConfig,
    "ft_schema": FineTuneConfig,
    "skip_tuning_schema": SkipTuningConfig,
    "transmiter_schema": TransMiterConfig,
    "transmiter_plus_schema": TransMiterPlusConfig,
    "eft_schema": EFTConfig,
    "transmiter_diagnostics_schema": TransMiterDiagnosticsConfig,
    "study_schema": StudyConfig,
}


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent): `transmiter_schema` for conf/config.yaml and
    `method/<name>_schema` for the method files."""
    store = ConfigStore.instance()
    store.store(name="transmiter_schema", node=TransmiterConfig)
    for name, schema in METHOD_SCHEMAS.items():
        store.store(group="method", name=name, node=schema)


def defaults_of(schema: type) -> dict[str, Any]:
    """The schema's defaults as plain Python values (for code that builds a method without Hydra)."""
    return dataclasses.asdict(schema())


# ------------------------------------------------------------------------------------------ key checks


def closest(word: str, known: Sequence[str]) -> str | None:
    """The known name closest to `word` (a typo's likely meaning), or None when nothing is close."""
    import difflib

    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_key_message(key: str, known: Sequence[str], where: str = "the config") -> str:
    """'unknown key X: did you mean Y?' plus the keys that exist, for a key no schema declares."""
    name = key.rsplit(".", 1)[-1]
    guess = closest(name, known)
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    hint = f"did you mean {parent}{guess}? " if guess else ""
    return (
        f"unknown key {key!r} ({where} has no such key; a `+` in front does not make it one): {hint}"
        f"the keys there are {', '.join(sorted(known))}"
    )


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse keys that no schema declares, also those added with `+key=value` (Hydra adds them even to
    typed nodes): a typo such as `+methd=ft` would otherwise run the default job. Untyped nodes (trainer,
    logger, callbacks, free-form dicts) take any key here; :func:`check_trainer_keys` checks the trainer's."""
    _check_keys(cfg, "")


def check_trainer_keys(cfg: DictConfig) -> None:
    """Refuse a trainer key its `_target_` class does not accept (`+trainer.max_epoch=3`), which would
    otherwise fail inside Lightning after the data and models are loaded. It imports that class, so the app
    calls it once a job is about to run, not while answering `--help` or a dry run."""
    import inspect

    from hydra.utils import get_class

    if "trainer" not in cfg or OmegaConf.is_missing(cfg, "trainer"):
        return
    trainer = cfg.trainer
    if not isinstance(trainer, DictConfig) or not isinstance(trainer.get("_target_"), str):
        return
    try:
        params = inspect.signature(get_class(trainer._target_).__init__).parameters
    except Exception as err:
        raise ConfigError(
            f"trainer._target_={trainer._target_!r} cannot be imported ({err}); use a class path such as "
            "lightning.pytorch.Trainer (conf/trainer)"
        ) from err
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [name for name in params if name != "self"]
    for key in trainer:
        if key != "_target_" and str(key) not in known:
            where = f"trainer ({trainer._target_})"
            raise ConfigError(unknown_key_message(f"trainer.{key}", known, where))


def _check_keys(node: Any, path: str) -> None:
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        fields = [f.name for f in dataclasses.fields(schema)]
        for key in node:
            if str(key) not in fields and not (not path and key == "hydra"):
                where = "the top level" if not path else f"{path} ({schema.__name__})"
                raise ConfigError(unknown_key_message(f"{path}.{key}" if path else str(key), fields, where))
    for key in node:
        if (
            (not path and key == "hydra")
            or OmegaConf.is_interpolation(node, str(key))  # points at a node checked where it lives
            or OmegaConf.is_missing(node, str(key))
        ):
            continue
        _check_keys(node.get(key), f"{path}.{key}" if path else str(key))


# --------------------------------------------------------------------------------------- value checks


def check_values(cfg: DictConfig, path: str = "") -> None:
    """Check every field with an allowed-value rule, anywhere in the composed config (nested methods
    included), or in one typed node whose keys are named under `path`; raise ConfigError naming the first
    bad key, its value and the fix."""
    _check_node(cfg, path)


def _check_node(node: Any, path: str) -> None:
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _check_node(item, f"{path}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    rules = (
        {f.name: f.metadata for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else {}
    )
    for key in node:
        if not path and key == "hydra":
            continue
        value = node.get(key)
        name = f"{path}.{key}" if path else str(key)
        rule = rules.get(str(key), {})
        if "ok" in rule:
            plain = (
                OmegaConf.to_container(value, resolve=True)
                if isinstance(value, DictConfig | ListConfig)
                else value
            )
            if not rule["ok"](plain):
                raise ConfigError(f"{name}={plain!r} is invalid: {rule['fix']}")
        _check_node(value, name)
