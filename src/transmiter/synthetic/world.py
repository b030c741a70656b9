"""Procedural captioned-image world: compositional scenes rendered to 32-pixel RGB images.

A *scene* is one image holding 1-3 identical objects (shape, colour, size, texture) drawn on a patterned
background, optionally degraded by a distribution shift (colour cast, contrast, blur, pixel noise). Everything
is vectorised numpy and deterministic by seed.

Usage::

    from transmiter.synthetic.batches import draw_batch
    from transmiter.synthetic.world import PRETRAIN_DISTRIBUTION
    batch = draw_batch(PRETRAIN_DISTRIBUTION, 1024, seed=0)
    batch.images            # uint8 (1024, 32, 32, 3)
    batch.captions[0]       # e.g. "a small red striped star on a dotted navy background"
    batch.scenes.attributes(0)  # {"shape": "star", "colour": "red", ...}

A :class:`SceneDistribution` says which attribute values may be drawn (and with which weights), which
(colour, shape) combinations are excluded, and which shift is applied; pretraining and the downstream
benchmarks use different distributions (see :mod:`transmiter.synthetic.benchmarks`).

Bump :data:`WORLD_VERSION` whenever rendering, sampling or captioning changes what a seed produces: the
checkpoint and benchmark caches key on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WORLD_VERSION = "1"
IMAGE_SIZE = 32

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "star",
    "cross",
    "ring",
    "heart",
    "crescent",
    "hexagon",
    "oval",
    "arrow",
)

#: object colours (RGB, 0-255); disjoint from the background colour names
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (218, 38, 38),
    "orange": (245, 135, 25),
    "yellow": (240, 222, 40),
    "green": (40, 168, 58),
    "cyan": (45, 212, 222),
    "blue": (38, 78, 222),
    "purple": (140, 58, 200),
    "pink": (250, 130, 190),
    "brown": (128, 78, 38),
    "white": (246, 246, 246),
}

#: nominal object radius range in pixels per size word
SIZES: dict[str, tuple[float, float]] = {
    "small": (3.8, 5.0),
    "medium": (6.0, 7.5),
    "large": (9.0, 11.0),
}

#: object surface patterns
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")

BG_PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered", "gradient", "grid")

BG_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (22, 22, 24),
    "gray": (112, 112, 112),
    "navy": (24, 30, 84),
    "olive": (92, 96, 38),
    "maroon": (88, 24, 34),
    "teal": (20, 88, 88),
    "beige": (214, 200, 168),
    "silver": (186, 186, 192),
}

COUNTS: tuple[int, ...] = (1, 2, 3)

#: 3x3 grid of positions (row-major) for single-object scenes; index -1 = not applicable (several objects)
POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)

#: the largest size allowed for scenes with 2 and 3 objects (so that non-overlapping layouts exist)
_MAX_SIZE_FOR_COUNT = {1: "large", 2: "medium", 3: "small"}

_SIZE_NAMES = tuple(SIZES)
_COLOUR_NAMES = tuple(COLOURS)
_BG_COLOUR_NAMES = tuple(BG_COLOURS)


@dataclass(frozen=True)
class SceneDistribution:
    """Which scenes may be drawn, and how they are degraded.

    Attribute fields list the allowed values (names from the module constants); ``*_weights`` (same length,
    optional) give relative sampling weights, uniform otherwise. ``exclude_pairs`` lists (colour, shape)
    combinations that are never drawn. Shift fields draw one value per image uniformly from the given
    ``(low, high)`` range; ``colour_cast`` is the largest per-channel gain deviation (0.2 -> gains in
    [0.8, 1.2]) around the fixed per-channel gain ``tint`` (a systematic colour shift, like a camera's white
    balance); ``noise_std`` and ``brightness`` are in 0-255 pixel units.
    """

    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = _COLOUR_NAMES
    sizes: tuple[str, ...] = _SIZE_NAMES
    textures: tuple[str, ...] = TEXTURES
    bg_patterns: tuple[str, ...] = BG_PATTERNS
    bg_colours: tuple[str, ...] = _BG_COLOUR_NAMES
    counts: tuple[int, ...] = COUNTS
    shape_weights: tuple[float, ...] | None = None
    colour_weights: tuple[float, ...] | None = None
    size_weights: tuple[float, ...] | None = None
    texture_weights: tuple[float, ...] | None = None
    bg_pattern_weights: tuple[float, ...] | None = None
    bg_colour_weights: tuple[float, ...] | None = None
    count_weights: tuple[float, ...] | None = None
    exclude_pairs: tuple[tuple[str, str], ...] = ()
    spread: float = 0.15
    rotation_deg: float = 12.0
    colour_jitter: float = 14.0
    noise_std: tuple[float, float] = (0.0, 0.0)
    blur_sigma: tuple[float, float] = (0.0, 0.0)
    colour_cast: float = 0.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    brightness: tuple[float, float] = (0.0, 0.0)
    contrast: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the distribution is inconsistent."""
        vocab = {
            "shapes": SHAPES,
            "colours": _COLOUR_NAMES,
            "sizes": _SIZE_NAMES,
            "textures": TEXTURES,
            "bg_patterns": BG_PATTERNS,
            "bg_colours": _BG_COLOUR_NAMES,
            "counts": COUNTS,
        }
        for name, allowed in vocab.items():
            values = getattr(self, name)
            if not values:
                raise ValueError(f"SceneDistribution.{name} is empty; allow at least one of {allowed}")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"SceneDistribution.{name}: unknown values {bad}; known: {allowed}")
            if len(set(values)) != len(values):
                raise ValueError(f"SceneDistribution.{name} has duplicates: {values}")
            weights = getattr(self, f"{name[:-1]}_weights")
            if weights is not None:
                if len(weights) != len(values) or min(weights) < 0 or sum(weights) <= 0:
                    raise ValueError(
                        f"SceneDistribution.{name[:-1]}_weights must be {len(values)} non-negative numbers "
                        f"with a positive sum, got {weights}"
                    )
        for count in self.counts:
            largest = _SIZE_NAMES.index(_MAX_SIZE_FOR_COUNT[count])
            if not any(_SIZE_NAMES.index(s) <= largest for s in self.sizes):
                raise ValueError(
                    f"SceneDistribution: count {count} needs a size up to {_MAX_SIZE_FOR_COUNT[count]!r} "
                    f"in sizes, got {self.sizes}"
                )
        for pair in self.exclude_pairs:
            if len(pair) != 2 or pair[0] not in _COLOUR_NAMES or pair[1] not in SHAPES:
                raise ValueError(f"SceneDistribution.exclude_pairs items are (colour, shape), got {pair}")
        excluded = set(map(tuple, self.exclude_pairs))
        if all((c, s) in excluded for c in self.colours for s in self.shapes):
            raise ValueError("SceneDistribution.exclude_pairs excludes every allowed (colour, shape) pair")
        for name in ("noise_std", "blur_sigma", "brightness", "contrast"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(
                    f"SceneDistribution.{name} must be (low, high) with low <= high, got {(lo, hi)}"
                )
        if len(self.tint) != 3 or min(self.tint) <= 0:
            raise ValueError(f"SceneDistribution.tint must be 3 positive channel gains, got {self.tint}")
        if self.noise_std[0] < 0 or self.blur_sigma[0] < 0 or self.colour_cast < 0 or self.contrast[0] <= 0:
            raise ValueError(
                "SceneDistribution: noise_std, blur_sigma, colour_cast must be >= 0 and contrast > 0"
            )
        if not 0.0 <= self.spread <= 1.0:
            raise ValueError(f"SceneDistribution.spread must be in [0, 1], got {self.spread}")
        if self.blur_sigma[1] > 3.0:
            raise ValueError("SceneDistribution.blur_sigma above 3 px is not supported (kernel radius 6)")

    def replace(self, **changes: Any) -> SceneDistribution:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (lists instead of tuples); used for cache keys and metadata."""

        def conv(x: Any) -> Any:
            if isinstance(x, tuple | list):
                return [conv(v) for v in x]
            return x

        return {f.name: conv(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneDistribution:
        def conv(x: Any) -> Any:
            if isinstance(x, list):
                return tuple(conv(v) for v in x)
            return x

        return cls(**{k: conv(v) for k, v in data.items()})


#: the pretraining distribution: every object attribute, clean images, two background patterns and two
#: background colours held out (the downstream benchmarks use them as an "unseen background" shift)
PRETRAIN_DISTRIBUTION = SceneDistribution(
    bg_patterns=("plain", "striped", "dotted", "checkered"),
    bg_colours=("black", "gray", "navy", "maroon", "beige", "silver"),
    bg_pattern_weights=(0.4, 0.2, 0.2, 0.2),
    texture_weights=(0.55, 0.15, 0.15, 0.15),
    count_weights=(0.8, 0.13, 0.07),
    noise_std=(0.0, 3.0),
)

#: the easy end of the pretraining curriculum: one solid, medium or large object on a plain background.
#: Small ViTs trained contrastively from scratch pick up colour at once but shape only slowly; easy scenes
#: with short captions ("a photo of a red star") let them find shape features before the full variety
#: arrives (adding multi-object scenes here made single-object shape recognition clearly worse).
PRETRAIN_EASY_DISTRIBUTION = PRETRAIN_DISTRIBUTION.replace(
    bg_patterns=("plain",),
    bg_pattern_weights=None,
    textures=("solid",),
    texture_weights=None,
    counts=(1,),
    count_weights=None,
    sizes=("medium", "large"),
)


@dataclass
class Scenes:
    """A batch of scene descriptions (struct of arrays, one row per image).

    Categorical fields hold indices into the module constants (``shape`` into :data:`SHAPES`, ``colour``
    into :data:`COLOURS` order, ...); ``position`` is an index into :data:`POSITIONS` or -1 for scenes with
    several objects. ``cx``/``cy`` have one column per object slot (NaN where unused).
    """

    shape: np.ndarray
    colour: np.ndarray
    size: np.ndarray
    texture: np.ndarray
    bg_pattern: np.ndarray
    bg_colour: np.ndarray
    count: np.ndarray
    position: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    rotation: np.ndarray
    rgb: np.ndarray
    tex_angle: np.ndarray
    tex_phase: np.ndarray
    bg_rgb: np.ndarray
    bg_rgb2: np.ndarray
    bg_period: np.ndarray
    bg_angle: np.ndarray
    bg_phase: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    contrast: np.ndarray
    blur: np.ndarray
    noise: np.ndarray
    noise_seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    def attributes(self, i: int) -> dict[str, Any]:
        """Named attributes of scene ``i``."""
        pos = int(self.position[i])
        return {
            "shape": SHAPES[self.shape[i]],
            "colour": _COLOUR_NAMES[self.colour[i]],
            "size": _SIZE_NAMES[self.size[i]],
            "texture": TEXTURES[self.texture[i]],
            "bg_pattern": BG_PATTERNS[self.bg_pattern[i]],
            "bg_colour": _BG_COLOUR_NAMES[self.bg_colour[i]],
            "count": int(self.count[i]),
            "position": POSITIONS[pos] if pos >= 0 else None,
        }

    def object_mask(self, threshold: float = 0.5) -> np.ndarray:
        """Boolean (n, H, W): pixels whose object coverage (anti-aliased alpha) exceeds ``threshold``."""
        n = len(self)
        mask = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        for slot in range(3):
            rows = np.nonzero(self.count > slot)[0]
            for s in np.unique(self.shape[rows]):
                idx = rows[self.shape[rows] == s]
                alpha = _object_alpha(self, idx, slot, int(s))
                mask[idx] |= alpha > threshold
        return mask


@dataclass
class SceneBatch:
    """Rendered images (uint8, NHWC), their scene descriptions and one caption per image."""

    images: np.ndarray
    scenes: Scenes
    captions: list[str]


# ---------------------------------------------------------------------------------------------------------
# sampling


def _choice(
    rng: np.random.Generator, vocab: Sequence[Any], allowed: Sequence[Any], weights, n: int
) -> np.ndarray:
    idx = np.array([list(vocab).index(v) for v in allowed], dtype=np.int64)
    if weights is None:
        p = None
    else:
        w = np.asarray(weights, dtype=np.float64)
        p = w / w.sum()
    return idx[rng.choice(len(idx), size=n, p=p)]


def as_rng(seed: int | Sequence[int] | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _fixed_indices(name: str, value: Any, vocab: Sequence[Any], n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr.item())
    if arr.shape != (n,):
        raise ValueError(f"fixed[{name!r}] must be a scalar or have shape ({n},), got {arr.shape}")
    if arr.dtype.kind in "US" or arr.dtype == object:
        lookup = {v: i for i, v in enumerate(vocab)}
        try:
            return np.array([lookup[v] for v in arr.tolist()], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"fixed[{name!r}]: unknown value {e.args[0]!r}; known: {tuple(vocab)}") from None
    if name == "count":
        if not np.isin(arr, COUNTS).all():
            raise ValueError(f"fixed['count'] values must be in {COUNTS}")
        return arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= len(vocab):
        raise ValueError(f"fixed[{name!r}] indices out of range 0..{len(vocab) - 1}")
    return arr.astype(np.int64)


_FIXABLE = {
    "shape": SHAPES,
    "colour": _COLOUR_NAMES,
    "size": _SIZE_NAMES,
    "texture": TEXTURES,
    "bg_pattern": BG_PATTERNS,
    "bg_colour": _BG_COLOUR_NAMES,
    "count": COUNTS,
}


def sample_scenes(
    dist: SceneDistribution,
    n: int,
    seed: int | Sequence[int] | np.random.Generator,
    *,
    fixed: Mapping[str, Any] | None = None,
) -> Scenes:
    """Draw ``n`` scenes from ``dist``.

    ``fixed`` pins attributes (names as in :meth:`Scenes.attributes` except position): each value is a
    scalar or a length-``n`` array of names or indices (counts are given as 1/2/3). Pinned values need not be
    in the distribution's allowed lists (a benchmark may pin the class attributes). For scenes with 2 or 3
    objects the size is clamped to the largest size that fits (medium for 2, small for 3).
    """
    rng = as_rng(seed)
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(_FIXABLE)
    if unknown:
        raise ValueError(f"fixed: unknown attributes {sorted(unknown)}; fixable: {sorted(_FIXABLE)}")

    def draw(name: str, allowed, weights) -> np.ndarray:
        vocab = _FIXABLE[name]
        if name in fixed:
            return _fixed_indices(name, fixed[name], vocab, n)
        values = _choice(rng, vocab, allowed, weights, n)
        return np.asarray(vocab, dtype=np.int64)[values] if name == "count" else values

    shape = draw("shape", dist.shapes, dist.shape_weights)
    colour = draw("colour", dist.colours, dist.colour_weights)
    if dist.exclude_pairs and not ("shape" in fixed and "colour" in fixed):
        excluded = {(_COLOUR_NAMES.index(c), SHAPES.index(s)) for c, s in dist.exclude_pairs}
        for _ in range(1000):
            bad = np.array([(c, s) in excluded for c, s in zip(colour.tolist(), shape.tolist())], dtype=bool)
            if not bad.any():
                break
            k = int(bad.sum())
            if "shape" not in fixed:
                shape[bad] = _choice(rng, SHAPES, dist.shapes, dist.shape_weights, k)
            if "colour" not in fixed:
                colour[bad] = _choice(rng, _COLOUR_NAMES, dist.colours, dist.colour_weights, k)
        else:
            raise ValueError("could not draw scenes avoiding exclude_pairs with the pinned attributes")
    count = draw("count", dist.counts, dist.count_weights)
    size = draw("size", dist.sizes, dist.size_weights)
    # clamp sizes (pinned ones too) so that several objects fit without overlapping
    for c, largest in _MAX_SIZE_FOR_COUNT.items():
        cap = _SIZE_NAMES.index(largest)
        too_big = (count == c) & (size > cap)
        if too_big.any():
            allowed_small = [s for s in dist.sizes if _SIZE_NAMES.index(s) <= cap] or [largest]
            size[too_big] = _choice(rng, _SIZE_NAMES, allowed_small, None, int(too_big.sum()))
    texture = draw("texture", dist.textures, dist.texture_weights)
    bg_pattern = draw("bg_pattern", dist.bg_patterns, dist.bg_pattern_weights)
    bg_colour = draw("bg_colour", dist.bg_colours, dist.bg_colour_weights)

    lo = np.array([SIZES[s][0] for s in _SIZE_NAMES])[size]
    hi = np.array([SIZES[s][1] for s in _SIZE_NAMES])[size]
    radius = lo + (hi - lo) * rng.random(n)
    rotation = np.deg2rad(dist.rotation_deg) * rng.uniform(-1.0, 1.0, n)

    cx, cy = _place_objects(rng, count, radius, dist.spread)
    position = np.full(n, -1, dtype=np.int64)
    single = count == 1
    col = np.clip((cx[:, 0] * 3 // IMAGE_SIZE), 0, 2)
    row = np.clip((cy[:, 0] * 3 // IMAGE_SIZE), 0, 2)
    position[single] = (row * 3 + col)[single].astype(np.int64)

    base = np.array(list(COLOURS.values()), dtype=np.float64)[colour]
    rgb = np.clip(base + rng.uniform(-dist.colour_jitter, dist.colour_jitter, (n, 3)), 0, 255)

    tex_angle = rng.choice(np.deg2rad([0.0, 45.0, 90.0, 135.0]), size=n)
    tex_phase = rng.random((n, 2))

    bg_base = np.array(list(BG_COLOURS.values()), dtype=np.float64)[bg_colour]
    bg_rgb = np.clip(bg_base + rng.uniform(-8, 8, (n, 3)), 0, 255)
    lum = bg_rgb @ np.array([0.299, 0.587, 0.114])
    lighter = bg_rgb + (255.0 - bg_rgb) * 0.2
    darker = bg_rgb * 0.78
    bg_rgb2 = np.where((lum < 110)[:, None], lighter, darker)
    bg_period = rng.uniform(6.0, 9.0, n)
    bg_angle = rng.choice(np.deg2rad([0.0, 45.0, 90.0, 135.0]), size=n)
    # gradients get a free direction
    grad = bg_pattern == BG_PATTERNS.index("gradient")
    bg_angle[grad] = rng.uniform(0, 2 * np.pi, int(grad.sum()))
    bg_phase = rng.random((n, 2))

    gain = np.asarray(dist.tint)[None, :] * (1.0 + rng.uniform(-dist.colour_cast, dist.colour_cast, (n, 3)))
    offset = rng.uniform(*dist.brightness, n)
    contrast = rng.uniform(*dist.contrast, n)
    blur = rng.uniform(*dist.blur_sigma, n)
    noise = rng.uniform(*dist.noise_std, n)
    noise_seed = int(rng.integers(0, 2**63 - 1))

    f32 = np.float32
    return Scenes(
        shape=shape.astype(np.int64),
        colour=colour.astype(np.int64),
        size=size.astype(np.int64),
        texture=texture.astype(np.int64),
        bg_pattern=bg_pattern.astype(np.int64),
        bg_colour=bg_colour.astype(np.int64),
        count=count.astype(np.int64),
        position=position,
        cx=cx.astype(f32),
        cy=cy.astype(f32),
        radius=radius.astype(f32),
        rotation=rotation.astype(f32),
        rgb=rgb.astype(f32),
        tex_angle=tex_angle.astype(f32),
        tex_phase=tex_phase.astype(f32),
        bg_rgb=bg_rgb.astype(f32),
        bg_rgb2=bg_rgb2.astype(f32),
        bg_period=bg_period.astype(f32),
        bg_angle=bg_angle.astype(f32),
        bg_phase=bg_phase.astype(f32),
        gain=gain.astype(f32),
        offset=offset.astype(f32),
        contrast=contrast.astype(f32),
        blur=blur.astype(f32),
        noise=noise.astype(f32),
        noise_seed=noise_seed,
    )


def _layout_offsets(
    rng: np.random.Generator, count: np.ndarray, radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Object offsets (n, 3) from the group centre: one object at 0; two side by side along one of four
    directions; three in a triangle (four orientations) or a line. Gaps between objects: 1-3.5 px."""
    n = count.shape[0]
    dx = np.full((n, 3), np.nan)
    dy = np.full((n, 3), np.nan)
    dx[:, 0] = dy[:, 0] = 0.0
    gap = 2 * radius + 1.0 + 2.5 * rng.random(n)  # centre distance between neighbours
    two = count == 2
    theta = np.deg2rad(45.0) * rng.integers(0, 4, n) + np.deg2rad(8.0) * rng.uniform(-1, 1, n)
    half = gap / 2
    dx[two, 0], dy[two, 0] = (-half * np.cos(theta))[two], (-half * np.sin(theta))[two]
    dx[two, 1], dy[two, 1] = (half * np.cos(theta))[two], (half * np.sin(theta))[two]
    three = count == 3
    line = rng.random(n) < 0.35
    tri_r = gap / np.sqrt(3.0)
    phase = np.deg2rad(90.0) * rng.integers(0, 4, n) + np.deg2rad(8.0) * rng.uniform(-1, 1, n)
    for k in range(3):
        a = phase + np.deg2rad(90.0 + 120.0 * k)
        tx, ty = tri_r * np.cos(a), -tri_r * np.sin(a)
        lx, ly = (k - 1) * gap * np.cos(theta), (k - 1) * gap * np.sin(theta)
        dx[three, k] = np.where(line, lx, tx)[three]
        dy[three, k] = np.where(line, ly, ty)[three]
    return dx, dy


def _place_objects(
    rng: np.random.Generator, count: np.ndarray, radius: np.ndarray, spread: float
) -> tuple[np.ndarray, np.ndarray]:
    """Object centres (n, 3) inside the image, non-overlapping; NaN for unused slots.

    The group (1-3 objects in a canonical layout) is centred at the image centre plus an offset drawn
    uniformly within ``spread`` times the room the layout leaves on each side.
    """
    n = count.shape[0]
    margin = radius + 0.5
    dx, dy = _layout_offsets(rng, count, radius)
    for _ in range(20):  # layouts that do not fit (long lines) are redrawn
        lo_x, hi_x = np.nanmin(dx, axis=1), np.nanmax(dx, axis=1)
        lo_y, hi_y = np.nanmin(dy, axis=1), np.nanmax(dy, axis=1)
        room_x = np.minimum(IMAGE_SIZE / 2 - margin + lo_x, IMAGE_SIZE / 2 - margin - hi_x)
        room_y = np.minimum(IMAGE_SIZE / 2 - margin + lo_y, IMAGE_SIZE / 2 - margin - hi_y)
        bad = (room_x < 0) | (room_y < 0)
        if not bad.any():
            break
        ndx, ndy = _layout_offsets(rng, count, radius)
        dx[bad], dy[bad] = ndx[bad], ndy[bad]
    else:
        raise RuntimeError("could not lay out objects inside the image")
    # centre the layout's bounding box, then shift it within the allowed room
    mid_x, mid_y = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    shift_x = spread * room_x * rng.uniform(-1, 1, n)
    shift_y = spread * room_y * rng.uniform(-1, 1, n)
    cx = IMAGE_SIZE / 2 - mid_x[:, None] + dx + shift_x[:, None]
    cy = IMAGE_SIZE / 2 - mid_y[:, None] + dy + shift_y[:, None]
    return cx, cy


# ---------------------------------------------------------------------------------------------------------
# rendering

_PIX = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5
_SQRT2 = np.float32(np.sqrt(2.0))


def _regular_polygon(
    u: np.ndarray, v: np.ndarray, sides: int, radius: float, first_normal_deg: float
) -> np.ndarray:
    apothem = radius * np.cos(np.pi / sides)
    d = None
    for i in range(sides):
        a = np.deg2rad(first_normal_deg) + 2 * np.pi * i / sides
        e = u * np.float32(np.cos(a)) + v * np.float32(np.sin(a))
        d = e if d is None else np.maximum(d, e)
    return d - np.float32(apothem)


def _star_sdf(u: np.ndarray, v: np.ndarray, outer: float = 1.0, inner: float = 0.45) -> np.ndarray:
    rho = np.hypot(u, v)
    theta = np.arctan2(u, v)  # 0 = up, clockwise
    sector = np.float32(2 * np.pi / 5)
    a = np.mod(theta, sector)
    psi = np.float32(np.pi / 5) - np.abs(a - sector / 2)  # 0 at an outer tip, pi/5 in a valley
    qx = rho * np.cos(psi)
    qy = rho * np.sin(psi)
    ax, ay = outer, 0.0
    bx, by = inner * np.cos(np.pi / 5), inner * np.sin(np.pi / 5)
    ex, ey = bx - ax, by - ay
    norm = np.hypot(ex, ey)
    nx, ny = ey / norm, -ex / norm
    return ((qx - ax) * np.float32(nx) + (qy - ay) * np.float32(ny)).astype(np.float32)


def _box(u: np.ndarray, v: np.ndarray, hx: float, hy: float) -> np.ndarray:
    return np.maximum(np.abs(u) - np.float32(hx), np.abs(v) - np.float32(hy))


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (object units, negative inside) of a shape of unit radius; v points up."""
    if shape == "circle":
        return np.hypot(u, v) - np.float32(0.85)
    if shape == "square":
        return _box(u, v, 0.72, 0.72)
    if shape == "triangle":
        return _regular_polygon(u, v + np.float32(0.25), 3, 1.0, -90.0)
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) - np.float32(0.98)) / _SQRT2
    if shape == "star":
        return _star_sdf(u, v + np.float32(0.08))
    if shape == "cross":
        return np.minimum(_box(u, v, 0.9, 0.28), _box(u, v, 0.28, 0.9))
    if shape == "ring":
        return np.abs(np.hypot(u, v) - np.float32(0.68)) - np.float32(0.24)
    if shape == "heart":
        v2 = v + np.float32(0.08)
        diamond = (np.abs(u) + np.abs(v2 + np.float32(0.15)) - np.float32(0.75)) / _SQRT2
        lobe = np.minimum(
            np.hypot(u - np.float32(0.375), v2 - np.float32(0.225)),
            np.hypot(u + np.float32(0.375), v2 - np.float32(0.225)),
        ) - np.float32(0.53)
        return np.minimum(diamond, lobe)
    if shape == "crescent":
        outer = np.hypot(u, v) - np.float32(0.9)
        bite = np.float32(0.72) - np.hypot(u - np.float32(0.4), v - np.float32(0.14))
        return np.maximum(outer, bite)
    if shape == "hexagon":
        return _regular_polygon(u, v, 6, 0.92, 90.0)
    if shape == "oval":
        k = np.sqrt(u * u + (v / np.float32(0.55)) ** 2)
        return (k - np.float32(1.0)) * np.float32(0.55)
    if shape == "arrow":
        shaft = _box(u + np.float32(0.4), v, 0.5, 0.2)
        inv = np.float32(1.0 / np.hypot(0.6, 0.85))
        head = np.maximum(
            np.float32(0.1) - u,
            np.maximum(
                ((u - np.float32(0.95)) * np.float32(0.6) + v * np.float32(0.85)) * inv,
                ((u - np.float32(0.95)) * np.float32(0.6) - v * np.float32(0.85)) * inv,
            ),
        )
        return np.minimum(shaft, head)
    raise KeyError(shape)


def _object_alpha(scenes: Scenes, idx: np.ndarray, slot: int, shape: int) -> np.ndarray:
    r = scenes.radius[idx][:, None, None]
    dx = (_PIX[None, None, :] - scenes.cx[idx, slot][:, None, None]) / r
    dy = (scenes.cy[idx, slot][:, None, None] - _PIX[None, :, None]) / r
    c = np.cos(scenes.rotation[idx])[:, None, None]
    s = np.sin(scenes.rotation[idx])[:, None, None]
    u = c * dx + s * dy
    v = -s * dx + c * dy
    d = _shape_sdf(SHAPES[shape], u, v)
    return np.clip(np.float32(0.5) - d * r, 0.0, 1.0)


def _texture_mix(scenes: Scenes, idx: np.ndarray, slot: int) -> np.ndarray:
    """Fraction (n, H, W) of the darker secondary colour for the object's surface pattern."""
    n = idx.size
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    tex = scenes.texture[idx]
    x = _PIX[None, None, :] - scenes.cx[idx, slot][:, None, None]
    y = _PIX[None, :, None] - scenes.cy[idx, slot][:, None, None]
    phase = scenes.tex_phase[idx]
    striped = tex == TEXTURES.index("striped")
    if striped.any():
        a = scenes.tex_angle[idx][striped][:, None, None]
        proj = x[striped] * np.cos(a) + y[striped] * np.sin(a)
        s = proj / np.float32(4.0) + phase[striped, 0][:, None, None]
        out[striped] = (np.floor(s * 2) % 2).astype(np.float32)
    dotted = tex == TEXTURES.index("dotted")
    if dotted.any():
        gx = x[dotted] / np.float32(4.0) + phase[dotted, 0][:, None, None]
        gy = y[dotted] / np.float32(4.0) + phase[dotted, 1][:, None, None]
        fx = (gx - np.floor(gx) - 0.5) * 4.0
        fy = (gy - np.floor(gy) - 0.5) * 4.0
        out[dotted] = np.clip(np.float32(1.5) - np.hypot(fx, fy), 0.0, 1.0)
    checkered = tex == TEXTURES.index("checkered")
    if checkered.any():
        gx = np.floor(x[checkered] / np.float32(2.0) + phase[checkered, 0][:, None, None] * 2)
        gy = np.floor(y[checkered] / np.float32(2.0) + phase[checkered, 1][:, None, None] * 2)
        out[checkered] = ((gx + gy) % 2).astype(np.float32)
    return out


def _background(scenes: Scenes, idx: np.ndarray) -> np.ndarray:
    n = idx.size
    pat = scenes.bg_pattern[idx]
    p = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    x = np.broadcast_to(_PIX[None, None, :], (n, IMAGE_SIZE, IMAGE_SIZE))
    y = np.broadcast_to(_PIX[None, :, None], (n, IMAGE_SIZE, IMAGE_SIZE))
    period = scenes.bg_period[idx][:, None, None]
    angle = scenes.bg_angle[idx][:, None, None]
    ph = scenes.bg_phase[idx]
    for name in BG_PATTERNS:
        sel = pat == BG_PATTERNS.index(name)
        if not sel.any() or name == "plain":
            continue
        xs, ys, per, ang = x[sel], y[sel], period[sel], angle[sel]
        phx, phy = ph[sel, 0][:, None, None], ph[sel, 1][:, None, None]
        if name == "striped":
            s = (xs * np.cos(ang) + ys * np.sin(ang)) / per + phx
            p[sel] = (np.floor(s * 2) % 2).astype(np.float32)
        elif name == "dotted":
            gx = xs / per + phx
            gy = ys / per + phy
            fx = (gx - np.floor(gx) - 0.5) * per
            fy = (gy - np.floor(gy) - 0.5) * per
            p[sel] = np.clip(np.float32(2.0) - np.hypot(fx, fy), 0.0, 1.0)
        elif name == "checkered":
            cell = per * np.float32(0.6)
            gx = np.floor(xs / cell + phx * 2)
            gy = np.floor(ys / cell + phy * 2)
            p[sel] = ((gx + gy) % 2).astype(np.float32)
        elif name == "gradient":
            half = np.float32(IMAGE_SIZE / 2)
            proj = (xs - half) * np.cos(ang) + (ys - half) * np.sin(ang)
            p[sel] = np.clip(0.5 + proj / np.float32(IMAGE_SIZE * 0.72), 0.0, 1.0)
        elif name == "grid":
            gx = np.mod(xs + phx * per, per)
            gy = np.mod(ys + phy * per, per)
            p[sel] = ((gx < 1.0) | (gy < 1.0)).astype(np.float32)
    c1 = scenes.bg_rgb[idx][:, None, None, :]
    c2 = scenes.bg_rgb2[idx][:, None, None, :]
    return c1 * (1.0 - p[..., None]) + c2 * p[..., None]


def _gaussian_blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable per-image Gaussian blur (edge padding); sigma (n,) in pixels, 0 = identity."""
    if not np.any(sigma > 0):
        return img
    radius = int(np.ceil(3 * float(sigma.max())))
    radius = max(1, min(radius, 6))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    s = np.maximum(sigma, 1e-3)[:, None]
    w = np.exp(-0.5 * (offsets[None, :] / s) ** 2)
    w[sigma <= 0] = (offsets == 0).astype(np.float32)
    w = (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
    out = img
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(out)
        for k in range(2 * radius + 1):
            sl = [slice(None)] * 4
            sl[axis] = slice(k, k + IMAGE_SIZE)
            acc += w[:, k][:, None, None, None] * padded[tuple(sl)]
        out = acc
    return out


def render_scenes(scenes: Scenes, *, chunk: int = 2048) -> np.ndarray:
    """Render scenes to uint8 images of shape (n, 32, 32, 3); deterministic given ``scenes``."""
    n = len(scenes)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    noise_rng = np.random.default_rng(scenes.noise_seed)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(n, start + chunk))
        canvas = _background(scenes, idx).astype(np.float32)
        for slot in range(3):
            in_slot = idx[scenes.count[idx] > slot]
            if in_slot.size == 0:
                continue
            for s in np.unique(scenes.shape[in_slot]):
                sub = in_slot[scenes.shape[in_slot] == s]
                alpha = _object_alpha(scenes, sub, slot, int(s))[..., None]
                t = _texture_mix(scenes, sub, slot)[..., None]
                primary = scenes.rgb[sub][:, None, None, :]
                colour = primary * (1.0 - t) + (primary * np.float32(0.35)) * t
                local = sub - start
                canvas[local] = canvas[local] * (1.0 - alpha) + colour * alpha
        # shift: contrast, colour cast + brightness, blur, noise
        con = scenes.contrast[idx][:, None, None, None]
        canvas = (canvas - 128.0) * con + 128.0
        canvas = canvas * scenes.gain[idx][:, None, None, :] + scenes.offset[idx][:, None, None, None]
        canvas = _gaussian_blur(canvas, scenes.blur[idx])
        std = scenes.noise[idx]
        if np.any(std > 0):
            eps = noise_rng.standard_normal(canvas.shape, dtype=np.float32)
            canvas = canvas + eps * std[:, None, None, None]
        out[idx] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return out
