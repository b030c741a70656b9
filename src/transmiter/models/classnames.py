"""Class names as the protocol prompts them: underscores become spaces.

prompt_name("Apply_Eye_Makeup") -> "Apply Eye Makeup"
"""

from __future__ import annotations

from collections.abc import Iterable


def prompt_name(classname: str) -> str:
    """The name used inside a prompt: `_` -> space, surrounding whitespace stripped."""
    return classname.replace("_", " ").strip()


def fill_templates(classnames: Iterable[str], templates: Iterable[str]) -> list[list[str]]:
    """For each class, its prompts (one per template)."""
    templates = list(templates)
    return [[t.format(prompt_name(c)) for t in templates] for c in classnames]
