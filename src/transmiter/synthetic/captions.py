"""Natural-language captions for synthetic scenes, and a parser that reads the attributes back.

Captions vary in framing ("a photo of ...", "there is ...", "... on a dotted navy background"), in which
attributes they mention (the shape always; colour, size, texture, background and position only sometimes),
in adjective order and in trailing punctuation, e.g.::

    a small red striped star on a dotted navy background
    two blue circles.
    a photo of a checkered green hexagon in the top left corner
    a beige background with three small yellow hearts

Every mentioned attribute agrees with the scene; :func:`parse_caption` recovers them (tests use it). The
captions fit in the 24-token context of the synthetic models (checked by the tests).

Usage::

    from transmiter.synthetic.captions import caption_scene, caption_scenes, parse_caption
    captions = caption_scenes(scenes, rng)     # one per scene
    parse_caption(captions[0])                 # {"shape": "star", "colour": "red", ...}
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from transmiter.synthetic.world import (
    BG_COLOURS,
    COLOURS,
    SHAPES,
    Scenes,
)

PLURALS: dict[str, str] = {s: s + "s" for s in SHAPES} | {"cross": "crosses"}

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "mid-sized"),
    "large": ("large", "big"),
}
TEXTURE_WORDS: dict[str, tuple[str, ...]] = {
    "solid": ("solid",),
    "striped": ("striped",),
    "dotted": ("dotted", "spotted"),
    "checkered": ("checkered",),
}
BG_PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain",),
    "striped": ("striped",),
    "dotted": ("dotted", "spotted"),
    "checkered": ("checkered",),
    "gradient": ("gradient",),
    "grid": ("grid",),
}
COUNT_WORDS: dict[int, tuple[str, ...]] = {
    1: ("a", "one", "a single"),
    2: ("two", "a pair of"),
    3: ("three",),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "at the top left"),
    "top": ("at the top",),
    "top right": ("in the top right corner", "at the top right"),
    "left": ("on the left",),
    "center": ("in the center", "in the middle"),
    "right": ("on the right",),
    "bottom left": ("in the bottom left corner", "at the bottom left"),
    "bottom": ("at the bottom",),
    "bottom right": ("in the bottom right corner", "at the bottom right"),
}
FRAMES: tuple[tuple[str, float], ...] = (
    ("{}", 0.30),
    ("a photo of {}", 0.30),
    ("an image of {}", 0.08),
    ("a picture of {}", 0.08),
    ("there is {}", 0.08),
    ("a rendering of {}", 0.04),
    ("a close-up of {}", 0.04),
    ("a drawing of {}", 0.04),
)

#: probabilities that an attribute is mentioned
P_COLOUR = 0.9
P_SIZE = 0.35
P_TEXTURE = 0.8  # non-solid textures
P_SOLID = 0.12
P_BACKGROUND = 0.5
P_POSITION = 0.3
P_PERIOD = 0.5

_VOWELS = tuple("aeiou")


def _article(word: str) -> str:
    return "an" if word.startswith(_VOWELS) else "a"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))] if len(options) > 1 else options[0]


def caption_scene(attrs: dict[str, Any], rng: np.random.Generator) -> str:
    """One caption for a scene given its named attributes (as :meth:`Scenes.attributes` returns them)."""
    count = int(attrs["count"])
    adjectives: list[str] = []
    if rng.random() < P_SIZE:
        adjectives.append(_pick(rng, SIZE_WORDS[attrs["size"]]))
    colour = attrs["colour"] if rng.random() < P_COLOUR else None
    texture = attrs["texture"]
    tex_word = None
    if (texture != "solid" and rng.random() < P_TEXTURE) or (texture == "solid" and rng.random() < P_SOLID):
        tex_word = _pick(rng, TEXTURE_WORDS[texture])
    if colour and tex_word:
        adjectives += [colour, tex_word] if rng.random() < 0.5 else [tex_word, colour]
    elif colour:
        adjectives.append(colour)
    elif tex_word:
        adjectives.append(tex_word)
    noun = attrs["shape"] if count == 1 else PLURALS[attrs["shape"]]
    words = adjectives + [noun]
    quantifier = _pick(rng, COUNT_WORDS[count])
    if quantifier == "a":
        quantifier = _article(words[0])
    phrase = quantifier + " " + " ".join(words)

    position = None
    if attrs.get("position") and rng.random() < P_POSITION:
        position = _pick(rng, POSITION_PHRASES[attrs["position"]])

    background = None
    bg_prefix = False
    if rng.random() < P_BACKGROUND:
        mode = int(rng.integers(3))  # 0 pattern only, 1 colour only, 2 both
        pat = _pick(rng, BG_PATTERN_WORDS[attrs["bg_pattern"]])
        col = attrs["bg_colour"]
        if mode == 0:
            bg_words = pat
        elif mode == 1:
            bg_words = col
        else:
            bg_words = f"{pat} {col}" if rng.random() < 0.7 else f"{col} {pat}"
        noun_bg = "background" if rng.random() < 0.8 else "backdrop"
        bg_prefix = rng.random() < 0.15
        if bg_prefix:
            background = f"{_article(bg_words)} {bg_words} {noun_bg} with"
        else:
            prep = "on" if rng.random() < 0.75 else "against"
            background = f"{prep} {_article(bg_words)} {bg_words} {noun_bg}"

    if bg_prefix:
        text = f"{background} {phrase}"
        if position:
            text += f" {position}"
    else:
        frames = [f for f, _ in FRAMES]
        weights = np.array([w for _, w in FRAMES])
        frame = frames[int(rng.choice(len(frames), p=weights / weights.sum()))]
        core = frame.format(phrase)
        tail = [t for t in (position, background) if t]
        if len(tail) == 2 and rng.random() < 0.5:
            tail.reverse()
        text = " ".join([core, *tail])
    if rng.random() < P_PERIOD:
        text += "."
    return text


def short_caption(attrs: dict[str, Any], rng: np.random.Generator) -> str:
    """A frame around "<count> <colour> <shape>", e.g. "a photo of a red star" or "two blue circles"."""
    count = int(attrs["count"])
    noun = attrs["shape"] if count == 1 else PLURALS[attrs["shape"]]
    quantifier = _article(attrs["colour"]) if count == 1 else COUNT_WORDS[count][0]
    frames = [f for f, _ in FRAMES]
    weights = np.array([w for _, w in FRAMES])
    frame = frames[int(rng.choice(len(frames), p=weights / weights.sum()))]
    text = frame.format(f"{quantifier} {attrs['colour']} {noun}")
    return text + "." if rng.random() < P_PERIOD else text


def caption_scenes(scenes: Scenes, rng: np.random.Generator, style: str = "full") -> list[str]:
    """One caption per scene, drawn with ``rng``; ``style`` is "full" (:func:`caption_scene`) or "short"
    (:func:`short_caption`)."""
    if style not in ("full", "short"):
        raise ValueError(f"caption style must be 'full' or 'short', got {style!r}")
    make = caption_scene if style == "full" else short_caption
    return [make(scenes.attributes(i), rng) for i in range(len(scenes))]


# ---------------------------------------------------------------------------------------------------------
# parsing (for tests and sanity checks)

_BG_SUFFIX = re.compile(r"(?:on|against) an? ([a-z -]+?) (?:background|backdrop)")
_BG_PREFIX = re.compile(r"^an? ([a-z -]+?) (?:background|backdrop) with ")


def _invert(table: dict[Any, tuple[str, ...]]) -> dict[str, Any]:
    return {w: k for k, words in table.items() for w in words}


_SIZE_LOOKUP = _invert(SIZE_WORDS)
_TEXTURE_LOOKUP = _invert(TEXTURE_WORDS)
_BG_PATTERN_LOOKUP = _invert(BG_PATTERN_WORDS)
_POSITION_LOOKUP = sorted(
    ((p, k) for k, phrases in POSITION_PHRASES.items() for p in phrases), key=lambda x: -len(x[0])
)
_SHAPE_LOOKUP = {s: (s, 1) for s in SHAPES} | {p: (s, 2) for s, p in PLURALS.items()}


def parse_caption(text: str) -> dict[str, Any]:
    """Attributes mentioned in a caption produced by :func:`caption_scene`.

    Returns a dict with some of ``shape, colour, size, texture, bg_pattern, bg_colour, count, position``;
    ``count`` is 1 for a singular noun unless a number word says otherwise. Raises ``ValueError`` when no
    shape is found.
    """
    t = text.lower().strip().rstrip(".")
    out: dict[str, Any] = {}
    bg_words: list[str] = []
    m = _BG_PREFIX.search(t)
    if m:
        bg_words = m.group(1).split()
        t = t[: m.start()] + t[m.end() :]
    else:
        m = _BG_SUFFIX.search(t)
        if m:
            bg_words = m.group(1).split()
            t = t[: m.start()] + t[m.end() :]
    for w in bg_words:
        if w in BG_COLOURS:
            out["bg_colour"] = w
        elif w in _BG_PATTERN_LOOKUP:
            out["bg_pattern"] = _BG_PATTERN_LOOKUP[w]
        else:
            raise ValueError(f"unknown background word {w!r} in {text!r}")
    for phrase, pos in _POSITION_LOOKUP:
        if phrase in t:
            out["position"] = pos
            t = t.replace(phrase, " ")
            break
    words = t.split()
    for w in words:
        if w in _SHAPE_LOOKUP:
            out["shape"], plural = _SHAPE_LOOKUP[w]
            out.setdefault("count", 1 if plural == 1 else None)
        elif w in COLOURS:
            out["colour"] = w
        elif w in _SIZE_LOOKUP:
            out["size"] = _SIZE_LOOKUP[w]
        elif w in _TEXTURE_LOOKUP:
            out["texture"] = _TEXTURE_LOOKUP[w]
        elif w in ("two", "pair"):
            out["count"] = 2
        elif w == "three":
            out["count"] = 3
        elif w in ("one", "single"):
            out["count"] = 1
    if "shape" not in out:
        raise ValueError(f"no shape in caption {text!r}")
    if out.get("count") is None:
        out.pop("count", None)
    return out
