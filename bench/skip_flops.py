"""FLOPs of one Skip Tuning epoch against one FT epoch, per training image: the bound on the time ratio that
skipping computation can give (what the ratio would be if every FLOP took the same time).

    from bench.skip_flops import skip_flop_bound
    bound = skip_flop_bound("ViT-B-16", num_classes=100, omega=6, batch=4, text_tokens=77)
    bound["ratio"]          # (SkipT front pass + SkipT step / B) / (FT step / B)

Counted with torch.utils.flop_counter.FlopCounterMode (matmuls and convolutions, 2 FLOPs per multiply-add,
forward and backward) on a model built on the meta device (no memory, no arithmetic), through the tower
functions the methods train with (transmiter.models.towers):

    FT step     encode_image over B images + text tower over all C prompts of L tokens, every block trained,
                the logits, backward
    SkipT front blocks < ω over one image, no grad: once per image per epoch (the token cache)
    SkipT step  blocks >= ω over B cached token sets + the upper text blocks over the K' CSkip-kept prompts,
                the CSkip ranking against the C prototypes, the logits, backward

K' is CSkip's expected number of kept classes for C (FLOPs are linear in the number of prompts, so a
fractional K' is exact). The text front cache and the CSkip prototypes are built once per run, not per
epoch, and are not charged (as in the time benchmark). tests/test_bench_skip_flops.py checks these counts
against FlopCounterMode over the methods' own `compute_loss` and epoch front pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ft_step_flops", "skip_flop_bound", "skip_front_flops", "skip_step_flops"]


def _count(fn: Callable[[], None]) -> int:
    from transmiter.models.encoder_flops import count_flops

    return count_flops(fn)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _ids(model: nn.Module, prompts: int, tokens: int) -> torch.Tensor:
    """Token ids of `prompts` prompts of `tokens` tokens (values do not change the count)."""
    return torch.zeros(prompts, tokens, dtype=torch.long, device=_device(model))


def ft_step_flops(
    model: nn.Module, batch: int, prompts: int, text_tokens: int, image_size: int
) -> dict[str, int]:
    """FLOPs of one FT step (forward + backward, every block trained): {"image", "text", "total"}; "text"
    includes the logits."""
    from transmiter.models.towers import freeze_for_finetuning, text_back, text_front

    freeze_for_finetuning(model, 0)
    images = torch.zeros(batch, 3, image_size, image_size, device=_device(model))
    ids = _ids(model, prompts, text_tokens)
    image = _count(lambda: model.encode_image(images, normalize=True).sum().backward())
    # the logits' backward also reaches the image features (not their tower: counted above)
    img = model.encode_image(images, normalize=True).detach().requires_grad_()

    def text() -> None:
        txt = text_back(model, text_front(model, ids, 0), ids, 0, normalize=True)
        (img @ txt.T).sum().backward()

    text_flops = _count(text)
    return {"image": image, "text": text_flops, "total": image + text_flops}


def skip_front_flops(model: nn.Module, image_size: int, omega: int) -> int:
    """FLOPs of the per-epoch front pass (image blocks < ω, no grad) over one image."""
    from transmiter.models.towers import image_front

    image = torch.zeros(1, 3, image_size, image_size, device=_device(model))
    with torch.no_grad():
        return _count(lambda: image_front(model, image, omega))


def skip_step_flops(
    model: nn.Module,
    batch: int,
    prompts: float,
    classes: int,
    text_tokens: int,
    omega: int,
    image_size: int,
    text_omega: int | None = None,
) -> dict[str, float]:
    """FLOPs of one Skip Tuning step on cached tokens with `prompts` kept classes out of `classes`:
    {"image", "text", "total"}; "text" includes the CSkip ranking and the logits. A fractional `prompts`
    (CSkip's expectation) is interpolated between the counts at 1 and 2 prompts (the count is linear)."""
    from transmiter.models.towers import freeze_for_finetuning, image_back, image_front, text_back, text_front

    text_omega = omega if text_omega is None else text_omega
    freeze_for_finetuning(model, omega, text_omega)
    dev = _device(model)
    with torch.no_grad():
        tokens = image_front(model, torch.zeros(batch, 3, image_size, image_size, device=dev), omega)
    image = _count(lambda: image_back(model, tokens, omega, normalize=True).sum().backward())
    img = image_back(model, tokens, omega, normalize=True).detach().requires_grad_()
    prototypes = torch.zeros(classes, img.shape[1], device=dev)

    def text_for(n: int) -> int:
        ids = _ids(model, n, text_tokens)
        with torch.no_grad():
            hidden = text_front(model, ids, text_omega)

        def step() -> None:
            with torch.no_grad():
                _ = img @ prototypes.T  # CSkip's ranking of the C classes
            txt = text_back(model, hidden, ids, text_omega, normalize=True)
            (img @ txt.T).sum().backward()

        return _count(step)

    one, two = text_for(1), text_for(2)
    text_flops = one + (prompts - 1) * (two - one)
    return {"image": image, "text": text_flops, "total": image + text_flops}


def skip_flop_bound(
    model: nn.Module | str,
    num_classes: int,
    omega: int,
    batch: int,
    text_tokens: int,
    image_size: int | None = None,
) -> dict[str, float]:
    """The FLOP ratio SkipT / FT per training image per epoch, with its parts (FLOPs per image)."""
    from transmiter.methods.cskip import expected_kept_classes

    if isinstance(model, str):
        from bench.fixtures import meta_model

        bundle = meta_model(model)
        model, image_size = bundle.model, image_size or bundle.image_size
    if image_size is None:
        raise ValueError("image_size is needed with a model object")
    kept = float(expected_kept_classes(num_classes))
    ft = ft_step_flops(model, batch, num_classes, text_tokens, image_size)
    front = skip_front_flops(model, image_size, omega)
    step = skip_step_flops(model, batch, kept, num_classes, text_tokens, omega, image_size)
    ft_per_image = ft["total"] / batch
    skip_per_image = front + step["total"] / batch
    return {
        "classes": num_classes,
        "kept": kept,
        "omega": omega,
        "text_tokens": text_tokens,
        "batch": batch,
        "ft_image_per_image": ft["image"] / batch,
        "ft_text_per_image": ft["text"] / batch,
        "skip_front_per_image": front,
        "skip_image_per_image": step["image"] / batch,
        "skip_text_per_image": step["text"] / batch,
        "ft_per_image": ft_per_image,
        "skip_per_image": skip_per_image,
        "ratio": skip_per_image / ft_per_image,
    }
