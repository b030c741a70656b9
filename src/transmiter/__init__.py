"""transmiter: adapt CLIP-style models and transfer the adaptation from a weak model to a strong one.

The library API on logit tensors (see `transmiter.api`):

    import transmiter
    adapter = transmiter.fit_adapter(source_zs_logits, source_ft_logits, num_classes=C, seed=1)
    moved = transmiter.transfer_adapter(adapter, source_zs_logits, target_zs_logits, lam=500.0)
    refined = transmiter.refine_adapter(moved, target_logits, labels, class_columns=base_ids)
    scores = moved(target_test_logits)[:, :C]

Importing the package is cheap: these names load `transmiter.api` (and torch) on first use.
"""

__version__ = "0.1.0"

_API = ("LogitAdapter", "default_settings", "fit_adapter", "refine_adapter", "transfer_adapter")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from transmiter import api

        return getattr(api, name)
    raise AttributeError(f"module 'transmiter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
