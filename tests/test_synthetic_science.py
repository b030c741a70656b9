"""Slow "science" checks on the demo-scale synthetic world.

Builds the demo world (about 6 minutes of pretraining on 2 idle CPU cores the first time). Set
``TRANSMITER_SYNTHETIC_CACHE`` to a folder to reuse pretrained checkpoints across runs.
"""

from __future__ import annotations

import math
import os

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from transmiter.synthetic.benchmarks import BENCHMARKS
from transmiter.synthetic.build import build_world
from transmiter.synthetic.probe import read_split, text_classifier, zero_shot_accuracy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cache = os.environ.get("TRANSMITER_SYNTHETIC_CACHE") or tmp_path_factory.mktemp("synthetic_cache")
    data = tmp_path_factory.mktemp("synthetic_data")
    return build_world(cache, data, scale="demo", progress=False)


@pytest.fixture(scope="module")
def zero_shot(world):
    acc = {}
    for name, ds in world.datasets.items():
        for model in (world.weak_model, world.strong_model):
            acc[name, model] = zero_shot_accuracy(model, world.checkpoint(model), ds.root, ds.spec.template)
    print("\nzero-shot accuracy:", {f"{k[0]}/{k[1]}": round(v, 3) for k, v in acc.items()})
    return acc


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_both_models_far_above_chance_but_imperfect(world, zero_shot, name):
    chance = 1.0 / BENCHMARKS[name].num_classes
    for model in (world.weak_model, world.strong_model):
        acc = zero_shot[name, model]
        assert acc > 4 * chance and acc > chance + 0.15, (name, model, acc, chance)
        assert acc < 0.95, (name, model, acc)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_strong_beats_weak_zero_shot(world, zero_shot, name):
    weak, strong = zero_shot[name, world.weak_model], zero_shot[name, world.strong_model]
    assert strong > weak + 0.05, (name, weak, strong)


def test_strong_beats_weak_on_average(world, zero_shot):
    gaps = [zero_shot[n, world.strong_model] - zero_shot[n, world.weak_model] for n in BENCHMARKS]
    assert np.mean(gaps) > 0.10, gaps


@torch.no_grad()
def _features(model, preprocess, root, items):
    x = torch.stack([preprocess(Image.open(root / "images" / p).convert("RGB")) for p, _, _ in items])
    return model.encode_image(x, normalize=True), torch.tensor([y for _, y, _ in items])


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_few_shot_adaptation_on_base_classes_helps(world, name):
    """A linear head initialised from the zero-shot text classifier and fitted on 16 shots of the base
    classes (frozen weak image features) beats zero-shot on the base test images: the shift leaves room
    for adaptation."""
    ds = world.datasets[name]
    model, _, preprocess = open_clip.create_model_and_transforms(
        world.weak_model, pretrained=str(world.weak_checkpoint)
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(world.weak_model)
    split, classnames = read_split(ds.root)
    base = math.ceil(len(classnames) / 2)
    rng = np.random.default_rng(1)
    train = []
    for label in range(base):
        items = [it for it in split["train"] if it[1] == label]
        train += [items[i] for i in rng.choice(len(items), size=16, replace=False)]
    test = [it for it in split["test"] if it[1] < base]
    xtr, ytr = _features(model, preprocess, ds.root, train)
    xte, yte = _features(model, preprocess, ds.root, test)
    with torch.no_grad():
        weights = text_classifier(model, tokenizer, classnames[:base], [ds.spec.template])
        scale = model.logit_scale.exp()
    zero_shot = ((xte @ weights.T).argmax(1) == yte).float().mean().item()
    w = torch.nn.Parameter(weights.clone())
    opt = torch.optim.AdamW([w], lr=1e-2, weight_decay=0.0)
    for _ in range(200):
        loss = F.cross_entropy(scale * xtr @ F.normalize(w, dim=-1).T, ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        adapted = ((xte @ F.normalize(w, dim=-1).T).argmax(1) == yte).float().mean().item()
    print(f"\n{name}: weak base zero-shot {zero_shot:.3f} -> 16-shot linear head {adapted:.3f}")
    assert adapted > zero_shot + 0.05, (name, zero_shot, adapted)
