"""Two-process CPU DDP (ddp_spawn, gloo): SkipT and FT train, shards are disjoint, DDP test accuracy equals
a single-process evaluation of the same weights."""

from __future__ import annotations

import lightning as L
import open_clip
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from tests.toys import SolidColourDataset, register_tiny_config
from transmiter.callbacks import ShutdownSpawnedProcessGroup
from transmiter.methods.finetune import FinetuneCLIP
from transmiter.methods.skip_tuning import SkipTuningCLIP

pytestmark = [
    pytest.mark.filterwarnings("ignore:Your `IterableDataset` has `__len__` defined"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`"),
]


def _trainer(devices: int, **kw) -> L.Trainer:
    strategy = "ddp_spawn" if devices > 1 else "auto"
    kw["callbacks"] = [*kw.get("callbacks", []), ShutdownSpawnedProcessGroup()]
    return L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kw,
    )


class CheckShards(Callback):
    """Inside each rank: its token cache holds only its own images, disjoint from the other rank's."""

    def on_train_epoch_end(self, trainer, pl_module):
        held = (pl_module.image_cache.row_of >= 0).long()
        batches = torch.tensor([len(pl_module.batch_sampler)])
        every = pl_module.all_gather(held)
        counts = pl_module.all_gather(batches)
        assert every.shape[0] == 2
        assert int(every.sum(0).max()) <= 1, "ranks cached overlapping images"
        assert int(held.sum()) == len(pl_module.batch_sampler) * pl_module.batch_size
        assert counts.flatten().tolist()[0] == counts.flatten().tolist()[1]


def _changed(before: dict, module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.model.state_dict().items())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ddp_spawn_skip_tuning_and_ft_match_single_process():
    name = register_tiny_config()
    tok = open_clip.get_tokenizer(name)
    train = SolidColourDataset(4, 8, augment=True)
    test = SolidColourDataset(
        4, 4, seed=7
    )  # 16 images = 2 ranks x 2 batches of 4: no DistributedSampler padding
    loader = DataLoader(test, batch_size=4)

    torch.manual_seed(0)
    skip = SkipTuningCLIP(
        open_clip.create_model(name, pretrained=None),
        tok,
        train.classnames,
        train_dataset=train,
        epochs=2,
        text_lr=0.01,
        image_lr=0.01,
        warmup_lr=0.002,
        seed=3,
    )
    before = {k: v.clone() for k, v in skip.model.state_dict().items()}
    _trainer(2, max_epochs=skip.max_epochs, callbacks=[CheckShards()]).fit(skip)
    assert _changed(before, skip)  # trained weights came back from the spawned ranks

    torch.manual_seed(0)
    ft = FinetuneCLIP(open_clip.create_model(name, pretrained=None), tok, train.classnames, lr=0.01, epochs=1)
    before = {k: v.clone() for k, v in ft.model.state_dict().items()}
    _trainer(2, max_epochs=1).fit(ft, DataLoader(train, batch_size=4, shuffle=True))
    assert _changed(before, ft)

    for module in (skip, ft):
        ddp = _trainer(2).test(module, dataloaders=loader, verbose=False)[0]["test/train/acc"]
        single = _trainer(1).test(module, dataloaders=loader, verbose=False)[0]["test/train/acc"]
        assert ddp == pytest.approx(single, abs=1e-6)
