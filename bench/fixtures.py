"""Runs composed exactly as the app composes them, on fake CoOp-format data in a temporary folder.

ctx = fake_run(tmp, model="vit_b16_random", classes=4, per_class=(8, 1, 1), image_size=224)
bundle = ctx.load_model(ctx.cfg.model)
splits = ctx.splits("all")                # every training image (shots = -1)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import torch

from bench.core import quiet


def fake_run(
    tmp: Path,
    *,
    model: str | None = None,
    classes: int = 10,
    per_class: Sequence[int] = (4, 1, 4),
    image_size: int = 32,
    eval_batch: int = 128,
    trainer: str = "cpu",
    extra: Sequence[str] = (),
):
    """A RunContext over a fake dataset written under `tmp` (data, cache and outputs all inside it)."""
    from transmiter.config import compose_config
    from transmiter.config.instantiate import dataset_spec_from_config
    from transmiter.context import RunContext
    from transmiter.data.fake import write_fake_dataset

    overrides = [
        "experiment=smoke",
        "setting=base2base",
        "setting.shots=-1",
        f"trainer={trainer}",
        "logger=none",
        f"paths.data_dir={tmp}/data",
        f"paths.cache_dir={tmp}/cache",
        f"paths.output_dir={tmp}/out",
        f"eval.batch_size={eval_batch}",
        *extra,
    ]
    if model is not None:
        overrides.append(f"model={model}")
    cfg = compose_config(overrides)
    spec = dataset_spec_from_config(cfg.dataset)
    write_fake_dataset(
        spec, cfg.paths.data_dir, num_classes=classes, per_class=tuple(per_class), image_size=image_size
    )
    return RunContext.from_config(cfg)


def load_model(ctx, node):
    with quiet():
        return ctx.load_model(node)


def meta_model(arch: str):
    """An open_clip model built on the meta device (no memory, no init time): for FLOP counting."""
    import open_clip

    from transmiter.models.clip import register_project_models

    register_project_models()
    with quiet(), torch.device("meta"):
        model = open_clip.create_model(arch, pretrained=None, device="meta")
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)
    return SimpleNamespace(model=model, identity=f"{arch}@meta", image_size=size)
