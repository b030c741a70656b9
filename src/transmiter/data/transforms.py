"""Image transforms of the CoOp protocol.

Usage::

    from transmiter.data.transforms import build_transforms

    train_tf, test_tf = build_transforms()                    # 224 px, CLIP mean/std, RRC scale (0.08, 1)
    train_tf, test_tf = build_transforms(image_size=336)      # e.g. ViT-L/14@336

* train: RGB -> RandomResizedCrop(size, scale=rrc_scale, bicubic) -> RandomHorizontalFlip(0.5) -> ToTensor -> Normalize.
  No plain Resize before the crop (Dassl adds none when a random resized crop is present).
* test: RGB -> Resize(shorter side = size, bicubic, aspect kept) -> CenterCrop(size) -> ToTensor -> Normalize,
  which is OpenAI's CLIP preprocessing; the older Resize((size, size)) scored lower (CoOp issue #8).

Transforms are plain torchvision ``Compose`` objects made of picklable parts, so DataLoader workers can use
them with any start method.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: the protocol's RandomResizedCrop area range; a dataset config may narrow it (`train_crop_scale`)
DEFAULT_CROP_SCALE = (0.08, 1.0)


class ConvertToRGB:
    """PIL image -> RGB (greyscale, palette and RGBA images exist in several datasets)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def build_transforms(
    image_size: int = 224,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    rrc_scale: Sequence[float] = DEFAULT_CROP_SCALE,
) -> tuple[T.Compose, T.Compose]:
    """``(train_transform, test_transform)`` as described in the module docstring."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    low, high = rrc_scale
    if not 0 < low <= high <= 1:
        raise ValueError(f"rrc_scale must satisfy 0 < low <= high <= 1, got {tuple(rrc_scale)}")
    normalize = T.Normalize(mean=list(mean), std=list(std))
    train = T.Compose(
        [
            ConvertToRGB(),
            T.RandomResizedCrop(image_size, scale=(low, high), interpolation=InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
            T.ToTensor(),
            normalize,
        ]
    )
    test = T.Compose(
        [
            ConvertToRGB(),
            # An int size resizes the shorter side and keeps the aspect ratio.
            T.Resize(image_size, interpolation=InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.ToTensor(),
            normalize,
        ]
    )
    return train, test
