"""Fitting (knowledge extraction) and TransMiter+ refinement on synthetic logits (Lightning, CPU)."""

from __future__ import annotations

import math
import warnings

import lightning as L
import pytest
import torch
from torch import nn

from transmiter.callbacks import ShutdownSpawnedProcessGroup
from transmiter.methods.adapter_fit import AdapterFitModule
from transmiter.methods.transmiter_plus import TransMiterPlusModule
from transmiter.transfer.adapter import LogitAdapter, standardize_logits
from transmiter.transfer.logit_data import LogitPairDataModule
from transmiter.transfer.training import LogitNoise, distillation_kl, warmup_cosine_factor

K, C = 64, 10


def _trainer(epochs: int) -> L.Trainer:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*but have no `val_dataloader`.*")
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _teacher_data(n: int, seed: int):
    """Teacher = a fixed, known perturbation of the input: sharper and class-shifted (in z units)."""
    g = torch.Generator().manual_seed(seed)
    logits = 20 + 3 * torch.randn(n, K, generator=g)
    z, mu, scale = standardize_logits(logits)
    shift = torch.linspace(-1.5, 1.5, C)
    teacher = (1.5 * z[:, :C] + shift) * scale + mu
    return logits, teacher


def _kl_agree(adapter: LogitAdapter, x, t):
    with torch.no_grad():
        out = adapter(x)[:, :C]
    return distillation_kl(out, t).item(), (out.argmax(1) == t.argmax(1)).float().mean().item()


# ------------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------------
def test_distillation_kl_matches_kldivloss_batchmean():
    g = torch.Generator().manual_seed(0)
    out, teacher = torch.randn(8, C, generator=g) * 3, torch.randn(8, C, generator=g) * 3
    ref = nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(out / 1.0, -1), torch.softmax(teacher / 0.5, -1)
    )
    assert distillation_kl(out, teacher).item() == pytest.approx(0.5 * ref.item(), rel=1e-5)
    # student / tau == teacher / T_t  ->  zero divergence
    assert distillation_kl(teacher * 2.0, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_warmup_cosine_schedule():
    total = 100
    f = [warmup_cosine_factor(s, total, 0.05) for s in range(total)]
    assert f[0] == pytest.approx(0.2) and f[4] == pytest.approx(1.0)
    assert f[5] == pytest.approx(1.0) and f[-1] < 1e-3
    assert all(a >= b for a, b in zip(f[4:], f[5:]))
    assert warmup_cosine_factor(5 + 47, total, 0.05) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))


def test_noise_batch_mode_all_or_nothing_and_sample_mode_mixed():
    x = 20 + 3 * torch.randn(256, K)
    batch_noise = LogitNoise(alpha=0.5, p=0.5, mode="batch", seed=0)
    states = []
    for _ in range(40):
        changed = (batch_noise(x) != x).any(dim=1)
        assert changed.all() or not changed.any()
        states.append(bool(changed.all()))
    assert 5 < sum(states) < 35
    sample_noise = LogitNoise(alpha=0.5, p=0.5, mode="sample", seed=0)
    y = sample_noise(x)
    frac = (y != x).any(dim=1).float().mean().item()
    assert 0.3 < frac < 0.7
    noisy = (y != x).any(dim=1)
    ratio = ((y - x)[noisy].std(dim=1) / x[noisy].std(dim=1)).mean().item()
    assert ratio == pytest.approx(0.5, rel=0.1)


def test_noise_is_seeded_and_resumable():
    x = torch.randn(16, K)
    a, b = LogitNoise(mode="sample", seed=3), LogitNoise(mode="sample", seed=3)
    assert torch.equal(a(x), b(x))
    state = a.state_dict()
    nxt = a(x)
    c = LogitNoise(mode="sample", seed=3)
    c.load_state_dict(state)
    assert torch.equal(c(x), nxt)
    # different DDP ranks draw different noise values but flip the same batch coin
    r0, r1 = LogitNoise(p=1.0, seed=3), LogitNoise(p=1.0, seed=3)
    r1.set_rank(1)
    assert not torch.equal(r0(x), r1(x))


def test_datamodule_global_batch_must_divide():
    x, t = _teacher_data(10, 0)
    dm = LogitPairDataModule(train=(x, t), batch_size=4)
    assert dm.per_device_batch_size() == 4
    dm.trainer = type("T", (), {"world_size": 3})()
    with pytest.raises(ValueError, match="divisible"):
        dm.per_device_batch_size()


# ------------------------------------------------------------------------------------------------
# the adapter really learns
# ------------------------------------------------------------------------------------------------
def test_fitting_reduces_kl_and_improves_agreement():
    x_tr, t_tr = _teacher_data(512, 0)
    x_te, t_te = _teacher_data(256, 1)
    module = AdapterFitModule(K=K, seed=0)
    kl0, agree0 = _kl_agree(module.adapter, x_te, t_te)
    trainer = _trainer(10)
    trainer.fit(module, datamodule=LogitPairDataModule(train=(x_tr, t_tr), val=(x_te, t_te), batch_size=128))
    fitted = module.fitted_adapter()
    kl1, agree1 = _kl_agree(fitted, x_te, t_te)
    assert kl1 < 0.4 * kl0, (kl0, kl1)
    assert agree1 > agree0 + 0.2, (agree0, agree1)
    assert "val/kl" in trainer.callback_metrics and "train/kl" in trainer.callback_metrics
    assert fitted.projection == "frozen" and not any(p.requires_grad for p in fitted.parameters())
    W = module.adapter.W.detach()
    torch.testing.assert_close(W.T @ W, torch.eye(K), atol=1e-5, rtol=0)


def test_fitting_is_reproducible_with_seed():
    x, t = _teacher_data(256, 2)
    results = []
    for _ in range(2):
        module = AdapterFitModule(K=K, seed=5, noise_mode="sample")
        _trainer(2).fit(module, datamodule=LogitPairDataModule(train=(x, t), batch_size=128, seed=5))
        results.append(module.fitted_adapter().export_tensors())
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k


# ------------------------------------------------------------------------------------------------
# TransMiter+
# ------------------------------------------------------------------------------------------------
BASE = [0, 1, 2, 3]


def _labelled(n: int, seed: int):
    """Zero-shot logits biased towards class 0: a small labelled set can fix the miscalibration."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(BASE)[torch.randint(0, len(BASE), (n,), generator=g)]
    logits = 20 + torch.randn(n, K, generator=g)
    logits[torch.arange(n), y] += 3.0
    logits[:, 0] += 4.0
    return logits, y


def _acc(adapter: LogitAdapter, x, y) -> float:
    with torch.no_grad():
        return (adapter(x)[:, BASE].argmax(1) == y).float().mean().item()


def test_transmiter_plus_raises_accuracy():
    moved = LogitAdapter(K, seed=0).set_projection("frozen").requires_grad_(False)
    x_tr, y_tr = _labelled(512, 0)
    x_te, y_te = _labelled(512, 1)
    acc0 = _acc(moved, x_te, y_te)
    module = TransMiterPlusModule(moved, class_ids=BASE, lr=1e-3, seed=0)
    assert module.adapter.projection == "orthogonal"
    _trainer(5).fit(module, datamodule=LogitPairDataModule(train=(x_tr, y_tr), batch_size=128))
    refined = module.refined_adapter()
    acc1 = _acc(refined, x_te, y_te)
    assert acc1 > acc0 + 0.2, (acc0, acc1)
    assert refined.projection == "frozen" and not any(p.requires_grad for p in refined.parameters())
    W = module.adapter.W.detach()
    torch.testing.assert_close(W.T @ W, torch.eye(K), atol=1e-5, rtol=0)
    assert torch.equal(moved.W, LogitAdapter(K, seed=0).W.detach())  # input adapter untouched


def test_transmiter_plus_validation_selection_and_label_checks():
    moved = LogitAdapter(K, seed=0, projection="frozen")
    x_tr, y_tr = _labelled(256, 2)
    x_va, y_va = _labelled(64, 3)
    module = TransMiterPlusModule(moved, class_ids=BASE, lr=1e-3, projection="free", select_on_val=True)
    _trainer(3).fit(
        module, datamodule=LogitPairDataModule(train=(x_tr, y_tr), val=(x_va, y_va), batch_size=128)
    )
    assert module.best_val_acc is not None
    assert _acc(module.refined_adapter(), x_va, y_va) == pytest.approx(module.best_val_acc)
    with pytest.raises(ValueError, match="not among class_ids"):
        module.local_labels(torch.tensor([0, 5]))
    assert module.local_labels(torch.tensor([3, 0])).tolist() == [3, 0]
    with pytest.raises(ValueError, match="class_ids"):
        TransMiterPlusModule(moved, class_ids=[0, 0, 1])


def test_lightning_checkpoint_round_trip(tmp_path):
    x, t = _teacher_data(256, 4)
    module = AdapterFitModule(K=K, seed=1)
    trainer = _trainer(1)
    trainer.fit(module, datamodule=LogitPairDataModule(train=(x, t), batch_size=128))
    path = tmp_path / "fit.ckpt"
    trainer.save_checkpoint(path)
    restored = AdapterFitModule.load_from_checkpoint(path, weights_only=False)
    assert restored.adapter.projection == "orthogonal"
    with torch.no_grad():
        torch.testing.assert_close(restored.adapter(x), module.adapter(x))
    assert restored.noise.state_dict()["noise"].equal(module.noise.state_dict()["noise"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fitting_under_ddp_spawn_two_cpu_processes():
    x_tr, t_tr = _teacher_data(512, 0)
    x_te, t_te = _teacher_data(256, 1)
    module = AdapterFitModule(K=K, seed=0)
    kl0, _ = _kl_agree(module.adapter, x_te, t_te)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=10,
        callbacks=[ShutdownSpawnedProcessGroup()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=LogitPairDataModule(train=(x_tr, t_tr), batch_size=128))
    kl1, _ = _kl_agree(module.fitted_adapter(), x_te, t_te)
    assert kl1 < 0.4 * kl0, (kl0, kl1)
    assert "train/kl" in trainer.callback_metrics


def test_non_finite_logits_stop_fitting_and_name_the_checkpoint(tmp_path):
    """A NaN in the cached logits stops the fit with a clear error instead of training on garbage."""
    import lightning as L
    import pytest
    from lightning.pytorch.callbacks import ModelCheckpoint

    from transmiter.callbacks import NonFiniteLossError, NonFiniteLossGuard
    from transmiter.methods.adapter_fit import AdapterFitModule
    from transmiter.transfer.logit_data import LogitPairDataModule

    torch.manual_seed(0)
    x, t = torch.randn(64, 32), torch.randn(64, 8)
    x[40:] = float("nan")
    dm = LogitPairDataModule(train=(x, t), batch_size=32, seed=0)
    module = AdapterFitModule(K=32, seed=0)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_epochs=1)
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        callbacks=[ckpt, NonFiniteLossGuard()],
    )
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        trainer.fit(module, datamodule=dm)


# ---------------------------------------------------------------------------------------------------
# the TransMiter+ pipeline on tiny random CLIPs and a fake dataset (methods/transmiter.py)
# ---------------------------------------------------------------------------------------------------
_PIPELINE = [
    "experiment=smoke",
    "method=transmiter_plus",
    "pair=tiny_random",
    "method@method.source_finetune=ft",
    "method.source_finetune.module.epochs=1",
    "method.K=64",
    "method.views=2",
    "method.fit.epochs=1",
    "method.refine.epochs=1",
]


def _pipeline(compose, tmp_path, *overrides):
    """(cfg, ctx, method) for TransMiter+ on a fake 6-class dataset with 10 training images per class
    (3 base classes; the setting's few-shot split takes 4 of them)."""
    from transmiter.config.instantiate import dataset_spec_from_config, instantiate
    from transmiter.context import RunContext
    from transmiter.data.fake import write_fake_dataset

    cfg = compose([*_PIPELINE, f"paths.output_dir={tmp_path / 'run'}", *overrides])
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=6, per_class=(10, 2, 3)
    )
    return cfg, RunContext.from_config(cfg), instantiate(cfg.method)


def test_refinement_set_is_the_few_shot_base_split_even_when_fitting_on_all_images(compose, tmp_path):
    _, ctx, method = _pipeline(compose, tmp_path, "method.fit_images=all")
    fit, labelled = method.fit_data(ctx), method.refine_data(ctx)
    base = set(method._train_ids(ctx, 6))
    assert len(fit.items) == 10 * 3  # every training image of the 3 base classes (unlabelled)
    assert len(labelled.items) == 4 * 3  # shots x base classes
    assert {d.label for d in labelled.items} == base and {d.impath for d in labelled.items} <= {
        d.impath for d in fit.items
    }
    assert labelled.labels.shape == (4 * 3 * 2,)  # x views
    # with the default fit_images=fewshot both sets are the same images (the refine stage key is unchanged)
    _, ctx2, default = _pipeline(compose, tmp_path)
    assert default.refine_data(ctx2).fingerprint == default.fit_data(ctx2).fingerprint


def test_transmiter_plus_pipeline_transfer_artifacts_costs_and_adapter_options(
    compose, tmp_path, monkeypatch
):
    """One run, several contracts: the transfer never sums pairs over a process group; the transfer stage
    checks the fitted artifact's source; the transferred artifact carries a config hash; fit.proj_dim and
    fit.dropout reach the adapter; refinement trains on the few-shot labelled split under fit_images=all;
    the record's costs keep each stage's first-measured seconds when a later run reuses the stages."""
    import transmiter.transfer.artifact as artifact_mod
    import transmiter.transfer.logit_data as logit_data_mod
    import transmiter.transfer.transfer as transfer_mod
    from transmiter.config.instantiate import instantiate
    from transmiter.context import RunContext
    from transmiter.transfer.artifact import config_hash, read_artifact_metadata

    calls: dict[str, list] = {"distributed": [], "loads": [], "train_rows": []}
    real_transfer = transfer_mod.transfer_adapter_with_details
    real_load = artifact_mod.load_adapter_artifact
    real_dm = logit_data_mod.LogitPairDataModule

    def spy_transfer(*args, **kwargs):
        calls["distributed"].append(kwargs.get("distributed", "missing"))
        return real_transfer(*args, **kwargs)

    def spy_load(path, **kwargs):
        calls["loads"].append(kwargs)
        return real_load(path, **kwargs)

    def spy_dm(*args, train, **kwargs):
        calls["train_rows"].append(int(train[0].shape[0]))
        return real_dm(*args, train=train, **kwargs)

    monkeypatch.setattr(transfer_mod, "transfer_adapter_with_details", spy_transfer)
    monkeypatch.setattr(artifact_mod, "load_adapter_artifact", spy_load)
    monkeypatch.setattr(logit_data_mod, "LogitPairDataModule", spy_dm)

    cfg, ctx, method = _pipeline(
        compose, tmp_path, "method.fit_images=all", "method.fit.proj_dim=80", "method.fit.dropout=0.1"
    )
    first = method(ctx)

    # 1. every process holds all the pairs: the Procrustes statistic is never summed over processes
    assert calls["distributed"] == [False]
    # 4. the transfer stage refuses a fitted artifact of another source model
    source = ctx.load_model(cfg.pair.source)
    (transfer_load,) = [c for c in calls["loads"] if c.get("expect_stage") == "fitted"]
    assert transfer_load["expect_source_model"] == source.identity
    transferred = read_artifact_metadata(_stage_artifact(ctx, "adapter_transfer"))
    assert transferred.config_hash == config_hash(method.artifact_config(64)) is not None
    # 6. fit.proj_dim / fit.dropout reach the fitted adapter
    fitted = read_artifact_metadata(_stage_artifact(ctx, "adapter_fit"))
    assert fitted.adapter_config["proj_dim"] == 80 and fitted.adapter_config["dropout"] == pytest.approx(0.1)
    # 2. fitting saw all 30 base-class training images, refinement only the 4-shot labelled 12 (x 2 views)
    assert calls["train_rows"] == [30 * 2, 12 * 2]
    assert "4-shot training images" in first.extra["refine_data"]
    # 5. costs: each stage's seconds as first measured
    costs = first.costs
    for key in ("fit_time_s", "transfer_time_s", "refine_time_s", "feature_pass_time_s"):
        assert costs[key] > 0, key
    assert costs["train_time_s"] == pytest.approx(
        costs["fit_time_s"] + costs["transfer_time_s"] + costs["refine_time_s"]
    )
    assert not any(first.extra["stages_reused"].values())

    # the same job again (fresh context, same stage store): nothing is recomputed, costs stay the same
    again_ctx = RunContext.from_config(cfg)
    again = instantiate(cfg.method)(again_ctx)
    assert all(again.extra["stages_reused"].values()) and calls["distributed"] == [False]
    for key in ("fit_time_s", "transfer_time_s", "refine_time_s", "feature_pass_time_s", "train_time_s"):
        assert again.costs[key] == pytest.approx(costs[key]), key
    assert again_ctx.timings["fit_s"] < costs["fit_time_s"]  # this run's own wall time: a reuse


def _stage_artifact(ctx, name: str):
    """The adapter artifact of the (only) stage `name` in the job's ledger."""
    import json
    from pathlib import Path

    ledger = json.loads((ctx.output_dir / "stages.json").read_text())
    (entry,) = [v for v in ledger.values() if v["name"] == name]
    return Path(entry["path"]) / "adapter.safetensors"
