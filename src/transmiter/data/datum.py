"""Data contracts shared by the whole framework: one labelled image, and the three splits of a dataset.

Usage::

    from transmiter.data.datum import Datum, DatasetSplits, split_identity

    splits = build_splits(spec, data_dir, shots=16, seed=1)   # -> DatasetSplits
    splits.train[0]            # Datum(impath='/data/oxford_pets/images/Abyssinian_1.jpg', label=0, classname='abyssinian')
    splits.classnames[0]       # 'abyssinian' (index == label)
    split_identity(splits)     # 'sha256:3f1c...' ; store it in results records to name the exact data used
    files_identity(splits.train)   # changes when any of these image files is replaced or rewritten

``Datum.impath`` is absolute at run time. Anything written to disk (few-shot caches, identities) uses paths
relative to ``DatasetSplits.root`` so that moving the dataset folder changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Datum:
    """One labelled image.

    Attributes:
        impath: absolute path of the image file at run time.
        label: 0-based class index in the label space of the splits that hold this datum.
        classname: class name as written in the split file (underscores kept; prompts replace them later).
    """

    impath: str
    label: int
    classname: str


@dataclass
class DatasetSplits:
    """train / val / test lists of one dataset, in one label space.

    Attributes:
        name: protocol NAME of the dataset, e.g. ``"OxfordPets"``.
        root: the dataset folder, e.g. ``$DATA/oxford_pets``; relative paths on disk are relative to it.
        classnames: ``classnames[label]`` is the name of ``label``; its length is the number of classes.
        train, val, test: the splits, in split-file order (few-shot sampling depends on that order).
        val_is_test: True for ImageNet, whose protocol has no val set and uses the test set as val.
            The few-shot sampler then leaves val alone.
    """

    name: str
    root: Path
    classnames: list[str]
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    val_is_test: bool = field(default=False)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def split(self, split_name: str) -> list[Datum]:
        """The list called ``split_name`` (one of ``train``, ``val``, ``test``)."""
        if split_name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {split_name!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, split_name)

    def relative_path(self, datum: Datum) -> str:
        """``datum.impath`` relative to ``root``, with ``/`` separators (the form stored on disk)."""
        return relative_to_root(datum.impath, self.root)


def relative_to_root(impath: str, root: Path | str) -> str:
    """``impath`` relative to ``root`` with forward slashes, so the string is the same on every OS."""
    root_prefix = os.path.join(str(root), "")
    if impath.startswith(root_prefix):
        # Fast path (no filesystem-agnostic normalisation needed): ImageNet has 1.28M items.
        relative = impath[len(root_prefix) :]
    else:
        relative = os.path.relpath(impath, root)
    return relative.replace(os.sep, "/")


def split_identity(splits: DatasetSplits, parts: tuple[str, ...] = SPLIT_NAMES) -> str:
    """A stable fingerprint of exactly which images, labels and class names ``splits`` holds.

    SHA-256 over a canonical JSON of the dataset name, the class names and, per split, the list of
    ``(relative path, label, classname)``. Paths are relative to ``splits.root``, so the identity does not
    change when the dataset folder moves; it changes when a split file, a few-shot draw or the base/new
    selection changes. Returns ``"sha256:<64 hex digits>"``. ``parts`` restricts it to some splits (training
    stages key on ``("train",)`` only, so a validation-split run shares them with the test run).
    """
    digest = hashlib.sha256()

    # Feed the canonical JSON piece by piece: ImageNet's train split has 1.28M items, and building one
    # giant string first would double the memory for no benefit.
    def feed(obj: object) -> None:
        digest.update(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")

    feed({"name": splits.name, "classnames": list(splits.classnames)})
    for split_name in parts:
        items = splits.split(split_name)
        feed({"split": split_name, "size": len(items)})
        for datum in items:
            feed([relative_to_root(datum.impath, splits.root), datum.label, datum.classname])
    return "sha256:" + digest.hexdigest()


def files_identity(items: Sequence[Datum]) -> str:
    """A fingerprint of the image FILES behind ``items`` as they are on disk now: the size and modification
    time (ns) of each, in order. Caches and stages whose work read these images key on it (next to the
    portable ``split_identity``), so a replaced, rewritten or corrupted image invalidates exactly what used
    it. A file that cannot be stat'ed counts as missing; reading it fails later, naming it."""
    digest = hashlib.sha256()
    for datum in items:
        try:
            stat = os.stat(datum.impath)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(b"missing\n")
    return "files:" + digest.hexdigest()[:32]
