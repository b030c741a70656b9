"""The settings beyond base-to-novel: their configs and recipes, bad input refused before any heavy work
(with the key and the fix named), and the class map of the domain-generalisation targets on fake layouts.
End-to-end runs: test_settings_runs.py."""

from __future__ import annotations

import pytest

from transmiter.config import ConfigError, validate_config
from transmiter.config.instantiate import dataset_spec_from_config, target_dataset_nodes
from transmiter.config.validate import _validate_class_batches
from transmiter.data.class_map import class_map
from transmiter.data.errors import DatasetError
from transmiter.data.fake import write_fake_dataset
from transmiter.data.loaders import load_dataset

XD_TARGETS = ["Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101", "FGVCAircraft"]
XD_TARGETS += ["SUN397", "DescribableTextures", "EuroSAT", "UCF101"]


def test_settings_name_the_papers_datasets_and_recipes(compose):
    xd = compose(["experiment=xd"])
    names = {name: node.name for name, node in target_dataset_nodes(xd).items()}
    assert list(names.values()) == XD_TARGETS and xd.dataset.name == "ImageNet"
    assert xd.setting.shots == 16 and xd.setting.train_subsample == "all"
    dg = compose(["experiment=dg"])
    dg_targets = [node.name for node in target_dataset_nodes(dg).values()]
    assert dg_targets == ["ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"]
    assert dg.setting.target_label_space == "source" and xd.setting.target_label_space == "own"
    # Skip Tuning's cross recipe and FT's 4 epochs; domain generalisation reads the same entry
    skip = xd.method.methods.skip_tuning.per_setting[dg.setting.recipe]
    assert (skip.text_lr, skip.image_lr, skip.epochs, skip.warmup_epochs, skip.warmup_lr) == (
        1e-5,
        1e-6,
        20,
        1,
        1e-8,
    )
    assert xd.method.methods.ft.per_setting.cross_dataset.epochs == 4
    few = compose(["experiment=fewshot"])
    schedule = few.method.methods.skip_tuning.per_setting.fewshot
    assert (schedule.text_lr, schedule.image_lr, schedule.epochs, schedule.warmup_epochs) == (
        1e-5,
        1e-5,
        40,
        0,
    )
    assert list(few.setting.shot_range) == [1, 16]
    params = few.hydra.sweeper.params
    assert params["setting.shots"] == "1,2,4,8,16" and params["seed"] == "1,2,3"
    assert len(params["dataset"].split(",")) == 11


def test_recipe_selects_the_per_setting_schedule(compose):
    from transmiter.config.instantiate import instantiate

    for setting in ("cross_dataset", "domain_generalization"):
        cfg = compose([f"setting={setting}", "method=skip_tuning"])
        method = instantiate(cfg.method)

        class Ctx:
            pass

        ctx = Ctx()
        ctx.cfg = cfg
        kwargs = method.module_kwargs(ctx)
        assert (kwargs["image_lr"], kwargs["epochs"], kwargs["warmup_lr"]) == (1e-6, 20, 1e-8), setting


@pytest.mark.parametrize("shots", [0, 17, 32])
def test_fewshot_study_refuses_shots_outside_1_to_16(compose, shots):
    cfg = compose(["setting=fewshot", f"setting.shots={shots}"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_data=False)
    message = str(err.value)
    assert message.startswith("setting.shots=") and ("1-16" in message or "positive" in message)


def test_skip_tuning_batch_above_the_shots_is_refused_before_training(compose):
    # one-class batches from 4 shots on: 8 images per class cannot fill a batch of 16
    cfg = compose(["setting=fewshot", "setting.shots=8", "method=skip_tuning", "method.batch_size=16"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_data=False)
    message = str(err.value)
    assert message.startswith("method.batch_size=16") and "method.batch_size=4" in message
    for ok in (
        ["setting.shots=8", "method.batch_size=8"],
        ["setting.shots=2", "method.batch_size=16"],  # random batches below 4 shots
    ):
        _validate_class_batches(compose(["setting=fewshot", "method=skip_tuning", *ok]))  # passes


def test_cross_dataset_target_that_is_the_source_is_refused(compose):
    cfg = compose(["setting=cross_dataset", "dataset=caltech101"])
    with pytest.raises(ConfigError, match="source dataset itself") as err:
        validate_config(cfg, check_data=False)
    assert "setting.targets" in str(err.value) and "remove caltech101" in str(err.value)


def test_unknown_target_and_overrides_of_no_target_are_refused(compose):
    cfg = compose(["setting=cross_dataset", "dataset=imagenet", "setting.targets=[caltec101]"])
    with pytest.raises(ConfigError, match="setting.targets='caltec101'.*caltech101"):
        validate_config(cfg, check_data=False)
    cfg = compose(["setting=cross_dataset", "dataset=imagenet", "+setting.target_overrides.dtdd.folder=x"])
    with pytest.raises(ConfigError, match="target_overrides names \\['dtdd'\\]"):
        validate_config(cfg, check_data=False)
    cfg = compose(["setting=cross_dataset", "dataset=imagenet", "+setting.target_overrides.dtd.loader=zip"])
    with pytest.raises(ConfigError, match="setting.targets.dtd.loader='zip'"):
        validate_config(cfg, check_data=False)


def test_dg_variant_whose_folder_is_missing_fails_early_naming_it(compose, tmp_path):
    write_fake_dataset(
        dataset_spec_from_config(compose(["dataset=imagenet"]).dataset), tmp_path, num_classes=4
    )
    cfg = compose(["experiment=dg", "trainer=cpu", f"paths.data_dir={tmp_path}", "dataset.num_classes=null"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert message.startswith("setting.targets: imagenet_v2: folder") and "imagenetv2" in message
    assert "paths.data_dir" in message and "transmiter data check" in message


def test_k_must_exceed_the_classes_of_targets_scored_in_their_own_label_space(compose):
    cfg = compose(["experiment=xd", "trainer=cpu", "method.methods.transmiter.K=256"])
    with pytest.raises(ConfigError, match="method.methods.[a-z_]+.K=.*dataset=ImageNet"):
        validate_config(cfg, check_data=False)
    cfg = compose(
        [
            "setting=cross_dataset",
            "dataset=smoke",
            "setting.targets=[sun397]",
            "method=transmiter",
            "method.K=256",
        ]
    )
    with pytest.raises(ConfigError, match="method.K=256 .*target sun397 \\(C=397\\)"):
        validate_config(cfg, check_data=False)


def test_model_selection_on_val_is_refused_with_targets(compose):
    cfg = compose(["setting=cross_dataset", "dataset=imagenet", "eval.split=val"])
    with pytest.raises(ConfigError, match="eval.split='val'.*setting.targets=\\[\\]"):
        validate_config(cfg, check_data=False)


# ------------------------------------------------------------------------------------ the class map


def _fake(compose, name, data_dir, classes):
    spec = dataset_spec_from_config(compose([f"dataset={name}"]).dataset)
    return load_dataset(
        write_fake_dataset(spec, data_dir, num_classes=classes, per_class=(1, 1, 2)), data_dir
    )


def test_class_map_places_imagenet_a_and_r_in_imagenet_label_space(compose, tmp_path):
    imagenet = _fake(compose, "imagenet", tmp_path, 10)
    for variant in ("imagenet_a", "imagenet_r"):
        splits = _fake(compose, variant, tmp_path, 4)  # 4 of every other class of classnames.txt
        assert len(splits.classnames) == 4 and {d.label for d in splits.test} == {0, 1, 2, 3}
        mapping = class_map(imagenet.classnames, splits.classnames, source="ImageNet", target=splits.name)
        assert mapping == [1, 3, 5, 7]  # the fake variants hold ImageNet's classes 1, 3, 5, 7
        for datum in splits.test:  # an image's class name is that of its mapped ImageNet class
            assert imagenet.classnames[mapping[datum.label]] == datum.classname
    for variant in ("imagenet_v2", "imagenet_sketch"):  # all classes: the identity, whatever the folders
        splits = _fake(compose, variant, tmp_path, 10)
        assert class_map(imagenet.classnames, splits.classnames) == list(range(10))


def test_class_map_refuses_classes_the_source_lacks_or_names_twice(compose, tmp_path):
    small = _fake(compose, "imagenet", tmp_path, 4)  # classes 0-3 only
    variant = _fake(compose, "imagenet_a", tmp_path, 4)  # classes 1, 3, 5, 7
    with pytest.raises(DatasetError, match="2 of ImageNetA's 4 classes are not classes of ImageNet") as err:
        class_map(small.classnames, variant.classnames, source="ImageNet", target="ImageNetA")
    assert "classnames.txt" in str(err.value) and "target_label_space=own" in str(err.value)
    with pytest.raises(DatasetError, match="'b' more than once"):
        class_map(["a", "b", "b"], ["b"])


def test_epoch_selection_on_imagenet_val_is_refused_since_it_is_the_test_set(compose):
    cfg = compose(
        ["experiment=xd", "trainer=cpu", "method.methods.transmiter_plus.refine.select_on_val=true"]
    )
    with pytest.raises(ConfigError, match="transmiter_plus.refine.select_on_val=True .*val is the test set"):
        validate_config(cfg, check_data=False)
