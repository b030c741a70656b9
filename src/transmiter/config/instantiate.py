"""The one place that turns config nodes into objects (Hydra's `instantiate`, converting every
OmegaConf container to plain Python).

    spec = instantiate(cfg.model)                       # -> ModelSpec
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate as _hydra_instantiate


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate with `_convert_="all"`: objects and checkpoints hold plain dicts and lists,
    never OmegaConf containers (which pickle with their whole parent config and break weights-only loads)."""
    return _hydra_instantiate(node, _convert_="all", **kwargs)
