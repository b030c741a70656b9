"""Auxiliary class expansion: pad the C task class names to K logits with auxiliary names.

The TransMiter adapter acts on a K-dimensional logit vector: the C task classes first (class-index
order), then K - C auxiliary names scored with the same template. The auxiliary outputs are never
supervised; they fix the dimension and give source and target models a shared context. Source and
target MUST therefore use the identical names in the identical order: select them once, store them
in the adapter artifact (``transmiter.transfer.artifact``) and reuse them.

    from transmiter.transfer.vocabulary import select_auxiliary_names
    aux = select_auxiliary_names(splits.classnames, K=1024, seed=1)       # list of K - C names
    head_names = list(splits.classnames) + aux                            # row order of the head

Vocabulary
    * default: ``aux_vocabulary.txt`` next to this module, a project-authored list of concrete
      object / scene / material names (lower-case, one per line, no duplicates);
    * any user file: one name per line (blank lines and ``#`` comments skipped), or a CSV with a
      ``ClassName`` column (the OpenImages class-name table used by the reference code);
    * or an in-memory sequence of names.

Selection ("random", the reference strategy)
    names equal to a task class name are removed (case-, underscore- and whitespace-insensitive),
    duplicates are dropped (first spelling kept), the remainder is sorted with Python's ``sorted``
    and ``random.Random(seed).sample(candidates, K - C)`` draws the names. With a duplicate-free
    file whose names differ from the class names exactly, this equals the reference's
    ``random.seed(seed); random.sample(sorted(names), K - C)``.

Other strategies can be added with :func:`register_aux_strategy` without touching callers.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path

__all__ = [
    "DEFAULT_VOCABULARY_FILE",
    "AuxiliaryVocabularyError",
    "AuxStrategy",
    "available_aux_strategies",
    "grown_total_dim",
    "load_vocabulary",
    "normalize_name",
    "register_aux_strategy",
    "select_auxiliary_names",
]

DEFAULT_VOCABULARY_FILE = "aux_vocabulary.txt"
K_MULTIPLE = 64


class AuxiliaryVocabularyError(ValueError):
    """Raised when the auxiliary names cannot be selected as asked (the message names the fix)."""


def normalize_name(name: str) -> str:
    """Comparison key for class names: lower-case, underscores as spaces, single spaces."""
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().lower()


# --------------------------------------------------------------------------------------------
# vocabulary loading
# --------------------------------------------------------------------------------------------
def _parse_names(text: str, *, source: str, column: str) -> list[str]:
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    header = [c.strip().strip('"') for c in first.split(",")]
    if column in header or source.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if column not in fields:
            raise AuxiliaryVocabularyError(
                f"vocabulary CSV {source!r} has no column {column!r} (columns: {fields}); "
                f"fix: pass column=<name of the column that holds the class names>"
            )
        names = []
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            value = (row.get(column) or "").strip()
            if value:
                names.append(value)
        return names
    names = []
    for ln in lines:
        s = ln.strip()
        if s and not s.startswith("#"):
            names.append(s)
    return names


def load_vocabulary(
    vocabulary: str | Path | Sequence[str] | None = None, *, column: str = "ClassName"
) -> list[str]:
    """Names in file order (not yet deduplicated, filtered or sorted).

    ``None`` -> the packaged default list; a path -> that file (plain list or CSV with ``column``);
    a sequence of strings -> those names.
    """
    if vocabulary is None:
        text = resources.files("transmiter.transfer").joinpath(DEFAULT_VOCABULARY_FILE).read_text("utf-8")
        return _parse_names(text, source=DEFAULT_VOCABULARY_FILE, column=column)
    if isinstance(vocabulary, str | Path):
        path = Path(vocabulary).expanduser()
        if not path.is_file():
            raise AuxiliaryVocabularyError(
                f"auxiliary vocabulary file not found: {str(path)!r}; fix: give an existing file "
                f"(one name per line, or a CSV with a {column!r} column), or None for the default list"
            )
        return _parse_names(path.read_text("utf-8"), source=str(path), column=column)
    names = [str(n).strip() for n in vocabulary]
    return [n for n in names if n]


def _candidates(names: Iterable[str], task_classnames: Sequence[str]) -> list[str]:
    """Drop task names and duplicates (normalised comparison), then sort (Python ``sorted``)."""
    excluded = {normalize_name(c) for c in task_classnames}
    seen: set[str] = set()
    kept: list[str] = []
    for name in names:
        key = normalize_name(name)
        if not key or key in excluded or key in seen:
            continue
        seen.add(key)
        kept.append(name)
    return sorted(kept)


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------
AuxStrategy = Callable[[list[str], int, int, Sequence[str]], list[str]]
"""(sorted candidates, number to pick, seed, task class names) -> picked names (ordered)."""

_STRATEGIES: dict[str, AuxStrategy] = {}


def register_aux_strategy(name: str) -> Callable[[AuxStrategy], AuxStrategy]:
    """Decorator adding a selection strategy under ``name`` (e.g. a future "hard_negative")."""

    def deco(fn: AuxStrategy) -> AuxStrategy:
        if name in _STRATEGIES:
            raise ValueError(f"auxiliary strategy {name!r} is already registered")
        _STRATEGIES[name] = fn
        return fn

    return deco


def available_aux_strategies() -> list[str]:
    return sorted(_STRATEGIES)


@register_aux_strategy("random")
def _random_strategy(candidates: list[str], n: int, seed: int, task_classnames: Sequence[str]) -> list[str]:
    del task_classnames
    return random.Random(seed).sample(candidates, n)


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------
def grown_total_dim(num_classes: int, min_aux: int, multiple: int = K_MULTIPLE) -> int:
    """Smallest multiple of ``multiple`` that is >= num_classes + min_aux."""
    need = num_classes + max(min_aux, 1)
    return -(-need // multiple) * multiple


def select_auxiliary_names(
    task_classnames: Sequence[str],
    K: int,
    seed: int,
    vocabulary: str | Path | Sequence[str] | None = None,
    strategy: str = "random",
    *,
    grow_k: bool = False,
    min_aux: int = 64,
    column: str = "ClassName",
) -> list[str]:
    """Pick the K - C auxiliary names for ``task_classnames`` (C names). Deterministic in ``seed``.

    If C >= K this raises, unless ``grow_k=True``: then K becomes the smallest multiple of 64 that
    is >= C + ``min_aux`` (the returned list's length tells the caller the final K - C).
    """
    C = len(task_classnames)
    if K <= 0:
        raise AuxiliaryVocabularyError(f"K (total logit dimension) must be positive, got K={K}")
    if C >= K:
        if not grow_k:
            raise AuxiliaryVocabularyError(
                f"the task has C={C} classes but the total logit dimension is K={K}; K must be larger "
                f"than C. Fix: raise K (e.g. K={grown_total_dim(C, min_aux)}), or pass grow_k=True to "
                f"round K up to the next multiple of {K_MULTIPLE} above C + min_aux"
            )
        K = grown_total_dim(C, min_aux)
    if strategy not in _STRATEGIES:
        raise AuxiliaryVocabularyError(
            f"unknown auxiliary strategy {strategy!r}; available: {available_aux_strategies()}"
        )
    candidates = _candidates(load_vocabulary(vocabulary, column=column), task_classnames)
    n = K - C
    if n > len(candidates):
        raise AuxiliaryVocabularyError(
            f"need K-C={n} auxiliary names (K={K}, C={C}) but the vocabulary offers only "
            f"{len(candidates)} after removing task names and duplicates; fix: lower K or use a "
            f"larger vocabulary file"
        )
    picked = _STRATEGIES[strategy](candidates, n, seed, task_classnames)
    if len(picked) != n or len({normalize_name(p) for p in picked}) != n:
        raise AuxiliaryVocabularyError(
            f"strategy {strategy!r} returned {len(picked)} names ({n} distinct names expected)"
        )
    return list(picked)
