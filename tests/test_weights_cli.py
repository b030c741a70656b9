"""`transmiter weights check`: a study on a machine without its pretrained weights fails before any job runs."""

from __future__ import annotations

from transmiter.cli.weights import check


def test_missing_openai_weights_fail_with_the_fix(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    assert check(["pair=vit_b16_to_vit_l14"]) == 1
    out = capsys.readouterr().out
    assert "[MISSING] source: ViT-B-16 pretrained=openai" in out
    assert "[MISSING] target: ViT-L-14 pretrained=openai" in out
    assert "fix:" in out and "DOWNLOAD=1" in out
    assert check(["pair=vit_b16_to_vit_l14"], allow_download=True) == 0


def test_random_init_and_local_files_pass(capsys, tmp_path):
    assert check(["model=tiny_random"]) == 0
    weights = tmp_path / "tuned.safetensors"
    weights.write_bytes(b"x")
    assert check(["model=tiny_random", f"model.pretrained={weights}"]) == 0
    assert check(["model=tiny_random", f"model.pretrained={tmp_path / 'absent.safetensors'}"]) == 1
    assert "absent.safetensors" in capsys.readouterr().out
