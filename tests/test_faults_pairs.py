"""Every shipped pair works with its defaults (issue 19, item 4): `method=transmiter` and `method=study`
validate for each pair in conf/pair, a source that Skip Tuning cannot split (RN50) is refused before any
model is loaded with the FT override named, and each pair runs on random-init tiny versions of its
architectures, its study without empty rows."""

from __future__ import annotations

import json

import pytest

from tests.toys import write_fake_data
from transmiter.app import run
from transmiter.config import CONFIG_DIR, ConfigError, validate_config
from transmiter.reporting.records import load_records

PAIRS = sorted(p.stem for p in (CONFIG_DIR / "pair").glob("*.yaml"))

# random-init tiny stand-ins for each shipped architecture family (open_clip configs, 32 px)
TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 2}
TINY_RESNET = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": TINY_TEXT,
}


def _tiny_arch(arch: str) -> str:
    """The tiny random-init architecture that stands in for `arch` (the synthetic ones are tiny already)."""
    if arch.startswith("RN"):
        from tests.toys import register_tiny_config

        return register_tiny_config("tm-tiny-RN", TINY_RESNET)
    return arch if arch.startswith("Synth") else "tm-tiny-ViT"


def _source_arch(compose, pair: str) -> str:
    return str(compose([f"pair={pair}"]).pair.source.arch)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", ["transmiter", "study"])
def test_every_shipped_pair_validates_with_its_defaults_or_names_the_override(
    compose, monkeypatch, pair, method
):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    overrides = [f"method={method}", f"pair={pair}"]
    if pair.startswith("synth"):  # the synthetic world's weights are built by `transmiter world build`
        overrides += ["pair.source.pretrained=null", "pair.target.pretrained=null"]
    cfg = compose(overrides)
    if method == "transmiter" and _source_arch(compose, pair).startswith("RN"):
        with pytest.raises(ConfigError) as err:
            validate_config(cfg, check_data=False)
        message = str(err.value)
        assert "method@method.source_finetune=ft" in message and "ResNet" in message, message
        cfg = compose([*overrides, "method@method.source_finetune=ft"])
    validate_config(cfg, check_data=False)


def test_a_resnet_source_is_refused_before_any_model_is_loaded(compose, tmp_path, monkeypatch):
    import transmiter.models.clip as clip

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was refused")

    monkeypatch.setattr(clip, "load_clip", no_loading)
    cfg = compose(
        ["experiment=smoke", "method=transmiter", "pair=rn50_to_vit_b16", f"paths.output_dir={tmp_path}/o"]
    )
    write_fake_data(cfg)
    with pytest.raises(ConfigError, match=r"add method@method.source_finetune=ft to the command"):
        run(cfg)
    cfg = compose(["experiment=smoke", "method=skip_tuning", "model=RN50", f"paths.output_dir={tmp_path}/o"])
    with pytest.raises(ConfigError, match=r"use method=ft"):
        run(cfg)


SHORT = [
    "method.K=64",
    "method.views=1",
    "method.fit.epochs=1",
    "method.source_finetune.module.epochs=1",
]


@pytest.mark.parametrize("pair", PAIRS)
def test_every_shipped_pair_runs_transmiter_on_tiny_versions_of_its_architectures(compose, tmp_path, pair):
    base = compose([f"pair={pair}"])
    overrides = [
        "experiment=smoke",
        "method=transmiter",
        f"pair={pair}",
        f"pair.source.arch={_tiny_arch(str(base.pair.source.arch))}",
        f"pair.target.arch={_tiny_arch(str(base.pair.target.arch))}",
        "pair.source.pretrained=null",
        "pair.target.pretrained=null",
        "pair.target.init_seed=1",
        f"paths.output_dir={tmp_path}/run",
    ]
    if str(base.pair.source.arch).startswith("RN"):
        overrides.append("method@method.source_finetune=ft")  # what the validation error names
    cfg = compose([*overrides, *SHORT])
    write_fake_data(cfg)
    metrics = run(cfg)
    assert set(metrics) == {"base", "novel", "hm"}


@pytest.mark.slow
def test_a_resnet_pair_study_has_no_empty_rows(compose, tmp_path, capsys):
    """The study falls back to FT for the ResNet source's transfer rows; its Skip Tuning row cannot run and
    is printed with the reason (not as `{}`), listed in job.json and never written as an empty record."""
    out = tmp_path / "job"
    cfg = compose(
        [
            "experiment=smoke_study",
            "pair=rn50_to_vit_b16",
            f"pair.source.arch={_tiny_arch('RN50')}",
            "pair.target.arch=tm-tiny-ViT",
            "pair.source.pretrained=null",
            "pair.target.pretrained=null",
            "method.methods.transmiter_diagnostics.rows=[source]",
            f"paths.output_dir={out}",
        ]
    )
    write_fake_data(cfg)
    run(cfg)
    printed = capsys.readouterr().out
    assert ": {}" not in printed
    assert (
        "Skip Tuning RN50 (random init) | Smoke | base2novel | seed 1: not run (the image tower" in printed
    ), printed
    records = load_records([out])
    assert records and all(r["metrics"] for r in records)
    assert "Skip Tuning RN50 (random init)" in json.loads((out / "job.json").read_text())["not_run"]
    assert {r["extra"].get("source_finetune") for r in records if r["extra"]["role"] == "pair"} == {"ft"}
