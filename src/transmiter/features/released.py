"""The feature-file layout of the TransMiter authors' release: found, read, checked and written.

    <root>/<dataset>/<seed>/<shots>/train_features.pt    the fitting images (e.g. base2new_promptsrc/dtd/1/16/)
    <root>/<dataset>/<seed>/<shots>/test_features.pt     the test images
    <root>/<dataset>/<seed>/<shots>/export.json          optional provenance (`transmiter features export`)

Each ``.pt`` file is a dict saved with ``torch.save`` and read here with ``weights_only=True``:

    labels             int tensor [N]                 global class index of each row
    label_names        {index: name} or [name, ...]   the C class names, in label order
    base, novel        lists of class indices         the base-to-novel groups (disjoint, cover the C classes)
    <model>_features   float tensor [N, D]            the model's image embeddings
    <model>_ft_logits  float tensor [N, C]            a fine-tuned model's logits over the C classes (or a
                                                      list of such tensors, one per fine-tuning run: averaged)

    runs = find_runs(root)                     # [FeatureRun(dataset="dtd", seed=1, shots=16, folder=...)]
    train, test = runs[0].load()               # FeatureFile each; FeatureFileError names file, key and fix
    write_feature_file(path, labels=..., classnames=..., base=..., novel=..., features={...}, ft_logits={...})

Every check here is cheap (no model is loaded): a bad file fails before any heavy work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transmiter.io import atomic_path, file_digest

TRAIN_FILE = "train_features.pt"
TEST_FILE = "test_features.pt"
EXPORT_FILE = "export.json"
FEATURES_SUFFIX = "_features"
FT_LOGITS_SUFFIX = "_ft_logits"
REQUIRED_KEYS = ("labels", "label_names", "base", "novel")
# Unit features stored in half precision have norms within ~1e-3 of 1; anything further off is a raw
# embedding, which the reference L2-normalises before the zero-shot head.
UNIT_NORM_TOLERANCE = 1e-2


class FeatureFileError(ValueError):
    """A feature file or folder that cannot be used; the message names the file, the key and the fix."""


@dataclass
class FeatureFile:
    """One ``{train,test}_features.pt``: checked, with tensors on the CPU."""

    path: Path
    labels: Tensor  # [N] long
    classnames: list[str]
    base: list[int]
    novel: list[int]
    features: dict[str, Tensor]  # model name -> [N, D] float32, L2-normalised
    ft_logits: dict[str, Tensor]  # model name -> [N, C] float32
    sha256: str

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def require(self, model: str, kind: str = "features") -> Tensor:
        """The `<model>_features` / `<model>_ft_logits` tensor, or an error naming what the file holds."""
        table = self.features if kind == "features" else self.ft_logits
        suffix = FEATURES_SUFFIX if kind == "features" else FT_LOGITS_SUFFIX
        if model not in table:
            held = ", ".join(f"{m}{suffix}" for m in table) or "none"
            raise FeatureFileError(
                f"{self.path}: key '{model}{suffix}' is missing (the file holds {held}). Fix: choose a pair whose "
                f"model names match the file's keys (pair=..., or the model config's `name`), or add the key"
            )
        return table[model]


@dataclass(frozen=True)
class FeatureRun:
    """One ``<dataset>/<seed>/<shots>`` folder of the layout."""

    dataset: str
    seed: int
    shots: int
    folder: Path
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def load(self) -> tuple[FeatureFile, FeatureFile]:
        """(train, test), each checked, and checked against each other (same classes and groups)."""
        train = load_feature_file(self.folder / TRAIN_FILE)
        test = load_feature_file(self.folder / TEST_FILE)
        for key in ("classnames", "base", "novel"):
            if getattr(train, key) != getattr(test, key):
                shown = "label_names" if key == "classnames" else key
                raise FeatureFileError(
                    f"{train.path} and {test.path} disagree on '{shown}'; both files of a folder must describe "
                    "the same classes and base/novel groups (re-export them together)"
                )
        return train, test


def find_runs(root: str | os.PathLike) -> list[FeatureRun]:
    """Every ``<dataset>/<seed>/<shots>`` folder under ``root`` holding a train file (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise FeatureFileError(
            f"{root} is not a folder; give the folder that holds <dataset>/<seed>/<shots>/"
        )
    runs = []
    for train in sorted(root.glob(f"*/*/*/{TRAIN_FILE}")):
        folder = train.parent
        seed, shots = folder.parent.name, folder.name
        if not (seed.isdigit() and shots.isdigit()):
            raise FeatureFileError(
                f"{folder}: expected <dataset>/<seed>/<shots>/ with integer seed and shots (e.g. dtd/1/16/); "
                "rename the folders"
            )
        if not (folder / TEST_FILE).is_file():
            raise FeatureFileError(
                f"{folder / TEST_FILE} is missing: every folder needs {TRAIN_FILE} and {TEST_FILE}"
            )
        provenance = {}
        if (folder / EXPORT_FILE).is_file():
            try:
                provenance = json.loads((folder / EXPORT_FILE).read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise FeatureFileError(
                    f"{folder / EXPORT_FILE} is not valid JSON ({err}); delete it or re-export"
                ) from err
        runs.append(FeatureRun(folder.parent.parent.name, int(seed), int(shots), folder, provenance))
    if not runs:
        raise FeatureFileError(
            f"no {TRAIN_FILE} under {root}/<dataset>/<seed>/<shots>/; give the folder of the dataset folders "
            "(e.g. data/base2new_promptsrc)"
        )
    return runs


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FeatureFileError(f"{path} is missing")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickles of foreign objects, truncated files: many exception types
        raise FeatureFileError(
            f"{path} cannot be read with torch.load(weights_only=True) ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Fix: re-save it as a dict of tensors, lists, "
            "dicts and strings only (no pickled objects)"
        ) from err
    if not isinstance(data, dict):
        raise FeatureFileError(
            f"{path} holds a {type(data).__name__}, expected a dict with keys {REQUIRED_KEYS}"
        )
    return data


def _class_names(path: Path, value: Any) -> list[str]:
    if isinstance(value, Mapping):
        try:
            items = sorted((int(k), v) for k, v in value.items())
        except (TypeError, ValueError) as err:
            raise FeatureFileError(f"{path}: 'label_names' keys must be class indices 0..C-1") from err
        if [k for k, _ in items] != list(range(len(items))):
            raise FeatureFileError(f"{path}: 'label_names' keys must be exactly the class indices 0..C-1")
        value = [v for _, v in items]
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
        raise FeatureFileError(
            f"{path}: 'label_names' must be a non-empty {{index: name}} dict or list of names"
        )
    return [str(v) for v in value]


def _indices(path: Path, key: str, value: Any, num_classes: int) -> list[int]:
    if isinstance(value, Tensor):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise FeatureFileError(f"{path}: '{key}' must be a list of class indices")
    bad = [v for v in value if not 0 <= v < num_classes]
    if bad:
        raise FeatureFileError(
            f"{path}: '{key}' holds {bad[:5]}, outside the {num_classes} classes of 'label_names'"
        )
    return [int(v) for v in value]


def _matrix(path: Path, key: str, value: Any, rows: int, columns: int | None = None) -> Tensor:
    if isinstance(value, list | tuple) and value and all(isinstance(v, Tensor) for v in value):
        shapes = {tuple(v.shape) for v in value}
        if len(shapes) != 1:
            raise FeatureFileError(
                f"{path}: the tensors listed under '{key}' differ in shape ({sorted(shapes)})"
            )
        value = torch.stack([v.float() for v in value]).mean(0)  # several fine-tuning runs: their mean
    if not isinstance(value, Tensor) or not value.is_floating_point() or value.ndim != 2:
        shown = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise FeatureFileError(f"{path}: '{key}' must be a 2-D float tensor [rows, dims], got {shown}")
    if value.shape[0] != rows:
        raise FeatureFileError(
            f"{path}: '{key}' has {value.shape[0]} rows but 'labels' has {rows}: one row per image, in one order"
        )
    if columns is not None and value.shape[1] != columns:
        raise FeatureFileError(
            f"{path}: '{key}' has {value.shape[1]} columns but 'label_names' names {columns} classes: one logit per "
            "class, in label order"
        )
    value = value.float()
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        row = int(bad.any(dim=1).nonzero()[0])
        raise FeatureFileError(
            f"{path}: '{key}' holds {int(bad.sum())} NaN/inf value(s) (first in row {row})"
        )
    return value


def unit_rows(features: Tensor) -> Tensor:
    """Rows L2-normalised as the reference does, unless they already are (to storage precision), in which
    case they are kept as stored: renormalising would change the study's own cached features."""
    norms = features.norm(dim=1)
    if bool(((norms - 1).abs() <= UNIT_NORM_TOLERANCE).all()):
        return features
    return features / norms.clamp_min(1e-12).unsqueeze(1)


def load_feature_file(path: str | os.PathLike) -> FeatureFile:
    """Read and check one file (see the module docstring); features come back L2-normalised (float32)."""
    path = Path(path)
    data = _read(path)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise FeatureFileError(
            f"{path}: key(s) {missing} missing (found {sorted(data)}); the layout needs {list(REQUIRED_KEYS)} plus "
            f"<model>{FEATURES_SUFFIX} and <model>{FT_LOGITS_SUFFIX} (base-to-novel files)"
        )
    labels = data["labels"]
    if isinstance(labels, list | tuple):
        labels = torch.tensor(labels)
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point() or len(labels) == 0:
        raise FeatureFileError(f"{path}: 'labels' must be a non-empty 1-D integer tensor")
    labels = labels.long()
    classnames = _class_names(path, data["label_names"])
    C = len(classnames)
    if int(labels.min()) < 0 or int(labels.max()) >= C:
        raise FeatureFileError(
            f"{path}: 'labels' range {int(labels.min())}..{int(labels.max())} is outside the {C} classes"
        )
    base = _indices(path, "base", data["base"], C)
    novel = _indices(path, "novel", data["novel"], C)
    if set(base) & set(novel) or sorted(base + novel) != list(range(C)) or not novel:
        raise FeatureFileError(
            f"{path}: 'base' and 'novel' must split the {C} classes into two non-empty disjoint groups "
            f"(got {len(base)} base and {len(novel)} novel indices); these are base-to-novel files"
        )
    features, ft_logits = {}, {}
    for key, value in data.items():
        if not isinstance(key, str):
            continue
        if key.endswith(FT_LOGITS_SUFFIX):
            ft_logits[key[: -len(FT_LOGITS_SUFFIX)]] = _matrix(path, key, value, len(labels), C)
        elif key.endswith(FEATURES_SUFFIX) and not key.endswith("_text_features"):
            features[key[: -len(FEATURES_SUFFIX)]] = unit_rows(_matrix(path, key, value, len(labels)))
    if not features:
        raise FeatureFileError(f"{path}: no '<model>{FEATURES_SUFFIX}' key (found {sorted(data)})")
    return FeatureFile(path, labels, classnames, base, novel, features, ft_logits, file_digest(path))


def write_feature_file(
    path: str | os.PathLike,
    *,
    labels: Tensor,
    classnames: Sequence[str],
    base: Sequence[int],
    novel: Sequence[int],
    features: Mapping[str, Tensor],
    ft_logits: Mapping[str, Tensor],
) -> Path:
    """Write one file of the layout atomically (a temporary name, then a rename)."""
    path = Path(path)
    data: dict[str, Any] = {
        "labels": labels.long().cpu().contiguous(),
        "label_names": {i: str(name) for i, name in enumerate(classnames)},
        "base": [int(i) for i in base],
        "novel": [int(i) for i in novel],
    }
    for model, tensor in features.items():
        data[f"{model}{FEATURES_SUFFIX}"] = tensor.detach().cpu().contiguous()
    for model, tensor in ft_logits.items():
        data[f"{model}{FT_LOGITS_SUFFIX}"] = tensor.detach().float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return path


def model_key(node: Any) -> str:
    """A model's name in the layout's keys (`<name>_features`): the model config's `name`, else its arch."""
    return str(node.get("name") or node.arch)
