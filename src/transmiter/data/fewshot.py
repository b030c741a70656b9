"""Few-shot sampling exactly as the CoOp protocol does it, with a portable on-disk cache.

Usage::

    from transmiter.data.fewshot import sample_few_shot

    full = load_dataset(spec, data_dir)
    few = sample_few_shot(full, shots=16, seed=1)          # train: 16/class, val: min(16,4)=4/class, test: full
    few = sample_few_shot(full, shots=-1, seed=1)          # shots <= 0: everything, nothing sampled
    sample_few_shot(full, shots=16, seed=1, strict=True)   # raise if a class has < 16 train (or < 4 val) images

The rule (it must match CoOp bit for bit, because the published numbers depend on which images are drawn):

1. one ``random.Random(seed)`` stream, the same stream Dassl gets from ``set_random_seed(SEED)``;
2. per split, group items by label, classes in order of first appearance, items in split-file order;
3. per class: ``rng.sample(items, K)`` if it has at least K items, otherwise keep all of them (no oversampling);
4. train with K, then val with ``min(K, 4)`` from the same stream; test is never sampled.
   ImageNet (``splits.val_is_test``): only train is sampled, val stays equal to the full test set.

Sampling happens on all classes, before base/new selection, so the base and the new run of one (K, seed)
share a single draw. The draw is cached at ``<root>/split_fewshot/shot_{K}-seed_{S}.json``; if that file
exists it is used as is (whoever writes it first fixes the draw, as in CoOp). Unlike CoOp's pickle, the
cache is JSON with paths relative to the dataset folder, so it survives moving the dataset and can be
shared between machines. It is checked on load (readable, same dataset/shots/seed, every image present and
part of the current split) and written atomically (temp file + ``os.replace``), so concurrent DDP ranks
writing the same deterministic draw cannot leave a half-written file.

``shots`` must be an int >= -1: ``-1`` (the protocol default) and ``0`` both mean "all images"; anything below
``-1`` is taken to be a mistake and rejected. ``strict`` only concerns classes smaller than the request:
the protocol keeps all their images, ``strict=True`` raises instead (useful when a study must really have
K images per class).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from transmiter.data.datum import DatasetSplits, Datum, relative_to_root
from transmiter.data.errors import DatasetError
from transmiter.data.loaders import find_missing_files
from transmiter.io import atomic_write

log = logging.getLogger(__name__)

FEWSHOT_CACHE_DIRNAME = "split_fewshot"
CACHE_FORMAT = "transmiter.fewshot/1"
MAX_VAL_SHOTS = 4  # val gets min(K, 4) images per class (CoOp)


def validate_shots(shots: object) -> int:
    """Return ``shots`` if it is a valid request (int >= -1), else raise :class:`DatasetError`."""
    if isinstance(shots, bool) or not isinstance(shots, int):
        raise DatasetError(f"shots must be an int (K >= 1 images per class, or -1 for all), got {shots!r}")
    if shots < -1:
        raise DatasetError(
            f"shots={shots} is invalid: use K >= 1 images per class, or -1 (or 0) for all images"
        )
    return shots


def validate_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DatasetError(f"seed must be an int (the protocol uses 1, 2, 3), got {seed!r}")
    return seed


def fewshot_cache_path(root: Path, shots: int, seed: int, cache_dir: Path | None = None) -> Path:
    """Where the draw for (shots, seed) of the dataset at ``root`` is cached."""
    return (
        Path(cache_dir if cache_dir is not None else Path(root) / FEWSHOT_CACHE_DIRNAME)
        / f"shot_{shots}-seed_{seed}.json"
    )


def group_by_label(items: Sequence[Datum]) -> dict[int, list[Datum]]:
    """Items per label; dict order = first appearance of each label, list order = input order."""
    groups: dict[int, list[Datum]] = {}
    for datum in items:
        groups.setdefault(datum.label, []).append(datum)
    return groups


def sample_per_class(items: Sequence[Datum], shots: int, rng: random.Random) -> list[Datum]:
    """CoOp's per-class draw: ``rng.sample(class_items, shots)`` or all items of classes with fewer."""
    sampled: list[Datum] = []
    for class_items in group_by_label(items).values():
        if len(class_items) >= shots:
            sampled.extend(rng.sample(class_items, shots))
        else:
            sampled.extend(class_items)
    return sampled


def sample_few_shot(
    splits: DatasetSplits,
    shots: int,
    seed: int,
    cache: bool = True,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> DatasetSplits:
    """K-shot version of ``splits`` (all classes; see the module docstring for the exact rule).

    Args:
        splits: the full splits from ``load_dataset``.
        shots: K >= 1 images per class, or -1 / 0 for all (returns ``splits`` unchanged).
        seed: seed of the draw (protocol seeds: 1, 2, 3).
        cache: read/write ``<root>/split_fewshot/shot_{K}-seed_{S}.json``.
        strict: raise if a class has fewer than K train (or min(K,4) val) images instead of keeping all.
        cache_dir: put the cache elsewhere (e.g. when the dataset folder is read-only); paths inside it stay
            relative to ``splits.root``.

    Raises:
        DatasetError: invalid shots/seed, strict shortfall, or an unusable cache file (named, with the fix).
    """
    shots = validate_shots(shots)
    seed = validate_seed(seed)
    if shots <= 0:
        return splits
    val_shots = min(shots, MAX_VAL_SHOTS)
    sample_val = not splits.val_is_test
    if not splits.train and not (sample_val and splits.val):
        # Test-only datasets (ImageNet-V2/Sketch/A/R): there is nothing to sample and nothing to cache.
        return splits
    shortfalls = _shortfalls(splits, shots, val_shots, sample_val)
    if strict:
        _check_enough_images(splits, shots, shortfalls)
    elif shortfalls and _first_report((splits.name, shots, _summarise(shortfalls))):
        log.warning(
            "%s: shots=%d but %s. All their images are kept (the protocol's rule); use fewer shots (setting.shots) "
            "for exactly K per class, or strict=True to make this an error",
            splits.name,
            shots,
            _summarise(shortfalls),
        )

    path = fewshot_cache_path(splits.root, shots, seed, Path(cache_dir) if cache_dir is not None else None)
    if cache and path.exists():
        train, val = _load_cache(path, splits, shots, seed, sample_val)
    else:
        rng = random.Random(seed)  # same stream as Dassl's random.seed(SEED) followed by random.sample
        train = sample_per_class(splits.train, shots, rng)
        val = sample_per_class(splits.val, val_shots, rng) if sample_val else splits.val
        if cache:
            _write_cache(path, splits, shots, seed, train, val if sample_val else None)
    return DatasetSplits(
        splits.name,
        splits.root,
        list(splits.classnames),
        train,
        val,
        splits.test,
        val_is_test=splits.val_is_test,
    )


def _shortfalls(splits: DatasetSplits, shots: int, val_shots: int, sample_val: bool) -> list[str]:
    """One line per (split, class) holding fewer images than requested."""
    checks = [("train", splits.train, shots)] + ([("val", splits.val, val_shots)] if sample_val else [])
    shortfalls = []
    for split_name, items, wanted in checks:
        for label, class_items in group_by_label(items).items():
            if len(class_items) < wanted:
                shortfalls.append(
                    f"class {splits.classnames[label]!r} (label {label}) has {len(class_items)} {split_name} image(s), "
                    f"{wanted} requested"
                )
    return shortfalls


def _summarise(shortfalls: list[str]) -> str:
    return "; ".join(shortfalls[:5]) + (
        f"; ... ({len(shortfalls)} classes in all)" if len(shortfalls) > 5 else ""
    )


def _check_enough_images(splits: DatasetSplits, shots: int, shortfalls: list[str]) -> None:
    if shortfalls:
        raise DatasetError(
            f"{splits.name}: shots={shots} with strict=True, but {_summarise(shortfalls)}. Use fewer shots, or "
            "strict=False to keep all images of small classes as the protocol does"
        )


def _encode(items: Sequence[Datum], root: Path) -> list[list]:
    return [[relative_to_root(datum.impath, root), datum.label, datum.classname] for datum in items]


def _write_cache(
    path: Path, splits: DatasetSplits, shots: int, seed: int, train: list[Datum], val: list[Datum] | None
) -> None:
    header = {"format": CACHE_FORMAT, "dataset": splits.name, "shots": shots, "seed": seed}
    lists = {"train": train} if val is None else {"train": train, "val": val}
    text = _format_cache(header, {name: _encode(items, splits.root) for name, items in lists.items()})
    try:
        # readers never see a partial file; processes writing the same draw at once replace each other
        atomic_write(path, text, fsync=True)
    except OSError as err:
        # A read-only dataset folder must not stop a run: the draw is deterministic, so it is only slower.
        log.warning(
            "could not write few-shot cache %s (%s); continuing without it (pass cache_dir=... to cache elsewhere)",
            path,
            err,
        )


def _format_cache(header: dict, lists: dict[str, list[list]]) -> str:
    """Valid JSON with one item per line, so the file stays readable and diffs well."""
    dump = lambda obj: json.dumps(obj, ensure_ascii=False)  # noqa: E731
    parts = [dump(header)[:-1]]
    for name, items in lists.items():
        body = ",\n".join("  " + dump(item) for item in items)
        parts.append(f",\n {dump(name)}: [\n{body}\n ]" if items else f",\n {dump(name)}: []")
    return "".join(parts) + "\n}\n"


def _load_cache(
    path: Path, splits: DatasetSplits, shots: int, seed: int, sample_val: bool
) -> tuple[list[Datum], list[Datum]]:
    delete_hint = f"delete {path} and run again to draw the {shots}-shot split afresh"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"few-shot cache {path} is corrupt ({err}); {delete_hint}") from err
    expected = {"format": CACHE_FORMAT, "dataset": splits.name, "shots": shots, "seed": seed}
    if not isinstance(payload, dict) or any(payload.get(key) != value for key, value in expected.items()):
        found = (
            {key: payload.get(key) for key in expected}
            if isinstance(payload, dict)
            else type(payload).__name__
        )
        raise DatasetError(f"few-shot cache {path} does not hold {expected} (found {found}); {delete_hint}")
    if "train" not in payload or (sample_val and "val" not in payload):
        raise DatasetError(
            f"few-shot cache {path} lacks the 'train'{' or val' if sample_val else ''} list; {delete_hint}"
        )

    raw = {
        name: _raw_items(payload[name], name, path, delete_hint)
        for name in (["train", "val"] if sample_val else ["train"])
    }
    # Existence first: a moved or partly deleted dataset is the common case and deserves the clearest message.
    missing = find_missing_files(
        os.path.join(splits.root, relpath) for items in raw.values() for relpath, _, _ in items
    )
    if missing.count:
        raise DatasetError(
            f"few-shot cache {path} references {missing.count} image(s) that no longer exist, e.g. {missing.examples}; "
            f"restore the dataset images, or {delete_hint}"
        )
    train = _match_split(raw["train"], "train", path, splits, delete_hint)
    val = _match_split(raw["val"], "val", path, splits, delete_hint) if sample_val else splits.val
    return train, val


def _raw_items(items: object, split_name: str, path: Path, delete_hint: str) -> list[tuple[str, int, str]]:
    if not isinstance(items, list):
        raise DatasetError(f"few-shot cache {path}: '{split_name}' is not a list; {delete_hint}")
    for position, item in enumerate(items):
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], int)
        ):
            raise DatasetError(
                f"few-shot cache {path}: {split_name}[{position}] = {item!r} is malformed; {delete_hint}"
            )
    return [tuple(item) for item in items]


def _match_split(
    items: list[tuple[str, int, str]], split_name: str, path: Path, splits: DatasetSplits, delete_hint: str
) -> list[Datum]:
    # The cached draw must be a subset of the current split with the same labels: otherwise the split file
    # changed after the cache was written and the cache would silently mix two different benchmarks.
    known = {relative_to_root(datum.impath, splits.root): datum for datum in splits.split(split_name)}
    data = []
    for position, (relpath, label, classname) in enumerate(items):
        datum = known.get(relpath)
        if datum is None or datum.label != label or datum.classname != classname:
            raise DatasetError(
                f"few-shot cache {path}: {split_name}[{position}] {relpath!r} (label {label}) is not in the current "
                f"{split_name} split of {splits.name}; the split changed since the cache was written, {delete_hint}"
            )
        data.append(datum)
    return data


_REPORTED: set[tuple] = set()


def _first_report(key: tuple) -> bool:
    """True the first time a process meets `key`: a study draws the same split once per row, and one warning
    about it is enough."""
    if key in _REPORTED:
        return False
    _REPORTED.add(key)
    return True
