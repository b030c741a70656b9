"""Tower splitting at block ω (LSkip) and the FT / SkipT freezing rule."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CustomTextCLIP

from tests.toys import register_tiny_config
from transmiter.models.towers import (
    TowerSplitError,
    check_splittable,
    freeze_for_finetuning,
    image_back,
    image_front,
    resolve_omegas,
    text_back,
    text_front,
    tower_depths,
    validate_omega,
)

TOKENIZER = open_clip.SimpleTokenizer(context_length=16)
PROMPTS = ["a photo of a red.", "blue", "a bad photo of a very very long class name, a type of pet."]


def _clip(cls=CLIP, vision=None, text=None, seed=0):
    torch.manual_seed(seed)
    v = dict(image_size=32, patch_size=8, width=64, layers=4, head_width=16)
    t = dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=3)
    v.update(vision or {})
    t.update(text or {})
    return cls(embed_dim=24, vision_cfg=v, text_cfg=t).eval()


VARIANTS = {
    "clip": lambda: _clip(),
    "avg-pool": lambda: _clip(vision=dict(pool_type="avg")),
    "ln-after-pool": lambda: _clip(vision=dict(pool_type="avg", final_ln_after_pool=True)),
    "attn-pool": lambda: _clip(
        vision=dict(attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2)
    ),
    "custom-blocks+layerscale": lambda: _clip(
        vision=dict(qk_norm=True, ls_init_value=0.1), text=dict(scale_fc=True)
    ),
    "no-ln-pre+quickgelu": lambda: CLIP(
        24,
        dict(image_size=32, patch_size=8, width=64, layers=4, head_width=16, no_ln_pre=True),
        dict(context_length=16, width=32, heads=2, layers=3),
        quick_gelu=True,
    ).eval(),
    "customtext-causal": lambda: _clip(CustomTextCLIP),
    "customtext-bidir-last": lambda: _clip(CustomTextCLIP, text=dict(no_causal_mask=True, pool_type="last")),
    "customtext-eos": lambda: _clip(CustomTextCLIP, text=dict(pool_type="eos", eos_id=49407)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_back_of_front_equals_encode(variant):
    model = VARIANTS[variant]()
    if variant == "customtext-bidir-last":
        model.text.use_pad_mask = True  # exercises the per-sequence additive pad mask
    images = torch.randn(2, 3, 32, 32)
    ids = TOKENIZER(PROMPTS)
    d_img, d_txt = tower_depths(model)
    with torch.no_grad():
        ref_img = model.encode_image(images)
        ref_txt = model.encode_text(ids)
        for omega in range(d_img + 1):
            out = image_back(model, image_front(model, images, omega), omega)
            torch.testing.assert_close(out, ref_img, atol=1e-5, rtol=1e-5)
        for omega in range(d_txt + 1):
            out = text_back(model, text_front(model, ids, omega), ids, omega)
            torch.testing.assert_close(out, ref_txt, atol=1e-5, rtol=1e-5)
        normed = image_back(model, image_front(model, images, 2), 2, normalize=True)
        torch.testing.assert_close(normed, model.encode_image(images, normalize=True), atol=1e-5, rtol=1e-5)


def test_front_shapes_and_slicing_rows():
    model = _clip()
    images = torch.randn(3, 3, 32, 32)
    tokens = image_front(model, images, 2)
    assert tokens.shape == (3, 1 + 16, 64)  # batch-first: CLS + 4x4 patches
    ids = TOKENIZER(PROMPTS)
    hidden = text_front(model, ids, 1)
    assert hidden.shape == (3, 16, 32)
    with torch.no_grad():  # a subset of rows (what CSkip does) gives the same rows
        sub = text_back(model, hidden[[2, 0]], ids[[2, 0]], 1)
        torch.testing.assert_close(sub, model.encode_text(ids[[2, 0]]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="token-id rows"):
        text_back(model, hidden, ids[:2], 1)


def test_grad_checkpointing_and_batch_first_false_layout():
    model = _clip()
    images = torch.randn(2, 3, 32, 32)
    ref = model.encode_image(images).detach()
    model.set_grad_checkpointing(True)
    out = image_back(model, image_front(model, images, 1), 1)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), ref, atol=1e-5, rtol=1e-5)
    model.set_grad_checkpointing(False)
    model.transformer.batch_first = False  # sequence-first text stack (older open_clip layout)
    for block in model.transformer.resblocks:
        block.attn.batch_first = False
    ids = TOKENIZER(PROMPTS)
    with torch.no_grad():
        torch.testing.assert_close(
            text_back(model, text_front(model, ids, 2), ids, 2), model.encode_text(ids), atol=1e-5, rtol=1e-5
        )


def test_vit_b16_random_init_equivalence_batch1():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    tok = open_clip.get_tokenizer("ViT-B-16")
    images = torch.randn(1, 3, 224, 224)
    ids = tok(["a photo of a dog."])
    with torch.no_grad():
        tokens = image_front(model, images, 6)
        assert tokens.shape == (1, 197, 768)
        torch.testing.assert_close(
            image_back(model, tokens, 6), model.encode_image(images), atol=1e-4, rtol=1e-4
        )
        hidden = text_front(model, ids, 6)
        assert hidden.shape == (1, 77, 512)
        torch.testing.assert_close(
            text_back(model, hidden, ids, 6), model.encode_text(ids), atol=1e-4, rtol=1e-4
        )
    assert resolve_omegas(model) == (6, 6)
    names = freeze_for_finetuning(model, 6)["trainable"]
    assert "visual.transformer.resblocks.6.attn.in_proj_weight" in names
    assert "visual.transformer.resblocks.5.attn.in_proj_weight" not in names
    assert "transformer.resblocks.6.mlp.c_fc.weight" in names
    assert "transformer.resblocks.5.mlp.c_fc.weight" not in names


FROZEN_ALWAYS = {
    "visual.conv1.weight",
    "visual.class_embedding",
    "visual.positional_embedding",
    "visual.ln_pre.weight",
    "visual.ln_pre.bias",
    "token_embedding.weight",
    "positional_embedding",
    "logit_scale",
}
HEADS = {
    "visual.ln_post.weight",
    "visual.ln_post.bias",
    "visual.proj",
    "ln_final.weight",
    "ln_final.bias",
    "text_projection",
}


@pytest.mark.parametrize("start", [0, 2])
def test_freeze_sets_exact(start):
    model = _clip()  # image depth 4, text depth 3
    sets = freeze_for_finetuning(model, start)
    trainable = set(sets["trainable"])
    expected = set(HEADS)
    for name, _ in model.named_parameters():
        for prefix in ("visual.transformer.resblocks.", "transformer.resblocks."):
            if name.startswith(prefix):
                block = int(name[len(prefix) :].split(".")[0])
                if block >= start:
                    expected.add(name)
    assert trainable == expected
    assert FROZEN_ALWAYS <= set(sets["frozen"])
    assert not (FROZEN_ALWAYS & trainable)


def test_freeze_text_start_separately_and_attn_pool_trainable():
    model = _clip(vision=dict(attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2))
    names = set(freeze_for_finetuning(model, 3, text_start_block=1)["trainable"])
    assert any(n.startswith("visual.attn_pool.") for n in names)
    assert not any(n.startswith("visual.transformer.resblocks.2.") for n in names)
    assert any(n.startswith("visual.transformer.resblocks.3.") for n in names)
    assert any(n.startswith("transformer.resblocks.1.") for n in names)
    assert not any(n.startswith("transformer.resblocks.0.") for n in names)


def test_validate_omega_messages():
    model = _clip()
    validate_omega(model, 0)
    validate_omega(model, 3)
    validate_omega(model, 4, "image")
    with pytest.raises(ValueError, match=r"omega=4 .*text tower.*depth 3.*0 <= omega <= 3"):
        validate_omega(model, 4)
    with pytest.raises(ValueError, match=r"omega=-1 .*image tower.*depth 4"):
        validate_omega(model, -1)
    with pytest.raises(ValueError, match="integer"):
        validate_omega(model, 1.5)
    with pytest.raises(ValueError, match="omega=9"):
        image_front(model, torch.randn(1, 3, 32, 32), 9)
    assert resolve_omegas(model) == (2, 1)  # image 4 // 2; text: same fraction of 3
    assert resolve_omegas(model, 4, 0) == (4, 0)


def test_unsplittable_towers_name_architecture_and_allow_ft():
    torch.manual_seed(0)
    rn = CLIP(
        32,
        dict(layers=[1, 1, 1, 1], width=16, image_size=64, head_width=8),
        dict(context_length=16, width=32, heads=2, layers=2),
    )
    with pytest.raises(TowerSplitError, match=r"ModifiedResNet.*Full fine-tuning \(FinetuneCLIP\) works"):
        check_splittable(rn)
    with pytest.raises(TowerSplitError, match="ModifiedResNet"):
        image_front(rn, torch.randn(1, 3, 64, 64), 1)
    with pytest.raises(TowerSplitError, match="ModifiedResNet"):
        freeze_for_finetuning(rn, 1)
    sets = freeze_for_finetuning(rn, 0)  # FT works: stem frozen, stages + attention pool trained
    assert "visual.conv1.weight" in sets["frozen"]
    assert "visual.layer1.0.conv1.weight" in sets["trainable"]
    assert any(n.startswith("visual.attnpool.") for n in sets["trainable"])
    assert "transformer.resblocks.0.attn.in_proj_weight" in sets["trainable"]


def test_tiny_registered_config_is_splittable():
    name = register_tiny_config()
    model = open_clip.create_model(name, pretrained=None)
    check_splittable(model)
    assert tower_depths(model) == (4, 4)


@pytest.mark.parametrize("arch", ["ViT-B-16", "RN50"])
def test_trimmed_text_encoding_equals_full_length(arch):
    """Dropping the padding after the last end-of-text token leaves every prompt's feature unchanged."""
    from transmiter.models.towers import encode_text, trim_text_tokens

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None).eval()
    ids = open_clip.get_tokenizer(arch)(
        ["a photo of a dog.", "a photo of a british shorthair, a type of pet."]
    )
    trimmed = trim_text_tokens(model, ids)
    assert trimmed.shape[1] < ids.shape[1] and (trimmed[:, -1] != 0).any()
    with torch.no_grad():
        full = model.encode_text(ids, normalize=True)
        torch.testing.assert_close(encode_text(model, ids, normalize=True), full, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(encode_text(model, trimmed, normalize=True), full, atol=1e-5, rtol=1e-5)
