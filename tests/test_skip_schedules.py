"""Per-epoch LR schedules: warm-up + shifted cosine, plain cosine, epoch divisor."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from transmiter.methods.schedules import (
    build_epoch_scheduler,
    cosine_factor,
    effective_epochs,
    lr_at_epoch,
    lr_factor,
)


def test_spec_factors_t5_with_warmup():
    factors = [lr_factor(e, 5, warmup_epochs=1) for e in range(1, 5)]
    assert factors == pytest.approx([1.0, 0.905, 0.655, 0.345], abs=5e-4)


def test_b2n_last_epoch_factor():
    assert lr_factor(19, 20, warmup_epochs=1) == pytest.approx(0.0245, abs=1e-4)


def test_no_warmup_cosine():
    assert [lr_factor(e, 10) for e in (0, 5)] == pytest.approx([1.0, 0.5])
    assert cosine_factor(2, 4) == pytest.approx(0.5)


def test_scheduler_two_groups_warmup():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 2e-5}, {"params": [b], "lr": 5e-6}], lr=2e-5, momentum=0.9)
    sched = build_epoch_scheduler(opt, total_epochs=5, warmup_epochs=1, warmup_lr=1e-6)
    seen = []
    for _ in range(5):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx([1e-6, 1e-6])  # warm-up: both groups at the constant lr
    for epoch, factor in zip(range(1, 5), (1.0, 0.9045, 0.6545, 0.3455)):
        assert seen[epoch] == pytest.approx([2e-5 * factor, 5e-6 * factor], rel=1e-3)
    state = sched.state_dict()
    pickle.dumps(state)  # plain, weights-only friendly
    assert lr_at_epoch(2e-5, 0, 5, 1, 1e-6) == 1e-6


def test_scheduler_without_warmup():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-5)
    sched = build_epoch_scheduler(opt, total_epochs=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[9] == pytest.approx(1e-5 * 0.5 * (1 + math.cos(math.pi * 9 / 10)))


def test_epoch_divisor():
    assert effective_epochs(20, 4) == 5
    assert effective_epochs(40, 4) == 10
    assert effective_epochs(20) == 20
    assert effective_epochs(3, 4) == 1
    with pytest.raises(ValueError):
        effective_epochs(20, 0)
    with pytest.raises(ValueError, match="warmup_lr"):
        build_epoch_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 5, 1, None)
