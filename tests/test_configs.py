"""Every shipped config composes (globbed, never listed by hand), and bad input fails at composition
with a message that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from transmiter.config import CONFIG_DIR, ConfigError, validate_config
from transmiter.config.instantiate import dataset_spec_from_config, instantiate
from transmiter.reporting.records import resolved_config

GROUPS = ["model", "dataset", "method", "pair", "setting", "trainer", "logger", "world", "experiment"]


def _choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _all_group_files() -> list[tuple[str, str]]:
    return [(g, c) for g in GROUPS for c in _choices(g)]


def test_every_group_has_configs():
    for group in GROUPS:
        assert _choices(group), f"conf/{group}/ is empty"


@pytest.mark.parametrize(("group", "choice"), _all_group_files(), ids=lambda x: str(x))
def test_config_composes_and_resolves(compose, group, choice):
    cfg = compose([f"{group}={choice}"])
    container = resolved_config(cfg)  # every interpolation resolves
    assert container[group if group != "experiment" else "task_name"]
    if group == "model":
        spec = instantiate(cfg.model)
        assert spec.arch
    if group == "pair":
        assert instantiate(cfg.pair.source).arch and instantiate(cfg.pair.target).arch
    if group == "dataset":
        spec = dataset_spec_from_config(cfg.dataset)
        assert spec.name == cfg.dataset.name
    if group == "method":
        assert callable(instantiate(cfg.method))


@pytest.mark.parametrize(
    "launcher", sorted(p.stem for p in (CONFIG_DIR / "hydra" / "launcher").glob("*.yaml"))
)
def test_launcher_configs_compose(compose, launcher):
    cfg = compose([f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher._target_


def test_all_protocol_datasets_and_models_are_shipped():
    datasets = {OmegaConf.load(p).name for p in (CONFIG_DIR / "dataset").glob("*.yaml")}
    for name in [
        "ImageNet",
        "Caltech101",
        "OxfordPets",
        "StanfordCars",
        "OxfordFlowers",
        "Food101",
        "FGVCAircraft",
        "SUN397",
        "DescribableTextures",
        "EuroSAT",
        "UCF101",
        "ImageNetV2",
        "ImageNetSketch",
        "ImageNetA",
        "ImageNetR",
    ]:
        assert name in datasets
    models = {OmegaConf.load(p).arch for p in (CONFIG_DIR / "model").glob("*.yaml")}
    assert {"ViT-B-16", "ViT-B-32", "ViT-L-14", "RN50"} <= models


def test_unknown_key_is_rejected_with_its_name(compose):
    with pytest.raises(ConfigCompositionException) as err:
        compose(["setting.shotz=4"])
    assert "shotz" in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize(
    "override", ["setting.shots=abc", "method.fit.proj_dim=1.5", "seed=one", "dataset.test_only=maybe"]
)
def test_wrong_types_are_rejected_at_composition_with_the_key(compose, override):
    with pytest.raises(ConfigCompositionException) as err:
        compose(["method=transmiter", override])
    assert override.split("=")[0] in str(err.value)


def test_every_shipped_config_matches_its_schema(compose):
    """Each group file is merged onto its typed node (the schema), and its values pass the schema's rules."""
    from transmiter.config.schema import TransmiterConfig, check_values

    for group, choice in _all_group_files():
        cfg = compose([f"{group}={choice}"])
        assert OmegaConf.get_type(cfg) is TransmiterConfig
        for node in ("dataset", "model", "setting", "pair", "method", "eval", "paths"):
            schema = OmegaConf.get_type(cfg[node])
            assert schema.__module__ == "transmiter.config.schema", (group, choice, node, schema)
        check_values(cfg)


def test_unknown_choice_lists_the_options(compose):
    with pytest.raises(ConfigCompositionException) as err:
        compose(["model=ViT-B-99"])
    message = str(err.value)
    assert "model" in message and "ViT-B-16" in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("setting.shots=-3", "setting.shots"),
        ("setting.shots=0", "setting.shots"),
        ("seed=-1", "seed"),
        ("setting.train_subsample=half", "setting.train_subsample"),
        ("setting.eval_groups=[base]", "setting.eval_groups"),
        ("method.templates=fancy", "method.templates"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("model.arch=ViT-B-17", "model.arch"),
        ("model.pretrained=/nonexistent/ckpt.pt", "model.pretrained"),
        ("model.pretrained=laion9000", "model.pretrained"),
    ],
)
def test_invalid_values_fail_before_heavy_work(compose, override, key):
    cfg = compose([override])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_data=False)
    assert key in str(err.value)


def test_missing_dataset_folder_names_path_and_fix(compose, tmp_path):
    cfg = compose(["dataset=oxford_pets", "model=tiny_random", f"paths.data_dir={tmp_path}"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert str(tmp_path / "oxford_pets") in str(err.value)
    assert "data check" in str(err.value)


def test_missing_split_file_names_it(compose, tmp_path):
    (tmp_path / "oxford_pets").mkdir()
    cfg = compose(["dataset=oxford_pets", "model=tiny_random", f"paths.data_dir={tmp_path}"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "split_zhou_OxfordPets.json" in str(err.value)


def test_config_dir_is_the_repository_tree():
    assert (CONFIG_DIR / "config.yaml").is_file()
    assert Path(CONFIG_DIR).name == "conf"


@pytest.mark.parametrize("finetuner", ["skip_tuning", "ft"])
def test_study_source_finetuner_switch_sets_every_transfer_row(compose, finetuner):
    cfg = compose(["method=study", "pair=tiny_random", f"method.source_finetuner={finetuner}"])
    study = instantiate(cfg.method)
    assert study.source_finetuner == finetuner and len(study.transfer) >= 3
    for name in study.transfer:  # EFT (and variants), TransMiter, TransMiter+
        assert cfg.method.methods[name].source_finetune.kind == finetuner, name
        assert study.methods[name].source_finetune.kind == finetuner, name
    # the transfer rows follow the study's own fine-tuning config (one shared training)
    assert cfg.method.methods.transmiter.source_finetune == cfg.method.methods[finetuner]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method.fit.proj_dim=32", "method.fit.proj_dim"),  # < K = 64
        ("method.fit.dropout=1.0", "method.fit.dropout"),
        ("method.fit.dropout=-0.1", "method.fit.dropout"),
    ],
)
def test_adapter_proj_dim_and_dropout_are_validated(compose, override, key):
    base = ["model=tiny_random", "pair=tiny_random", "method=transmiter", "method.K=64"]
    with pytest.raises(ConfigError) as err:
        validate_config(compose([*base, override]), check_data=False)
    assert key in str(err.value)
    for ok in (["method.fit.proj_dim=null"], ["method.fit.proj_dim=80", "method.fit.dropout=0.1"]):
        validate_config(compose([*base, *ok]), check_data=False)


def test_adapter_options_are_validated_inside_a_study(compose):
    cfg = compose(
        ["model=tiny_random", "pair=tiny_random", "method=study", "method.methods.transmiter.fit.dropout=2"]
    )
    with pytest.raises(ConfigError, match=r"method\.methods\.transmiter\.fit\.dropout"):
        validate_config(cfg, check_data=False)
