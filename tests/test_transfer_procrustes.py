"""Regularised orthogonal Procrustes, streamed statistic, and DDP equivalence."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from transmiter.transfer.adapter import LogitAdapter, haar_orthogonal
from transmiter.transfer.procrustes import (
    CrossCovariance,
    accumulate_cross_covariance,
    procrustes_objective,
    regularized_procrustes,
)


def _paired(n: int = 2000, d: int = 32, noise: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    R = haar_orthogonal(d, d, generator=g, dtype=torch.float64)
    zt = torch.randn(n, d, generator=g, dtype=torch.float64)
    zs = zt @ R + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return zs, zt, R


def test_recovers_known_rotation_from_noisy_pairs():
    zs, zt, R = _paired()
    Q = regularized_procrustes(z_source=zs, z_target=zt, lam=0.0)
    assert torch.linalg.matrix_norm(Q - R) < 0.05  # ||R||_F = sqrt(32) ~ 5.7
    torch.testing.assert_close(Q.T @ Q, torch.eye(32, dtype=torch.float64))


def test_lambda_to_infinity_gives_identity():
    zs, zt, _ = _paired()
    Q = regularized_procrustes(z_source=zs, z_target=zt, lam=1e12)
    torch.testing.assert_close(Q, torch.eye(32, dtype=torch.float64), atol=1e-6, rtol=0)


def test_lambda_zero_equals_unregularised_svd_solution():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    zs, zt, _ = _paired(n=300, noise=0.5, seed=1)
    Q = regularized_procrustes(z_source=zs, z_target=zt, lam=0.0)
    R, _ = scipy_linalg.orthogonal_procrustes(zt.numpy(), zs.numpy())
    torch.testing.assert_close(Q, torch.from_numpy(R), atol=1e-8, rtol=0)


def test_regularised_solution_is_optimal_among_perturbations():
    zs, zt, _ = _paired(n=200, noise=1.0, seed=2)
    lam = 150.0
    Q = regularized_procrustes(z_source=zs, z_target=zt, lam=lam)
    best = procrustes_objective(Q, zs, zt, lam)
    g = torch.Generator().manual_seed(5)
    for _ in range(10):
        A = 1e-2 * torch.randn(32, 32, generator=g, dtype=torch.float64)
        P = torch.linalg.matrix_exp(A - A.T)
        assert procrustes_objective(Q @ P, zs, zt, lam) >= best - 1e-9


def test_lambda_scaling_by_n():
    zs, zt, _ = _paired(n=100, noise=1.0, seed=3)
    a = regularized_procrustes(z_source=zs, z_target=zt, lam=2.0, lam_per_sample=True)
    b = regularized_procrustes(z_source=zs, z_target=zt, lam=200.0)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="num_samples"):
        regularized_procrustes(zt.T @ zs, lam=1.0, lam_per_sample=True)


def test_streamed_statistic_equals_one_shot():
    zs, zt, _ = _paired(n=1000, noise=0.3, seed=4)
    M = zt.T @ zs
    sizes = [1, 17, 300, 682]
    chunks, i = [], 0
    for s in sizes:
        chunks.append((zs[i : i + s], zt[i : i + s]))
        i += s
    cc = accumulate_cross_covariance(iter(chunks))
    assert cc.count == 1000
    torch.testing.assert_close(cc.matrix, M)
    torch.testing.assert_close(regularized_procrustes(cc, lam=10.0), regularized_procrustes(M, lam=10.0))


def test_streamed_from_logits_uses_standardised_latents():
    adapter = LogitAdapter(64, seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    ls = 20 + 3 * torch.randn(300, 64, generator=g, dtype=torch.float64)
    lt = 25 + 4 * torch.randn(300, 64, generator=g, dtype=torch.float64)
    W = adapter.W.detach()
    cc = accumulate_cross_covariance(
        ((ls[i : i + 64], lt[i : i + 64]) for i in range(0, 300, 64)), projection=W
    )
    with torch.no_grad():
        expected = adapter.latent(lt).T @ adapter.latent(ls)
    torch.testing.assert_close(cc.matrix, expected)
    assert isinstance(cc, CrossCovariance) and cc.count == 300


# ------------------------------------------------------------------------------------------------
# DDP: 2 CPU processes (gloo) give the same statistic, Q and transferred W as one process
# ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_data():
    g = torch.Generator().manual_seed(11)
    adapter = LogitAdapter(64, seed=7)
    ls = 20 + 3 * torch.randn(250, 64, generator=g)
    lt = ls[:, torch.randperm(64, generator=g)] + 0.5 * torch.randn(250, 64, generator=g)
    return adapter, ls, lt


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from transmiter.transfer.transfer import transfer_adapter_with_details

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        adapter, ls, lt = _ddp_data()
        shard = slice(0, 130) if rank == 0 else slice(130, 250)  # uneven shards
        W = adapter.W.detach()
        cc = accumulate_cross_covariance(
            ((ls[shard][i : i + 50], lt[shard][i : i + 50]) for i in range(0, 130, 50)), projection=W
        )
        res = transfer_adapter_with_details(adapter, ls[shard], lt[shard], lam=50.0, chunk_size=40)
        torch.save(
            {
                "M": cc.matrix,
                "n": cc.count,
                "Q": res.rotation,
                "W": res.adapter.W.clone(),
                "N": res.num_samples,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_ddp_two_processes_match_single_process(tmp_path):
    import torch.multiprocessing as mp

    from transmiter.transfer.transfer import transfer_adapter_with_details

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    adapter, ls, lt = _ddp_data()
    single = transfer_adapter_with_details(adapter, ls, lt, lam=50.0)
    M = accumulate_cross_covariance([(ls, lt)], projection=adapter.W.detach()).matrix
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["n"] == 250 and got["N"] == 250
        torch.testing.assert_close(got["M"], M, atol=1e-9, rtol=1e-12)
        torch.testing.assert_close(got["Q"], single.rotation, atol=1e-10, rtol=0)
        torch.testing.assert_close(got["W"], single.adapter.W, atol=1e-6, rtol=0)
