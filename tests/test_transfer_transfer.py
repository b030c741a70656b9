"""Transfer without backpropagation: frozen result, no backward, exact recovery, chaining, lam."""

from __future__ import annotations

import pytest
import torch

import transmiter.transfer.procrustes as procrustes_mod
from transmiter.transfer.adapter import LogitAdapter
from transmiter.transfer.transfer import (
    rotate_adapter,
    transfer_adapter,
    transfer_adapter_with_details,
)

K = 64


def _trained_like_adapter(seed: int = 0, dtype=torch.float64) -> LogitAdapter:
    """An adapter with a non-trivial MLP (as after fitting)."""
    adapter = LogitAdapter(K, seed=seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in adapter.blocks.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return adapter


def _logits(n: int = 400, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 20 + 3 * torch.randn(n, K, generator=g, dtype=dtype)


def test_result_is_frozen_and_input_untouched():
    adapter = _trained_like_adapter(dtype=torch.float32)
    before = {k: v.clone() for k, v in adapter.export_tensors().items()}
    ls = _logits(dtype=torch.float32)
    lt = ls + 0.3 * torch.randn_like(ls)
    new = transfer_adapter(adapter, ls, lt, lam=500.0)
    assert new is not adapter and new.projection == "frozen"
    assert not any(p.requires_grad for p in new.parameters())
    assert not any(b.requires_grad for b in new.buffers())
    assert not any(t.is_inference() for t in list(new.parameters()) + list(new.buffers()))
    assert not new.training
    for k, v in adapter.export_tensors().items():
        assert torch.equal(v, before[k]), k
    # MLP copied unchanged, W rotated and still orthogonal
    for k, v in new.export_tensors().items():
        if k != "projection":
            assert torch.equal(v, before[k]), k
    W = new.W
    torch.testing.assert_close(W.T @ W, torch.eye(K), atol=1e-5, rtol=0)
    with torch.no_grad():
        out = new(lt)
    assert out.shape == lt.shape and torch.isfinite(out).all()


def test_no_backward_and_no_grad_mode_inside(monkeypatch):
    calls = {"backward": 0, "grad": 0}
    seen_modes = []
    real_backward, real_grad = torch.autograd.backward, torch.autograd.grad
    real_standardize = procrustes_mod.standardize_logits

    def counting_backward(*a, **k):
        calls["backward"] += 1
        return real_backward(*a, **k)

    def counting_grad(*a, **k):
        calls["grad"] += 1
        return real_grad(*a, **k)

    def spying_standardize(*a, **k):
        seen_modes.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        return real_standardize(*a, **k)

    monkeypatch.setattr(torch.autograd, "backward", counting_backward)
    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    monkeypatch.setattr(procrustes_mod, "standardize_logits", spying_standardize)

    adapter = LogitAdapter(K, seed=0)  # orthogonal, trainable parametrisation
    ls = _logits(dtype=torch.float32)
    res = transfer_adapter_with_details(adapter, ls, ls + 0.1, lam=500.0, chunk_size=128)
    assert calls == {"backward": 0, "grad": 0}
    assert seen_modes and all(m == (False, True) for m in seen_modes)
    assert res.num_samples == 400
    assert res.adapter.W.grad_fn is None
    assert all(p.grad is None for p in adapter.parameters())


def test_exact_recovery_of_a_permuted_target():
    """Target logits = source logits with columns permuted -> target adapter output is the permuted
    source output (Q = W P^T W^T is a rotation; a tiny lam resolves the mean direction)."""
    adapter = _trained_like_adapter()
    ls = _logits(n=600)
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(1))
    lt = ls[:, perm]
    new = transfer_adapter(adapter, ls, lt, lam=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(new(lt), adapter(ls)[:, perm], atol=1e-8, rtol=1e-8)
    # without transfer, the permuted input gives a different answer (the MLP is not equivariant)
    with torch.no_grad():
        assert (adapter(lt) - adapter(ls)[:, perm]).abs().max() > 1e-3


def test_lambda_limits_and_scaling():
    adapter = _trained_like_adapter()
    ls = _logits(n=300)
    lt = ls[:, torch.randperm(K, generator=torch.Generator().manual_seed(2))]
    same = transfer_adapter(adapter, ls, lt, lam=1e15)
    torch.testing.assert_close(same.W, adapter.W.detach(), atol=1e-6, rtol=0)
    a = transfer_adapter_with_details(adapter, ls, lt, lam=0.5, scale_lam_by_n=True)
    b = transfer_adapter_with_details(adapter, ls, lt, lam=150.0)
    assert a.lam_effective == pytest.approx(150.0) and a.num_samples == 300
    torch.testing.assert_close(a.rotation, b.rotation)


def test_batches_argument_equals_tensors():
    adapter = _trained_like_adapter()
    ls, lt = _logits(n=250), _logits(n=250, seed=5)
    a = transfer_adapter_with_details(adapter, ls, lt, lam=5.0)
    b = transfer_adapter_with_details(
        adapter, batches=((ls[i : i + 60], lt[i : i + 60]) for i in range(0, 250, 60)), lam=5.0
    )
    torch.testing.assert_close(a.rotation, b.rotation)
    with pytest.raises(ValueError, match="paired rows"):
        transfer_adapter(adapter, ls, lt[:, :10])


def test_chained_transfer_composes():
    weak = _trained_like_adapter()
    lw = _logits(n=600)
    g = torch.Generator().manual_seed(3)
    p1, p2 = torch.randperm(K, generator=g), torch.randperm(K, generator=g)
    lm = lw[:, p1]
    ls = lm[:, p2]
    medium = transfer_adapter(weak, lw, lm, lam=1e-6)
    strong = transfer_adapter(medium, lm, ls, lam=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(strong(ls), weak(lw)[:, p1][:, p2], atol=1e-6, rtol=1e-7)


def test_rotate_adapter_identity_rotation():
    adapter = _trained_like_adapter()
    same = rotate_adapter(adapter, torch.eye(K, dtype=torch.float64))
    torch.testing.assert_close(same.W, adapter.W.detach())
