"""The open_clip wrapper: loading, identity, checkpoints, templates and text heads; bad input."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from transmiter.models.clip import ModelError, ModelSpec, load_clip
from transmiter.models.heads import text_head
from transmiter.models.templates import IMAGENET_80_TEMPLATES, TemplateError, template_set

TINY = ModelSpec(arch="tm-tiny-ViT", name="tiny")


def test_tiny_model_bundle():
    bundle = load_clip(TINY)
    assert bundle.image_size == 32
    assert bundle.test_transform is not None and bundle.train_transform is not None
    tokens = bundle.tokenizer(["a photo of a cat."])
    assert tokens.shape[-1] == 16  # the architecture's reduced context length
    assert bundle.identity.startswith("tm-tiny-ViT@")


def test_identity_follows_the_weights(tmp_path):
    a, b = load_clip(TINY), load_clip(TINY)
    assert a.identity == b.identity  # seeded random init is deterministic
    assert load_clip(ModelSpec(arch="tm-tiny-ViT", init_seed=3)).identity != a.identity
    # a checkpoint of the same weights loads back to the same identity and the same outputs
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in a.model.state_dict().items()}, str(path))
    c = load_clip(ModelSpec(arch="tm-tiny-ViT", pretrained=str(path)))
    assert c.identity == a.identity
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(c.model.encode_image(x), a.model.encode_image(x))


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(ModelError, match=r"model.arch='ViT-B-61'.*ViT-B-16"):
        load_clip(ModelSpec(arch="ViT-B-61"))


def test_missing_checkpoint_path_names_it(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match=str(missing).replace(".", r"\.")):
        load_clip(ModelSpec(arch="tm-tiny-ViT", pretrained=str(missing)))


def test_unknown_tag_lists_known_tags():
    with pytest.raises(ModelError, match="openai"):
        ModelSpec(arch="ViT-B-16", pretrained="not-a-tag").validate()


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="broken.pt"):
        load_clip(ModelSpec(arch="tm-tiny-ViT", pretrained=str(path)))


def test_truncated_safetensors_gives_a_clear_error(tmp_path):
    bundle = load_clip(TINY)
    path = tmp_path / "t.safetensors"
    save_file({k: v.contiguous() for k, v in bundle.model.state_dict().items()}, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="t.safetensors"):
        load_clip(ModelSpec(arch="tm-tiny-ViT", pretrained=str(path)))


def test_template_tables():
    assert template_set("OxfordPets", "coop") == ["a photo of a {}, a type of pet."]
    assert template_set("OxfordPets", "skip") == ["a bad photo of a {}, a type of pet."]
    ens = template_set("DescribableTextures", "ensemble")
    assert len(ens) == 8 and ens[-1] == "{} texture."
    assert len(template_set("ImageNet", "ensemble")) == 7
    assert (
        len(IMAGENET_80_TEMPLATES) == 80
        and template_set("EuroSAT", "imagenet80")[0] == "a bad photo of a {}."
    )
    assert template_set("Synth", "coop", overrides={"coop": ["a {} shape."]}) == ["a {} shape."]
    with pytest.raises(TemplateError, match="templates"):
        template_set("UnknownSet", "coop")


def test_text_head_is_normalised_scaled_and_cached(tmp_path):
    from transmiter.features.store import ArrayCache

    bundle = load_clip(TINY)
    cache = ArrayCache(tmp_path)
    head = text_head(bundle, ["red_circle", "blue square"], ["a photo of a {}.", "a {}."], cache=cache)
    assert head.shape == (2, 32)
    torch.testing.assert_close(head.norm(dim=-1), torch.full((2,), bundle.logit_scale))
    again = text_head(bundle, ["red_circle", "blue square"], ["a photo of a {}.", "a {}."], cache=cache)
    torch.testing.assert_close(head, again)
    assert len(list(tmp_path.rglob("meta.json"))) == 1
    # underscores become spaces in prompts: same head as the spaced name
    spaced = text_head(bundle, ["red circle", "blue square"], ["a photo of a {}.", "a {}."])
    torch.testing.assert_close(head, spaced)


def test_tuned_checkpoint_of_a_quick_gelu_model_reloads_with_quick_gelu(compose, tmp_path, monkeypatch):
    """FT/Skip Tuning save weights only; the tuned spec must rebuild the QuickGELU network they were trained
    as (OpenAI weights use QuickGELU; a checkpoint file alone loads as GELU)."""
    from open_clip.transformer import QuickGELU

    from transmiter.config.instantiate import dataset_spec_from_config, instantiate
    from transmiter.context import RunContext
    from transmiter.data.fake import write_fake_dataset
    from transmiter.stages import StageResult

    cfg = compose(
        [
            "experiment=smoke",
            "method=ft",
            "+model.force_quick_gelu=true",
            f"paths.output_dir={tmp_path / 'out'}",
        ]
    )
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=4, per_class=(4, 1, 1)
    )
    ctx = RunContext.from_config(cfg)
    base = ctx.load_model(cfg.model)
    stage = tmp_path / "stage"
    stage.mkdir()

    def trained(name, identity, fn):  # the stage as training leaves it: the weights in model.safetensors
        weights = {k: v.contiguous() for k, v in base.model.state_dict().items()}
        save_file(weights, str(stage / "model.safetensors"), metadata={"arch": base.spec.arch})
        return StageResult(name, "key", stage, {"checkpoint": str(stage / "model.safetensors")}, False, 0.0)

    monkeypatch.setattr(ctx, "run_stage", trained)
    spec = instantiate(cfg.method).tuned_spec(ctx, cfg.model)
    assert spec.force_quick_gelu is True and spec.extra == base.spec.extra
    tuned = load_clip(spec)

    def activations(model) -> set[type]:
        return {type(block.mlp.gelu) for block in model.visual.transformer.resblocks} | {
            type(block.mlp.gelu) for block in model.transformer.resblocks
        }

    assert activations(base.model) == activations(tuned.model) == {QuickGELU}
    x = torch.randn(2, 3, 32, 32)
    tokens = base.tokenizer(["a photo of a cat.", "a dog"])
    with torch.no_grad():
        torch.testing.assert_close(tuned.model.encode_image(x), base.model.encode_image(x))
        torch.testing.assert_close(tuned.model.encode_text(tokens), base.model.encode_text(tokens))
        # what the checkpoint gave before: the same weights under GELU, another network
        gelu = load_clip(ModelSpec(arch=spec.arch, pretrained=spec.pretrained))
        assert activations(gelu.model) == {torch.nn.GELU}
        assert not torch.allclose(gelu.model.encode_image(x), base.model.encode_image(x))
    # caches keyed on the identity never mix the two networks
    assert tuned.identity == gelu.identity + "+quickgelu"
