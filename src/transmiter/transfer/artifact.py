"""Adapter artifacts: safetensors weights + JSON metadata, written atomically, verified on load.

One file ``<name>.safetensors`` holds the canonical adapter tensors (``LogitAdapter.export_tensors``:
"projection" = W and the MLP parameters) and, in the safetensors header, the JSON metadata plus a
SHA-256 content hash over the tensors (names, dtypes, shapes, bytes) and the metadata. A copy of the
metadata is written next to it as ``<name>.json`` for people and tools; the embedded copy is
authoritative. Nothing is ever unpickled.

Metadata: stage ("fitted" | "transferred" | "refined"), source model identity, target model identity
(transferred / refined), dataset name, class names, auxiliary names (order matters), K, adapter
config, lam (and the effective lam), the data used (e.g. "fewshot16 x 4 views", "all base train"),
config hash, code version, seed, free-form extra.

    save_adapter_artifact(out / "adapter.safetensors", adapter, stage="fitted",
                          source_model=bundle.identity, dataset="OxfordPets", classnames=names,
                          aux_names=aux, data_used="fewshot16 x 4 views", config=cfg)
    loaded = load_adapter_artifact(path, expect_classnames=names, expect_k=1024, expect_dataset="OxfordPets")
    loaded.adapter, loaded.metadata.aux_names

Refusals raise :class:`ArtifactMismatchError` (field, expected, found and the fix in the message);
a damaged file raises :class:`ArtifactCorruptedError`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from transmiter.io import atomic_path, atomic_write
from transmiter.transfer.adapter import AdapterConfig, LogitAdapter

__all__ = [
    "ARTIFACT_FORMAT",
    "STAGES",
    "AdapterArtifactMeta",
    "ArtifactCorruptedError",
    "ArtifactMismatchError",
    "LoadedAdapter",
    "code_version",
    "config_hash",
    "load_adapter_artifact",
    "read_artifact_metadata",
    "save_adapter_artifact",
]

ARTIFACT_FORMAT = "transmiter.logit_adapter/1"
STAGES = ("fitted", "transferred", "refined")
_META_KEY = "transmiter_metadata"
_HASH_KEY = "transmiter_sha256"


class ArtifactCorruptedError(ValueError):
    """The file cannot be read or its content hash does not match."""


class ArtifactMismatchError(ValueError):
    """The artifact does not match what the caller expects (field, expected, found, fix)."""

    def __init__(self, field_name: str, expected: Any, found: Any, fix: str, detail: str = "") -> None:
        self.field = field_name
        self.expected = expected
        self.found = found
        msg = (
            f"adapter artifact mismatch in field {field_name!r}: expected {_short(expected)}, found "
            f"{_short(found)}{'; ' + detail if detail else ''}. Fix: {fix}"
        )
        super().__init__(msg)


def _short(v: Any, limit: int = 160) -> str:
    s = repr(v)
    if isinstance(v, list | tuple) and len(s) > limit:
        return f"{len(v)} items [{', '.join(repr(x) for x in list(v)[:3])}, ...]"
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass
class AdapterArtifactMeta:
    stage: str
    source_model: Any
    dataset: str
    classnames: list[str]
    aux_names: list[str]
    K: int
    adapter_config: dict
    data_used: str
    target_model: Any = None
    lam: float | None = None
    lam_effective: float | None = None
    scale_lam_by_n: bool | None = None
    num_samples: int | None = None
    seed: int | None = None
    config_hash: str | None = None
    code_version: str | None = None
    created_at: str | None = None
    format: str = ARTIFACT_FORMAT
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> AdapterArtifactMeta:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class LoadedAdapter:
    adapter: LogitAdapter
    metadata: AdapterArtifactMeta
    path: Path
    sha256: str


# ------------------------------------------------------------------------------------------------
# provenance helpers
# ------------------------------------------------------------------------------------------------
def code_version() -> str:
    """Package version, plus ``git describe`` of the source tree when available."""
    try:
        from importlib.metadata import version

        ver = version("transmiter")
    except Exception:
        ver = "unknown"
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        desc = out.stdout.strip()
        if out.returncode == 0 and desc:
            return f"{ver}+git.{desc}"
    except (OSError, subprocess.SubprocessError):
        pass
    return ver


def config_hash(config: Any) -> str:
    """Stable short hash (16 hex) of a config (dict / OmegaConf / dataclass / anything JSON-able)."""
    obj = config
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(config, DictConfig | ListConfig):
            obj = OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _content_hash(tensors: Mapping[str, Tensor], meta_json: str) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode("utf-8") + b"\0")
        h.update(f"{t.dtype}|{tuple(t.shape)}".encode() + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(b"meta\0" + meta_json.encode("utf-8"))
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# save
# ------------------------------------------------------------------------------------------------
def save_adapter_artifact(
    path: str | Path,
    adapter: LogitAdapter,
    *,
    stage: str,
    source_model: Any,
    dataset: str,
    classnames: Sequence[str],
    aux_names: Sequence[str],
    data_used: str,
    target_model: Any = None,
    lam: float | None = None,
    lam_effective: float | None = None,
    scale_lam_by_n: bool | None = None,
    num_samples: int | None = None,
    seed: int | None = None,
    config: Any = None,
    config_hash_value: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` sidecar atomically; returns ``path``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"adapter artifacts use the .safetensors suffix, got {str(path)!r}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if stage in ("transferred", "refined") and target_model is None:
        raise ValueError(f"stage {stage!r} needs target_model (identity of the model the adapter now serves)")
    C, A = len(classnames), len(aux_names)
    if C + A != adapter.K:
        raise ValueError(
            f"C + len(aux_names) = {C} + {A} = {C + A} differs from the adapter's K = {adapter.K}; the "
            f"artifact must record exactly the names of the head the adapter was fitted on"
        )
    meta = AdapterArtifactMeta(
        stage=stage,
        source_model=source_model,
        dataset=str(dataset),
        classnames=[str(c) for c in classnames],
        aux_names=[str(a) for a in aux_names],
        K=adapter.K,
        adapter_config=adapter.config.to_dict(),
        data_used=str(data_used),
        target_model=target_model,
        lam=lam,
        lam_effective=lam_effective,
        scale_lam_by_n=scale_lam_by_n,
        num_samples=num_samples,
        seed=seed,
        config_hash=config_hash_value
        if config_hash_value is not None
        else (config_hash(config) if config is not None else None),
        code_version=code_version(),
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        extra=dict(extra or {}),
    )
    meta_json = meta.to_json()
    tensors = {k: v.detach().cpu().contiguous() for k, v in adapter.export_tensors().items()}
    digest = _content_hash(tensors, meta_json)
    with atomic_path(path, fsync=True) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: meta_json, _HASH_KEY: digest})
    sidecar = json.loads(meta_json)
    sidecar["sha256"] = digest
    sidecar["weights_file"] = path.name
    atomic_write(
        path.with_suffix(".json"),
        json.dumps(sidecar, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n",
        fsync=True,
    )
    return path


# ------------------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------------------
def _read(path: Path) -> tuple[dict[str, Tensor], str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"adapter artifact not found: {str(path)!r}")
    fix = (
        "the file is damaged or not a transmiter adapter; re-create it (saved by a stage: delete that stage's "
        "folder and run the same command again)"
    )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise ArtifactCorruptedError(f"cannot read adapter artifact {str(path)!r} ({err}); {fix}") from err
    if _META_KEY not in header or _HASH_KEY not in header:
        raise ArtifactCorruptedError(f"{str(path)!r} has no transmiter metadata/hash in its header; {fix}")
    return tensors, header[_META_KEY], header[_HASH_KEY]


def read_artifact_metadata(path: str | Path) -> AdapterArtifactMeta:
    """Metadata only (the content hash is still verified)."""
    return load_adapter_artifact(path, _metadata_only=True).metadata  # type: ignore[call-arg]


def _compare_names(field_name: str, expected: Sequence[str], found: Sequence[str], fix: str) -> None:
    expected, found = [str(x) for x in expected], [str(x) for x in found]
    if expected == found:
        return
    if len(expected) != len(found):
        detail = f"lengths differ ({len(expected)} expected vs {len(found)} found)"
    else:
        i = next(i for i, (a, b) in enumerate(zip(expected, found)) if a != b)
        detail = f"first difference at index {i}: expected {expected[i]!r}, found {found[i]!r}"
        if sorted(expected) == sorted(found):
            detail += " (same names, different order)"
    raise ArtifactMismatchError(field_name, expected, found, fix, detail)


def load_adapter_artifact(
    path: str | Path,
    *,
    expect_classnames: Sequence[str] | None = None,
    expect_aux: Sequence[str] | None = None,
    expect_k: int | None = None,
    expect_dataset: str | None = None,
    expect_stage: str | Sequence[str] | None = None,
    expect_source_model: Any = None,
    expect_target_model: Any = None,
    projection: str = "frozen",
    device: torch.device | str = "cpu",
    _metadata_only: bool = False,
) -> LoadedAdapter:
    """Load and verify an artifact; every ``expect_*`` given must match or the load is refused."""
    path = Path(path)
    tensors, meta_json, stored = _read(path)
    actual = _content_hash(tensors, meta_json)
    if actual != stored:
        raise ArtifactCorruptedError(
            f"content hash mismatch for {str(path)!r} (stored {stored[:12]}..., computed {actual[:12]}...): "
            f"the weights or metadata were altered or damaged; re-create the artifact (saved by a stage: "
            f"delete that stage's folder and run the same command again)"
        )
    try:
        meta = AdapterArtifactMeta.from_json(meta_json)
    except (ValueError, TypeError) as err:
        raise ArtifactCorruptedError(f"unreadable metadata in {str(path)!r}: {err}") from err
    if meta.format != ARTIFACT_FORMAT:
        raise ArtifactMismatchError(
            "format", ARTIFACT_FORMAT, meta.format, "re-create the artifact with this version of transmiter"
        )

    if expect_dataset is not None and meta.dataset != expect_dataset:
        raise ArtifactMismatchError(
            "dataset", expect_dataset, meta.dataset, f"load the artifact fitted on {expect_dataset!r}"
        )
    if expect_k is not None and int(meta.K) != int(expect_k):
        raise ArtifactMismatchError(
            "K",
            int(expect_k),
            int(meta.K),
            f"build the zero-shot head with K = C + len(aux) = {meta.K} as stored, or fit a new adapter with "
            f"K = {expect_k}",
        )
    if expect_classnames is not None:
        _compare_names(
            "classnames",
            expect_classnames,
            meta.classnames,
            "use the dataset and class order the adapter was fitted on (metadata.classnames), or fit a new "
            "adapter for this label set",
        )
    if expect_aux is not None:
        _compare_names(
            "aux_names",
            expect_aux,
            meta.aux_names,
            "build the head with the auxiliary names stored in the artifact (metadata.aux_names, same "
            "order) instead of selecting them again",
        )
    if expect_stage is not None:
        allowed = [expect_stage] if isinstance(expect_stage, str) else list(expect_stage)
        if meta.stage not in allowed:
            raise ArtifactMismatchError(
                "stage",
                allowed if len(allowed) > 1 else allowed[0],
                meta.stage,
                "load the artifact produced by the expected stage (fitted / transferred / refined)",
            )
    if expect_source_model is not None and meta.source_model != expect_source_model:
        raise ArtifactMismatchError(
            "source_model",
            expect_source_model,
            meta.source_model,
            "load the adapter fitted on this source model, or compute logits with the model the artifact names",
        )
    if expect_target_model is not None and meta.target_model != expect_target_model:
        raise ArtifactMismatchError(
            "target_model",
            expect_target_model,
            meta.target_model,
            "transfer the adapter to this target model first, or evaluate with the target the artifact names",
        )
    if len(meta.classnames) + len(meta.aux_names) != int(meta.K):
        raise ArtifactCorruptedError(f"{str(path)!r}: C + len(aux_names) != K in the metadata")
    if _metadata_only:
        return LoadedAdapter(adapter=None, metadata=meta, path=path, sha256=stored)  # type: ignore[arg-type]
    config = AdapterConfig.from_dict(meta.adapter_config)
    try:
        adapter = LogitAdapter.from_tensors(tensors, config, projection=projection)
    except ValueError as err:
        raise ArtifactCorruptedError(
            f"{str(path)!r}: tensors do not fit the stored adapter config ({err})"
        ) from err
    adapter = adapter.to(device)
    if projection == "frozen":
        adapter.requires_grad_(False)
    return LoadedAdapter(adapter=adapter.eval(), metadata=meta, path=path, sha256=stored)
