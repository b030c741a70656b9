"""A torch ``Dataset`` over a list of :class:`Datum`.

Usage::

    from transmiter.data.dataset import ImageListDataset

    dataset = ImageListDataset(splits.test, transform=test_tf)
    image, label, index = dataset[0]       # tensor (3, H, W), int label, int position in splits.test

The index lets evaluation code map per-image outputs (features, logits) back to ``splits.test[index]``,
also under DDP where each rank sees a strided subset. Images are opened with PIL and converted to RGB;
an unreadable file raises :class:`DatasetError` naming the path and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from transmiter.data.datum import Datum
from transmiter.data.errors import DatasetError


def read_image(path: str) -> Image.Image:
    """Open ``path`` as an RGB PIL image (fully decoded, file closed)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() decodes now, so truncated files fail here, not later
    except FileNotFoundError as err:
        raise DatasetError(
            f"image not found: {path}; the dataset changed after its split was loaded, restore the file "
            "or re-extract the dataset (check_dataset() lists every missing file)"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        # PIL raises OSError for truncated data, UnidentifiedImageError for non-images, and occasionally
        # SyntaxError/ValueError from format plugins on malformed headers.
        raise DatasetError(
            f"cannot read image {path} ({type(err).__name__}: {err}); the file is corrupt or not an image, "
            "download / extract it again"
        ) from err


class ImageListDataset(Dataset):
    """``(image_tensor, label, index)`` for each :class:`Datum` of ``data``.

    Args:
        data: the items (e.g. ``splits.train``).
        transform: applied to the RGB PIL image (e.g. from ``build_transforms``); None returns the PIL image.
    """

    def __init__(self, data: Sequence[Datum], transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.data = list(data)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        datum = self.data[index]
        image = read_image(datum.impath)
        if self.transform is not None:
            image = self.transform(image)
        return image, datum.label, index
