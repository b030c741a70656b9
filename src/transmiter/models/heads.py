"""Zero-shot text heads: one row per class, the L2-normalised mean of its normalised prompt
embeddings, times the model's logit scale. Cached per (model, names, templates).

    head = text_head(bundle, ["cat", "dog"], ["a photo of a {}."], cache=ArrayCache(root))  # [C, D]
    logits = normalised_image_features @ head.T          # = exp(logit_scale) · cos
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from transmiter.features.store import ArrayCache
from transmiter.models.classnames import fill_templates
from transmiter.models.towers import encode_text


@torch.no_grad()
def encode_prompts(
    model: torch.nn.Module, tokenizer, prompts: Sequence[Sequence[str]], batch_size: int = 256
) -> torch.Tensor:
    """Per class: mean of the L2-normalised embeddings of its prompts, re-normalised. [C, D]"""
    device = next(model.parameters()).device
    flat = [p for per_class in prompts for p in per_class]
    per_class = len(prompts[0]) if prompts else 0
    chunks = []
    for start in range(0, len(flat), batch_size):
        tokens = tokenizer(flat[start : start + batch_size]).to(device)
        chunks.append(F.normalize(encode_text(model, tokens).float(), dim=-1))
    emb = torch.cat(chunks).reshape(len(prompts), per_class, -1).mean(dim=1)
    return F.normalize(emb, dim=-1).cpu()


def text_head(
    bundle, classnames: Sequence[str], templates: Sequence[str], cache: ArrayCache | None = None
) -> torch.Tensor:
    """The zero-shot classifier [C, D] of `bundle` for `classnames` under `templates`."""
    if not classnames:
        raise ValueError("text_head needs at least one class name")
    identity = {
        "kind": "text-head/v1",
        "model": bundle.identity,
        "classnames": list(classnames),
        "templates": list(templates),
    }
    key = ArrayCache.key(identity)
    if cache is not None and (entry := cache.load(key)) is not None:
        return torch.from_numpy(np.array(entry["head"], dtype=np.float32))  # a writable copy
    was_training = bundle.model.training
    bundle.model.eval()
    emb = encode_prompts(bundle.model, bundle.tokenizer, fill_templates(classnames, templates))
    bundle.model.train(was_training)
    head = emb * bundle.logit_scale
    if cache is not None:
        cache.save(key, {"head": head.numpy().astype(np.float32)}, meta={"identity": identity})
    return head
