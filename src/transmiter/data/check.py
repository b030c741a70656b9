"""Check that a dataset is complete on disk, without loading any image.

Usage::

    from transmiter.data.check import check_dataset
    from transmiter.config.instantiate import shipped_dataset_specs

    for spec in shipped_dataset_specs().values():
        report = check_dataset(spec, "/data")
        print(report.format())       # "[ok] OxfordPets ..." or "[MISSING] ..." with every problem and its fix
    report.ok                        # True when load_dataset would succeed

It reports, in this order and as far as it can get: the dataset folder, the split / metadata files and the
image folder (all listed at once), then structural problems (malformed split file, missing class folders,
wrong class count), then images that the split references but that are absent (count, first few paths and
missing folders). Existence is checked by listing folders; images are opened only with ``decode=True``
(``transmiter data check --decode``), which decodes every image of the splits and lists those that fail::

    report = check_dataset(spec, "/data", decode=True)
    report.unreadable                # {path: reason} of the images that cannot be decoded
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from transmiter.data.errors import DatasetError
from transmiter.data.loaders import (
    KINDS_WITH_LISTED_IMAGES,
    dataset_root,
    describe_missing_images,
    find_missing_images,
    missing_required_paths,
    read_splits,
)
from transmiter.data.spec import DatasetSpec


@dataclass
class DatasetCheckReport:
    """Outcome of :func:`check_dataset`.

    Attributes:
        name: protocol NAME of the dataset.
        root: the dataset folder that was checked.
        problems: one human-readable entry per problem, each naming the path and the fix.
        missing_paths: required files/folders that are absent (dataset folder, split file, image folder, ...).
        split_sizes: ``{"train": n, "val": n, "test": n}`` when the metadata could be read.
        num_classes: number of classes found, when the metadata could be read.
        missing_images: number of referenced images that are absent.
        missing_examples: the first few absent image paths.
    """

    name: str
    root: Path
    problems: list[str] = field(default_factory=list)
    missing_paths: list[Path] = field(default_factory=list)
    split_sizes: dict[str, int] = field(default_factory=dict)
    num_classes: int | None = None
    missing_images: int = 0
    missing_examples: list[str] = field(default_factory=list)
    decoded: bool = False  # whether every image was opened and decoded (decode=True)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why it cannot be decoded

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """Multi-line human summary."""
        # MISSING: something must be downloaded / extracted; BROKEN: present but malformed or inconsistent.
        status = "ok" if self.ok else "MISSING" if self.missing_images or self.missing_paths else "BROKEN"
        lines = [f"[{status}] {self.name} at {self.root}"]
        if self.split_sizes:
            sizes = " / ".join(f"{split} {size:,}" for split, size in self.split_sizes.items())
            lines.append(f"  classes {self.num_classes}; {sizes}")
        if self.ok:
            lines.append(
                "  every image decoded"
                if self.decoded
                else "  files present; images not opened (--decode decodes every image and lists unreadable ones)"
            )
        for problem in self.problems:
            lines.extend("  " + line for line in problem.splitlines())
        return "\n".join(lines)


def check_dataset(spec: DatasetSpec, data_dir: str | os.PathLike, decode: bool = False) -> DatasetCheckReport:
    """Everything that is missing or malformed for ``spec`` under ``data_dir`` (never raises for those);
    with ``decode``, also every image of the splits that cannot be decoded."""
    root = dataset_root(spec, data_dir)
    report = DatasetCheckReport(name=spec.name, root=root)
    missing_paths = missing_required_paths(spec, root)
    if missing_paths:
        report.missing_paths = [required.path for required in missing_paths]
        report.problems.extend(required.describe() for required in missing_paths)
        return report
    try:
        splits = read_splits(spec, data_dir)
    except DatasetError as err:
        report.problems.append(str(err))
        return report
    report.num_classes = splits.num_classes
    report.split_sizes = {split: len(splits.split(split)) for split in ("train", "val", "test")}
    if spec.loader in KINDS_WITH_LISTED_IMAGES:
        missing = find_missing_images(splits)
        report.missing_images = missing.count
        report.missing_examples = missing.examples
        if missing.count:
            report.problems.append(describe_missing_images(spec, root, missing))
    if decode and not report.problems:
        _decode_all(report, splits)
    return report


def _decode_all(report: DatasetCheckReport, splits) -> None:
    from transmiter.data.dataset import unreadable_images  # PIL and torch only when asked to decode

    paths = [d.impath for split in ("train", "val", "test") for d in splits.split(split)]
    report.unreadable = unreadable_images(paths)
    report.decoded = True
    if report.unreadable:
        shown = "\n".join(f"  {path} ({why})" for path, why in list(report.unreadable.items())[:10])
        more = len(report.unreadable) - 10
        report.problems.append(
            f"{len(report.unreadable)} of {len(set(paths)):,} images cannot be decoded:\n{shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\ndownload / extract them again, or run with dataset.on_corrupt_image=skip to leave them out"
        )
