"""A study job: every method row for one (dataset, setting, seed, pair), sharing stages and caches.

    transmiter method=study pair=synth_weak_to_strong dataset=synth_shapes setting=base2novel seed=1

Single-model methods (zero-shot, FT, Skip Tuning) run on the pair's source and target models; transfer
methods (EFT and its variants, TransMiter, its diagnostic rows, TransMiter+) run on the pair. Each row gets its own results
record. Because stages are content-addressed, the source fine-tuning that TransMiter needs is the very
run reported in the "Skip Tuning <source>" (or "FT <source>", `source_finetuner: ft`) row, trained once.

Architectures Skip Tuning cannot split (a ResNet image tower such as RN50) never crash a study: their
Skip Tuning rows are not run (the job prints them with the reason and lists them under `not_run` in
job.json; no empty results record), and transfer rows
whose source fine-tuner is Skip Tuning fall back to the study's FT config for such a source, with the
notice logged and kept in the row's record (`extra.source_finetune_fallback`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from transmiter.methods.base import MethodResult
from transmiter.models.labels import node_label

ROLES = ("source", "target")
SOURCE_FINETUNERS = ("ft", "skip_tuning")
log = logging.getLogger("transmiter")


def skip_tuning_unsupported(model) -> str | None:
    """Why Skip Tuning cannot train `model` (an open_clip model, or a loaded bundle holding one, whose
    towers cannot be split at a block, e.g. RN50's ModifiedResNet), or None when it can."""
    from transmiter.models.towers import TowerSplitError, check_splittable

    try:
        check_splittable(getattr(model, "model", model))
    except TowerSplitError as err:
        return str(err)
    return None


def needs_tower_split(method: Any) -> bool:
    """Whether a fine-tuning recipe splits the towers (Skip Tuning; FT does not)."""
    return getattr(method, "kind", None) == "skip_tuning"


def source_finetune_plan(
    method: Any, source_unsupported: str | None, fallback: Any
) -> tuple[Any, str | None]:
    """(the fine-tuner a transfer row should use for its source, a notice when it is not the configured
    one). `source_unsupported`: why Skip Tuning cannot train the source (None: it can). Skip Tuning on
    such a source falls back to `fallback` (FT); with no fallback the fine-tuner is None (the row cannot
    run) and the notice says why."""
    configured = getattr(method, "source_finetune", None)
    if source_unsupported is None or not needs_tower_split(configured):
        return configured, None
    if fallback is None:
        return (
            None,
            f"Skip Tuning cannot fine-tune the source and the study has no FT config: {source_unsupported}",
        )
    return fallback, (
        f"source fine-tuning falls back from {getattr(configured, 'name', 'skip_tuning')} to "
        f"{getattr(fallback, 'name', 'ft')}: {source_unsupported}"
    )


class Study:
    def __init__(
        self,
        name: str,
        methods: Mapping[str, Any],
        single_model: Sequence[str] = (),
        transfer: Sequence[str] = (),
        roles: Sequence[str] = ROLES,
        source_finetuner: str = "skip_tuning",
    ):
        unknown = [m for m in [*single_model, *transfer] if m not in methods]
        if unknown:
            raise ValueError(
                f"method.single_model/transfer name {unknown}, not in method.methods "
                f"({', '.join(methods)}); add them under method.methods"
            )
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise ValueError(f"method.roles={list(roles)}: use a subset of {ROLES}")
        if source_finetuner not in SOURCE_FINETUNERS:
            raise ValueError(f"method.source_finetuner={source_finetuner!r}: use one of {SOURCE_FINETUNERS}")
        self.name, self.methods = name, dict(methods)
        self.single_model, self.transfer, self.roles = list(single_model), list(transfer), list(roles)
        self.source_finetuner = source_finetuner

    def __call__(self, ctx) -> list[MethodResult]:
        results = []
        reasons: dict[str, str | None] = {}

        def unsupported(role: str) -> str | None:  # checked once per role, only when a row needs it
            if role not in reasons:
                reasons[role] = skip_tuning_unsupported(ctx.load_model(ctx.cfg.pair[role]))
            return reasons[role]

        for method_name in self.single_model:
            for role in self.roles:
                method = self.methods[method_name]
                if needs_tower_split(method) and unsupported(role):
                    node = ctx.cfg.pair[role]
                    label = f"{getattr(method, 'row_name', method_name)} {node_label(node)}"
                    results.append(self._skipped(label, method_name, role, unsupported(role)))
                    continue
                results.extend(self._run_rows(ctx.with_model(ctx.cfg.pair[role]), method_name, role))
        fallback = next((m for m in self.methods.values() if getattr(m, "kind", None) == "ft"), None)
        for method_name in self.transfer:
            method = self.methods[method_name]
            splits = needs_tower_split(getattr(method, "source_finetune", None))
            finetuner, notice = source_finetune_plan(
                method, unsupported("source") if splits else None, fallback
            )
            if finetuner is None and notice:  # Skip Tuning impossible and no FT to fall back to
                label = method._row(ctx) if hasattr(method, "_row") else method_name
                results.append(self._skipped(label, method_name, "pair", notice))
                continue
            if notice:
                log.warning("%s: %s", method_name, notice)
                method = copy.copy(method)
                method.source_finetune = finetuner
            for result in self._run_rows(ctx, method_name, "pair", method):
                if notice:
                    result.extra = {**result.extra, "source_finetune_fallback": notice}
                results.append(result)
        return results

    def _run_rows(self, ctx, method_name: str, role: str, method: Any = None) -> list[MethodResult]:
        """The rows of one method (most give one; the TransMiter diagnostics several, each timed alone)."""
        row_ctx = ctx.fresh_timings()
        with row_ctx.timed("total_s"):
            outcome = (method or self.methods[method_name])(row_ctx)
        results = outcome if isinstance(outcome, list) else [outcome]
        for result in results:
            result.method = result.method or method_name
            result.extra = {**result.extra, "role": role}
            if len(results) == 1 or result.timings is None:
                result.timings = dict(row_ctx.timings)
        return results

    def _skipped(self, label: str, method_name: str, role: str, reason: str) -> MethodResult:
        """A row that cannot run here, marked `extra.skipped` with the reason: the job prints it and lists it
        in job.json, and writes no results record for it."""
        log.warning("%s: row skipped: %s", label, reason)
        return MethodResult(
            metrics={},
            row=label,
            method=getattr(self.methods[method_name], "name", None) or method_name,
            extra={"role": role, "skipped": reason},
            timings={"total_s": 0.0},
        )
