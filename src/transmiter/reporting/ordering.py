"""Canonical row orders for result tables and plots, with an alphabetical fallback.

Methods follow the paper's order: Zero-shot weak, Zero-shot strong, FT weak, Skip Tuning weak,
FT strong, Skip Tuning strong, EFT (then its variants: base-change, ensemble, self-ensemble),
TransMiter, TransMiter+; anything else comes after them, alphabetically by row label. The family is read from the record's `method` (config name) first and
from its `row` label when the config name does not tell; weak/strong from either ("weak"/"source",
"strong"/"target" as words).

    sorted(rows, key=lambda r: method_sort_key(r.method_name, r.method))
    method_family("transmiter_plus")            -> "transmiter+"
    eft_variant("eft_self_ensemble")            -> "self_ensemble"
    method_sort_key("zeroshot", "Zero-shot synth-weak") < method_sort_key("finetune", "FT synth-weak")
    setting_sort_key("base2novel") < setting_sort_key("base2base")
"""

from __future__ import annotations

import re

SETTING_ORDER = ("base2novel", "base2base", "fewshot", "cross_dataset", "domain_generalization")
DATASET_ORDER = (  # CoOp / CoCoOp paper order, then the ImageNet variants (domain generalisation)
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Flowers102",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "DTD",
    "EuroSAT",
    "UCF101",
    "ImageNetV2",
    "ImageNetSketch",
    "ImageNetA",
    "ImageNetR",
)
# Rank of (family, strength); strength None = not recognised, placed after that family's known rows.
METHOD_RANKS: dict[tuple[str, str | None], float] = {
    ("zeroshot", "weak"): 0,
    ("zeroshot", "strong"): 1,
    ("zeroshot", None): 1.5,
    ("ft", "weak"): 2,
    ("skip", "weak"): 3,
    ("ft", "strong"): 4,
    ("skip", "strong"): 5,
    ("ft", None): 5.3,
    ("skip", None): 5.6,
    ("eft", None): 6,
    ("transmiter", None): 7,
    ("transmiter+", None): 8,
}
# EFT-family rows after plain EFT, in the reference's `eval_baseline_table` order (offsets < 1).
EFT_VARIANT_RANKS = {"eft": 0.0, "base_change": 0.1, "ensemble": 0.2, "self_ensemble": 0.3}
UNKNOWN_RANK = 100.0
# Diagnostic rows (record `extra.diagnostic`), shown apart from the methods, in this order.
DIAGNOSTIC_ORDER = ("source", "no_rotation", "target_oracle")
WEAK_WORDS = frozenset({"weak", "source", "src"})
STRONG_WORDS = frozenset({"strong", "target", "tgt"})


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9+]+", text.lower()) if w]


def method_family(text: str | None) -> str | None:
    """'zeroshot' | 'ft' | 'skip' | 'eft' | 'transmiter' | 'transmiter+' | None for a name or label."""
    if not text:
        return None
    lowered = text.lower().replace("+", "plus")
    compact = re.sub(r"[^a-z0-9]", "", lowered)
    words = _words(lowered)
    if "transmiterplus" in compact:
        return "transmiter+"
    if "transmiter" in compact:
        return "transmiter"
    if "eft" in words or compact.startswith("eft"):
        return "eft"
    if "skip" in compact:  # skip_tuning, Skip Tuning, lskip, cskip
        return "skip"
    if "zeroshot" in compact or words[:1] == ["zs"] or compact == "clip":
        return "zeroshot"
    if "finetun" in compact or "ft" in words or "fullft" in compact:
        return "ft"
    return None


def eft_variant(*texts: str | None) -> str:
    """'base_change' | 'ensemble' | 'self_ensemble' from the first text naming one, else 'eft'."""
    for text in texts:
        compact = re.sub(r"[^a-z0-9]", "", (text or "").lower())
        if "basechange" in compact:
            return "base_change"
        if "selfensemble" in compact:
            return "self_ensemble"
        if "ensemble" in compact:
            return "ensemble"
    return "eft"


def model_strength(*texts: str | None) -> str | None:
    """'weak' | 'strong' from the first text naming exactly one of them as a word, else None."""
    for text in texts:
        words = set(_words(text or ""))
        weak, strong = bool(words & WEAK_WORDS), bool(words & STRONG_WORDS)
        if weak != strong:
            return "weak" if weak else "strong"
    return None


def method_sort_key(method: str | None, row: str) -> tuple[float, str]:
    """Sort key of a table row from its config name (`method`) and its label (`row`)."""
    family = method_family(method) or method_family(row)
    if family is None:
        return (UNKNOWN_RANK, row.lower())
    strength = model_strength(method, row) if family in ("zeroshot", "ft", "skip") else None
    rank = METHOD_RANKS[(family, strength)]
    if family == "eft":
        rank += EFT_VARIANT_RANKS[eft_variant(method, row)]
    return (rank, row.lower())


def diagnostic_sort_key(kind: str, row: str) -> tuple[int, str]:
    """Known diagnostics in DIAGNOSTIC_ORDER, then any other kind by label."""
    rank = DIAGNOSTIC_ORDER.index(kind) if kind in DIAGNOSTIC_ORDER else len(DIAGNOSTIC_ORDER)
    return (rank, row.lower())


def setting_sort_key(setting: str) -> tuple[int, str]:
    return (SETTING_ORDER.index(setting) if setting in SETTING_ORDER else len(SETTING_ORDER), setting)


def dataset_sort_key(dataset: str) -> tuple[int, str]:
    """Paper order for the CoOp datasets, then the others alphabetically; the Average row last."""
    if dataset == "Average":
        return (len(DATASET_ORDER) + 1, "")
    if dataset in DATASET_ORDER:
        return (DATASET_ORDER.index(dataset), dataset)
    return (len(DATASET_ORDER), dataset.lower())
