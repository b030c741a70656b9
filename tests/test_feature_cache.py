"""The on-disk array cache: hits, invalidation by identity, atomic publish and corruption handling."""

from __future__ import annotations

import numpy as np
import pytest

from transmiter.features.store import ArrayCache


def test_round_trip_is_memory_mapped(tmp_path):
    cache = ArrayCache(tmp_path)
    key = cache.key({"model": "m@1", "split": "test"})
    assert cache.load(key) is None
    data = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float16)
    cache.save(key, {"features": data}, meta={"note": "x"})
    entry = cache.load(key)
    assert isinstance(entry["features"], np.memmap)
    np.testing.assert_array_equal(entry["features"], data)
    assert entry.meta["note"] == "x"


def test_key_is_order_independent_and_identity_sensitive():
    a = ArrayCache.key({"model": "m@1", "split": "test", "view": {"transform": "test", "view": 0}})
    b = ArrayCache.key({"view": {"view": 0, "transform": "test"}, "split": "test", "model": "m@1"})
    assert a == b
    assert a != ArrayCache.key({"model": "m@2", "split": "test", "view": {"transform": "test", "view": 0}})


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_damaged_entry_is_dropped_not_used(tmp_path, damage):
    cache = ArrayCache(tmp_path)
    key = cache.key({"k": 1})
    path = cache.save(key, {"features": np.arange(100, dtype=np.float32)})
    npy = path / "features.npy"
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-40])
    elif damage == "flip":
        raw = bytearray(npy.read_bytes())
        raw[-1] ^= 0xFF
        npy.write_bytes(bytes(raw))
    else:
        (path / "meta.json").write_text("{not json")
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert cache.load(key) is None
    assert not path.exists()


def test_interrupted_write_is_invisible(tmp_path):
    cache = ArrayCache(tmp_path)
    key = cache.key({"k": 2})
    # A writer that died mid-way leaves only a temporary folder: readers see a miss.
    tmp = cache.path(key).parent / f".{key}.tmp-dead"
    tmp.mkdir(parents=True)
    (tmp / "features.npy").write_bytes(b"partial")
    assert cache.load(key) is None
    cache.save(key, {"features": np.ones(3)})
    np.testing.assert_array_equal(cache.load(key)["features"], np.ones(3))


def test_second_writer_keeps_first_entry(tmp_path):
    cache = ArrayCache(tmp_path)
    key = cache.key({"k": 3})
    cache.save(key, {"features": np.zeros(4)})
    cache.save(key, {"features": np.zeros(4)})  # same content published twice: no error
    np.testing.assert_array_equal(cache.load(key)["features"], np.zeros(4))
