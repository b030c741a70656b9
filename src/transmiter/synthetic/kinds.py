"""Named kinds: the class-specific knowledge of the ``class_knowledge`` synthetic world.

Every (shape, colour) pair of the renderer is a *kind* with a name of its own, a single word such as
"robin" or "opal" (like a species or a car model). Nothing in a name says what the kind looks like: a model
knows that a robin is, say, an orange crescent only if pretraining captions called orange crescents robins
often enough. Pretraining names each kind at its own rate (:class:`KindNaming`), and some kinds are
usually called by the name of a look-alike kind, so zero-shot knowledge differs from class to class.

Usage::

    from transmiter.synthetic.kinds import FAMILIES, KINDS, KindNaming, caption_with_names
    KINDS[0]                       # Kind(name="robin", shape="circle", colour="red", family="birds")
    naming = KindNaming(rates=(0.2,) * len(KINDS))
    captions = caption_with_names(scenes, rng, naming, style="full")   # one caption per scene

The kinds fall into three families of 40 (4 shapes x 10 colours each), one per downstream benchmark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from transmiter.synthetic import captions as cap
from transmiter.synthetic.world import COLOURS, SHAPES, Scenes

#: family -> (its shapes, the names of its 40 kinds)
FAMILY_SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "birds": (
        ("circle", "triangle", "star", "crescent"),
        tuple(
            "robin finch wren sparrow heron crane egret stork ibis lark swallow falcon hawk eagle owl raven "
            "crow magpie dove pigeon parrot pelican gull tern puffin penguin duck swan quail grouse pheasant "
            "flamingo kiwi emu condor vulture warbler starling hummingbird kingfisher".split()
        ),
    ),
    "plants": (
        ("square", "cross", "heart", "hexagon"),
        tuple(
            "tulip daisy lily orchid iris poppy aster dahlia lilac jasmine clover thistle fern sage mint basil "
            "thyme fennel heather oak elm pine fir yew birch maple willow cedar beech alder hazel holly ivy moss "
            "reed bamboo palm aloe ginger lavender".split()
        ),
    ),
    "minerals": (
        ("diamond", "ring", "oval", "arrow"),
        tuple(
            "opal pearl ruby garnet quartz agate onyx jasper flint granite marble slate chalk mica nickel zinc "
            "iron steel salt clay sand gravel tar crystal emerald sapphire amethyst graphite carbon platinum "
            "chrome copper bronze brass tin jade amber coral ivory gold".split()
        ),
    ),
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_SPECS)
_COLOUR_NAMES = tuple(COLOURS)
#: look-alike colours: the two kinds of one shape and one of these colour pairs are a look-alike pair
COLOUR_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "orange"),
    ("yellow", "green"),
    ("cyan", "blue"),
    ("purple", "pink"),
    ("brown", "white"),
)
#: fixed permutation seed: which name goes with which look is arbitrary, but stable
_NAME_SEED = 7


@dataclass(frozen=True)
class Kind:
    """A named kind: one (shape, colour) look of the renderer. ``partner`` is its look-alike (same shape,
    the other colour of its colour pair); ``base``: whether the pair is a base class of its benchmark."""

    name: str
    shape: str
    colour: str
    family: str
    partner: str
    base: bool

    @property
    def plural(self) -> str:
        if self.name.endswith("y") and self.name[-2:-1] not in "aeiou":
            return self.name[:-1] + "ies"
        return self.name + ("es" if self.name.endswith(("s", "x", "ch", "sh")) else "s")


def _catalogue() -> tuple[Kind, ...]:
    """Kinds family by family, base pairs first: a pair (shape, colour pair) is base when its shape and
    colour-pair indices have an even sum, so each half of a benchmark holds every shape and every colour."""
    if sorted(c for pair in COLOUR_PAIRS for c in pair) != sorted(_COLOUR_NAMES):
        raise ValueError("COLOUR_PAIRS must pair up every colour exactly once")
    kinds = []
    rng = np.random.default_rng(_NAME_SEED)
    for family, (shapes, names) in FAMILY_SPECS.items():
        pairs = [(s, cp, (i + j) % 2 == 0) for i, s in enumerate(shapes) for j, cp in enumerate(COLOUR_PAIRS)]
        pairs.sort(key=lambda p: not p[2])  # base pairs first (stable)
        if len(names) != 2 * len(pairs) or len(set(names)) != len(names):
            raise ValueError(
                f"family {family!r} needs {2 * len(pairs)} distinct names, got {len(set(names))}"
            )
        shuffled = [names[i] for i in rng.permutation(len(names))]
        for n, (shape, (c1, c2), base) in enumerate(pairs):
            first, second = shuffled[2 * n], shuffled[2 * n + 1]
            kinds.append(Kind(first, shape, c1, family, second, base))
            kinds.append(Kind(second, shape, c2, family, first, base))
    if {(k.shape, k.colour) for k in kinds} != {(s, c) for s in SHAPES for c in _COLOUR_NAMES}:
        raise ValueError("the families must cover every (shape, colour) look exactly once")
    return tuple(kinds)


#: every kind, family by family, base pairs first (index = kind id)
KINDS: tuple[Kind, ...] = _catalogue()
KIND_BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
_KIND_ID = {k.name: i for i, k in enumerate(KINDS)}
#: kind id of each (shape index, colour index) look
_KIND_OF_LOOK = np.full((len(SHAPES), len(COLOURS)), -1, dtype=np.int64)
for _i, _k in enumerate(KINDS):
    _KIND_OF_LOOK[SHAPES.index(_k.shape), _COLOUR_NAMES.index(_k.colour)] = _i


def kind_ids(scenes: Scenes) -> np.ndarray:
    """Kind id of every scene (its objects' shape and colour)."""
    return _KIND_OF_LOOK[scenes.shape, scenes.colour]


def family_kinds(family: str) -> tuple[Kind, ...]:
    if family not in FAMILY_SPECS:
        raise KeyError(f"unknown family {family!r}; known: {FAMILIES}")
    return tuple(k for k in KINDS if k.family == family)


@dataclass(frozen=True)
class KindNaming:
    """How pretraining captions name the kinds.

    ``rates[k]``: probability that a caption of a scene of kind ``k`` names it (else the caption describes
    colour and shape as usual). ``misnomers``: ``(kind, other, p)`` triples; when kind ``kind`` is named,
    the name of kind ``other`` is used with probability ``p`` (a systematic misnomer for p > 0.5).
    """

    rates: tuple[float, ...]
    misnomers: tuple[tuple[int, int, float], ...] = ()

    def __post_init__(self) -> None:
        if len(self.rates) != len(KINDS) or not all(0.0 <= r <= 1.0 for r in self.rates):
            raise ValueError(f"KindNaming.rates must be {len(KINDS)} probabilities, one per kind")
        seen = set()
        for item in self.misnomers:
            if len(item) != 3:
                raise ValueError(f"KindNaming.misnomers items are (kind, other, p), got {item}")
            k, j, p = item
            if not (0 <= k < len(KINDS) and 0 <= j < len(KINDS) and k != j and 0.0 <= p <= 1.0):
                raise ValueError(f"KindNaming.misnomers: invalid item {item}")
            if k in seen:
                raise ValueError(f"KindNaming.misnomers: kind {k} listed twice")
            seen.add(k)

    def to_dict(self) -> dict[str, Any]:
        return {"rates": list(self.rates), "misnomers": [list(m) for m in self.misnomers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KindNaming:
        return cls(
            rates=tuple(float(r) for r in data["rates"]),
            misnomers=tuple((int(k), int(j), float(p)) for k, j, p in data.get("misnomers", ())),
        )

    def replace(self, **changes: Any) -> KindNaming:
        return dataclasses.replace(self, **changes)

    def name_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rate per kind, misnomer target per kind (-1: none), misnomer probability per kind)."""
        rate = np.asarray(self.rates, dtype=np.float64)
        other = np.full(len(KINDS), -1, dtype=np.int64)
        p_other = np.zeros(len(KINDS), dtype=np.float64)
        for k, j, p in self.misnomers:
            other[k], p_other[k] = j, p
        return rate, other, p_other


def _named_caption(attrs: Mapping[str, Any], kind: Kind, rng: np.random.Generator, style: str) -> str:
    """A caption that calls the objects by their kind's name instead of their colour and shape."""
    count = int(attrs["count"])
    noun = kind.name if count == 1 else kind.plural
    frames = [f for f, _ in cap.FRAMES]
    weights = np.array([w for _, w in cap.FRAMES])
    if style == "short":
        quantifier = cap._article(noun) if count == 1 else cap.COUNT_WORDS[count][0]
        frame = frames[int(rng.choice(len(frames), p=weights / weights.sum()))]
        text = frame.format(f"{quantifier} {noun}")
        return text + "." if rng.random() < cap.P_PERIOD else text
    adjectives: list[str] = []
    if rng.random() < cap.P_SIZE:
        adjectives.append(cap._pick(rng, cap.SIZE_WORDS[attrs["size"]]))
    texture = attrs["texture"]
    if texture != "solid" and rng.random() < cap.P_TEXTURE:
        adjectives.append(cap._pick(rng, cap.TEXTURE_WORDS[texture]))
    words = [*adjectives, noun]
    quantifier = cap._pick(rng, cap.COUNT_WORDS[count])
    if quantifier == "a":
        quantifier = cap._article(words[0])
    phrase = quantifier + " " + " ".join(words)
    tail = []
    if attrs.get("position") and rng.random() < cap.P_POSITION:
        tail.append(cap._pick(rng, cap.POSITION_PHRASES[attrs["position"]]))
    if rng.random() < cap.P_BACKGROUND:
        pattern = cap._pick(rng, cap.BG_PATTERN_WORDS[attrs["bg_pattern"]])
        tail.append(f"on {cap._article(pattern)} {pattern} {attrs['bg_colour']} background")
    frame = frames[int(rng.choice(len(frames), p=weights / weights.sum()))]
    text = " ".join([frame.format(phrase), *tail])
    return text + "." if rng.random() < cap.P_PERIOD else text


def caption_with_names(
    scenes: Scenes, rng: np.random.Generator, naming: KindNaming, style: str = "full"
) -> list[str]:
    """One caption per scene: named by its kind (or a misnomer) at the kind's rate, else the usual
    colour-and-shape caption of ``style`` ("full" or "short")."""
    if style not in ("full", "short"):
        raise ValueError(f"caption style must be 'full' or 'short', got {style!r}")
    ids = kind_ids(scenes)
    rate, other, p_other = naming.name_table()
    named = rng.random(len(ids)) < rate[ids]
    swap = rng.random(len(ids)) < p_other[ids]
    plain = cap.caption_scene if style == "full" else cap.short_caption
    out = []
    for i, k in enumerate(ids.tolist()):
        attrs = scenes.attributes(i)
        if named[i]:
            used = int(other[k]) if swap[i] and other[k] >= 0 else k
            out.append(_named_caption(attrs, KINDS[used], rng, style))
        else:
            out.append(plain(attrs, rng))
    return out


def kind_ids_of(names: Sequence[str]) -> list[int]:
    """Kind ids of kind names (KeyError naming the unknown ones)."""
    missing = [n for n in names if n not in _KIND_ID]
    if missing:
        raise KeyError(f"unknown kind names {missing}")
    return [_KIND_ID[n] for n in names]


#: what pretraining knows about each kind, per benchmark half of 10 look-alike pairs (20 kinds):
#: CONFUSED pairs whose looks captions call by one name (one kind of the pair is misnamed), RARE kinds
#: named only a handful of times, and the rest named often enough to be learnt (see class_knowledge_naming)
CONFUSED_PAIRS_PER_HALF = 4
RARE_KINDS_PER_HALF = 3
KNOWN_RATES = (0.02, 0.4)  # log-uniform range of naming rates of the kinds pretraining teaches
RARE_RATES = (0.003, 0.008)  # a handful of named captions in the whole pretraining run
MISNOMER_P = 0.85  # when a misnamed kind is named, its partner's name is used
_KNOWLEDGE_SEED = 3


def knowledge_categories() -> dict[str, str]:
    """Kind name -> "known", "rare" or "misnamed" (what the class_knowledge world's pretraining teaches)."""
    rng = np.random.default_rng(_KNOWLEDGE_SEED)
    out: dict[str, str] = {}
    for family in FAMILIES:
        for base in (True, False):
            half = [k for k in family_kinds(family) if k.base == base]
            pairs = [half[i : i + 2] for i in range(0, len(half), 2)]
            order = rng.permutation(len(pairs))
            confused, others = order[:CONFUSED_PAIRS_PER_HALF], order[CONFUSED_PAIRS_PER_HALF:]
            for p in confused:
                wrong = int(rng.integers(2))
                out[pairs[p][wrong].name] = "misnamed"
                out[pairs[p][1 - wrong].name] = "known"
            rest = [k for p in others for k in pairs[p]]
            rare = set(rng.choice(len(rest), RARE_KINDS_PER_HALF, replace=False).tolist())
            for i, k in enumerate(rest):
                out[k.name] = "rare" if i in rare else "known"
    return out


def class_knowledge_naming() -> KindNaming:
    """The class_knowledge world's pretraining names: known kinds at rates log-uniform in KNOWN_RATES,
    rare ones in RARE_RATES, misnamed ones at known rates but mostly under their partner's name."""
    rng = np.random.default_rng(_KNOWLEDGE_SEED + 1)
    categories = knowledge_categories()
    rates, misnomers = [], []
    for i, kind in enumerate(KINDS):
        low, high = RARE_RATES if categories[kind.name] == "rare" else KNOWN_RATES
        rates.append(round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 5))
        if categories[kind.name] == "misnamed":
            misnomers.append((i, _KIND_ID[kind.partner], MISNOMER_P))
    return KindNaming(rates=tuple(rates), misnomers=tuple(misnomers))
