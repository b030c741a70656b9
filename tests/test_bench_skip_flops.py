"""The FLOP bound of Skip Tuning / FT counts exactly what the methods' own training code computes: its
parts, counted on meta-device towers, equal FlopCounterMode over FinetuneCLIP.compute_loss, over
SkipTuningCLIP's epoch front pass and over its compute_loss (forward + backward, real CPU tensors)."""

from __future__ import annotations

import open_clip
import pytest
import torch

from bench.skip_flops import ft_step_flops, skip_flop_bound, skip_front_flops, skip_step_flops
from tests.toys import SolidColourDataset, register_tiny_config
from transmiter.methods.finetune import FinetuneCLIP
from transmiter.methods.skip_tuning import SkipTuningCLIP
from transmiter.models.encoder_flops import count_flops

CLASSES, BATCH, SIZE, OMEGA = 12, 4, 32, 2


@pytest.fixture(scope="module")
def tiny():
    name = register_tiny_config()
    return name, open_clip.get_tokenizer(name), SolidColourDataset(CLASSES, 4, SIZE, augment=True, seed=0)


def _model(name):
    torch.manual_seed(0)
    return open_clip.create_model(name, pretrained=None)


def test_ft_step_count_equals_finetune_compute_loss(tiny):
    name, tok, data = tiny
    module = FinetuneCLIP(_model(name), tok, data.classnames)
    images = torch.stack([data[i][0] for i in range(BATCH)])
    labels = torch.tensor([data.labels[i] for i in range(BATCH)])
    real = count_flops(lambda: module.compute_loss(images, labels).backward())
    tokens = module.train_token_ids.shape[1]  # FT's prompts, trimmed after their end token
    assert ft_step_flops(_model(name), BATCH, CLASSES, tokens, SIZE)["total"] == real > 0


def test_skip_front_and_step_counts_equal_skip_tuning_code(tiny):
    name, tok, data = tiny
    module = SkipTuningCLIP(
        _model(name), tok, data.classnames, train_dataset=data, omega=OMEGA, batch_size=BATCH, warmup_epochs=0
    )
    module.setup_training_data()
    module.prepare_static()  # once per run: the text front cache and CSkip's prototypes (not charged)
    front = count_flops(lambda: module.prepare_epoch(0))
    images = len(module.batch_sampler) * BATCH
    assert front == images * skip_front_flops(_model(name), SIZE, OMEGA) > 0

    module.train()
    batch = module.batch_sampler.rank_batches(0)[0]
    idx = torch.as_tensor(batch)
    tokens, labels = module.image_cache.read(idx), module.train_labels_tensor[idx]
    kept = {}

    def step():
        loss, kept["n"] = module.compute_loss(tokens, labels)
        loss.backward()

    real = count_flops(step)
    assert 0 < kept["n"] < CLASSES  # CSkip dropped some classes in this step
    text_tokens = module.train_token_ids.shape[1]
    counted = skip_step_flops(_model(name), BATCH, kept["n"], CLASSES, text_tokens, OMEGA, SIZE)
    assert counted["total"] == pytest.approx(real, rel=1e-12)


def test_encoder_flops_of_an_eval_model_count_its_attention(tiny):
    """A loaded (eval-mode) model counts the same FLOPs per image as the same model in train mode: the fused
    attention fast path is not allowed to hide the qkv projection and the attention from the count."""
    from types import SimpleNamespace

    from transmiter.models.encoder_flops import image_encoder_flops

    name = tiny[0]
    model = _model(name)
    train = image_encoder_flops(SimpleNamespace(model=model.train(), identity="train", image_size=SIZE))
    evaluated = image_encoder_flops(SimpleNamespace(model=model.eval(), identity="eval", image_size=SIZE))
    assert evaluated == train > 0


def test_bound_reads_as_expected_for_vit_b16():
    """ViT-B-16 at ω = 6 on the meta device: fewer FLOPs than FT, more so with full-length prompts and more
    classes (the text side, which CSkip thins, weighs more), and never below the image side's own limit."""
    trimmed = skip_flop_bound("ViT-B-16", num_classes=100, omega=6, batch=4, text_tokens=9)
    full = skip_flop_bound("ViT-B-16", num_classes=100, omega=6, batch=4, text_tokens=77)
    many = skip_flop_bound("ViT-B-16", num_classes=1000, omega=6, batch=4, text_tokens=77)
    assert 0 < many["ratio"] < full["ratio"] < trimmed["ratio"] < 1
    # image side alone: front (6 of 12 blocks, forward only) + back (6 blocks, forward + backward) vs 12 blocks
    # forward + backward, i.e. about (6 + 3 x 6) / (3 x 12) = 2/3
    image_only = (trimmed["skip_front_per_image"] + trimmed["skip_image_per_image"]) / trimmed[
        "ft_image_per_image"
    ]
    assert image_only == pytest.approx(2 / 3, abs=0.03)
