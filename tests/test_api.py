"""The public API on logit tensors (transmiter.fit_adapter / transfer_adapter / refine_adapter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import transmiter
from transmiter.transfer.adapter import standardize_logits

N, K, C = 256, 64, 10
BASE = list(range(5))


def _logits(seed: int = 0):
    """Source zero-shot logits and a teacher that is a known sharpening + class shift of them."""
    g = torch.Generator().manual_seed(seed)
    zs = 20 + 3 * torch.randn(N, K, generator=g)
    z, mu, scale = standardize_logits(zs)
    ft = (1.5 * z[:, :C] + torch.linspace(-1.5, 1.5, C)) * scale + mu
    return zs, ft


@pytest.fixture(scope="module")
def fitted():
    zs, ft = _logits()
    return transmiter.fit_adapter(zs, ft, num_classes=C, seed=1, epochs=4), zs, ft


def test_import_is_cheap_and_the_api_loads_on_first_use():
    code = (
        "import sys, transmiter; assert 'torch' not in sys.modules and 'transmiter.api' not in sys.modules; "
        "transmiter.fit_adapter; assert 'transmiter.api' in sys.modules; print(sorted(transmiter.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "fit_adapter" in out and "refine_adapter" in out
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        transmiter.nope  # noqa: B018


def test_defaults_are_the_method_configs(compose):
    cfg = compose(["method=transmiter_plus"])
    d = transmiter.default_settings()
    assert d["fit"] == dict(cfg.method.fit) and d["refine"] == dict(cfg.method.refine)
    assert (d["lam"], d["scale_lam_by_n"]) == (cfg.method.lam, cfg.method.scale_lam_by_n)
    d["fit"]["lr"] = 1.0  # a copy: the defaults themselves do not change
    assert transmiter.default_settings()["fit"]["lr"] == cfg.method.fit.lr


def test_unfitted_adapter_is_the_identity_and_fitting_learns_the_teacher(fitted):
    zs, ft = _logits()
    start = transmiter.LogitAdapter(K, seed=1)  # where a fit starts
    torch.testing.assert_close(start(zs), zs, rtol=0, atol=1e-4)
    adapter = fitted[0]
    agree = lambda out: (out[:, :C].argmax(1) == ft.argmax(1)).float().mean().item()  # noqa: E731
    assert agree(adapter(zs)) > agree(zs) + 0.15
    assert not adapter.training and not any(p.requires_grad for p in adapter.parameters())


def test_fit_is_reproducible_and_leaves_the_global_rng_alone():
    zs, ft = _logits()
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = transmiter.fit_adapter(zs, ft, seed=2, epochs=1)
    assert torch.equal(torch.rand(3), before)
    b = transmiter.fit_adapter(zs, ft, seed=2, epochs=1)
    for (name, x), y in zip(a.export_tensors().items(), b.export_tensors().values(), strict=True):
        assert torch.equal(x, y), name


def test_transfer_recovers_a_known_permutation_and_holds_no_grad(fitted):
    """Target logits = the source's with the K columns permuted: the Procrustes rotation that undoes it
    exists, so the moved adapter on target logits is the source adapter on source logits, permuted."""
    adapter, zs, _ = fitted
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(3))
    # a tiny lam pins the one direction the standardised rows leave undetermined (their mean)
    moved = transmiter.transfer_adapter(adapter, zs, zs[:, perm], lam=1e-3)
    torch.testing.assert_close(moved(zs[:, perm]), adapter(zs)[:, perm], rtol=0, atol=1e-3)
    assert (adapter(zs) - zs).abs().max() > 1.0  # the fitted adapter is far from the identity
    tensors = [*moved.parameters(), *moved.buffers()]
    assert tensors and not any(t.requires_grad for t in tensors)
    assert not moved(zs).requires_grad
    # same logits on both sides: Q = I, nothing moves; the input adapter is untouched
    same = transmiter.transfer_adapter(adapter, zs, zs)
    torch.testing.assert_close(same.W, adapter.W, rtol=0, atol=1e-5)


def test_refine_learns_the_labels_on_the_supervised_columns(fitted):
    adapter, zs, ft = fitted
    labels = ft.argmax(1)
    keep = labels < len(BASE)
    x, y = zs[keep], labels[keep]
    refined = transmiter.refine_adapter(adapter, x, y, class_columns=BASE, seed=1, epochs=20, lr=1e-3)
    acc = lambda a: (a(x)[:, BASE].argmax(1) == y).float().mean().item()  # noqa: E731
    assert acc(refined) > acc(adapter) and acc(refined) > 0.9
    assert not any(p.requires_grad for p in refined.parameters())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda zs, ft: transmiter.fit_adapter(zs[:, :8], ft), r"K=8 < C=10"),
        (lambda zs, ft: transmiter.fit_adapter(zs, ft[:-1]), r"256 rows and source_ft_logits 255"),
        (lambda zs, ft: transmiter.fit_adapter(zs, ft, num_classes=12), r"num_classes=12 but .* 10 columns"),
        (lambda zs, ft: transmiter.fit_adapter(zs[0], ft), r"2-D tensor"),
        (lambda zs, ft: transmiter.fit_adapter(zs.long(), ft), r"floating-point"),
        (
            lambda zs, ft: transmiter.fit_adapter(zs, ft, learning_rate=1),
            r"unknown fit setting.*'learning_rate'",
        ),
        (lambda zs, ft: transmiter.fit_adapter(zs, ft, epochs=0), r"fit.epochs=0 is invalid: use a positive"),
        (lambda zs, ft: transmiter.fit_adapter(zs, ft, noise_mode="row"), r"fit.noise_mode='row' is invalid"),
        (lambda zs, ft: transmiter.fit_adapter(zs, ft, lr="fast"), r"fit.lr"),
        (lambda zs, ft: transmiter.fit_adapter(zs.tolist(), ft), r"must be a torch.Tensor"),
    ],
)
def test_fit_rejects_bad_inputs(call, message):
    zs, ft = _logits()
    with pytest.raises(ValueError, match=message):
        call(zs, ft)


def test_nan_rows_are_named():
    zs, ft = _logits()
    zs[7, 3] = float("nan")
    with pytest.raises(ValueError, match=r"source_zs_logits holds 1 NaN/inf .*row 7"):
        transmiter.fit_adapter(zs, ft)
    ft[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"source_ft_logits holds 1 NaN/inf .*row 2"):
        transmiter.fit_adapter(zs.nan_to_num(), ft)


def test_transfer_and_refine_reject_bad_inputs(fitted):
    adapter, zs, ft = fitted
    with pytest.raises(ValueError, match=r"256 rows and target_zs_logits 200.*same images"):
        transmiter.transfer_adapter(adapter, zs, zs[:200])
    with pytest.raises(ValueError, match=r"has 32 columns, expected 64"):
        transmiter.transfer_adapter(adapter, zs, zs[:, :32])
    with pytest.raises(ValueError, match=r"lam=-1.0"):
        transmiter.transfer_adapter(adapter, zs, zs, lam=-1)
    with pytest.raises(ValueError, match=r"must be a transmiter.LogitAdapter"):
        transmiter.transfer_adapter(torch.nn.Linear(K, K), zs, zs)
    bad = zs.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"target_zs_logits holds 1 NaN/inf"):
        transmiter.transfer_adapter(adapter, zs, bad)
    labels = ft.argmax(1)
    with pytest.raises(ValueError, match=r"labels \[5, 6.*not among class_columns"):
        transmiter.refine_adapter(adapter, zs, labels, class_columns=BASE)
    with pytest.raises(ValueError, match=r"give class_columns"):
        transmiter.refine_adapter(adapter, zs, labels)
    with pytest.raises(ValueError, match=r"one label per row"):
        transmiter.refine_adapter(adapter, zs, labels[:10], num_classes=C)
    with pytest.raises(ValueError, match=r"select_on_val=True needs val_logits"):
        transmiter.refine_adapter(adapter, zs, labels, num_classes=C, select_on_val=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_api_runs_where_the_inputs_live(fitted):
    adapter, zs, ft = fitted
    zs_gpu, ft_gpu = zs.cuda(), ft.cuda()
    fitted_gpu = transmiter.fit_adapter(zs_gpu, ft_gpu, seed=1, epochs=4)
    assert fitted_gpu.W.is_cuda
    moved = transmiter.transfer_adapter(adapter, zs_gpu, zs_gpu)  # a CPU adapter follows the inputs
    assert moved.W.is_cuda and moved(zs_gpu).is_cuda
    labels = ft_gpu.argmax(1)
    keep = labels < len(BASE)
    refined = transmiter.refine_adapter(moved, zs_gpu[keep], labels[keep], class_columns=BASE, epochs=1)
    assert refined.W.is_cuda
    # the same fit on CPU and GPU agrees to float tolerance
    torch.testing.assert_close(fitted_gpu(zs_gpu).cpu(), adapter(zs), rtol=1e-3, atol=1e-2)


def test_readme_example_runs():
    """The README's library example, executed as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"<!-- api-example -->\s*```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, "README.md must hold one ```python block right after <!-- api-example -->"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md (api example)", "exec"), namespace)
    assert namespace["scores"].shape[1] == namespace["C"]
