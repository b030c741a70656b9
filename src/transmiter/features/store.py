"""Content-addressed on-disk store of named numpy arrays, published atomically and verified on load.

    store = ArrayCache(root)
    key = store.key({"model": identity, "split": split_hash, "view": "test"})
    hit = store.load(key)                   # None on a miss (or a corrupt entry, which is removed)
    if hit is None:
        store.save(key, {"features": array}, meta={...})
    arrays = store.load(key)                # {"features": np.memmap, ...}, meta in arrays.meta

Layout: `<root>/<key[:2]>/<key>/{<name>.npy, meta.json}`. An entry is written into a temporary folder
beside it and renamed into place, so a reader sees either nothing or a complete entry; `meta.json`
records each file's size and BLAKE2b hash, checked on load (files over `hash_limit_bytes` are checked
by size only, so huge ImageNet caches open instantly). Two writers racing on the same key is safe:
the second rename fails and the second writer keeps the first writer's (identical) entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from transmiter.io import file_digest, is_disk_error, write_error

META_FILE = "meta.json"


class CacheEntry(dict):
    """`{name: array}` (memory-mapped) plus `.meta` and `.path`."""

    meta: dict[str, Any]
    path: Path


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def file_hash(path: Path) -> str:
    return file_digest(path, "blake2b", digest_size=16)


class ArrayCache:
    def __init__(self, root: str | os.PathLike, hash_limit_bytes: int = 256 << 20):
        self.root = Path(root).expanduser()
        self.hash_limit_bytes = hash_limit_bytes

    @staticmethod
    def key(identity: Mapping[str, Any]) -> str:
        """A stable key for an identity mapping (order-independent)."""
        return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def exists(self, key: str) -> bool:
        return (self.path(key) / META_FILE).is_file()

    def load(self, key: str, mmap: bool = True) -> CacheEntry | None:
        entry_dir = self.path(key)
        meta_path = entry_dir / META_FILE
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            entry = CacheEntry()
            for name, info in meta["files"].items():
                file = entry_dir / f"{name}.npy"
                size = file.stat().st_size
                if size != info["size"]:
                    raise ValueError(f"{file} has {size} bytes, expected {info['size']}")
                if size <= self.hash_limit_bytes and file_hash(file) != info["hash"]:
                    raise ValueError(f"{file} does not match its recorded hash")
                entry[name] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            # A damaged entry is never used: drop it so the caller recomputes it.
            _warn(f"cache entry {entry_dir} is damaged ({err}); it will be recomputed")
            shutil.rmtree(entry_dir, ignore_errors=True)
            return None
        entry.meta = meta.get("meta", {})
        entry.path = entry_dir
        return entry

    def save(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> Path:
        final = self.path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-{uuid.uuid4().hex[:8]}-", dir=final.parent))
        except OSError as err:
            raise (write_error(final, err) if is_disk_error(err) else err) from err
        try:
            files = {}
            for name, array in arrays.items():
                file = tmp / f"{name}.npy"
                np.save(file, np.ascontiguousarray(array), allow_pickle=False)
                files[name] = {
                    "size": file.stat().st_size,
                    "hash": file_hash(file),
                    "shape": list(np.shape(array)),
                    "dtype": str(np.asarray(array).dtype),
                }
            record = {"key": key, "files": files, "meta": dict(meta or {})}
            (tmp / META_FILE).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.exists(key):  # a stale, incomplete folder is in the way
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
                # else: another writer published the same content first; keep theirs
        except OSError as err:  # a full disk: name the entry; the temporary folder goes below
            if is_disk_error(err):
                raise write_error(final, err) from err
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=3)
