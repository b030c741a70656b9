"""Zero-shot evaluation end to end through the Hydra app's `run`, on fake CoOp-format data."""

from __future__ import annotations

import json

import pytest
import torch

from transmiter.app import run
from transmiter.config.instantiate import dataset_spec_from_config
from transmiter.context import RunContext
from transmiter.data.fake import write_fake_dataset
from transmiter.evaluation.metrics import harmonic_mean
from transmiter.reporting.records import load_records


def _fake(cfg, classes=10, per_class=(4, 2, 4), image_size=32):
    spec = dataset_spec_from_config(cfg.dataset)
    write_fake_dataset(
        spec, cfg.paths.data_dir, num_classes=classes, per_class=per_class, image_size=image_size
    )


def test_zero_shot_base2novel_end_to_end(compose, tmp_path):
    cfg = compose(["experiment=smoke", f"hydra.run.dir={tmp_path}/run", f"paths.output_dir={tmp_path}/run"])
    _fake(cfg)
    metrics = run(cfg)
    assert set(metrics) == {"base", "novel", "hm"}
    assert metrics["hm"] == pytest.approx(harmonic_mean(metrics["base"], metrics["novel"]))
    (record,) = load_records([tmp_path / "run"])
    assert record["setting"] == "base2novel" and record["dataset"] == "Smoke"
    assert record["config"]["model"]["arch"] == "tm-tiny-ViT"
    assert set(record["splits"]) == {"train", "base", "new"} and all(record["splits"].values())
    assert record["code"]["version"]
    assert record["timings"]["feature_pass_s"] > 0
    json.dumps(record)  # fully serialisable


def test_base_and_novel_use_separate_label_spaces(compose, tmp_path):
    cfg = compose(["experiment=smoke", f"paths.output_dir={tmp_path}/o"])
    _fake(cfg, classes=7)
    ctx = RunContext.from_config(cfg)
    base, new = ctx.splits("base"), ctx.splits("new")
    assert len(base.classnames) == 4 and len(new.classnames) == 3  # ceil(7/2) / rest
    assert {d.label for d in new.test} == {0, 1, 2}  # relabelled from 0


def test_zero_shot_matches_a_direct_computation(compose, tmp_path):
    """The pipeline's accuracy equals open_clip encode_image/encode_text computed by hand."""
    import torch.nn.functional as F

    from transmiter.data.dataset import ImageListDataset
    from transmiter.evaluation.clip_eval import evaluate_clip

    cfg = compose(["experiment=smoke", "setting=base2base", f"paths.output_dir={tmp_path}/o"])
    _fake(cfg, classes=6)
    ctx = RunContext.from_config(cfg)
    bundle = ctx.load_model(cfg.model)
    splits = ctx.splits("all")
    acc = evaluate_clip(ctx, bundle, splits, ["a photo of a {}."])
    ds = ImageListDataset(splits.test, bundle.test_transform)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    labels = torch.tensor([d.label for d in splits.test])
    with torch.no_grad():
        img = F.normalize(bundle.model.encode_image(images), dim=-1)
        prompts = [f"a photo of a {c.replace('_', ' ')}." for c in splits.classnames]
        txt = F.normalize(bundle.model.encode_text(bundle.tokenizer(prompts)), dim=-1)
    expected = 100.0 * (img @ txt.T).argmax(1).eq(labels).float().mean().item()
    assert acc == pytest.approx(expected, abs=1e-6)


def test_feature_cache_hit_and_invalidation(compose, tmp_path):
    from transmiter.evaluation.clip_eval import split_features
    from transmiter.models.clip import ModelSpec

    cfg = compose(["experiment=smoke", f"paths.output_dir={tmp_path}/o"])
    _fake(cfg, classes=4)
    ctx = RunContext.from_config(cfg)
    bundle = ctx.load_model(cfg.model)
    splits = ctx.splits("base")
    f1, _ = split_features(ctx, bundle, splits, "test", "base")
    t1 = ctx.timings["feature_pass_s"]
    entries = len(list(ctx.feature_cache.root.rglob("meta.json")))
    f2, _ = split_features(ctx, bundle, splits, "test", "base")
    assert ctx.timings["feature_pass_s"] - t1 < 0.5 * t1 + 0.05  # no second encoder pass
    assert torch.equal(f1, f2)
    assert len(list(ctx.feature_cache.root.rglob("meta.json"))) == entries
    # other weights -> other identity -> a new entry
    other = ctx.load_model(ModelSpec(arch="tm-tiny-ViT", init_seed=1, name="other"))
    assert other.identity != bundle.identity
    split_features(ctx, other, splits, "test", "base")
    assert len(list(ctx.feature_cache.root.rglob("meta.json"))) == entries + 1
    # other items (the novel half) -> a new entry
    split_features(ctx, bundle, ctx.splits("new"), "test", "new")
    assert len(list(ctx.feature_cache.root.rglob("meta.json"))) == entries + 2


def test_real_vit_b16_architecture_zero_shot(compose, tmp_path):
    """The real ViT-B/16 architecture (random init) through the same pipeline, on 224-px images."""
    cfg = compose(
        ["experiment=smoke", "model=vit_b16_random", "eval.batch_size=8", f"paths.output_dir={tmp_path}/o"]
    )
    _fake(cfg, classes=4, per_class=(2, 1, 2), image_size=224)
    metrics = run(cfg)
    assert 0.0 <= metrics["base"] <= 100.0 and 0.0 <= metrics["novel"] <= 100.0


@pytest.mark.slow
def test_ddp_two_processes_match_one(compose, tmp_path):
    """Feature pass and scoring under Lightning DDP (2 CPU processes) give one process's numbers."""
    cfg1 = compose(
        [
            "experiment=smoke",
            "setting=base2base",
            f"paths.output_dir={tmp_path}/one",
            f"paths.cache_dir={tmp_path}/c1",
        ]
    )
    _fake(cfg1, classes=9, per_class=(4, 2, 5))  # odd sizes: uneven shards
    single = run(cfg1)
    cfg2 = compose(
        [
            "experiment=smoke",
            "setting=base2base",
            "trainer=ddp_cpu",
            f"paths.output_dir={tmp_path}/two",
            f"paths.cache_dir={tmp_path}/c2",
        ]
    )
    double = run(cfg2)
    assert double == pytest.approx(single, abs=1e-6)
    f1 = sorted((tmp_path / "c1" / "features").rglob("features.npy"))
    f2 = sorted((tmp_path / "c2" / "features").rglob("features.npy"))
    assert len(f1) == len(f2) == 1
    import numpy as np

    for a, b in zip(f1, f2):
        np.testing.assert_allclose(np.load(a).astype(np.float32), np.load(b).astype(np.float32), atol=2e-3)


def test_eval_split_val_evaluates_the_validation_split_and_says_so(compose, tmp_path):
    """`eval.split=val` is for model selection: metrics come from val (never test) and rows are marked."""
    cfg = compose(["experiment=smoke", "eval.split=val", f"paths.output_dir={tmp_path}/run"])
    _fake(cfg, classes=6, per_class=(4, 3, 2))
    ctx = RunContext.from_config(cfg)
    base = ctx.splits("base")
    assert base.test == base.val and len(base.test) == 3 * 3  # 3 base classes x 3 val images
    run(cfg)
    (record,) = load_records([tmp_path / "run"])
    assert record["eval_split"] == "val" and record["row"].endswith("[val]")


def test_eval_split_val_full_scores_the_whole_validation_split(compose, tmp_path):
    """`eval.split=val_full` measures on every validation image (not the few-shot sample of min(shots, 4) per
    class, which stays the val list the methods see); the rows say so."""
    from transmiter.data.protocol import build_splits

    cfg = compose(["experiment=smoke", "eval.split=val_full", f"paths.output_dir={tmp_path}/run"])
    _fake(cfg, classes=6, per_class=(4, 7, 2))
    ctx = RunContext.from_config(cfg)
    base = ctx.splits("base")
    whole = build_splits(ctx.dataset_spec, ctx.data_dir, shots=-1, subsample="base")
    assert [d.impath for d in base.test] == [d.impath for d in whole.val] and len(base.test) == 3 * 7
    assert len(base.val) == 3 * 4  # shots=4: the sampled val list the methods see is unchanged
    assert not {d.impath for d in base.test} & {d.impath for d in whole.test}
    run(cfg)
    (record,) = load_records([tmp_path / "run"])
    assert record["eval_split"] == "val_full" and record["row"].endswith("[val_full]")


def test_eval_split_val_refuses_datasets_whose_val_is_the_test_set(compose, tmp_path, monkeypatch):
    import dataclasses

    from transmiter.config import ConfigError
    from transmiter.data import protocol

    cfg = compose(["experiment=smoke", "eval.split=val", f"paths.output_dir={tmp_path}/o"])
    _fake(cfg, classes=4)
    original = protocol.build_splits
    monkeypatch.setattr(
        protocol, "build_splits", lambda *a, **k: dataclasses.replace(original(*a, **k), val_is_test=True)
    )
    with pytest.raises(ConfigError, match="eval.split=val.*no validation split"):
        RunContext.from_config(cfg).splits("base")


def test_an_unknown_eval_split_names_the_choices(compose):
    from transmiter.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="eval.split") as error:
        validate_config(compose(["experiment=smoke", "eval.split=train"]), check_data=False)
    assert all(choice in str(error.value) for choice in ("test", "val", "val_full"))


def test_dataset_train_crop_scale_reaches_the_training_transform_and_feature_identity(compose, tmp_path):
    """A dataset's `train_crop_scale` shapes the training crop and keys every train-view feature cache."""
    from torchvision import transforms as T

    from transmiter.features.extract import ViewSpec, feature_identity

    cfg = compose(
        ["experiment=smoke", "+dataset.train_crop_scale=[1.0,1.0]", f"paths.output_dir={tmp_path}/o"]
    )
    ctx = RunContext.from_config(cfg)
    bundle = ctx.load_model(cfg.model)
    (crop,) = [t for t in bundle.train_transform.transforms if isinstance(t, T.RandomResizedCrop)]
    assert crop.scale == (1.0, 1.0) and bundle.train_crop_scale == (1.0, 1.0)
    default = RunContext.from_config(compose(["experiment=smoke", f"paths.output_dir={tmp_path}/p"]))
    other = default.load_model(cfg.model)
    assert other.train_crop_scale == (0.08, 1.0)
    train, test = ViewSpec("train"), ViewSpec("test")
    assert feature_identity(bundle, [], train, {}) != feature_identity(other, [], train, {})
    assert feature_identity(bundle, [], test, {}) == feature_identity(other, [], test, {})


def test_bad_train_crop_scale_names_the_key(compose):
    from transmiter.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="dataset.train_crop_scale"):
        validate_config(
            compose(["experiment=smoke", "+dataset.train_crop_scale=[0.9,0.1]"]), check_data=False
        )


def test_an_augmented_view_draws_what_torch_manual_seed_would_give_it():
    """A train view's transform sees the CPU generator and `random` seeded from (seed, view, index), the
    same state `torch.manual_seed` gives: cached views stay equal to those computed before."""
    import random

    from transmiter.features.extract import ViewSpec, _SeededViews

    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return torch.rand(4), random.random()

    views = _SeededViews(Draws(), ViewSpec("train", view=1, seed=7))
    for index in range(3):
        torch.manual_seed(99)
        random.seed(99)  # state left by other code must not matter
        drawn, drawn_py = views[index]
        seed = (7 * 1_000_003 + 1 * 7919 + index) % (2**31)
        torch.manual_seed(seed)
        random.seed(seed)
        assert torch.equal(drawn, torch.rand(4)) and drawn_py == random.random()
