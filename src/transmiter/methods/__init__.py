"""Methods: each is a recipe named in `conf/method/*` (its `_target_`), called with the run context
and returning a `MethodResult`; trainable parts are LightningModules in the same package.

    method = instantiate(cfg.method)        # e.g. ZeroShot(templates="coop")
    result = method(ctx)                    # MethodResult(metrics={"base":..,"novel":..,"hm":..}, ...)
"""

from transmiter.methods.base import MethodResult

__all__ = ["MethodResult"]
