"""Toy fixtures shared by the tests and the benchmarks: a tiny open_clip ViT and solid-colour images.

from tests.toys import SolidColourDataset, register_tiny_config
name = register_tiny_config()            # "transmiter-tiny-vit": a 4-block ViT, 32 px, patch 8
data = SolidColourDataset(num_classes=4, per_class=8)    # (image [3, 32, 32], label, index)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

TINY_VIT_CONFIG: dict = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 4},
}

COLOUR_NAMES = [
    "red",
    "green",
    "blue",
    "yellow",
    "cyan",
    "magenta",
    "white",
    "black",
    "orange",
    "purple",
    "grey",
    "brown",
    "pink",
    "olive",
    "navy",
    "teal",
]


def register_tiny_config(
    name: str = "transmiter-tiny-vit", config: dict | None = None, directory: str | os.PathLike | None = None
) -> str:
    """Register a tiny open_clip ViT config (JSON) so `open_clip.create_model(name)` and
    `open_clip.get_tokenizer(name)` work; idempotent for an unchanged config."""
    import open_clip

    cfg = config or TINY_VIT_CONFIG
    if name in open_clip.list_models() and open_clip.get_model_config(name) == cfg:
        return name
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="transmiter-oc-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return name


class SolidColourDataset(Dataset):
    """Images of one flat colour per class plus noise: (image [3, S, S], label, index).

    `augment=True` redraws the noise at every access (a stand-in for train augmentation: a new view per
    epoch); otherwise the noise is a fixed function of the index. Class c uses colour c of a fixed palette
    (distinct for up to 16 classes, then seeded random colours). Values are roughly CLIP-normalised.
    """

    def __init__(
        self,
        num_classes: int,
        per_class: int,
        image_size: int = 32,
        noise: float = 0.3,
        augment: bool = False,
        seed: int = 0,
    ):
        self.num_classes, self.per_class, self.image_size = int(num_classes), int(per_class), int(image_size)
        self.noise, self.augment, self.seed = float(noise), bool(augment), int(seed)
        gen = torch.Generator().manual_seed(1234)
        palette = torch.tensor(
            [
                [1, 0, 0],
                [0, 1, 0],
                [0, 0, 1],
                [1, 1, 0],
                [0, 1, 1],
                [1, 0, 1],
                [1, 1, 1],
                [0, 0, 0],
                [1, 0.5, 0],
                [0.5, 0, 1],
                [0.5, 0.5, 0.5],
                [0.6, 0.3, 0],
                [1, 0.6, 0.8],
                [0.5, 0.5, 0],
                [0, 0, 0.5],
                [0, 0.5, 0.5],
            ],
            dtype=torch.float32,
        )
        if self.num_classes > len(palette):
            palette = torch.cat([palette, torch.rand(self.num_classes - len(palette), 3, generator=gen)])
        self.colours = (palette[: self.num_classes] - 0.5) / 0.27
        self.labels = [i // self.per_class for i in range(len(self))]

    @property
    def classnames(self) -> list[str]:
        return [COLOUR_NAMES[c] if c < len(COLOUR_NAMES) else f"colour_{c}" for c in range(self.num_classes)]

    def __len__(self) -> int:
        return self.num_classes * self.per_class

    def __getitem__(self, index: int):
        label = index // self.per_class
        gen = None if self.augment else torch.Generator().manual_seed(self.seed * 100_003 + index)
        eps = torch.randn(3, self.image_size, self.image_size, generator=gen)
        image = self.colours[label].view(3, 1, 1) + self.noise * eps
        return image, label, index


def write_fake_data(cfg, classes: int = 6, per_class: tuple[int, int, int] = (4, 2, 3)):
    """A fake copy of the composed config's dataset under its paths.data_dir (train, val, test images per
    class); returns what `transmiter.data.fake.write_fake_dataset` returns."""
    from transmiter.config.instantiate import dataset_spec_from_config
    from transmiter.data.fake import write_fake_dataset

    return write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=classes, per_class=per_class
    )
