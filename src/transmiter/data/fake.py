"""Tiny fake copies of every dataset layout, for tests and smoke studies (no download needed).

Usage::

    from transmiter.data.fake import write_fake_dataset
    from transmiter.config.instantiate import shipped_dataset_spec

    spec = write_fake_dataset(shipped_dataset_spec("Caltech101"), tmp_path)            # 5 classes, 4/2/2 images each
    splits = load_dataset(spec, tmp_path)                                          # use the RETURNED spec
    spec = write_fake_dataset(shipped_dataset_spec("EuroSAT"), tmp_path, num_classes=10, per_class=(1, 1, 1))

The returned spec is the input with ``num_classes`` set to the number of classes the loader will find,
because the built-in specs insist on the real counts (1000 for ImageNet, ...). For a Hydra smoke study,
set ``num_classes`` in the dataset config to that count (or null).

What gets written is exactly what the loader of ``spec.loader`` reads: real JPEG files (decodable by PIL)
plus the split JSON / txt files / ``classnames.txt``, with the quirks of the real data:

* Caltech101: capitalised folders (``Faces``, ``Leopards``, ``Motorbikes``) first, renamed classes
  (``Faces`` -> ``face``, ``airplanes`` -> ``airplane``), labels in split-file order;
* StanfordCars: image dir = dataset folder, paths ``cars_train/...`` and ``cars_test/...``, names with the year first;
* FGVCAircraft: variant names with spaces and slashes (``Cessna 172``, ``F-16A/B``);
* SUN397 / EuroSAT / UCF101 / Food101 / DTD / Pets / Flowers: realistic folder and class names;
* ImageNet: wnid folders (``n01440764``) and ``classnames.txt``; train and val folders;
* ImageNetV2: numeric folders ``0..N-1`` (so ``10`` sorts before ``2`` as text) mapped to classnames.txt order;
* ImageNet-A/R: only every other wnid of ``classnames.txt`` has a folder (their own label space), a
  ``README.txt`` beside the folders, file names with spaces (A);
* a hidden ``.DS_Store`` inside folder-based class folders and one greyscale image per dataset.

Images of class c share a base colour plus noise, so a model can actually learn the fake task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from transmiter.data.errors import DatasetError
from transmiter.data.loaders import (
    CLASSNAMES_FILE,
    FGVC_SPLIT_FILES,
    FGVC_VARIANTS_FILE,
    dataset_root,
    image_root,
)
from transmiter.data.spec import DatasetSpec

DEFAULT_NUM_CLASSES = 5
SPLITS = ("train", "val", "test")

# (folder token, class name) seeds per json_split dataset; more classes get generated names.
_JSON_CLASSES: dict[str, list[tuple[str, str]]] = {
    "Caltech101": [
        ("Faces", "face"),
        ("Leopards", "leopard"),
        ("Motorbikes", "motorbike"),
        ("accordion", "accordion"),
        ("airplanes", "airplane"),
        ("anchor", "anchor"),
        ("ant", "ant"),
        ("barrel", "barrel"),
        ("bass", "bass"),
        ("beaver", "beaver"),
    ],
    "OxfordPets": [
        ("Abyssinian", "abyssinian"),
        ("american_bulldog", "american_bulldog"),
        ("american_pit_bull_terrier", "american_pit_bull_terrier"),
        ("basset_hound", "basset_hound"),
        ("beagle", "beagle"),
        ("Bengal", "bengal"),
        ("Birman", "birman"),
        ("Bombay", "bombay"),
        ("boxer", "boxer"),
        ("British_Shorthair", "british_shorthair"),
    ],
    "StanfordCars": [
        ("", "2000 AM General Hummer SUV"),
        ("", "2012 Acura RL Sedan"),
        ("", "2012 Acura TL Sedan"),
        ("", "2008 Acura TL Type-S"),
        ("", "2001 Acura Integra Type R"),
        ("", "2012 Aston Martin V8 Vantage Convertible"),
        ("", "2012 Tesla Model S Sedan"),
        ("", "2012 BMW M3 Coupe"),
    ],
    "OxfordFlowers": [
        ("", "pink primrose"),
        ("", "hard-leaved pocket orchid"),
        ("", "canterbury bells"),
        ("", "sweet pea"),
        ("", "english marigold"),
        ("", "tiger lily"),
        ("", "moon orchid"),
        ("", "bird of paradise"),
    ],
    "Food101": [
        (name, name)
        for name in (
            "apple_pie",
            "baby_back_ribs",
            "baklava",
            "beef_carpaccio",
            "beef_tartare",
            "beet_salad",
            "beignets",
            "bibimbap",
        )
    ],
    "SUN397": [
        ("a/abbey", "abbey"),
        ("a/airplane_cabin", "airplane_cabin"),
        ("a/apartment_building/outdoor", "outdoor apartment_building"),
        ("b/bakery/shop", "shop bakery"),
        ("b/bamboo_forest", "bamboo_forest"),
        ("c/campus", "campus"),
        ("l/library/indoor", "indoor library"),
        ("s/swimming_pool/outdoor", "outdoor swimming_pool"),
    ],
    "DescribableTextures": [
        (name, name)
        for name in ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked")
    ],
    "EuroSAT": [
        ("AnnualCrop", "Annual Crop Land"),
        ("Forest", "Forest"),
        ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
        ("Highway", "Highway or Road"),
        ("Industrial", "Industrial Buildings"),
        ("Pasture", "Pasture Land"),
        ("PermanentCrop", "Permanent Crop Land"),
        ("Residential", "Residential Buildings"),
        ("River", "River"),
        ("SeaLake", "Sea or Lake"),
    ],
    "UCF101": [
        (name, name)
        for name in (
            "Apply_Eye_Makeup",
            "Apply_Lipstick",
            "Archery",
            "Baby_Crawling",
            "Balance_Beam",
            "Band_Marching",
            "Basketball",
        )
    ],
}

_FGVC_VARIANTS = [
    "707-320",
    "727-200",
    "737-200",
    "A300B4",
    "Boeing 717",
    "Cessna 172",
    "F-16A/B",
    "Falcon 2000",
    "Hawk T1",
    "Tu-134",
    "Yak-42",
]

_IMAGENET_CLASSES = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich"),
    ("n01530575", "brambling"),
    ("n01531178", "goldfinch"),
]


def write_fake_dataset(
    spec: DatasetSpec,
    data_dir: str | os.PathLike,
    num_classes: int | None = None,
    per_class: Sequence[int] = (4, 2, 2),
    image_size: int = 32,
    seed: int = 0,
) -> DatasetSpec:
    """Write a fake ``<data_dir>/<spec.folder>`` in the layout of ``spec.loader``; return the spec to load it with.

    Args:
        spec: a built-in spec or any ``json_split`` spec.
        data_dir: where the dataset folder is created (existing files are overwritten).
        num_classes: classes to create (default: ``min(5, spec.num_classes)``). For ImageNet-A/R this is the
            number of class folders; ``classnames.txt`` lists ``2 * num_classes + 1`` wnids.
        per_class: images per class for (train, val, test). ImageNet uses train and test (its val folder is
            the test set); test-only datasets use test.
        image_size: side of the square JPEGs.
        seed: seed of the pixel noise (the layout itself does not depend on it).
    """
    num_classes = _resolve_num_classes(spec, num_classes)
    counts = dict(zip(SPLITS, _check_per_class(per_class)))
    root = dataset_root(spec, data_dir)
    painter = _Painter(image_size, seed)
    writer = _WRITERS[spec.loader]
    found_classes = writer(spec, root, num_classes, counts, painter)
    return dataclasses.replace(spec, num_classes=found_classes)


# ---------------------------------------------------------------------------------------------------------------


class _Painter:
    """Writes small JPEGs: a per-class base colour plus noise; the very first image is greyscale."""

    def __init__(self, image_size: int, seed: int) -> None:
        if image_size < 1:
            raise DatasetError(f"image_size must be positive, got {image_size}")
        self.size = image_size
        self.rng = np.random.default_rng(seed)
        self.first = True

    def write(self, path: Path, label: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Spread class colours over the RGB cube deterministically.
        base = np.array(
            [(label * 67) % 256, (label * 131 + 85) % 256, (label * 199 + 170) % 256], dtype=np.int16
        )
        noise = self.rng.integers(-40, 41, size=(self.size, self.size, 3), dtype=np.int16)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if self.first:
            image = image.convert("L")  # real datasets contain greyscale images; loaders must convert to RGB
            self.first = False
        image.save(path, format="JPEG", quality=90)


def _resolve_num_classes(spec: DatasetSpec, num_classes: int | None) -> int:
    if num_classes is None:
        return min(DEFAULT_NUM_CLASSES, spec.num_classes or DEFAULT_NUM_CLASSES)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DatasetError(f"num_classes must be a positive int, got {num_classes!r}")
    return num_classes


def _check_per_class(per_class: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(per_class)
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise DatasetError(f"per_class must be three ints >= 0 (train, val, test), got {per_class!r}")
    if values[0] < 1 or values[2] < 1:
        raise DatasetError(
            f"per_class needs at least one train and one test image per class, got {per_class!r}"
        )
    return values  # type: ignore[return-value]


def _table(
    seeds: list[tuple[str, str]], count: int, make: Callable[[int], tuple[str, str]]
) -> list[tuple[str, str]]:
    """The first ``count`` entries of ``seeds``, extended with ``make(i)`` for the rest."""
    return [seeds[i] if i < len(seeds) else make(i) for i in range(count)]


def _json_classes(name: str, count: int) -> list[tuple[str, str]]:
    extra: dict[str, Callable[[int], tuple[str, str]]] = {
        "Caltech101": lambda i: (f"category_{i:03d}", f"category_{i:03d}"),
        "OxfordPets": lambda i: (f"breed_{i:03d}", f"breed_{i:03d}"),
        "StanfordCars": lambda i: ("", f"2012 Fakemake Model {i} Sedan"),
        "OxfordFlowers": lambda i: ("", f"flower number {i}"),
        "Food101": lambda i: (f"dish_{i:03d}", f"dish_{i:03d}"),
        "SUN397": lambda i: (f"z/zone_{i:03d}", f"zone_{i:03d}"),
        "DescribableTextures": lambda i: (f"texture_{i:03d}", f"texture_{i:03d}"),
        "EuroSAT": lambda i: (f"LandType{i:03d}", f"Land Type {i}"),
        "UCF101": lambda i: (f"Action_Number_{i:03d}", f"Action_Number_{i:03d}"),
    }
    generic = lambda i: (f"class_{i:03d}", f"class_{i:03d}")  # noqa: E731
    return _table(_JSON_CLASSES.get(name, []), count, extra.get(name, generic))


def _json_relpath(name: str, token: str, split: str, number: int) -> str:
    """Path of the ``number``-th image (unique per dataset) of a class, relative to the image dir."""
    if name == "Caltech101":
        return f"{token}/image_{number:04d}.jpg"
    if name == "OxfordPets":
        return f"{token}_{number}.jpg"
    if name == "StanfordCars":
        return f"cars_test/{number:05d}.jpg" if split == "test" else f"cars_train/{number:05d}.jpg"
    if name == "OxfordFlowers":
        return f"image_{number:05d}.jpg"
    if name == "Food101":
        return f"{token}/{1000000 + number}.jpg"
    if name == "SUN397":
        return f"{token}/sun_{hashlib.sha1(str(number).encode()).hexdigest()[:16]}.jpg"
    if name == "UCF101":
        return f"{token}/v_{token.replace('_', '')}_g{number:02d}_c01.jpg"
    return f"{token}/{token.split('/')[-1]}_{number:04d}.jpg"


def _write_json_split(
    spec: DatasetSpec, root: Path, num_classes: int, counts: dict[str, int], painter: _Painter
) -> int:
    classes = _json_classes(spec.name, num_classes)
    images = image_root(spec, root)
    content: dict[str, list] = {split: [] for split in SPLITS}
    number = 0
    for split in SPLITS:
        for label, (token, classname) in enumerate(classes):
            for _ in range(counts[split]):
                number += 1
                relpath = _json_relpath(spec.name, token, split, number)
                painter.write(images / relpath, label)
                content[split].append([relpath, label, classname])
    root.mkdir(parents=True, exist_ok=True)
    (root / spec.split_file).write_text(json.dumps(content, indent=1), encoding="utf-8")
    return num_classes


def _write_fgvc_aircraft(
    spec: DatasetSpec, root: Path, num_classes: int, counts: dict[str, int], painter: _Painter
) -> int:
    variants = [
        name
        for _, name in _table(
            [("", v) for v in _FGVC_VARIANTS], num_classes, lambda i: ("", f"Model {i} Jet")
        )
    ]
    images = image_root(spec, root)
    root.mkdir(parents=True, exist_ok=True)
    (root / FGVC_VARIANTS_FILE).write_text("".join(f"{name}\n" for name in variants), encoding="utf-8")
    image_id = 1000000
    for split in SPLITS:
        lines = []
        for label, name in enumerate(variants):
            for _ in range(counts[split]):
                image_id += 1
                painter.write(images / f"{image_id}.jpg", label)
                lines.append(f"{image_id} {name}\n")
        (root / FGVC_SPLIT_FILES[split]).write_text("".join(lines), encoding="utf-8")
    return num_classes


def _imagenet_classes(count: int) -> list[tuple[str, str]]:
    # Generated wnids start with n15..., after the real n01... seeds, so the table stays in sorted order.
    return _table(_IMAGENET_CLASSES, count, lambda i: (f"n{15000000 + i:08d}", f"synthetic object {i}"))


def _write_classnames(root: Path, classes: list[tuple[str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / CLASSNAMES_FILE).write_text(
        "".join(f"{wnid} {name}\n" for wnid, name in classes), encoding="utf-8"
    )


def _write_hidden_file(folder: Path) -> None:
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # loaders must ignore hidden entries


def _write_imagenet(
    spec: DatasetSpec, root: Path, num_classes: int, counts: dict[str, int], painter: _Painter
) -> int:
    classes = _imagenet_classes(num_classes)
    _write_classnames(root, classes)
    images = image_root(spec, root)
    val_number = 0
    for label, (wnid, _) in enumerate(classes):
        for k in range(counts["train"]):
            painter.write(images / "train" / wnid / f"{wnid}_{k}.JPEG", label)
        for _ in range(counts["test"]):
            val_number += 1
            painter.write(images / "val" / wnid / f"ILSVRC2012_val_{val_number:08d}.JPEG", label)
    _write_hidden_file(images / "train" / classes[0][0])
    return num_classes


def _write_imagenet_v2(
    spec: DatasetSpec, root: Path, num_classes: int, counts: dict[str, int], painter: _Painter
) -> int:
    classes = _imagenet_classes(num_classes)
    _write_classnames(root, classes)
    images = image_root(spec, root)
    for label in range(num_classes):
        for k in range(counts["test"]):
            file_name = hashlib.sha1(f"{label}-{k}".encode()).hexdigest() + ".jpeg"
            painter.write(images / str(label) / file_name, label)
    _write_hidden_file(images / "0")
    return num_classes


def _write_imagenet_variant(
    spec: DatasetSpec, root: Path, num_classes: int, counts: dict[str, int], painter: _Painter
) -> int:
    if spec.name in ("ImageNetA", "ImageNetR"):
        # classnames.txt lists more wnids than there are folders: only every other one is present, so the
        # label space (positions among present folders) differs from classnames.txt positions.
        listed = _imagenet_classes(2 * num_classes + 1)
        present = listed[1::2]
    else:
        listed = present = _imagenet_classes(num_classes)
    _write_classnames(root, listed)
    images = image_root(spec, root)
    for label, (wnid, name) in enumerate(present):
        for k in range(counts["test"]):
            if spec.name == "ImageNetA":
                file_name = f"0.{k:06d}_{name} _ {name}_0.{k + 1:06d}.jpg"
            elif spec.name == "ImageNetR":
                file_name = f"art_{k}.jpg"
            else:
                file_name = f"sketch_{k}.JPEG"
            painter.write(images / wnid / file_name, label)
    (images / "README.txt").write_text("fake copy written by transmiter.data.fake\n", encoding="utf-8")
    _write_hidden_file(images / present[0][0])
    return len(present)


_WRITERS = {
    "json_split": _write_json_split,
    "fgvc_aircraft": _write_fgvc_aircraft,
    "imagenet": _write_imagenet,
    "imagenet_v2": _write_imagenet_v2,
    "imagenet_variant": _write_imagenet_variant,
}
