"""CSkip: top-k, exponential keep schedule, GT forcing, label remap, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transmiter.methods.cskip import (
    ClassSkipper,
    cskip_top_k,
    expected_kept_classes,
    rank_classes,
    rank_keep_probabilities,
    select_classes,
)


@pytest.mark.parametrize(
    ("c", "k", "expected"),
    [
        (5, 3, 4.0),
        (19, 10, 11.14),
        (24, 12, 13.28),
        (50, 25, 27.0),
        (98, 49, 52.41),
        (199, 50, 59.39),
        (500, 50, 77.44),
        (1000, 50, 107.44),
    ],
)
def test_expected_kept_matches_spec_table(c, k, expected):
    assert cskip_top_k(c) == k
    assert expected_kept_classes(c) == pytest.approx(expected, abs=0.01)


def test_top_k_rules():
    assert cskip_top_k(10, 0.3) == 3
    assert cskip_top_k(10, 3) == 3  # > 1: an absolute count
    assert cskip_top_k(10, 30) == 10
    assert cskip_top_k(1000, 0.5, max_top=50) == 50
    assert expected_kept_classes(10, top_ratio=1.0) == 10


def test_probabilities_shape_and_endpoints():
    p = rank_keep_probabilities(19)
    assert p.shape == (19,)
    assert torch.all(p[:10] == 1)
    assert p[10] == 1 and p[-1] == 0
    x = torch.linspace(0, 5, 9, dtype=torch.float64)
    f = torch.exp(-x / 0.3) / 0.3
    torch.testing.assert_close(p[10:], (f - f.min()) / (f.max() - f.min()))
    assert torch.all(p[10:][1:] <= p[10:][:-1])


def test_m_equal_one_has_no_nan():
    p = rank_keep_probabilities(3)  # k = 2, m = 1
    assert not torch.isnan(p).any()
    assert p.tolist() == [1.0, 1.0, 0.0]
    skipper = ClassSkipper(3)
    for _ in range(20):
        kept, y = skipper(torch.randn(2, 8), F.normalize(torch.randn(3, 8), dim=-1), torch.tensor([2, 2]))
        assert 2 in kept.tolist() and torch.equal(kept[y], torch.tensor([2, 2]))


def test_gt_first_and_remap():
    protos = F.normalize(torch.randn(12, 16), dim=-1)
    img = torch.randn(4, 16)
    labels = torch.tensor([7, 7, 3, 7])
    order = rank_classes(img, protos, labels)
    assert set(order[:2].tolist()) == {3, 7}
    keep_rank = torch.zeros(12, dtype=torch.bool)
    keep_rank[[0, 5, 6]] = True
    kept, y = select_classes(order, keep_rank, labels)
    assert kept.tolist() == sorted(kept.tolist())
    assert torch.equal(kept[y], labels)
    assert set(order[[5, 6]].tolist()) <= set(kept.tolist())


def test_labels_forced_even_beyond_k():
    # 6 distinct labels in a batch of 6 with C=6, k=3: the reference would drop GTs; we never do
    skipper = ClassSkipper(6, top_ratio=0.5)
    protos = F.normalize(torch.randn(6, 8), dim=-1)
    labels = torch.arange(6)
    for _ in range(10):
        kept, y = skipper(torch.randn(6, 8), protos, labels)
        assert kept.tolist() == list(range(6))
        assert torch.equal(y, labels)


def test_kept_count_mean_matches_expectation():
    torch.manual_seed(0)
    for c in (19, 5, 60):
        skipper = ClassSkipper(c)
        protos = F.normalize(torch.randn(c, 16), dim=-1)
        counts = []
        for _ in range(800):  # standard error of the mean ~0.04 classes
            label = torch.randint(c, ()).item()
            labels = torch.full((4,), label)  # class-homogeneous batch
            kept, y = skipper(torch.randn(4, 16), protos, labels)
            assert torch.equal(kept[y], labels)
            counts.append(len(kept))
        mean = sum(counts) / len(counts)
        assert mean == pytest.approx(expected_kept_classes(c), abs=0.1), (c, mean)
    assert min(counts) >= cskip_top_k(60)


def test_once_mode_reuses_a_single_draw_and_is_seeded():
    a = ClassSkipper(40, mask_mode="once", seed=3)
    b = ClassSkipper(40, mask_mode="once", seed=3)
    protos = F.normalize(torch.randn(40, 8), dim=-1)
    sizes = set()
    for _ in range(30):
        kept, _ = a(torch.randn(4, 8), protos, torch.full((4,), 1))
        sizes.add(len(kept))
    assert len(sizes) == 1  # K' fixed for the run (class-homogeneous batches)
    assert torch.equal(a.rank_mask(), b.rank_mask())  # same on every rank
    state = a.state_dict()
    c = ClassSkipper(40, mask_mode="once", seed=99)
    c.load_state_dict(state)
    assert torch.equal(c.rank_mask(), a.rank_mask())
    step = ClassSkipper(40, mask_mode="step")
    draws = {tuple(step.rank_mask().tolist()) for _ in range(20)}
    assert len(draws) > 1


def test_inactive_when_all_classes_kept():
    skipper = ClassSkipper(4, top_ratio=1.0)
    labels = torch.tensor([1, 2])
    kept, y = skipper(torch.randn(2, 8), torch.randn(4, 8), labels)
    assert kept is None and torch.equal(y, labels)
    assert not ClassSkipper(1).active
    assert ClassSkipper(2).k == 1 and math.isclose(expected_kept_classes(2), 1.0)


def test_invalid_mode():
    with pytest.raises(ValueError, match="cskip_mask"):
        ClassSkipper(5, mask_mode="sometimes")
