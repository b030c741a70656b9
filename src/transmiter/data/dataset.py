"""A torch ``Dataset`` over a list of :class:`Datum`.

Usage::

    from transmiter.data.dataset import ImageListDataset

    dataset = ImageListDataset(splits.test, transform=test_tf)
    image, label, index = dataset[0]       # tensor (3, H, W), int label, int position in splits.test

The index lets evaluation code map per-image outputs (features, logits) back to ``splits.test[index]``,
also under DDP where each rank sees a strided subset. Images are opened with PIL and converted to RGB;
an unreadable file raises :class:`DatasetError` naming the path and the fix.

With ``dataset.on_corrupt_image=skip`` a run first decodes every image it will use and drops the ones
that fail (:func:`drop_unreadable_images`), so training and evaluation never meet them::

    splits, skipped = drop_unreadable_images(splits)   # skipped: {path: reason}
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from transmiter.data.datum import DatasetSplits, Datum
from transmiter.data.errors import DatasetError

#: what a run does with an image that cannot be decoded (`dataset.on_corrupt_image`)


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
            "download / extract it again, or run with dataset.on_corrupt_image=skip to leave such files out "
            "(they are counted and listed in the results record)"
        ) from err


def unreadable_images(paths: Iterable[str], workers: int | None = None) -> dict[str, str]:
    """``{path: reason}`` for every image of ``paths`` that exists but cannot be decoded.

    Each file is fully decoded (truncated data only fails there), by a thread pool: PIL releases the GIL
    while decoding. A missing file is not "corrupt": it raises, as it would at load time."""
    unique = list(dict.fromkeys(paths))
    workers = workers or min(8, os.cpu_count() or 1)

    def problem(path: str) -> str | None:
        try:
            read_image(path)
        except DatasetError as err:
            if isinstance(err.__cause__, FileNotFoundError):
                raise
            cause = err.__cause__
            return f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = dict(zip(unique, pool.map(problem, unique), strict=True))
    return {path: reason for path, reason in found.items() if reason is not None}


def drop_unreadable_images(
    splits: DatasetSplits, known: dict[str, str | None] | None = None
) -> tuple[DatasetSplits, dict[str, str]]:
    """``splits`` without the images that cannot be decoded, and ``{path: reason}`` of those dropped.

    ``known`` caches verdicts across calls (``None`` = readable), so the base / novel / all splits of one
    run decode each file once. Dropped training images are not replaced: the few-shot draw stays the
    protocol's (and its cached JSON untouched), so such a class trains on one image fewer."""
    known = {} if known is None else known
    items = [d for part in (splits.train, splits.val, splits.test) for d in part]
    todo = [d.impath for d in items if d.impath not in known]
    bad_now = unreadable_images(todo)
    known.update({path: bad_now.get(path) for path in todo})
    bad = {d.impath: known[d.impath] for d in items if known[d.impath] is not None}
    if not bad:
        return splits, {}

    def keep(part: list[Datum]) -> list[Datum]:
        return [d for d in part if d.impath not in bad]

    return (
        dataclasses.replace(splits, train=keep(splits.train), val=keep(splits.val), test=keep(splits.test)),
        bad,
    )


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
