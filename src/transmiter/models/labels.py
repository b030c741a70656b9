"""How a model is named in rows, reports and trackers (light: no torch, so reports can use it).

    model_label("ViT-B-16", "ViT-B-16", "openai")   # 'ViT-B-16'
    model_label("ViT-B-16", "ViT-B-16", None)       # 'ViT-B-16 (random init)'
    node_label(cfg.pair.source)                     # the same from a model config node or dict

A random-init model must never read like the pretrained one of the same architecture: its label says so,
unless its name already does (e.g. `tiny-random`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RANDOM_INIT = "random init"


def is_random_init(pretrained: Any) -> bool:
    return pretrained in (None, "", "none", "None")


def model_label(name: str | None, arch: str, pretrained: Any) -> str:
    base = str(name or arch)
    if is_random_init(pretrained) and "random" not in base.lower():
        return f"{base} ({RANDOM_INIT})"
    return base


def node_label(node: Mapping[str, Any] | Any) -> str | None:
    """The label of a model config node (DictConfig or plain dict); None without an architecture. A node
    that does not say what it was initialised from (no `pretrained` key) is not taken for random init."""
    if not node or not node.get("arch"):
        return None
    pretrained = node.get("pretrained") if "pretrained" in node else "unknown"
    return model_label(node.get("name"), str(node.get("arch")), pretrained)
