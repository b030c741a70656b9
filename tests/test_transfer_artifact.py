"""Adapter artifacts: round trip, corruption detection, mismatch refusals, atomic write."""

from __future__ import annotations

import json

import pytest
import torch

from transmiter.transfer.adapter import LogitAdapter
from transmiter.transfer.artifact import (
    ArtifactCorruptedError,
    ArtifactMismatchError,
    load_adapter_artifact,
    read_artifact_metadata,
    save_adapter_artifact,
)

K = 64
CLASSES = [f"class_{i}" for i in range(10)]
AUX = [f"aux {i}" for i in range(K - 10)]


def _adapter() -> LogitAdapter:
    adapter = LogitAdapter(K, seed=0)
    with torch.no_grad():
        for p in adapter.blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return adapter


def _save(path, adapter=None, **over):
    kwargs = dict(
        stage="transferred",
        source_model={"arch": "ViT-B-16", "hash": "abc"},
        dataset="OxfordPets",
        classnames=CLASSES,
        aux_names=AUX,
        data_used="fewshot16 x 4 views",
        target_model="ViT-L-14@def",
        lam=500.0,
        lam_effective=500.0,
        seed=1,
        config={"lr": 1e-3, "epochs": 10},
    )
    kwargs.update(over)
    return save_adapter_artifact(path, adapter or _adapter(), **kwargs)


def test_round_trip(tmp_path):
    adapter = _adapter()
    path = _save(tmp_path / "a" / "adapter.safetensors", adapter)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    loaded = load_adapter_artifact(
        path,
        expect_classnames=CLASSES,
        expect_aux=AUX,
        expect_k=K,
        expect_dataset="OxfordPets",
        expect_stage=("transferred", "refined"),
        expect_target_model="ViT-L-14@def",
    )
    m = loaded.metadata
    assert m.stage == "transferred" and m.K == K and m.classnames == CLASSES and m.aux_names == AUX
    assert m.lam == 500.0 and m.data_used == "fewshot16 x 4 views" and m.seed == 1
    assert m.config_hash and len(m.config_hash) == 16 and m.code_version and m.created_at
    assert m.source_model == {"arch": "ViT-B-16", "hash": "abc"}
    assert loaded.adapter.projection == "frozen"
    assert not any(p.requires_grad for p in loaded.adapter.parameters())
    x = 20 + 3 * torch.randn(5, K)
    with torch.no_grad():
        torch.testing.assert_close(loaded.adapter(x), adapter(x))
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == loaded.sha256 and sidecar["aux_names"] == AUX
    assert read_artifact_metadata(path).dataset == "OxfordPets"
    # orthogonal form for further training
    again = load_adapter_artifact(path, projection="orthogonal").adapter
    assert again.projection == "orthogonal"
    torch.testing.assert_close(again.W.detach(), adapter.W.detach(), atol=1e-6, rtol=0)


def test_overwrite_is_atomic_replace(tmp_path):
    path = _save(tmp_path / "adapter.safetensors")
    _save(path, dataset="DTD")
    assert load_adapter_artifact(path).metadata.dataset == "DTD"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.json", "adapter.safetensors"]


def test_corrupted_tensor_bytes_detected(tmp_path):
    path = _save(tmp_path / "adapter.safetensors")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the tensor payload
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptedError, match="hash mismatch"):
        load_adapter_artifact(path)


def test_truncated_or_foreign_file_detected(tmp_path):
    path = _save(tmp_path / "adapter.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactCorruptedError):
        load_adapter_artifact(path)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(ArtifactCorruptedError, match="no transmiter metadata"):
        load_adapter_artifact(other)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"expect_classnames": CLASSES[:-1]}, "classnames"),
        ({"expect_classnames": CLASSES[::-1]}, "classnames"),
        ({"expect_aux": AUX[1:] + AUX[:1]}, "aux_names"),
        ({"expect_k": 128}, "K"),
        ({"expect_dataset": "DTD"}, "dataset"),
        ({"expect_stage": "fitted"}, "stage"),
        ({"expect_source_model": "RN50"}, "source_model"),
        ({"expect_target_model": "ViT-H-14"}, "target_model"),
    ],
)
def test_mismatch_refusals_name_field_values_and_fix(tmp_path, kwargs, field):
    path = _save(tmp_path / "adapter.safetensors")
    with pytest.raises(ArtifactMismatchError) as err:
        load_adapter_artifact(path, **kwargs)
    msg = str(err.value)
    assert err.value.field == field
    assert f"field {field!r}" in msg and "expected" in msg and "found" in msg and "Fix:" in msg


def test_order_mismatch_message_points_at_index(tmp_path):
    path = _save(tmp_path / "adapter.safetensors")
    with pytest.raises(ArtifactMismatchError, match="index 0.*different order"):
        load_adapter_artifact(path, expect_classnames=CLASSES[::-1])


def test_save_validates_inputs(tmp_path):
    with pytest.raises(ValueError, match="differs from the adapter's K"):
        _save(tmp_path / "a.safetensors", aux_names=AUX[:-1])
    with pytest.raises(ValueError, match="target_model"):
        _save(tmp_path / "a.safetensors", target_model=None)
    with pytest.raises(ValueError, match="stage"):
        _save(tmp_path / "a.safetensors", stage="done")
    with pytest.raises(ValueError, match=".safetensors"):
        _save(tmp_path / "a.pt")
