"""The image-feature pass: computed once per identity, cached on disk, reused by every logit-space method.

    feats = extract_image_features(
        bundle, split_items, view=ViewSpec("test"), cache=ArrayCache(root),
        identity={"dataset": "OxfordPets", "split": "test", "subset": "base", "shots": 16, "seed": 1},
        make_trainer=lambda: build_trainer(cfg.trainer, purpose="features"),
    )                                         # torch.FloatTensor [N, D], L2-normalised

The identity that keys the cache always includes the model identity (architecture + weights hash),
the exact item list (paths + labels), the size and modification time of every image file, the transform
and the augmented-view index, on top of whatever the caller passes (dataset, split, class subset, shots,
seed). Change any of them (replace or rewrite one image) and the entry is new.

The pass runs as `Trainer.predict`, so it uses every device of the trainer (DDP included): each rank
encodes a disjoint shard (unrepeated sampler), rank 0 assembles the shards by index and publishes the
entry, and every rank then reads the same file.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from transmiter.data.datum import files_identity
from transmiter.features.store import ArrayCache, canonical_json

FEATURE_DTYPE = np.float16  # L2-normalised features: fp16 keeps 3 significant digits of a cosine


@dataclass(frozen=True)
class ViewSpec:
    """Which transform produced the features: the test transform, or augmented train view `view`."""

    transform: str = "test"  # "test" | "train"
    view: int = 0
    seed: int = 0  # augmentation seed (train views only)

    def __post_init__(self) -> None:
        if self.transform not in ("test", "train"):
            raise ValueError(f"view transform must be 'test' or 'train', got {self.transform!r}")


def items_fingerprint(items: Sequence[Any], root: str | None = None) -> str:
    """Hash of (relative path, label) of every item, in order."""
    h = hashlib.sha256()
    for d in items:
        path = str(d.impath)
        if root and path.startswith(root):
            path = path[len(root) :].lstrip("/")
        h.update(f"{path}\t{d.label}\n".encode())
    return h.hexdigest()[:24]


class _SeededViews(Dataset):
    """Seeds the global RNGs per (seed, view, index) before the transform, so an augmented view is
    the same whichever worker or rank draws it."""

    def __init__(self, inner: Dataset, view: ViewSpec):
        self.inner, self.view = inner, view

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        if self.view.transform == "train":
            import random

            seed = (self.view.seed * 1_000_003 + self.view.view * 7919 + index) % (2**31)
            # the transforms draw from the CPU generator only; torch.manual_seed would also queue a lazy
            # seeding of every accelerator backend, with a captured stack, for each image
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
        return self.inner[index]


class FeatureExtractor(L.LightningModule):
    """Encodes images; rank 0 assembles every rank's shard by index and publishes the cache entry."""

    def __init__(self, model: torch.nn.Module, num_items: int, publish: Callable[[np.ndarray], None]):
        super().__init__()
        self.model = model
        self.num_items = num_items
        self.publish = publish
        self._chunks: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_predict_epoch_start(self) -> None:
        self._chunks = []

    def predict_step(self, batch, batch_idx):
        images, _, index = batch
        feats = F.normalize(self.model.encode_image(images).float(), dim=-1)
        self._chunks.append((feats.cpu(), index.cpu()))

    def on_predict_epoch_end(self) -> None:
        dim = self._chunks[0][0].shape[1] if self._chunks else self._feature_dim()
        feats = torch.cat([c[0] for c in self._chunks]) if self._chunks else torch.zeros(0, dim)
        index = torch.cat([c[1] for c in self._chunks]) if self._chunks else torch.zeros(0, dtype=torch.long)
        if self.trainer.world_size > 1:
            feats, index = _gather_variable(self, feats, index)
        if self.global_rank == 0:
            out = np.zeros((self.num_items, feats.shape[1]), dtype=FEATURE_DTYPE)
            seen = np.zeros(self.num_items, dtype=bool)
            out[index.numpy()] = feats.numpy().astype(FEATURE_DTYPE)
            seen[index.numpy()] = True
            if not seen.all():
                raise RuntimeError(f"feature pass missed {int((~seen).sum())} of {self.num_items} items")
            self.publish(out)
        self.trainer.strategy.barrier("features-published")
        self._chunks = []

    def _feature_dim(self) -> int:
        return int(self.model.text_projection.shape[-1])


def _gather_variable(module: L.LightningModule, feats: torch.Tensor, index: torch.Tensor):
    """all_gather for shards of different lengths: pad to the longest, drop the padding by index -1."""
    device = module.device
    n = torch.tensor([feats.shape[0]], device=device)
    longest = int(module.all_gather(n).max())
    pad = longest - feats.shape[0]
    feats = torch.cat([feats, feats.new_zeros(pad, feats.shape[1])]).to(device)
    index = torch.cat([index, index.new_full((pad,), -1)]).to(device)
    all_feats = module.all_gather(feats).reshape(-1, feats.shape[1]).cpu()
    all_index = module.all_gather(index).reshape(-1).cpu()
    keep = all_index >= 0
    return all_feats[keep], all_index[keep]


@dataclass
class _Publisher:
    """Writes the assembled features on rank 0 (a class, not a closure, so ddp_spawn can pickle it)."""

    cache: ArrayCache
    key: str
    meta: dict

    def __call__(self, array: np.ndarray) -> None:
        self.cache.save(self.key, {"features": array}, meta=self.meta)


def feature_identity(bundle, items: Sequence[Any], view: ViewSpec, extra: Mapping[str, Any]) -> dict:
    root = getattr(items[0], "impath", "") if items else ""
    root = str(root).rsplit("/", 3)[0] if root else None
    return {
        "kind": "image-features/v2",
        "model": bundle.identity,
        "items": items_fingerprint(items, root),
        "files": files_identity(items),
        "num_items": len(items),
        "view": asdict(view),
        "image_size": bundle.image_size,
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        **({"train_crop_scale": list(bundle.train_crop_scale)} if view.transform == "train" else {}),
        **dict(extra),
    }


def extract_image_features(
    bundle,
    items: Sequence[Any],
    *,
    view: ViewSpec,
    cache: ArrayCache,
    identity: Mapping[str, Any],
    make_trainer: Callable[[], L.Trainer],
    batch_size: int = 128,
    num_workers: int = 0,
    timings: dict[str, float] | None = None,
) -> torch.Tensor:
    """L2-normalised image features [N, D] for `items`, from the cache or from one encoder pass."""
    from transmiter.data.dataset import ImageListDataset

    ident = feature_identity(bundle, items, view, identity)
    key = cache.key(ident)
    entry = cache.load(key)
    if entry is None:
        start = time.perf_counter()
        transform = bundle.test_transform if view.transform == "test" else bundle.train_transform
        dataset = _SeededViews(ImageListDataset(list(items), transform), view)

        publish = _Publisher(cache, key, {"identity": ident, "identity_json": canonical_json(ident)})
        trainer = make_trainer()
        # A plain sequential loader: under DDP, Lightning shards `predict` with an unrepeated sampler.
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        module = FeatureExtractor(bundle.model, len(items), publish)
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        entry = cache.load(key)
        if entry is None:
            raise RuntimeError(f"feature pass finished but cache entry {cache.path(key)} is missing")
        if timings is not None:
            timings["feature_pass_s"] = timings.get("feature_pass_s", 0.0) + time.perf_counter() - start
    return torch.from_numpy(np.asarray(entry["features"], dtype=np.float32))
