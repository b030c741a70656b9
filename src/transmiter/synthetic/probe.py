"""A small zero-shot probe for calibrating the synthetic world (the framework's evaluation lives elsewhere).

Usage::

    from transmiter.synthetic.probe import zero_shot_accuracy
    acc = zero_shot_accuracy("SynthViT-S-8", ckpt, data_dir / "synth_shapes", "a photo of a {}.")  # in [0, 1]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from transmiter.synthetic.architectures import register_synthetic_models


def read_split(dataset_folder: str | Path) -> tuple[dict[str, list[list]], list[str]]:
    """(split dict, classnames by label) from the single ``split_zhou_*.json`` in the folder."""
    files = sorted(Path(dataset_folder).glob("split_zhou_*.json"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one split_zhou_*.json in {dataset_folder}, found {len(files)}")
    split = json.loads(files[0].read_text())
    names: dict[int, str] = {}
    for items in split.values():
        for _, label, cname in items:
            names[int(label)] = cname
    return split, [names[i] for i in range(len(names))]


@torch.no_grad()
def text_classifier(
    model: torch.nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """(C, D) normalised class embeddings: per-template normalised features averaged, re-normalised."""
    per_template = []
    for template in templates:
        prompts = [template.format(c.replace("_", " ")) for c in classnames]
        per_template.append(model.encode_text(tokenizer(prompts), normalize=True))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


@torch.no_grad()
def zero_shot_accuracy(
    model_name: str,
    checkpoint: str | Path,
    dataset_folder: str | Path,
    template: str | Sequence[str],
    *,
    split: str = "test",
    labels: Sequence[int] | None = None,
    batch_size: int = 512,
) -> float:
    """Top-1 zero-shot accuracy (fraction in [0, 1]) on ``split`` of a CoOp-layout dataset folder.

    ``template`` is one template or a list (ensembled). ``labels`` restricts evaluation to those classes
    (classifier over them only, like a base/novel subset).
    """
    register_synthetic_models()
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(checkpoint))
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    splits, classnames = read_split(dataset_folder)
    keep = list(range(len(classnames))) if labels is None else sorted(int(x) for x in labels)
    remap = {old: new for new, old in enumerate(keep)}
    templates = [template] if isinstance(template, str) else list(template)
    weights = text_classifier(model, tokenizer, [classnames[i] for i in keep], templates)
    items = [(p, remap[int(y)]) for p, y, _ in splits[split] if int(y) in remap]
    image_root = Path(dataset_folder) / "images"
    correct = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        x = torch.stack([preprocess(Image.open(image_root / p).convert("RGB")) for p, _ in chunk])
        feats = model.encode_image(x, normalize=True)
        pred = (feats @ weights.T).argmax(dim=-1).numpy()
        correct += int((pred == np.array([y for _, y in chunk])).sum())
    return correct / max(1, len(items))
