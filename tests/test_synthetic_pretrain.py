"""Fast tests of the synthetic architectures and of cached contrastive pretraining (tiny scale)."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch

from transmiter.io import file_digest
from transmiter.synthetic import pretrain as pt
from transmiter.synthetic.architectures import (
    STRONG_MODEL,
    SYNTHETIC_MODELS,
    WEAK_MODEL,
    register_synthetic_models,
    synthetic_model_config,
)
from transmiter.synthetic.batches import draw_batch
from transmiter.synthetic.captions import parse_caption
from transmiter.synthetic.world import PRETRAIN_DISTRIBUTION


def _tiny(model: str = WEAK_MODEL, **kw) -> pt.PretrainConfig:
    return pt.pretrain_config(model, "tiny", **({"steps": 2, "batch_size": 8} | kw))


# --------------------------------------------------------------------------------------------- architectures


def test_registration_is_idempotent():
    first = register_synthetic_models()
    n_models = len(open_clip.list_models())
    for _ in range(3):
        assert register_synthetic_models() == first
    assert len(open_clip.list_models()) == n_models
    assert set(SYNTHETIC_MODELS) <= set(open_clip.list_models())


@pytest.mark.parametrize("name", SYNTHETIC_MODELS)
def test_architecture_is_an_open_clip_vit_with_short_context(name):
    register_synthetic_models()
    model = open_clip.create_model(name)
    assert isinstance(model.visual, open_clip.transformer.VisionTransformer)
    assert len(model.visual.transformer.resblocks) >= 4
    assert len(model.transformer.resblocks) >= 4
    tok = open_clip.get_tokenizer(name)
    assert tok.context_length == synthetic_model_config(name)["text_cfg"]["context_length"] == 24
    assert tok(["a red star"]).shape == (1, 24)
    x = torch.zeros(2, 3, 32, 32)
    img, txt, scale = model(x, tok(["a red star", "two blue circles"]))
    assert img.shape == txt.shape == (2, synthetic_model_config(name)["embed_dim"])


def test_weak_and_strong_differ_clearly():
    register_synthetic_models()
    weak, strong = (open_clip.create_model(n) for n in (WEAK_MODEL, STRONG_MODEL))

    def n_params(m):
        return sum(p.numel() for p in m.visual.parameters())

    assert n_params(strong) > 4 * n_params(weak)
    wv = synthetic_model_config(WEAK_MODEL)["vision_cfg"]
    sv = synthetic_model_config(STRONG_MODEL)["vision_cfg"]
    assert sv["width"] >= 2 * wv["width"] and sv["layers"] > wv["layers"]
    assert sv["patch_size"] <= wv["patch_size"]


# --------------------------------------------------------------------------------------------- pretraining


def test_stream_matches_the_open_clip_eval_transform():
    from PIL import Image

    register_synthetic_models()
    _, _, preprocess = open_clip.create_model_and_transforms(WEAK_MODEL)
    batch = draw_batch(PRETRAIN_DISTRIBUTION, 4, seed=0)
    pp = open_clip.create_model(WEAK_MODEL).visual.preprocess_cfg
    ours = pt.to_model_input(batch.images, pp["mean"], pp["std"])
    theirs = torch.stack([preprocess(Image.fromarray(im)) for im in batch.images])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_warmup_cosine_schedule():
    assert pt.warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert pt.warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert pt.warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert pt.warmup_cosine(100, 10, 100) == pytest.approx(0.0)


def test_loss_is_built_in_setup_from_rank_and_world_size():
    import lightning as L

    module = pt.SyntheticClipPretrainer(_tiny(steps=1, batch_size=4))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    assert module.loss_fn is None
    trainer.fit(module)
    loss = module.loss_fn
    assert loss is not None and loss.local_loss and loss.gather_with_grad
    assert (loss.rank, loss.world_size) == (0, 1)


def test_config_key_covers_recipe_and_distribution():
    a = _tiny()
    assert a.key() == _tiny().key()
    assert a.key() != _tiny(steps=3).key()
    assert a.key() != _tiny(distribution=PRETRAIN_DISTRIBUTION.replace(noise_std=(0.0, 5.0))).key()
    assert a.key() != _tiny(STRONG_MODEL).key()


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ckpt_cache")
    cfg = _tiny()
    before = pt.TRAINING_RUNS
    path = pt.pretrain_or_load(cfg, cache, progress=False)
    assert pt.TRAINING_RUNS == before + 1
    return cfg, cache, path


def test_checkpoint_loads_through_open_clip_with_identical_outputs(tmp_path):
    cfg = _tiny(STRONG_MODEL)
    model, _ = pt.pretrain(cfg, progress=False)
    path = tmp_path / "model.safetensors"
    pt.save_checkpoint(model, path)
    loaded, _, preprocess = open_clip.create_model_and_transforms(STRONG_MODEL, pretrained=str(path))
    loaded.eval()
    tok = open_clip.get_tokenizer(STRONG_MODEL)
    batch = draw_batch(PRETRAIN_DISTRIBUTION, 8, seed=1)
    x = pt.to_model_input(
        batch.images, loaded.visual.preprocess_cfg["mean"], loaded.visual.preprocess_cfg["std"]
    )
    t = tok(batch.captions)
    with torch.no_grad():
        a = model(x, t)
        b = loaded(x, t)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=0, rtol=0)
    # training moved the weights away from a fresh initialisation
    assert not torch.equal(model.logit_scale, open_clip.create_model(STRONG_MODEL).logit_scale) or any(
        not torch.equal(p, q)
        for p, q in zip(model.visual.parameters(), open_clip.create_model(STRONG_MODEL).visual.parameters())
    )


def test_cache_hit_does_not_retrain(tiny_cache):
    cfg, cache, path = tiny_cache
    meta = json.loads((path.parent / pt.META_NAME).read_text())
    assert meta["sha256"] == file_digest(path) and meta["key"] == cfg.key()
    mtime = path.stat().st_mtime_ns
    before = pt.TRAINING_RUNS
    again = pt.pretrain_or_load(cfg, cache, progress=False)
    assert again == path and pt.TRAINING_RUNS == before and path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "drop_sidecar", "garble_sidecar"])
def test_damaged_cache_entry_is_retrained(tmp_path, damage):
    cfg = _tiny(steps=1, batch_size=4)
    path = pt.pretrain_or_load(cfg, tmp_path, progress=False)
    meta = path.parent / pt.META_NAME
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        arr = bytearray(data)
        arr[-10] ^= 0xFF
        path.write_bytes(bytes(arr))
    elif damage == "drop_sidecar":  # a crash between the checkpoint rename and the sidecar write
        meta.unlink()
    else:
        meta.write_text('{"key": ')
    assert pt.read_valid_meta(cfg, tmp_path) is None
    before = pt.TRAINING_RUNS
    again = pt.pretrain_or_load(cfg, tmp_path, progress=False)
    assert pt.TRAINING_RUNS == before + 1
    assert pt.read_valid_meta(cfg, tmp_path) is not None
    open_clip.create_model_and_transforms(WEAK_MODEL, pretrained=str(again))


def test_leftover_temporary_files_are_ignored(tmp_path):
    cfg = _tiny(steps=1, batch_size=4)
    folder = pt.entry_dir(cfg, tmp_path)
    folder.mkdir(parents=True)
    (folder / f".{pt.CHECKPOINT_NAME}.abc.tmp").write_bytes(b"half a checkpoint")
    before = pt.TRAINING_RUNS
    path = pt.pretrain_or_load(cfg, tmp_path, progress=False)
    assert pt.TRAINING_RUNS == before + 1
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([pt.CHECKPOINT_NAME, pt.META_NAME])


def test_curriculum_mixes_easy_scenes_in_first():
    assert pt.easy_fraction(0, 300, 0.25) == 1.0
    assert pt.easy_fraction(150, 300, 0.25) == pytest.approx(0.5)
    assert pt.easy_fraction(290, 300, 0.25) == 0.25
    assert pt.easy_fraction(10, 0, 0.25) == 0.0
    register_synthetic_models()
    tok = open_clip.get_tokenizer(WEAK_MODEL)
    stream = pt.SceneCaptionStream(
        PRETRAIN_DISTRIBUTION,
        10,
        8,
        0,
        0,
        tok,
        (0.5,) * 3,
        (0.5,) * 3,
        easy_dist=PRETRAIN_DISTRIBUTION,
        curriculum_steps=10,
        min_easy_fraction=0.0,
    )
    x0, t0 = stream.batch(0)
    assert x0.shape == (8, 3, 32, 32) and t0.shape == (8, 24)
    assert [stream.draw(i)[2] for i in (0, 5, 9)] == [8, 4, 1]
    _, captions, n_easy = stream.draw(5)
    for cap in captions[:n_easy]:  # easy scenes come with short captions
        assert set(parse_caption(cap)) <= {"shape", "colour", "count"}, cap


def test_stream_is_seeded_per_rank_and_step():
    register_synthetic_models()
    tok = open_clip.get_tokenizer(WEAK_MODEL)
    args = (PRETRAIN_DISTRIBUTION, 3, 4, 0)
    a = pt.SceneCaptionStream(*args, 0, tok, (0.5,) * 3, (0.5,) * 3)
    b = pt.SceneCaptionStream(*args, 0, tok, (0.5,) * 3, (0.5,) * 3)
    c = pt.SceneCaptionStream(*args, 1, tok, (0.5,) * 3, (0.5,) * 3)
    xa, xb, xc = list(a), list(b), list(c)
    assert len(xa) == 3
    for (ia, ta), (ib, tb) in zip(xa, xb):
        assert torch.equal(ia, ib) and torch.equal(ta, tb)
    assert not torch.equal(xa[0][0], xc[0][0])
    assert not torch.equal(xa[0][0], xa[1][0])
    assert np.isfinite(xa[0][0].numpy()).all()
