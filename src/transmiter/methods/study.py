"""A study job: every method row for one (dataset, setting, seed, pair), sharing stages and caches.

    transmiter method=study pair=synth_weak_to_strong dataset=synth_shapes setting=base2novel seed=1

Single-model methods (zero-shot, FT, Skip Tuning) run on the pair's source and target models; transfer
methods (EFT, TransMiter, TransMiter+) run on the pair. Each row gets its own results record. Because
stages are content-addressed, the source fine-tuning that TransMiter needs is the very run reported
in the "Skip Tuning <source>" row, trained once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import open_dict

from transmiter.methods.base import MethodResult

ROLES = ("source", "target")


class Study:
    def __init__(
        self,
        name: str,
        methods: Mapping[str, Any],
        single_model: Sequence[str] = (),
        transfer: Sequence[str] = (),
        roles: Sequence[str] = ROLES,
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
        self.name, self.methods = name, dict(methods)
        self.single_model, self.transfer, self.roles = list(single_model), list(transfer), list(roles)

    def __call__(self, ctx) -> list[MethodResult]:
        results = []
        for method_name in self.single_model:
            for role in self.roles:
                results.append(self._run(ctx.with_model(ctx.cfg.pair[role]), method_name, role))
        for method_name in self.transfer:
            results.append(self._run(ctx, method_name, "pair"))
        return results

    def _run(self, ctx, method_name: str, role: str) -> MethodResult:
        row_ctx = ctx.fresh_timings()
        with row_ctx.timed("total_s"):
            result = self.methods[method_name](row_ctx)
        result.method = result.method or method_name
        result.extra = {**result.extra, "role": role}
        result.timings = dict(row_ctx.timings)
        return result


def _copy_cfg_with_model(cfg, model_node):
    new = copy.deepcopy(cfg)
    with open_dict(new):
        new.model = copy.deepcopy(model_node)
    return new
