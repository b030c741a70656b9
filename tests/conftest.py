"""Shared fixtures: isolated paths, quiet progress, wandb off, Hydra and process-group teardown."""

from __future__ import annotations

import os

os.environ.setdefault("TRANSMITER_PROGRESS", "0")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # steadier on 2 shared cores; DDP tests run 2 processes

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """Every test gets its own data/cache/output roots; nothing touches the checkout."""
    root = tmp_path_factory.mktemp("root")
    monkeypatch.setenv("TRANSMITER_ROOT", str(root))
    monkeypatch.delenv("TRANSMITER_DATA", raising=False)
    monkeypatch.delenv("TRANSMITER_CACHE", raising=False)
    yield
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.fixture
def compose():
    """compose(overrides) -> DictConfig, as the app composes it (hydra node included)."""
    from transmiter.config import compose_config

    return compose_config
