"""Class-homogeneous / random batch plans and their DDP sharding."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from transmiter.data.class_batches import ClassBatchSampler, choose_mode


def _labels(per_class: dict[int, int]) -> list[int]:
    return [c for c, n in per_class.items() for _ in range(n)]


def test_mode_choice():
    assert choose_mode(16, []) == "class"
    assert choose_mode(4, []) == "class"
    assert choose_mode(2, []) == "random"
    assert choose_mode(None, [0, 0, 1, 1]) == "random"
    assert choose_mode(None, [0] * 16 + [1] * 5) == "class"


@pytest.mark.parametrize("shots", [None, 0, -1])
def test_all_images_mode_follows_the_label_counts(shots):
    """shots <= 0 / None means "all images": class-homogeneous only when every class has >= 4 images."""
    assert choose_mode(shots, [0] * 16 + [1] * 4) == "class"
    assert choose_mode(shots, [0] * 16 + [1] * 3) == "random"  # one class too small for the reference rule
    assert choose_mode(shots, []) == "random"
    assert ClassBatchSampler(_labels({0: 8, 1: 5}), 4, shots=shots).mode == "class"


def test_classes_without_a_batch_are_named_and_strict_refuses(caplog):
    """The reference never emits a short batch, so a class with < batch_size images is never trained on in
    class mode; that is kept, but never silent."""
    labels = _labels({0: 8, 1: 3, 2: 4, 3: 1})
    names = ["cat", "dog", "owl", "yak"]
    with caplog.at_level("WARNING", logger="transmiter.data.class_batches"):
        s = ClassBatchSampler(labels, 4, shots=16, classnames=names)
    assert s.unbatched_classes() == [1, 3]
    assert "'dog' (3)" in caplog.text and "'yak' (1)" in caplog.text and "never trained" in caplog.text
    assert {labels[b[0]] for b in s.plan(0)} == {0, 2}  # the reference's plan, unchanged
    with pytest.raises(ValueError, match=r"2 class\(es\).*'dog' \(3\)"):
        ClassBatchSampler(labels, 4, shots=16, classnames=names, strict=True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="transmiter.data.class_batches"):
        assert ClassBatchSampler(labels, 4, mode="random").unbatched_classes() == []  # random mode uses all
        ClassBatchSampler(_labels({0: 4, 1: 8}), 4, shots=16, strict=True)  # every class batched: fine
    assert caplog.text == ""


def test_class_batches_one_class_each_and_coverage():
    labels = _labels({0: 16, 1: 16, 2: 10, 3: 3})
    s = ClassBatchSampler(labels, 4, shots=16, seed=1)
    assert s.mode == "class"
    batches = list(s)
    assert len(batches) == len(s) == 4 + 4 + 2  # class 3 (< 4 images) never forms a batch
    per_class = Counter()
    seen = []
    for b in batches:
        assert len(b) == 4
        classes = {labels[i] for i in b}
        assert len(classes) == 1
        per_class[classes.pop()] += 1
        seen.extend(b)
    assert len(seen) == len(set(seen))  # without replacement within the epoch
    assert per_class == {0: 4, 1: 4, 2: 2}
    assert {i for i in seen if labels[i] in (0, 1)} == {i for i, y in enumerate(labels) if y in (0, 1)}


def test_redrawn_every_epoch_and_seeded():
    labels = _labels({c: 8 for c in range(5)})
    a = ClassBatchSampler(labels, 4, shots=8, seed=7)
    b = ClassBatchSampler(labels, 4, shots=8, seed=7)
    e0 = list(a)
    a.set_epoch(1)
    e1 = list(a)
    assert e0 != e1
    assert e0 == list(b)
    assert a.plan(0) == e0
    assert ClassBatchSampler(labels, 4, shots=8, seed=8).plan(0) != e0


def test_class_order_is_random():
    labels = _labels({c: 16 for c in range(4)})
    first = [labels[b[0]] for b in ClassBatchSampler(labels, 4, shots=16, seed=0).plan(0)]
    assert first != sorted(first)  # classes interleave rather than coming in blocks


def test_random_mode_drops_remainder():
    labels = _labels({0: 2, 1: 2, 2: 2, 3: 1})
    s = ClassBatchSampler(labels, 4, shots=2, seed=0)
    assert s.mode == "random"
    batches = list(s)
    assert len(batches) == 1 == len(s)
    assert len(set(batches[0])) == 4


@pytest.mark.parametrize("mode", ["class", "random"])
def test_ddp_shares_disjoint_equal(mode):
    labels = _labels({c: 16 for c in range(5)}) + _labels({9: 7})
    world = 3
    shards = [
        ClassBatchSampler(labels, 4, mode=mode, seed=2, num_replicas=world, rank=r) for r in range(world)
    ]
    for epoch in (0, 1):
        for s in shards:
            s.set_epoch(epoch)
        per_rank = [list(s) for s in shards]
        assert len({len(p) for p in per_rank}) == 1
        assert all(len(p) == len(s) for p, s in zip(per_rank, shards))
        flat = [i for p in per_rank for b in p for i in b]
        assert len(flat) == len(set(flat))  # disjoint across ranks
        full = shards[0].plan(epoch)
        assert len(per_rank[0]) == len(full) // world
        for r, s in enumerate(shards):
            assert s.indices_for_epoch(epoch) == sorted({i for b in per_rank[r] for i in b})


def test_works_as_dataloader_batch_sampler():
    labels = _labels({0: 8, 1: 8})
    ds = TensorDataset(torch.arange(16), torch.tensor(labels))
    loader = DataLoader(ds, batch_sampler=ClassBatchSampler(labels, 4, shots=8))
    got = list(loader)
    assert len(got) == 4
    for x, y in got:
        assert x.shape == (4,) and len(set(y.tolist())) == 1


def test_errors():
    with pytest.raises(ValueError, match="no batch"):
        ClassBatchSampler([0, 0, 1], 4, mode="class")
    with pytest.raises(ValueError, match="rank"):
        ClassBatchSampler([0] * 8, 4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="mode"):
        ClassBatchSampler([0] * 8, 4, mode="mixed")
