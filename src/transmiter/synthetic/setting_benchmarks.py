"""Synthetic counterparts of the cross-dataset and domain-generalisation settings.

The real settings train on ImageNet (1000 classes) and score, with no further training, ten other datasets
(cross-dataset) or four renderings of ImageNet's own classes (ImageNet-V2, -Sketch, -A, -R). Their CPU
counterparts in the synthetic world:

* **SynthObjects** (`synth_objects`): every object colour x every shape of the world, 120 classes, one
  object per scene on the pretraining backgrounds with mild noise: the "ImageNet" of the synthetic world,
  source of both settings. Its cross-dataset targets are the existing benchmarks (SynthShapes,
  SynthPatterns, SynthCounts), which shift backgrounds, tints and class definitions.
* Four shifted renderings of SynthObjects' classes, test split only, its domain-generalisation targets:
  - **SynthObjectsSketch**: coloured pencil strokes along the scene's edges on paper (all 120 classes);
  - **SynthObjectsPalette**: backgrounds in colours and patterns pretraining never showed, a warm cast and
    lower contrast (all 120 classes);
  - **SynthObjectsTextures**: striped, dotted and checkered objects only (40 classes, own label space);
  - **SynthObjectsOutline**: only the objects' outlines, on a dark plain ground (40 other classes, own
    label space).
  Like ImageNet-A and -R, the last two hold a subset of the source's classes labelled 0..39 in their own
  order; `setting.target_label_space=source` maps them back by class name.

Usage::

    from transmiter.synthetic.setting_benchmarks import SETTING_BENCHMARKS, generate_setting_benchmarks
    roots = generate_setting_benchmarks(data_dir, scale="demo")   # generates once, then reuses
    SETTING_BENCHMARKS["SynthObjectsOutline"].dataset_yaml()      # conf/dataset/synth_objects_outline.yaml

The folders follow the layout, marker and atomic generation of :mod:`transmiter.synthetic.benchmarks`;
`write_setting_dataset_configs("conf")` rewrites their dataset configs after a change here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transmiter.io import file_lock
from transmiter.synthetic.benchmarks import (
    BENCHMARK_VERSION,
    MARKER_NAME,
    BenchmarkSpec,
    _content_hash,
    _png_bytes,
    _relpaths,
    benchmark_status,
    generate_benchmark,
    split_sizes,
)
from transmiter.synthetic.world import (
    COLOURS,
    IMAGE_SIZE,
    SHAPES,
    WORLD_VERSION,
    SceneDistribution,
    as_rng,
    render_scenes,
    sample_scenes,
)

log = logging.getLogger(__name__)

RENDERING_VERSION = "1"
STYLES = ("photo", "sketch", "outline")
PAPER = np.array([236.0, 231.0, 218.0], dtype=np.float32)  # the sketches' paper
GROUND = np.array([34.0, 36.0, 44.0], dtype=np.float32)  # the outlines' plain dark ground

_PHOTO_TEMPLATES = (
    "a photo of a {}.",
    "a {}.",
    "an image of a {}.",
    "a picture of a {}.",
    "a rendering of a {}.",
    "there is a {}.",
)


def _synth_objects() -> BenchmarkSpec:
    colours, shapes = list(COLOURS), list(SHAPES)
    # colour-major order: every shape appears in the first half of the labels, as does every colour
    cells = [(c, s) for c in colours for s in shapes]
    dist = SceneDistribution(
        shapes=tuple(shapes),
        colours=tuple(colours),
        counts=(1,),
        textures=("solid", "striped", "dotted", "checkered"),
        texture_weights=(0.7, 0.1, 0.1, 0.1),
        bg_patterns=("plain", "striped", "dotted", "checkered"),
        bg_colours=("black", "gray", "navy", "maroon", "beige", "silver"),
        bg_pattern_weights=(0.4, 0.2, 0.2, 0.2),
        noise_std=(2.0, 6.0),
    )
    return BenchmarkSpec(
        name="SynthObjects",
        folder="synth_objects",
        classnames=tuple(f"{c}_{s}" for c, s in cells),
        class_attributes=tuple((("colour", c), ("shape", s)) for c, s in cells),
        template="a photo of a {}.",
        templates=_PHOTO_TEMPLATES,
        distribution=dist,
        description="every colour x every shape (120 classes), pretraining backgrounds, mild noise: the "
        "source of the cross-dataset and domain-generalisation demos",
        seed=4004,
    )


SOURCE = _synth_objects()
SOURCE_EPOCH_DIVISOR = 4


@dataclass(frozen=True)
class ShiftedRendering:
    """A test-only rendering of some of `source`'s classes under another look (a domain-generalisation target).

    `classes`: indices into `source.classnames`, in this dataset's label order; `distribution`: how scenes
    are drawn (the source's unless shifted); `style`: how they are drawn (photo, sketch, outline)."""

    name: str
    folder: str
    source: BenchmarkSpec
    classes: tuple[int, ...]
    style: str
    template: str
    description: str
    seed: int
    distribution: SceneDistribution | None = None
    templates: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"{self.name}: style {self.style!r} is not one of {STYLES}")
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise ValueError(f"{self.name}: classes must be distinct indices into {self.source.name}'s")

    @property
    def scene_distribution(self) -> SceneDistribution:
        return self.distribution or self.source.distribution

    @property
    def classnames(self) -> tuple[str, ...]:
        return tuple(self.source.classnames[i] for i in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def split_file(self) -> str:
        return f"split_zhou_{self.name}.json"

    def dataset_yaml(self) -> str:
        """The text of ``conf/dataset/<folder>.yaml``."""

        def quoted(text: str) -> str:
            return "'" + text.replace("'", "''") + "'"

        templates = self.templates or (self.template,)
        lines = [
            f"# {self.name}: synthetic domain-generalisation target, {self.description}.",
            "# Written by `transmiter data synthetic` (test split only). Generated from",
            "# transmiter.synthetic.setting_benchmarks by write_setting_dataset_configs(); do not edit by hand.",
            "_target_: transmiter.data.spec.DatasetSpec",
            f"name: {self.name}",
            f"folder: {self.folder}",
            "loader: json_split",
            "image_dir: images",
            f"split_file: {self.split_file}",
            f"num_classes: {self.num_classes}",
            "test_only: true",
            "epoch_divisor: 1",
            "train_crop_scale: [1.0, 1.0]",
            "templates:",
            f"  coop: [{quoted(self.template)}]",
            f"  skip: [{quoted(self.template)}]",
            "  ensemble: [" + ", ".join(quoted(t) for t in templates) + "]",
        ]
        return "\n".join(lines) + "\n"

    def key(self, scale: str) -> str:
        """SHA-256 over everything that determines the generated files at ``scale``."""
        payload = {
            "name": self.name,
            "source": self.source.key(scale),
            "classes": list(self.classes),
            "style": self.style,
            "distribution": self.scene_distribution.to_dict(),
            "seed": self.seed,
            "test_per_class": split_sizes(scale)[2],
            "world_version": WORLD_VERSION,
            "benchmark_version": BENCHMARK_VERSION,
            "rendering_version": RENDERING_VERSION,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _renderings() -> tuple[ShiftedRendering, ...]:
    n = SOURCE.num_classes
    base = SOURCE.distribution
    return (
        ShiftedRendering(
            name="SynthObjectsSketch",
            folder="synth_objects_sketch",
            source=SOURCE,
            classes=tuple(range(n)),
            style="sketch",
            template="a drawing of a {}.",
            templates=("a drawing of a {}.", "a picture of a {}.", "a {}."),
            description="coloured pencil strokes along the edges on paper, all 120 classes",
            seed=4101,
        ),
        ShiftedRendering(
            name="SynthObjectsPalette",
            folder="synth_objects_palette",
            source=SOURCE,
            classes=tuple(range(n)),
            style="photo",
            distribution=base.replace(
                bg_patterns=("gradient", "grid"),
                bg_colours=("olive", "teal"),
                bg_pattern_weights=None,
                tint=(1.25, 1.05, 0.75),
                contrast=(0.7, 0.9),
            ),
            template="a photo of a {}.",
            templates=_PHOTO_TEMPLATES,
            description="unseen background colours and patterns, warm cast, low contrast, all 120 classes",
            seed=4102,
        ),
        ShiftedRendering(
            name="SynthObjectsTextures",
            folder="synth_objects_textures",
            source=SOURCE,
            classes=tuple(range(0, n, 3)),
            style="photo",
            distribution=base.replace(textures=("striped", "dotted", "checkered"), texture_weights=None),
            template="a photo of a {}.",
            templates=_PHOTO_TEMPLATES,
            description="striped, dotted and checkered objects only, 40 of the 120 classes",
            seed=4103,
        ),
        ShiftedRendering(
            name="SynthObjectsOutline",
            folder="synth_objects_outline",
            source=SOURCE,
            classes=tuple(range(1, n, 3)),
            style="outline",
            template="a drawing of a {}.",
            templates=("a drawing of a {}.", "a picture of a {}.", "a {}."),
            description="only the objects' outlines on a dark plain ground, 40 other classes of the 120",
            seed=4104,
        ),
    )


RENDERINGS: dict[str, ShiftedRendering] = {r.name: r for r in _renderings()}

#: protocol NAME -> spec of every dataset this module generates (the source first)
SETTING_BENCHMARKS: dict[str, BenchmarkSpec | ShiftedRendering] = {SOURCE.name: SOURCE, **RENDERINGS}


# ---------------------------------------------------------------------------------------------------------
# drawing styles


def _edges(images: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude over the colour channels, (n, H, W), of float images (n, H, W, 3)."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")

    def at(dy: int, dx: int) -> np.ndarray:
        return padded[:, 1 + dy : 1 + dy + IMAGE_SIZE, 1 + dx : 1 + dx + IMAGE_SIZE]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    return np.sqrt((gx * gx + gy * gy).sum(axis=-1))


def sketch(images: np.ndarray) -> np.ndarray:
    """Coloured pencil strokes along the edges of `images` (uint8 NHWC) on paper: flat areas, the
    background's and the object's alike, become paper; an edge takes the colour under it."""
    x = images.astype(np.float32)
    strength = np.clip(_edges(x) / 320.0, 0.0, 1.0)[..., None]
    out = PAPER * (1.0 - strength) + x * strength
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """4-neighbour erosion of boolean masks (n, H, W); outside the image counts as background."""
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    return p[:, 1:-1, 1:-1] & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]


def outline(images: np.ndarray, masks: np.ndarray, width: int = 2) -> np.ndarray:
    """The objects' outlines (`width` pixels inside each object's boundary), in the colours rendered there,
    on a dark plain ground: interior, texture and background are gone."""
    inner = masks
    for _ in range(width):
        inner = _eroded(inner)
    ring = (masks & ~inner)[..., None]
    out = np.where(ring, images.astype(np.float32), GROUND)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_style(style: str, dist: SceneDistribution, labels: np.ndarray, attributes, seed) -> np.ndarray:
    """Images (uint8 NHWC) of one scene per label, the class's attributes pinned, drawn in `style`."""
    fixed = {attr: np.array([dict(attributes[k])[attr] for k in labels]) for attr in dict(attributes[0])}
    scenes = sample_scenes(dist, labels.size, as_rng(seed), fixed=fixed)
    images = render_scenes(scenes)
    if style == "sketch":
        return sketch(images)
    if style == "outline":
        return outline(images, scenes.object_mask())
    return images


# ---------------------------------------------------------------------------------------------------------
# generation


def rendering_status(spec: ShiftedRendering, data_dir: str | Path, scale: str = "demo") -> str:
    """complete, missing, stale (other key or scale) or corrupt (marker, split file or images): the same
    marker and content hash as a benchmark's."""
    return benchmark_status(spec, data_dir, scale)


def _write_rendering(spec: ShiftedRendering, root: Path, scale: str) -> None:
    per_class = split_sizes(scale)[2]
    labels = np.repeat(np.arange(spec.num_classes), per_class)
    attributes = [spec.source.class_attributes[i] for i in spec.classes]
    images = render_style(spec.style, spec.scene_distribution, labels, attributes, [spec.seed, 2])
    items, counter = [], [0] * spec.num_classes
    for img, label in zip(images, labels.tolist()):
        name = spec.classnames[label]
        rel = f"{name}/{counter[label]:04d}.png"
        counter[label] += 1
        path = root / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png_bytes(img))
        items.append([rel, label, name])
    split: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": items}
    (root / spec.split_file).write_text(json.dumps(split) + "\n")
    marker = {
        "benchmark": spec.name,
        "key": spec.key(scale),
        "scale": scale,
        "content_sha256": _content_hash(root, spec.split_file, _relpaths(split)),
        "num_images": len(items),
        "num_classes": spec.num_classes,
        "world_version": WORLD_VERSION,
    }
    (root / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")


def generate_rendering(spec: ShiftedRendering, data_dir: str | Path, *, scale: str = "demo") -> Path:
    """The folder of `spec` under `data_dir`, generated (atomically) unless already complete."""
    data_dir = Path(data_dir)
    root = data_dir / spec.folder
    split_sizes(scale)
    data_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(data_dir / f".{spec.folder}.lock"):
        status = rendering_status(spec, data_dir, scale)
        if status == "complete":
            return root
        if status != "missing":
            log.warning("%s at %s is %s; regenerating", spec.name, root, status)
        tmp = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{spec.folder}.tmp-"))
        try:
            _write_rendering(spec, tmp, scale)
            os.chmod(tmp, 0o755)
            if root.exists():
                old = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{spec.folder}.old-"))
                os.replace(root, old / spec.folder)
                os.replace(tmp, root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("%s: wrote %d test images at %s", spec.name, spec.num_classes * split_sizes(scale)[2], root)
    return root


def generate_setting_benchmarks(
    data_dir: str | Path, *, scale: str = "demo", progress: bool = True
) -> dict[str, Path]:
    """Generate-or-reuse SynthObjects and its four renderings under `data_dir`; their folders by NAME."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    roots = {SOURCE.name: generate_benchmark(SOURCE, data_dir, scale=scale, progress=progress)}
    for spec in RENDERINGS.values():
        roots[spec.name] = generate_rendering(spec, data_dir, scale=scale)
    return roots


def dataset_yaml(spec: BenchmarkSpec | ShiftedRendering) -> str:
    """The text of the dataset config of `spec` (the source's header names this module too)."""
    text = spec.dataset_yaml()
    if spec is SOURCE:
        # ImageNet's rule: the source's Skip Tuning schedule is divided by 4 (as 20 -> 5 on ImageNet)
        text = text.replace("epoch_divisor: 1\n", f"epoch_divisor: {SOURCE_EPOCH_DIVISOR}\n")
        lines = text.splitlines(keepends=True)
        lines[1:3] = [
            "# Written by `transmiter data synthetic` in the CoOp layout (images/ + split file). Generated from\n",
            "# transmiter.synthetic.setting_benchmarks by write_setting_dataset_configs(); do not edit by hand.\n",
        ]
        text = "".join(lines)
    return text


def write_setting_dataset_configs(conf_dir: str | Path) -> list[Path]:
    """(Re)write ``<conf_dir>/dataset/<folder>.yaml`` of every dataset here; run after a change::

    python -c "from transmiter.synthetic.setting_benchmarks import write_setting_dataset_configs as w; w('conf')"
    """
    written = []
    for spec in SETTING_BENCHMARKS.values():
        path = Path(conf_dir) / "dataset" / f"{spec.folder}.yaml"
        path.write_text(dataset_yaml(spec))
        written.append(path)
    return written
