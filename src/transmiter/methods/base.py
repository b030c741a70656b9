"""The contract between a method recipe and the application.

A recipe is any callable `recipe(ctx: RunContext) -> MethodResult`. The application composes the
config, validates it, builds the context, calls the recipe and writes the results record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MethodResult:
    metrics: dict[str, float]  # base / novel / hm (base2novel) or base (base2base), in %
    row: str  # the method's label in result tables, e.g. "Zero-shot (synth-weak)"
    models: dict[str, str] = field(default_factory=dict)  # role -> model identity
    splits: dict[str, str] = field(default_factory=dict)  # group -> split identity hash
    protocol: str = "coop-separate"  # which base/novel protocol produced the numbers
    costs: dict[str, float] = field(default_factory=dict)  # params, FLOPs per image, ...
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path of files it produced
    extra: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] | None = None  # per-row wall times (study jobs); else the run's
    method: str | None = None  # the method's config name when it differs from cfg.method.name (studies)

    @property
    def slug(self) -> str:
        """A folder-safe name of the row."""
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.row).strip("_")
