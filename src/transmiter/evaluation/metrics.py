"""Protocol metrics: micro top-1 accuracy in %, HM = 2BN/(B+N).

harmonic_mean(72.43, 68.14)                      -> 70.22
summarize_groups({"base": 80.0, "new": 70.0})    -> {"base": 80.0, "novel": 70.0, "hm": 74.67}
summarize_groups({"all": 81.2})                  -> {"base": 81.2}   (base-to-base reports one column)
"""

from __future__ import annotations

from collections.abc import Mapping


def harmonic_mean(base: float, novel: float) -> float:
    if base + novel <= 0:
        return 0.0
    return 2.0 * base * novel / (base + novel)


def summarize_groups(accuracies: Mapping[str, float]) -> dict[str, float]:
    """Turn per-group accuracies into the table's columns."""
    if "all" in accuracies:
        return {"base": float(accuracies["all"])}
    out = {"base": float(accuracies["base"]), "novel": float(accuracies["new"])}
    out["hm"] = harmonic_mean(out["base"], out["novel"])
    return out
