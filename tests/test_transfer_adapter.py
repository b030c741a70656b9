"""LogitAdapter: identity at init, orthogonality under training, projection forms, tensors, costs."""

from __future__ import annotations

import pytest
import torch

from transmiter.transfer.adapter import LogitAdapter, standardize_logits
from transmiter.transfer.adapter_cost import adapter_cost, adapter_flops_per_sample, adapter_param_count


def _inputs(K: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    rows = [
        20 + 3 * torch.randn(4, K, generator=g, dtype=dtype),
        1e3 * torch.randn(2, K, generator=g, dtype=dtype),
        1e-3 * torch.randn(2, K, generator=g, dtype=dtype) - 7,
        torch.full((1, K), 5.0, dtype=dtype),  # constant row: sigma = 0
    ]
    return torch.cat(rows)


@pytest.mark.parametrize(("K", "proj_dim", "depth"), [(64, None, 1), (64, 96, 2), (128, None, 0)])
def test_identity_at_init(K, proj_dim, depth):
    adapter = LogitAdapter(K, proj_dim=proj_dim, depth=depth, seed=3, dtype=torch.float64)
    x = _inputs(K)
    with torch.no_grad():
        out = adapter(x)
    torch.testing.assert_close(out, x, rtol=1e-10, atol=1e-10)
    # the residual branch is exactly zero at init
    h = torch.randn(5, adapter.proj_dim, dtype=torch.float64)
    for block in adapter.blocks:
        assert torch.equal(block(h), h)


def test_identity_fp32_and_haar_init_is_seeded_not_identity():
    a, b, c = LogitAdapter(64, seed=1), LogitAdapter(64, seed=1), LogitAdapter(64, seed=2)
    assert torch.equal(a.W, b.W) and not torch.equal(a.W, c.W)
    assert not torch.allclose(a.W, torch.eye(64), atol=0.1)
    x = _inputs(64, torch.float32)[:4]
    with torch.no_grad():
        torch.testing.assert_close(a(x), x, rtol=1e-5, atol=1e-4)


def test_standardize_is_unbiased_with_eps():
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]], dtype=torch.float64)
    z, mu, scale = standardize_logits(x, eps=1e-6)
    assert mu.item() == pytest.approx(3.0)
    assert scale.item() == pytest.approx(x.std(unbiased=True).item() + 1e-6)
    torch.testing.assert_close(z * scale + mu, x)


def test_w_stays_orthogonal_after_optimizer_steps():
    torch.manual_seed(0)
    adapter = LogitAdapter(64, proj_dim=80, seed=0)
    W0 = adapter.W.detach().clone()
    opt = torch.optim.AdamW(adapter.parameters(), lr=1e-2, weight_decay=1e-3)
    x = 20 + 3 * torch.randn(32, 64)
    target = torch.randn(32, 64)
    for _ in range(5):
        loss = (adapter(x) - x - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    W = adapter.W.detach()
    assert (W - W0).abs().max() > 1e-3  # W did move
    torch.testing.assert_close(W.T @ W, torch.eye(64), atol=1e-5, rtol=0)


def test_projection_forms_preserve_w_and_toggle_grad():
    adapter = LogitAdapter(64, seed=0)
    W = adapter.W.detach().clone()
    adapter.set_projection("frozen")
    assert adapter.projection == "frozen"
    assert "push.weight" in dict(adapter.named_buffers())
    assert all("push" not in n for n, _ in adapter.named_parameters())
    assert torch.equal(adapter.W, W)
    adapter.set_projection("free")
    assert dict(adapter.named_parameters())["push.weight"].requires_grad
    adapter.set_projection("orthogonal")
    torch.testing.assert_close(adapter.W.detach(), W, atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        adapter.set_projection("bogus")


def test_export_from_tensors_roundtrip_and_clone_independent():
    adapter = LogitAdapter(64, seed=0)
    with torch.no_grad():
        for p in adapter.blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = 20 + 3 * torch.randn(6, 64)
    rebuilt = LogitAdapter.from_tensors(adapter.export_tensors(), adapter.config, projection="frozen")
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), adapter(x))
    copy = adapter.clone(projection="free")
    with torch.no_grad():
        copy.blocks[0].fc2.bias.add_(1.0)
    assert not torch.equal(copy.blocks[0].fc2.bias, adapter.blocks[0].fc2.bias)


def test_wrong_k_and_proj_dim_errors():
    with pytest.raises(ValueError, match="proj_dim"):
        LogitAdapter(64, proj_dim=32)
    with pytest.raises(ValueError, match="K=64"):
        LogitAdapter(64)(torch.randn(2, 65))


def test_costs_parameter_count_and_flops():
    K, r = 64, 4
    adapter = LogitAdapter(K, seed=0)
    mlp = 2 * K + (K * r * K + r * K) + (r * K * K + K)
    assert adapter_param_count(adapter) == K * K + mlp
    # push + fc1 + fc2 + pull, 2 FLOPs per multiply-add
    assert adapter_flops_per_sample(adapter) == 2 * (K * K + K * r * K + r * K * K + K * K)
    adapter.set_projection("frozen")
    assert adapter_param_count(adapter, trainable_only=True) == mlp
    cost = adapter_cost(adapter)
    assert cost["macs_per_sample"] * 2 == cost["flops_per_sample"]


def test_forward_ignores_autocast():
    adapter = LogitAdapter(64, seed=0)
    x = 20 + 3 * torch.randn(4, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = adapter(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("form", ["orthogonal", "frozen", "free"])
@pytest.mark.parametrize(("proj_dim", "seed"), [(None, 0), (80, 0), (80, None)])
def test_adapter_pickles_and_deepcopies_exactly(proj_dim, seed, form):
    import copy
    import pickle

    adapter = LogitAdapter(64, proj_dim=proj_dim, seed=seed)
    opt = torch.optim.AdamW(adapter.parameters(), lr=1e-2)
    x = 20 + 3 * torch.randn(8, 64)
    for _ in range(2):
        loss = (adapter(x) - x - 1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    adapter.set_projection(form)
    adapter.blocks[0].norm.weight.requires_grad_(False)
    adapter.eval()
    rng = torch.get_rng_state()
    for clone in (pickle.loads(pickle.dumps(adapter)), copy.deepcopy(adapter)):
        assert clone.projection == form and clone.training is False
        sa, sb = adapter.state_dict(), clone.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        grads = {n: p.requires_grad for n, p in adapter.named_parameters()}
        assert {n: p.requires_grad for n, p in clone.named_parameters()} == grads
        with torch.no_grad():
            assert torch.equal(clone(x), adapter(x))
    assert torch.equal(torch.get_rng_state(), rng)  # rebuilding draws nothing from the global RNG
