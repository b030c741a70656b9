"""Read a dataset from disk into :class:`DatasetSplits`, one reader per loader kind.

Usage::

    from transmiter.data.loaders import load_dataset
    from transmiter.config.instantiate import shipped_dataset_spec

    splits = load_dataset(shipped_dataset_spec("FGVCAircraft"), "/data")
    splits.classnames[:2]      # ['707-320', '727-200']  (variants.txt order; names may contain spaces)

``load_dataset`` works in three stages so that a broken dataset fails *before* any heavy work:

1. :func:`missing_required_paths`: the dataset folder, split/metadata files and image folder must exist.
   Every missing one is listed with the fix (usually "download X into Y").
2. the reader of ``spec.loader`` parses the metadata (and lists class folders for the folder-based kinds),
   checking structure, label ranges, class folders and ``spec.num_classes``.
3. for kinds whose image paths come from a file (``json_split``, ``fgvc_aircraft``), every referenced image
   must exist (Dassl asserts the same). The check lists directories, it does not open images.

Splits are never regenerated: CoOp's loaders write a fresh random split when the split file is missing,
which silently gives a different benchmark. Here a missing file is an error.

Ordering rules (they matter because few-shot sampling depends on item order):

* ``json_split`` / ``fgvc_aircraft``: items in file order; labels and names from the files.
* folder kinds: classes from sorted folder names (ImageNet, Sketch/A/R) or numeric folders ``0..N-1`` (V2),
  images inside a class folder sorted by file name. (CoOp uses ``os.listdir`` order, which depends on the
  file system and is therefore not reproducible; sorting is.) Hidden entries (``.*``) are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from transmiter.data.datum import DatasetSplits, Datum
from transmiter.data.errors import DatasetError
from transmiter.data.spec import DatasetSpec

CLASSNAMES_FILE = "classnames.txt"
FGVC_VARIANTS_FILE = "variants.txt"
FGVC_SPLIT_FILES = {split: f"images_variant_{split}.txt" for split in ("train", "val", "test")}

# Kinds whose image paths are read from a file and so may point at images that are not there.
KINDS_WITH_LISTED_IMAGES = ("json_split", "fgvc_aircraft")

_COOP_DATASETS_DOC = "CoOp DATASETS.md (github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md)"
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class RequiredPath:
    """A file or folder a loader needs before it can start, and how to obtain it."""

    path: Path
    is_dir: bool
    what: str
    fix: str

    def exists(self) -> bool:
        return self.path.is_dir() if self.is_dir else self.path.is_file()

    def describe(self) -> str:
        return f"{self.what} missing: {self.path}\n  fix: {self.fix}"


@dataclass(frozen=True)
class MissingImages:
    """Images referenced by metadata but absent on disk."""

    count: int
    examples: list[str]
    missing_dirs: list[str]


def dataset_root(spec: DatasetSpec, data_dir: str | os.PathLike) -> Path:
    """``<data_dir>/<spec.folder>`` as an absolute path (``~`` expanded, symlinks kept)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(data_dir)))) / spec.folder


def image_root(spec: DatasetSpec, root: Path) -> Path:
    """The folder image paths are relative to (``root`` itself when ``spec.image_dir`` is empty)."""
    return root / spec.image_dir if spec.image_dir not in ("", ".") else root


def required_paths(spec: DatasetSpec, root: Path) -> list[RequiredPath]:
    """Everything ``spec.loader`` needs under ``root``, in the order it is needed."""
    images = image_root(spec, root)
    needed = [
        RequiredPath(
            root,
            True,
            "dataset folder",
            f"download and extract {spec.name} following {_COOP_DATASETS_DOC} so that it sits at {root}, "
            f"or set data_dir (paths.data_dir) to the folder that contains '{spec.folder}'",
        )
    ]
    if spec.loader == "json_split":
        needed.append(
            RequiredPath(
                root / spec.split_file,
                False,
                "split file",
                f"download {spec.split_file} (Google Drive link in {_COOP_DATASETS_DOC}) into {root}; "
                "never generate a new split, it would differ from the published one",
            )
        )
        needed.append(
            RequiredPath(images, True, "image folder", f"extract the {spec.name} images into {images}")
        )
    elif spec.loader == "fgvc_aircraft":
        fix = (
            f"extract fgvc-aircraft-2013b.tar.gz and rename its data/ folder to {root} "
            f"(it holds {FGVC_VARIANTS_FILE}, images_variant_*.txt and images/)"
        )
        needed.append(RequiredPath(root / FGVC_VARIANTS_FILE, False, "FGVCAircraft class list", fix))
        for split_file in FGVC_SPLIT_FILES.values():
            needed.append(RequiredPath(root / split_file, False, "FGVCAircraft split file", fix))
        needed.append(RequiredPath(images, True, "image folder", fix))
    else:
        classnames_fix = (
            f"download {CLASSNAMES_FILE} (ImageNet section of {_COOP_DATASETS_DOC}) into {root}; "
            "the same file goes into the ImageNet folder and into each ImageNet variant folder"
        )
        needed.append(RequiredPath(root / CLASSNAMES_FILE, False, "class-name file", classnames_fix))
        if spec.loader == "imagenet":
            for split, source in (
                ("train", "ILSVRC2012 train"),
                ("val", "ILSVRC2012 val (sorted into wnid folders)"),
            ):
                needed.append(
                    RequiredPath(
                        images / split,
                        True,
                        f"ImageNet {split} folder",
                        f"extract {source} into {images / split}/<wnid>/",
                    )
                )
        else:
            needed.append(
                RequiredPath(
                    images,
                    True,
                    "image folder",
                    f"extract the {spec.name} archive so that its class folders are in {images}",
                )
            )
    return needed


def missing_required_paths(spec: DatasetSpec, root: Path) -> list[RequiredPath]:
    """The required paths that do not exist. A missing root hides everything below it, so only it is reported."""
    needed = required_paths(spec, root)
    if not needed[0].exists():
        return [needed[0]]
    return [required for required in needed[1:] if not required.exists()]


def read_splits(spec: DatasetSpec, data_dir: str | os.PathLike) -> DatasetSplits:
    """Parse metadata / list class folders into splits, without checking that listed images exist.

    Raises :class:`DatasetError` on missing required paths and on any structural problem.
    """
    root = dataset_root(spec, data_dir)
    missing = missing_required_paths(spec, root)
    if missing:
        details = "\n".join(required.describe() for required in missing)
        raise DatasetError(f"dataset {spec.name} is not ready under {root}:\n{details}")
    reader = _READERS[spec.loader]
    splits = reader(spec, root)
    _check_num_classes(spec, splits)
    return splits


def find_missing_images(splits: DatasetSplits) -> MissingImages:
    """Which images of ``splits`` are absent (see :func:`find_missing_files`)."""
    return find_missing_files(
        datum.impath for name in ("train", "val", "test") for datum in splits.split(name)
    )


def find_missing_files(paths: Iterable[str]) -> MissingImages:
    """Which of ``paths`` are absent, found by listing each parent folder once (no per-file stat, which is
    slow on network file systems). Nothing is opened."""
    paths_by_dir: dict[str, list[str]] = {}
    for path in paths:
        paths_by_dir.setdefault(os.path.dirname(path), []).append(path)
    missing: list[str] = []
    missing_dirs: list[str] = []
    for directory, paths in paths_by_dir.items():
        try:
            present = set(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            missing_dirs.append(directory)
            present = set()
        seen: set[str] = set()
        for path in paths:
            if path not in seen and os.path.basename(path) not in present:
                missing.append(path)
            seen.add(path)
    return MissingImages(
        count=len(missing), examples=missing[:_MAX_EXAMPLES], missing_dirs=sorted(missing_dirs)
    )


def load_dataset(spec: DatasetSpec, data_dir: str | os.PathLike, verify_images: bool = True) -> DatasetSplits:
    """Load the full train/val/test splits of ``spec`` from ``<data_dir>/<spec.folder>``.

    Args:
        spec: what to load (see :mod:`transmiter.data.spec`).
        data_dir: the folder holding all datasets (``$DATA``).
        verify_images: check that every image named by a split file exists (cheap: one directory listing
            per folder). Folder-based kinds are complete by construction and skip the check.

    Raises:
        DatasetError: naming the missing or malformed path and the fix.
    """
    if not isinstance(spec, DatasetSpec):
        raise DatasetError(
            f"load_dataset needs a DatasetSpec, got {type(spec).__name__}; build it from the dataset config"
        )
    splits = read_splits(spec, data_dir)
    if verify_images and spec.loader in KINDS_WITH_LISTED_IMAGES:
        missing = find_missing_images(splits)
        if missing.count:
            raise DatasetError(describe_missing_images(spec, splits.root, missing))
    return splits


def describe_missing_images(spec: DatasetSpec, root: Path, missing: MissingImages) -> str:
    """Human text for images that metadata references but that are absent."""
    source = spec.split_file if spec.loader == "json_split" else "images_variant_*.txt"
    lines = [
        f"{missing.count} image(s) referenced by {source} of {spec.name} are missing under {image_root(spec, root)}, e.g.:"
    ]
    lines += [f"  {path}" for path in missing.examples]
    if missing.missing_dirs:
        shown = ", ".join(missing.missing_dirs[:_MAX_EXAMPLES])
        more = (
            f" (+{len(missing.missing_dirs) - _MAX_EXAMPLES} more)"
            if len(missing.missing_dirs) > _MAX_EXAMPLES
            else ""
        )
        lines.append(f"missing folders: {shown}{more}")
    lines.append(
        f"fix: re-download / re-extract the {spec.name} images ({_COOP_DATASETS_DOC}) so that every path in the split exists; "
        "check_dataset() (CLI: `transmiter data check`) gives the full report"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Readers, one per loader kind. Each gets an existing root and returns splits; structural problems raise.


def _read_json_split(spec: DatasetSpec, root: Path) -> DatasetSplits:
    split_path = root / spec.split_file
    try:
        with open(split_path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(
            f"split file {split_path} is not valid JSON ({err}); download it again ({_COOP_DATASETS_DOC})"
        ) from err
    if not isinstance(content, dict) or any(key not in content for key in ("train", "val", "test")):
        raise DatasetError(
            f"split file {split_path} must be a JSON object with keys 'train', 'val' and 'test'"
        )

    images = str(image_root(spec, root))
    name_by_label: dict[int, str] = {}
    lists: dict[str, list[Datum]] = {}
    for split_name in ("train", "val", "test"):
        items = content[split_name]
        if not isinstance(items, list):
            raise DatasetError(
                f"split file {split_path}: '{split_name}' must be a list of [path, label, classname]"
            )
        data = []
        for position, item in enumerate(items):
            if not (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[1], int)
                and not isinstance(item[1], bool)
                and isinstance(item[2], str)
            ):
                raise DatasetError(
                    f"split file {split_path}: {split_name}[{position}] = {item!r} is not [relative_path, int_label, classname]"
                )
            relpath, label, classname = item
            if label < 0:
                raise DatasetError(
                    f"split file {split_path}: {split_name}[{position}] has negative label {label}"
                )
            known = name_by_label.setdefault(label, classname)
            if known != classname:
                raise DatasetError(
                    f"split file {split_path}: label {label} is called both {known!r} and {classname!r} ({split_name}[{position}])"
                )
            data.append(Datum(os.path.join(images, relpath), label, classname))
        lists[split_name] = data

    # Labels must be exactly 0..N-1 so that classnames[label] is defined for every label.
    num_classes = max(name_by_label, default=-1) + 1
    absent = [label for label in range(num_classes) if label not in name_by_label]
    if absent:
        raise DatasetError(
            f"split file {split_path}: labels are not contiguous, no item has label(s) {absent[:10]}"
        )
    classnames = [name_by_label[label] for label in range(num_classes)]
    return DatasetSplits(spec.name, root, classnames, lists["train"], lists["val"], lists["test"])


def _read_fgvc_aircraft(spec: DatasetSpec, root: Path) -> DatasetSplits:
    variants_path = root / FGVC_VARIANTS_FILE
    classnames = [line.strip() for line in _read_lines(variants_path) if line.strip()]
    label_of = {}
    for label, classname in enumerate(classnames):
        if classname in label_of:
            raise DatasetError(f"{variants_path}: variant {classname!r} is listed twice")
        label_of[classname] = label

    images = image_root(spec, root)
    lists: dict[str, list[Datum]] = {}
    for split_name, file_name in FGVC_SPLIT_FILES.items():
        split_path = root / file_name
        data = []
        for line_number, line in enumerate(_read_lines(split_path), start=1):
            line = line.strip()
            if not line:
                continue
            # "<image id> <variant name>", and the name itself may contain spaces ("Cessna 172").
            image_id, _, classname = line.partition(" ")
            if classname not in label_of:
                raise DatasetError(
                    f"{split_path}:{line_number}: variant {classname!r} is not in {variants_path}; the files come from "
                    "different releases, extract fgvc-aircraft-2013b.tar.gz again"
                )
            data.append(Datum(str(images / f"{image_id}.jpg"), label_of[classname], classname))
        lists[split_name] = data
    return DatasetSplits(spec.name, root, classnames, lists["train"], lists["val"], lists["test"])


def _read_imagenet(spec: DatasetSpec, root: Path) -> DatasetSplits:
    name_by_wnid = _read_wnid_classnames(root / CLASSNAMES_FILE)
    images = image_root(spec, root)
    train_dir, val_dir = images / "train", images / "val"

    # Labels are positions in the sorted wnid folder list (standard ImageNet order).
    wnids = _list_visible(train_dir, want_dirs=True)
    _check_folders_match(train_dir, wnids, list(name_by_wnid), root / CLASSNAMES_FILE)
    _check_folders_match(val_dir, _list_visible(val_dir, want_dirs=True), wnids, train_dir)
    classnames = [name_by_wnid[wnid] for wnid in wnids]
    train = _list_class_folders(train_dir, wnids, classnames)
    test = _list_class_folders(val_dir, wnids, classnames)
    # Protocol: no separate val set; val is the test set (a copy of the list, same items).
    return DatasetSplits(spec.name, root, classnames, train, list(test), test, val_is_test=True)


def _read_imagenet_v2(spec: DatasetSpec, root: Path) -> DatasetSplits:
    name_by_wnid = _read_wnid_classnames(root / CLASSNAMES_FILE)
    classnames = list(name_by_wnid.values())  # file order: label i <-> i-th line
    images = image_root(spec, root)
    folders = [str(label) for label in range(len(classnames))]
    absent = [folder for folder in folders if not (images / folder).is_dir()]
    if absent:
        raise DatasetError(
            f"{len(absent)} numeric class folder(s) missing in {images}, e.g. {absent[:_MAX_EXAMPLES]}; "
            f"{CLASSNAMES_FILE} has {len(classnames)} classes, so folders 0..{len(classnames) - 1} are expected. "
            "Re-extract imagenetv2-matched-frequency.tar.gz"
        )
    test = _list_class_folders(images, folders, classnames)
    return DatasetSplits(spec.name, root, classnames, [], [], test)


def _read_imagenet_variant(spec: DatasetSpec, root: Path) -> DatasetSplits:
    name_by_wnid = _read_wnid_classnames(root / CLASSNAMES_FILE)
    images = image_root(spec, root)
    # Only folders count as classes (README.txt of A/R is a file). A/R hold 200 of the 1000 wnids, so
    # labels are positions among the folders *present*, giving their own 200-way label space.
    wnids = _list_visible(images, want_dirs=True)
    unknown = [wnid for wnid in wnids if wnid not in name_by_wnid]
    if unknown:
        raise DatasetError(
            f"class folder(s) {unknown[:_MAX_EXAMPLES]} in {images} are not in {root / CLASSNAMES_FILE}; "
            "copy ImageNet's classnames.txt (1000 wnids) into that folder"
        )
    classnames = [name_by_wnid[wnid] for wnid in wnids]
    test = _list_class_folders(images, wnids, classnames)
    return DatasetSplits(spec.name, root, classnames, [], [], test)


_READERS = {
    "json_split": _read_json_split,
    "fgvc_aircraft": _read_fgvc_aircraft,
    "imagenet": _read_imagenet,
    "imagenet_v2": _read_imagenet_v2,
    "imagenet_variant": _read_imagenet_variant,
}


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not a UTF-8 text file ({err}); download it again") from err


def _read_wnid_classnames(path: Path) -> dict[str, str]:
    """``classnames.txt``: one ``<wnid> <class name, may contain spaces>`` per line, kept in file order."""
    name_by_wnid: dict[str, str] = {}
    for line_number, line in enumerate(_read_lines(path), start=1):
        line = line.strip()
        if not line:
            continue
        wnid, _, classname = line.partition(" ")
        classname = classname.strip()
        if not classname:
            raise DatasetError(f"{path}:{line_number}: expected '<wnid> <class name>', got {line!r}")
        if wnid in name_by_wnid:
            raise DatasetError(f"{path}:{line_number}: wnid {wnid} is listed twice")
        name_by_wnid[wnid] = classname
    if not name_by_wnid:
        raise DatasetError(f"{path} is empty; download classnames.txt again ({_COOP_DATASETS_DOC})")
    return name_by_wnid


def _list_visible(directory: Path, want_dirs: bool) -> list[str]:
    """Sorted names of the non-hidden sub-folders (``want_dirs``) or files of ``directory``."""
    with os.scandir(directory) as entries:
        return sorted(
            entry.name
            for entry in entries
            if not entry.name.startswith(".") and (entry.is_dir() if want_dirs else entry.is_file())
        )


def _check_folders_match(
    directory: Path, present: Iterable[str], expected: Iterable[str], expected_from: Path
) -> None:
    present_set, expected_list = set(present), list(expected)
    absent = [name for name in expected_list if name not in present_set]
    extra = sorted(present_set - set(expected_list))
    if absent:
        raise DatasetError(
            f"{len(absent)} class folder(s) missing in {directory} (expected from {expected_from}), "
            f"e.g. {absent[:_MAX_EXAMPLES]}; the extraction is incomplete, extract the archive again"
        )
    if extra:
        raise DatasetError(
            f"class folder(s) {extra[:_MAX_EXAMPLES]} in {directory} are not listed in {expected_from}; "
            "remove them or use the classnames.txt that matches this copy"
        )


def _list_class_folders(directory: Path, folders: list[str], classnames: list[str]) -> list[Datum]:
    data = []
    for label, folder in enumerate(folders):
        class_dir = directory / folder
        files = _list_visible(class_dir, want_dirs=False)
        if not files:
            raise DatasetError(f"class folder {class_dir} holds no images; extract the archive again")
        data.extend(Datum(str(class_dir / file_name), label, classnames[label]) for file_name in files)
    return data


def _check_num_classes(spec: DatasetSpec, splits: DatasetSplits) -> None:
    if spec.num_classes is not None and splits.num_classes != spec.num_classes:
        raise DatasetError(
            f"dataset {spec.name} under {splits.root}: expected {spec.num_classes} classes (spec num_classes) but found "
            f"{splits.num_classes}; the split file or class folders are incomplete or belong to another dataset. "
            "For a deliberate subset (e.g. a fake copy) set num_classes to the right count or to null"
        )
