"""TransMiter on logit tensors: the public library API (no Hydra, no images, no files).

    import transmiter

    adapter = transmiter.fit_adapter(source_zs_logits, source_ft_logits, num_classes=C, seed=1)
    moved = transmiter.transfer_adapter(adapter, source_zs_logits, target_zs_logits, lam=500.0)
    refined = transmiter.refine_adapter(moved, target_logits, labels, class_columns=base_ids)
    scores = moved(target_test_logits)[:, :C]

Inputs, per row (one image): zero-shot logits over K names, the C task classes first and then the K - C
auxiliary names, in the same order for every model; the fine-tuned source's logits over the C classes;
labels as global class indices. Rows of the source and target logits passed together are the same
images in the same order.

* :func:`fit_adapter` - knowledge extraction: fits a :class:`LogitAdapter` so that it maps the source's
  zero-shot logits to the fine-tuned source's (KL distillation, no labels). Gradient-based (Lightning).
* :func:`transfer_adapter` - moves it to the target in closed form (regularised orthogonal Procrustes);
  no backward pass, and the result holds no tensor that requires grad.
* :func:`refine_adapter` - TransMiter+: a few labelled target rows refine the moved adapter
  (cross-entropy on the supervised class columns).

These are the modules the study itself runs (``AdapterFitModule``, ``transfer_adapter_with_details``,
``TransMiterPlusModule``), built from the same settings, so a call computes what a study's stage
computes for the same logits. Defaults are the method configs' (:func:`default_settings`); every
keyword of ``method.fit`` / ``method.refine`` can be passed to change one. Computation runs where the
inputs live (CPU or a CUDA device); results come back on that device. Bad inputs (shapes, K < C, NaN or
inf, rows that do not pair up, unknown settings) raise ``ValueError`` before any training.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from transmiter.transfer.adapter import LogitAdapter

__all__ = ["LogitAdapter", "default_settings", "fit_adapter", "refine_adapter", "transfer_adapter"]


# ------------------------------------------------------------------------------------------------
# defaults: the method configs
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _config_defaults() -> dict[str, Any]:
    """TransMiter's defaults, from the config schema (the values `method=transmiter_plus` composes to)."""
    from transmiter.config.schema import TransMiterPlusConfig, defaults_of

    d = defaults_of(TransMiterPlusConfig)
    return {key: d[key] for key in ("fit", "refine", "lam", "scale_lam_by_n")}


def default_settings() -> dict[str, Any]:
    """A copy of the defaults: ``{"fit": {...}, "refine": {...}, "lam": 500.0, "scale_lam_by_n": False}``,
    the values of ``method.fit``, ``method.refine``, ``method.lam`` and ``method.scale_lam_by_n``."""
    return copy.deepcopy(_config_defaults())


def _settings(block: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of `method.<block>` updated by `overrides`, typed and range-checked by the schema."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from transmiter.config.schema import FitConfig, RefineConfig, check_values

    schema = {"fit": FitConfig, "refine": RefineConfig}[block]
    unknown = sorted(set(overrides) - set(default_settings()[block]))
    if unknown:
        raise ValueError(
            f"unknown {block} setting(s) {unknown}; the settings of method.{block} are: "
            f"{', '.join(default_settings()[block])}"
        )
    try:
        node = OmegaConf.merge(OmegaConf.structured(schema), dict(overrides))
    except OmegaConfBaseException as err:  # a value of the wrong type
        raise ValueError(f"{block}.{err.key}: {err.msg}") from err
    check_values(OmegaConf.create({block: node}))  # ConfigError (a ValueError) naming the key and the fix
    return OmegaConf.to_container(node)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------
def _logits(name: str, x: Any, *, columns: int | None = None, what: str = "logits") -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of {what}, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D tensor [rows, {what}], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must hold floating-point logits, got dtype {x.dtype}")
    if columns is not None and x.shape[1] != columns:
        raise ValueError(f"{name} has {x.shape[1]} columns, expected {columns}: {what}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = bad.any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name} holds {int(bad.sum())} NaN/inf value(s) in {rows.numel()} row(s) (first: row "
            f"{int(rows[0])}); fix the inputs or drop those rows (every row is used)"
        )
    return x


def _same_rows(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_name} has {a.shape[0]} rows and {b_name} {b.shape[0]}: the rows must be the same images in the "
            "same order"
        )
    if a.device != b.device:
        raise ValueError(f"{a_name} is on {a.device} and {b_name} on {b.device}: put them on one device")


def _adapter(adapter: Any, device: torch.device) -> LogitAdapter:
    if not isinstance(adapter, LogitAdapter):
        raise ValueError(f"adapter must be a transmiter.LogitAdapter, got {type(adapter).__name__}")
    if adapter.W.device != device:
        adapter = adapter.clone().to(device)
    return adapter


def _labels(labels: Any, rows: int) -> Tensor:
    if (
        not isinstance(labels, Tensor)
        or labels.ndim != 1
        or labels.is_floating_point()
        or labels.dtype == torch.bool
    ):
        shown = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D integer tensor of class indices, got {shown}")
    if labels.shape[0] != rows:
        raise ValueError(f"labels has {labels.shape[0]} entries for {rows} logit rows: one label per row")
    return labels.long()


# ------------------------------------------------------------------------------------------------
# training runs (the same Lightning modules as the study)
# ------------------------------------------------------------------------------------------------
def _trainer(device: torch.device, epochs: int, progress: bool):
    import lightning as L

    from transmiter.callbacks import NonFiniteLossGuard, progress_bar
    from transmiter.console import quiet_lightning_banners

    quiet_lightning_banners()
    accelerator = {"cuda": "gpu", "mps": "mps"}.get(device.type, "cpu")
    return L.Trainer(
        accelerator=accelerator,
        devices=[device.index or 0] if device.type == "cuda" else 1,
        max_epochs=epochs,
        precision="32-true",
        deterministic=device.type == "cpu",
        logger=False,
        callbacks=[NonFiniteLossGuard(), *([progress_bar()] if progress else [])],
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


# Lightning notices a library caller cannot act on: rows are in memory (DataLoader workers would only add
# start-up time), validation is optional, and a SLURM install on the machine does not make this a SLURM job.
_SILENCED = (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*`srun` command is available.*")


def _train(module, datamodule, device: torch.device, epochs: int, seed: int, progress: bool) -> None:
    """trainer.fit, with the caller's global RNG left untouched (dropout, if any, draws from `seed`)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        torch.manual_seed(seed)
        for message in _SILENCED:
            warnings.filterwarnings("ignore", message=message)
        _trainer(device, epochs, progress).fit(module, datamodule=datamodule)


def fit_adapter(
    source_zs_logits: Tensor,
    source_ft_logits: Tensor,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    progress: bool = False,
    **fit: Any,
) -> LogitAdapter:
    """Fit an adapter on the source (knowledge extraction; labels are never used).

    source_zs_logits: [N, K] zero-shot logits of the source (C task classes first, then K - C auxiliary
        names); source_ft_logits: [N, C] logits of the fine-tuned source on the same rows (the teacher).
    num_classes: C, checked against ``source_ft_logits`` when given. seed: the adapter's initial W, the
        noise and the shuffling. ``**fit``: any key of ``method.fit`` (``epochs``, ``lr``, ``batch_size``,
        ``noise_alpha``, ...; see :func:`default_settings`). A fresh ``LogitAdapter(K)`` (the start of the
        fit) is exactly the identity on logits.

    Returns a frozen :class:`LogitAdapter` (eval mode, no tensor requiring grad) on the inputs' device. A
    NaN / inf training loss stops the fit with ``NonFiniteLossError`` (a ``FloatingPointError``).
    """
    from transmiter.methods.adapter_fit import AdapterFitModule
    from transmiter.transfer.logit_data import LogitPairDataModule

    settings = _settings("fit", fit)
    zs = _logits("source_zs_logits", source_zs_logits, what="K zero-shot logits (C classes, then aux names)")
    ft = _logits("source_ft_logits", source_ft_logits, what="C fine-tuned logits")
    _same_rows("source_zs_logits", zs, "source_ft_logits", ft)
    K, C = zs.shape[1], ft.shape[1]
    if num_classes is not None and num_classes != C:
        raise ValueError(
            f"num_classes={num_classes} but source_ft_logits has {C} columns (one per task class)"
        )
    if K < C:
        raise ValueError(
            f"K={K} < C={C}: the zero-shot logits must cover the C task classes first, then K - C auxiliary "
            "names (the reference uses K = 1024)"
        )
    module = AdapterFitModule.from_settings(K, settings, seed=seed)
    data = LogitPairDataModule(train=(zs, ft), batch_size=settings["batch_size"], seed=seed)
    _train(module, data, zs.device, settings["epochs"], seed, progress)
    return module.fitted_adapter().to(zs.device)


def transfer_adapter(
    adapter: LogitAdapter,
    source_zs_logits: Tensor,
    target_zs_logits: Tensor,
    *,
    lam: float | None = None,
    scale_lam_by_n: bool | None = None,
    return_details: bool = False,
):
    """Move a fitted adapter to the target model in closed form (no backpropagation).

    source_zs_logits / target_zs_logits: [N, K] zero-shot logits of the source and the target on the same
    N images, over the same K names in the same order. lam: the Procrustes regulariser (absolute, as in
    the reference; default ``method.lam``); ``scale_lam_by_n=True`` uses lam x N. Returns a new frozen
    adapter (W_new = Q^T W, MLP unchanged); ``adapter`` is not modified. ``return_details=True`` returns
    the ``TransferResult`` instead: ``.adapter``, the rotation ``.rotation`` (Q), ``.singular_values``,
    ``.num_samples`` and ``.lam_effective``.
    """
    from transmiter.transfer.transfer import transfer_adapter_with_details

    defaults = _config_defaults()
    lam = defaults["lam"] if lam is None else float(lam)
    scale_lam_by_n = defaults["scale_lam_by_n"] if scale_lam_by_n is None else bool(scale_lam_by_n)
    if lam < 0:
        raise ValueError(f"lam={lam}: the Procrustes regulariser must be >= 0 (default {defaults['lam']})")
    if not isinstance(adapter, LogitAdapter):
        raise ValueError(f"adapter must be a transmiter.LogitAdapter, got {type(adapter).__name__}")
    names = f"the adapter's K={adapter.K} logits (C classes, then the same aux names)"
    src = _logits("source_zs_logits", source_zs_logits, columns=adapter.K, what=names)
    tgt = _logits("target_zs_logits", target_zs_logits, columns=adapter.K, what=names)
    _same_rows("source_zs_logits", src, "target_zs_logits", tgt)
    adapter = _adapter(adapter, src.device)
    result = transfer_adapter_with_details(
        adapter, src, tgt, lam=lam, scale_lam_by_n=scale_lam_by_n, distributed=False
    )
    return result if return_details else result.adapter


def refine_adapter(
    adapter: LogitAdapter,
    target_logits: Tensor,
    labels: Tensor,
    *,
    class_columns: Sequence[int] | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    val_logits: Tensor | None = None,
    val_labels: Tensor | None = None,
    progress: bool = False,
    **refine: Any,
) -> LogitAdapter:
    """TransMiter+: refine a (moved) adapter with a few labelled target rows.

    target_logits: [N, K] zero-shot logits of the target; labels: [N] global class indices.
    class_columns: the supervised columns, e.g. the base classes in base-to-novel (the labels must be among
    them); or ``num_classes=C`` for columns 0..C-1. ``**refine``: any key of ``method.refine``; with
    ``select_on_val=True`` give ``val_logits``/``val_labels`` (a validation split, never test).
    Returns a new frozen adapter on the inputs' device.
    """
    from transmiter.methods.transmiter_plus import TransMiterPlusModule
    from transmiter.transfer.logit_data import LogitPairDataModule

    settings = _settings("refine", refine)
    if not isinstance(adapter, LogitAdapter):
        raise ValueError(f"adapter must be a transmiter.LogitAdapter, got {type(adapter).__name__}")
    x = _logits("target_logits", target_logits, columns=adapter.K, what=f"the adapter's K={adapter.K} logits")
    y = _labels(labels, x.shape[0])
    if class_columns is None:
        if num_classes is None:
            raise ValueError(
                "give class_columns (the supervised class indices, e.g. the base classes) or num_classes"
            )
        class_columns = range(int(num_classes))
    columns = [int(c) for c in class_columns]
    if not columns or len(set(columns)) != len(columns) or min(columns) < 0 or max(columns) >= adapter.K:
        raise ValueError(
            f"class_columns must be distinct column indices in [0, K={adapter.K}), got {columns[:10]}"
        )
    outside = sorted(set(y.unique().tolist()) - set(columns))
    if outside:
        raise ValueError(
            f"labels {outside[:10]} are not among class_columns: refine only on rows of the supervised classes "
            "(e.g. drop novel-class rows in base-to-novel), or widen class_columns"
        )
    val = None
    if settings["select_on_val"]:
        if val_logits is None or val_labels is None:
            raise ValueError(
                "select_on_val=True needs val_logits and val_labels (a validation split, never test)"
            )
        vx = _logits("val_logits", val_logits, columns=adapter.K, what=f"the adapter's K={adapter.K} logits")
        val = (vx, _labels(val_labels, vx.shape[0]))
    adapter = _adapter(adapter, x.device)
    module = TransMiterPlusModule.from_settings(adapter, columns, settings, seed=seed)
    data = LogitPairDataModule(train=(x, y), val=val, batch_size=settings["batch_size"], seed=seed)
    _train(module, data, x.device, settings["epochs"], seed, progress)
    return module.refined_adapter().to(x.device)
