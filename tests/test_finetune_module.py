"""FinetuneCLIP: trainable set, learning on a toy task, base/novel evaluation, checkpoints, NaN guard."""

from __future__ import annotations

import lightning as L
import open_clip
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from open_clip.model import CLIP
from torch.utils.data import DataLoader

from tests.toys import SolidColourDataset, register_tiny_config
from transmiter.callbacks import NonFiniteLossError, NonFiniteLossGuard
from transmiter.config.schema import FineTuneConfig
from transmiter.methods.finetune import FinetuneCLIP, prompt_texts

pytestmark = [
    pytest.mark.filterwarnings("ignore:Your `IterableDataset` has `__len__` defined"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`"),
]


def tiny(seed: int = 0):
    name = register_tiny_config()
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None), open_clip.get_tokenizer(name)


def trainer(**kw) -> L.Trainer:
    base = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    base.update(kw)
    return L.Trainer(**base)


def test_prompts_replace_underscores():
    assert prompt_texts(["Apply_Eye_Makeup"], "a photo of a {}.") == ["a photo of a Apply Eye Makeup."]
    model, tok = tiny()
    with pytest.raises(ValueError, match="exactly one"):
        FinetuneCLIP(model, tok, ["a"], template="a photo")


def test_trainable_set_is_every_block_and_heads():
    model, tok = tiny()
    module = FinetuneCLIP(model, tok, ["red", "green"])
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in module.model.named_parameters() if not p.requires_grad}
    assert frozen == {
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.conv1.weight",
        "visual.ln_pre.weight",
        "visual.ln_pre.bias",
        "token_embedding.weight",
        "positional_embedding",
        "logit_scale",
    }
    for b in range(4):
        assert f"visual.transformer.resblocks.{b}.attn.in_proj_weight" in trainable
        assert f"transformer.resblocks.{b}.mlp.c_proj.weight" in trainable
    assert {"visual.proj", "visual.ln_post.weight", "ln_final.weight", "text_projection"} <= trainable
    opt = module.configure_optimizers()["optimizer"]
    assert len(opt.param_groups) == 1
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    # the paper's schedules as the schema gives them: 10 epochs, 4 in the cross-dataset recipe
    schema = FineTuneConfig()
    assert schema.module.epochs == 10 and schema.per_setting["cross_dataset"] == {"epochs": 4}


def _accuracy(module, data) -> float:
    module.eval()
    with torch.no_grad():
        images = torch.stack([data[i][0] for i in range(len(data))])
        logits = module(images, data.classnames)
    return (logits.argmax(-1) == torch.tensor(data.labels)).float().mean().item()


def test_toy_task_accuracy_rises():
    model, tok = tiny(seed=1)
    train = SolidColourDataset(4, 6, augment=True, seed=0)
    held = SolidColourDataset(4, 6, seed=99)
    module = FinetuneCLIP(model, tok, train.classnames, lr=0.05, epochs=4)
    before = _accuracy(module, held)
    trainer(max_epochs=4).fit(module, DataLoader(train, batch_size=4, shuffle=True))
    after = _accuracy(module, held)
    assert after >= 0.9 and after > before + 0.2, (before, after)


def test_base_and_novel_evaluation_from_one_module():
    model, tok = tiny()
    data = SolidColourDataset(4, 3, seed=3)
    names = data.classnames
    module = FinetuneCLIP(model, tok, names[:2], eval_classnames={"base": names[:2], "novel": names[2:]})
    base_items = [(data[i][0], data.labels[i], i) for i in range(len(data)) if data.labels[i] < 2]
    novel_items = [(data[i][0], data.labels[i] - 2, i) for i in range(len(data)) if data.labels[i] >= 2]
    module.set_eval_order("base", "novel")
    out = trainer().test(
        module,
        dataloaders=[DataLoader(base_items, batch_size=4), DataLoader(novel_items, batch_size=4)],
        verbose=False,
    )
    metrics = {k: v for d in out for k, v in d.items()}
    for key, items, names_ in (("base", base_items, names[:2]), ("novel", novel_items, names[2:])):
        images = torch.stack([x for x, _, _ in items])
        with torch.no_grad():
            pred = module.eval()(images, names_).argmax(-1)
        expected = (pred == torch.tensor([y for _, y, _ in items])).float().mean().item()
        assert metrics[f"test/{key}/acc"] == pytest.approx(expected)
    preds = trainer().predict(module, dataloaders=DataLoader(novel_items, batch_size=4))
    assert preds[0]["logits"].shape == (4, 2)
    with pytest.raises(ValueError, match="unknown evaluation class set"):
        module.set_eval_order("train")


def test_checkpoint_round_trip_weights_only(tmp_path):
    model, tok = tiny()
    data = SolidColourDataset(3, 4, augment=True)
    module = FinetuneCLIP(
        model, tok, data.classnames, lr=0.01, epochs=1, eval_classnames={"base": data.classnames}
    )
    t = trainer(max_epochs=1, limit_train_batches=2)
    t.fit(module, DataLoader(data, batch_size=4, shuffle=True))
    path = tmp_path / "ft.ckpt"
    t.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert raw["hyper_parameters"]["classnames"] == data.classnames
    assert type(raw["hyper_parameters"]["eval_classnames"]) is dict
    fresh, _ = tiny(seed=123)
    loaded = FinetuneCLIP.load_from_checkpoint(
        path, model=fresh, tokenizer=tok, weights_only=True, eval_classnames={"novel": ["olive", "navy"]}
    )
    images = torch.stack([data[i][0] for i in range(6)])
    module.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, data.classnames), module(images, data.classnames))
        assert loaded(images).shape == (6, 2)  # the novel set given at load time
    assert loaded.lr == pytest.approx(0.01)


class _PoisonAtEpoch(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            with torch.no_grad():
                pl_module.model.visual.proj.fill_(float("nan"))


def test_non_finite_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    model, tok = tiny()
    data = SolidColourDataset(2, 4)
    module = FinetuneCLIP(model, tok, data.classnames, epochs=3)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1)
    t = trainer(
        max_epochs=3,
        limit_train_batches=1,
        callbacks=[ckpt, _PoisonAtEpoch(), NonFiniteLossGuard()],
        enable_checkpointing=True,
    )
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, global step 1.*learning rate"):
        t.fit(module, DataLoader(data, batch_size=4))
    files = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert files == ["epoch=0-step=1.ckpt"]
    state = torch.load(tmp_path / files[0], weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_resnet_tower_fine_tunes():
    torch.manual_seed(0)
    rn = CLIP(
        32,
        dict(layers=[1, 1, 1, 1], width=16, image_size=64, head_width=8),
        dict(context_length=16, width=32, heads=2, layers=2),
    )
    tok = open_clip.SimpleTokenizer(context_length=16)
    module = FinetuneCLIP(rn, tok, ["red", "blue"])
    loss = module.compute_loss(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))
    loss.backward()
    assert rn.visual.layer1[0].conv1.weight.grad is not None
    assert rn.visual.conv1.weight.grad is None


def _recorded_logs(module) -> list[tuple[str, dict]]:
    """Replace `module.log` by a recorder of (name, keyword arguments)."""
    calls: list[tuple[str, dict]] = []
    module.log = lambda name, value, **kw: calls.append((name, kw))
    return calls


def test_epoch_level_train_loss_is_synced_across_ranks():
    """The epoch mean of the loss is reduced over DDP ranks (sync_dist), the
    per-step value is logged as it is; keys stay train/loss_step and train/loss_epoch."""
    model, tok = tiny()
    data = SolidColourDataset(2, 2)
    module = FinetuneCLIP(model, tok, data.classnames)
    calls = _recorded_logs(module)
    images, labels, _ = next(iter(DataLoader(data, batch_size=4)))
    module.training_step((images, labels), 0)
    logged = dict(calls)
    assert set(logged) == {"train/loss_step", "train/loss_epoch"}
    assert logged["train/loss_step"]["on_step"] and not logged["train/loss_step"]["on_epoch"]
    assert logged["train/loss_step"].get("sync_dist", False) is False
    epoch = logged["train/loss_epoch"]
    assert epoch["on_epoch"] and not epoch["on_step"] and epoch["sync_dist"] is True
