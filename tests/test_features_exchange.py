"""Feature files in the authors' layout: export a study, import it back, and bad files refused early."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from transmiter.cli import main as cli
from transmiter.exchange.exporter import expand_jobs
from transmiter.features.released import TEST_FILE, TRAIN_FILE, load_feature_file, write_feature_file
from transmiter.reporting.records import load_records
from transmiter.transfer.artifact import load_adapter_artifact

SMOKE = ["experiment=smoke_study"]
TRANSFER_ROWS = (
    "EFT",
    "EFT base-change",
    "EFT ensemble",
    "EFT self-ensemble",
    "TransMiter",
    "TransMiter+",
    "TransMiter (source)",
    "TransMiter (no rotation)",
    "TransMiter (target oracle)",
)
ADAPTER_ROWS = ("TransMiter", "TransMiter+", "TransMiter (source)", "TransMiter (target oracle)")


def _study(compose, out: Path, overrides=SMOKE):
    from transmiter.app import run
    from transmiter.config.instantiate import dataset_spec_from_config
    from transmiter.data.fake import write_fake_dataset

    cfg = compose([*overrides, f"paths.output_dir={out}"])
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=6, per_class=(4, 2, 3)
    )
    run(cfg)
    return {r["row"]: r for r in load_records([out])}


def _adapter_difference(a: dict, b: dict) -> float:
    x = load_adapter_artifact(a["artifacts"]["adapter"]).adapter.export_tensors()
    y = load_adapter_artifact(b["artifacts"]["adapter"]).adapter.export_tensors()
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def test_round_trip_gives_the_study_rows(compose, tmp_path, capsys):
    """Export a study's features, import them: the transfer rows (and the adapters) are the study's."""
    study = _study(compose, tmp_path / "study")
    assert cli(["features", "export", *SMOKE, "--out", str(tmp_path / "exported")]) == 0
    folder = tmp_path / "exported" / "smoke" / "1" / "4"
    train = load_feature_file(folder / TRAIN_FILE)
    # the TransMiter row's fitting rows: 3 base classes x 4 shots x 2 views, base classes only
    assert train.num_rows == 24 and set(train.labels.tolist()) <= set(train.base)
    assert set(train.features) == {"tiny-random", "tiny-random-b"}
    assert set(train.ft_logits) == {"tiny-random", "tiny-random-b"}  # the study fine-tuned both
    capsys.readouterr()

    out = tmp_path / "imported"
    assert cli(["features", "import", str(tmp_path / "exported"), *SMOKE, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Smoke |" in printed and "transmiter report" in printed
    imported = {r["row"]: r for r in load_records([out])}
    pair = "tiny-random→tiny-random-b"
    for label in TRANSFER_ROWS:
        row = f"{label} {pair}"
        assert imported[row]["protocol"] == study[row]["protocol"] == "masked-joint"
        for metric, value in study[row]["metrics"].items():
            assert imported[row]["metrics"][metric] == pytest.approx(value, abs=1e-9), (row, metric)
    for label in ADAPTER_ROWS:  # the adapters themselves, not only their accuracies
        assert _adapter_difference(study[f"{label} {pair}"], imported[f"{label} {pair}"]) <= 1e-6
    for label in ("TransMiter", "TransMiter+", "TransMiter (no rotation)"):  # Procrustes residuals, CKA
        figures = study[f"{label} {pair}"]["extra"]["transfer_figures"]
        assert imported[f"{label} {pair}"]["extra"]["transfer_figures"] == pytest.approx(figures, abs=1e-9)
    # zero-shot and fine-tuned rows from the files: masked-joint, which for a text head equals the
    # study's separate label spaces (the class rows of a head do not depend on each other)
    for row in ("Zero-shot tiny-random", "Zero-shot tiny-random-b", "Skip Tuning tiny-random"):
        assert imported[row]["metrics"] == pytest.approx(study[row]["metrics"], abs=1e-9), row
    rec = imported[f"TransMiter {pair}"]
    assert rec["splits"]["train"] == train.sha256[:16] and rec["extra"]["fit_rows"] == 24

    # done: skipped; --force recomputes from the reused stages
    assert cli(["features", "import", str(tmp_path / "exported"), *SMOKE, "--out", str(out)]) == 0
    assert "[skipped]" in capsys.readouterr().out
    assert cli(["features", "import", str(tmp_path / "exported"), *SMOKE, "--out", str(out), "--force"]) == 0
    again = {r["row"]: r for r in load_records([out])}
    assert again[f"TransMiter+ {pair}"]["extra"]["stages_reused"] == {
        "adapter_fit": True,
        "adapter_transfer": True,
        "adapter_refine": True,
    }


def test_export_refuses_a_study_that_has_not_run(compose, tmp_path, capsys):
    from transmiter.config.instantiate import dataset_spec_from_config
    from transmiter.data.fake import write_fake_dataset

    cfg = compose(SMOKE)
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=6, per_class=(4, 2, 3)
    )
    assert cli(["features", "export", *SMOKE, "--out", str(tmp_path / "x")]) == 2
    out = capsys.readouterr().out
    assert "'skip_tuning' stage" in out and "not done" in out and "Run the study first" in out
    assert not list((tmp_path / "x").rglob("*.pt"))


def test_export_expands_sweeps_like_multirun():
    jobs = expand_jobs(["experiment=demo", "seed=1,2"])
    assert len(jobs) == 8  # 2 datasets x 2 settings (the experiment's sweep) x 2 seeds
    assert {j[-1] for j in jobs} == {"seed=1", "seed=2"} and all("experiment=demo" in j for j in jobs)
    assert expand_jobs(["experiment=smoke_study"]) == [["experiment=smoke_study"]]


# ------------------------------------------------------------------------------------------------
# files written here: the authors' layout for two datasets, and bad variants of it
# ------------------------------------------------------------------------------------------------
def _tiny_dim() -> int:
    import open_clip

    from transmiter.models.clip import ModelSpec

    ModelSpec(arch="tm-tiny-ViT").validate()  # registers the project's open_clip configs
    return int(open_clip.get_model_config("tm-tiny-ViT")["embed_dim"])


def _write_files(
    folder: Path, classes: int, seed: int = 0, models=("tiny-random", "tiny-random-b"), **change
):
    """train/test files with class-dependent features (so accuracies differ across datasets)."""
    g = torch.Generator().manual_seed(seed)
    dim = _tiny_dim()
    centres = torch.randn(classes, dim, generator=g)
    base = list(range((classes + 1) // 2))
    novel = list(range(len(base), classes))
    for name, labels in ((TRAIN_FILE, torch.tensor(base * 4)), (TEST_FILE, torch.arange(classes).repeat(3))):
        feats = {m: centres[labels] + 2 * torch.randn(len(labels), dim, generator=g) for m in models}
        ft = {
            models[0]: 5 * torch.nn.functional.one_hot(labels, classes).float()
            + torch.randn(len(labels), classes, generator=g)
        }
        kwargs = dict(
            labels=labels, classnames=[f"class_{i}" for i in range(classes)], base=base, novel=novel
        )
        kwargs.update(features=feats, ft_logits=ft)
        kwargs.update(change.get(name, {}))
        write_feature_file(folder / name, **kwargs)


FAST = [
    "pair=tiny_random",
    "method.transfer=[eft,transmiter,transmiter_plus]",
    "method.methods.eft.K=64",
    "method.methods.transmiter.K=64",
    "method.methods.transmiter.fit.epochs=2",
    "method.methods.transmiter_plus.K=64",
    "method.methods.transmiter_plus.fit.epochs=2",
    "method.methods.transmiter_plus.refine.epochs=2",
]


def test_import_of_two_datasets_reports_both_averages(tmp_path, capsys):
    _write_files(tmp_path / "files" / "DTD" / "1" / "16", classes=47, seed=1)  # the reference's folder name
    _write_files(tmp_path / "files" / "eurosat" / "1" / "16", classes=10, seed=2)
    out = tmp_path / "out"
    assert (
        cli(
            [
                "features",
                "import",
                str(tmp_path / "files"),
                *FAST,
                "--ft-label",
                "PromptSRC",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "results.md").read_text()
    records = load_records([out])
    assert {r["dataset"] for r in records} == {"DescribableTextures", "EuroSAT"}
    assert {r["row"] for r in records} >= {"PromptSRC tiny-random", "TransMiter+ tiny-random→tiny-random-b"}
    tm = [r for r in records if r["row"] == "TransMiter tiny-random→tiny-random-b"]
    base = [r["metrics"]["base"] for r in tm]
    novel = [r["metrics"]["novel"] for r in tm]
    hms = [r["metrics"]["hm"] for r in tm]
    b, n = sum(base) / 2, sum(novel) / 2
    average = next(line for line in table.splitlines() if line.startswith("| **Average** | TransMiter tiny"))
    cells = [c.strip() for c in average.split("|")]
    assert float(cells[3]) == pytest.approx(b, abs=0.01) and float(cells[4]) == pytest.approx(n, abs=0.01)
    assert float(cells[5]) == pytest.approx(2 * b * n / (b + n), abs=0.01)  # HM of the averages
    assert float(cells[6]) == pytest.approx(sum(hms) / 2, abs=0.01)  # mean of per-dataset HMs


class _Foreign:
    pass


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {TRAIN_FILE: {"labels": torch.zeros(3, dtype=torch.long)}},
            r"train_features.pt: 'tiny-random_features' has 12 rows but 'labels' has 3",
        ),
        (
            {TEST_FILE: {"ft_logits": {"tiny-random": torch.zeros(18, 4)}}},
            r"test_features.pt: 'tiny-random_ft_logits' has 4 columns but 'label_names' names 6",
        ),
        ({TEST_FILE: {"ft_logits": {}}}, r"test_features.pt: key 'tiny-random_ft_logits' is missing .*Fix"),
        ({TRAIN_FILE: {"novel": []}}, r"'base' and 'novel' must split the 6 classes"),
        ({TRAIN_FILE: {"classnames": [f"c{i}" for i in range(6)]}}, r"disagree on 'label_names'"),
    ],
)
def test_bad_files_are_refused_before_any_work(tmp_path, capsys, change, message):
    folder = tmp_path / "files" / "smoke" / "1" / "16"
    _write_files(folder, classes=6, **change)
    assert cli(["features", "import", str(tmp_path / "files"), *FAST, "--out", str(tmp_path / "out")]) == 2
    assert re.search(message, capsys.readouterr().out)
    assert not (tmp_path / "out").exists()  # nothing written


def test_files_that_need_pickle_missing_keys_or_nan_are_refused(tmp_path):
    from transmiter.features.released import FeatureFileError

    path = tmp_path / TRAIN_FILE
    torch.save({"labels": torch.zeros(2, dtype=torch.long), "x": _Foreign()}, path)
    with pytest.raises(FeatureFileError, match=r"weights_only=True.*re-save it as a dict of tensors"):
        load_feature_file(path)
    torch.save({"labels": torch.zeros(2, dtype=torch.long)}, path)
    with pytest.raises(FeatureFileError, match=r"key\(s\) \['label_names', 'base', 'novel'\] missing"):
        load_feature_file(path)
    _write_files(tmp_path, classes=4)
    data = torch.load(tmp_path / TRAIN_FILE, weights_only=True)
    data["tiny-random_features"][3, 0] = float("nan")
    torch.save(data, tmp_path / TRAIN_FILE)
    with pytest.raises(
        FeatureFileError, match=r"'tiny-random_features' holds 1 NaN/inf value\(s\) \(first in row 3\)"
    ):
        load_feature_file(tmp_path / TRAIN_FILE)


def test_folder_names_models_and_settings_are_checked_before_any_work(tmp_path, capsys):
    def fails(args, message, folder="files"):
        assert cli(["features", "import", str(tmp_path / folder), *args, "--out", str(tmp_path / "out")]) == 2
        out = capsys.readouterr().out
        assert re.search(message, out), out
        assert not (tmp_path / "out").exists()

    _write_files(tmp_path / "files" / "textures" / "1" / "16", classes=6)
    fails(FAST, r"dataset folder 'textures' is not a known dataset; rename it")
    _write_files(tmp_path / "b16" / "dtd" / "1" / "16", classes=47, models=("ViT-B-16", "ViT-L-14"))
    # the pair is found from the keys; its weights are not on this machine
    fails(
        [], r"pair.source \(ViT-B-16: ViT-B-16 pretrained=openai\) has no local weights .*Fix", folder="b16"
    )
    _write_files(tmp_path / "other" / "smoke" / "1" / "16", classes=6, models=("mine", "yours"))
    fails(FAST[1:], r"no pair config has its source .*among the file's models \(mine, yours", folder="other")
    _write_files(tmp_path / "wide" / "smoke" / "1" / "16", classes=6)
    data = torch.load(tmp_path / "wide" / "smoke" / "1" / "16" / TEST_FILE, weights_only=True)
    data["tiny-random_features"] = torch.nn.functional.normalize(torch.randn(18, 7), dim=1)
    torch.save(data, tmp_path / "wide" / "smoke" / "1" / "16" / TEST_FILE)
    fails(FAST, r"'tiny-random_features' has .*7.* tm-tiny-ViT embeds images in", folder="wide")
    _write_files(tmp_path / "ok" / "smoke" / "1" / "16", classes=6)
    fails(
        [*FAST, "method.methods.transmiter_plus.refine.select_on_val=true"],
        r"select_on_val=true needs a validation",
        folder="ok",
    )
    fails([*FAST, "seed=3"], r"come from the folders", folder="ok")


def test_dataset_configs_without_template_overrides_give_none(compose):
    """`templates: {}` (the real datasets) must read as no overrides: every transfer row builds its heads
    through it (it used to fail on an empty mapping)."""
    from transmiter.config.instantiate import dataset_templates

    assert dataset_templates(compose(["dataset=dtd"]).dataset) == {}
    assert dataset_templates(compose(["dataset=synth_shapes"]).dataset)["coop"] == ["a photo of a {}."]


@pytest.mark.slow
def test_round_trip_on_the_synthetic_world(tmp_path_factory, compose, capsys):
    """The same round trip with the synthetic world's pretrained models (local checkpoints, whose weight
    identities the import checks against export.json)."""
    from transmiter.app import run
    from transmiter.cli.world import publish_world
    from transmiter.synthetic.build import build_world

    cache, data = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("data")
    publish_world(
        build_world(cache / "synthetic", data, world="domain_shift", scale="tiny", progress=False),
        cache,
        "tiny",
    )
    tmp = tmp_path_factory.mktemp("round_trip")
    world = [
        *SMOKE,
        "pair=synth_weak_to_strong",
        "dataset=synth_shapes",
        "world_scale=tiny",
        f"paths.cache_dir={cache}",
        f"paths.data_dir={data}",
    ]
    run(compose([*world, f"paths.output_dir={tmp / 'study'}"]))
    study = {r["row"]: r for r in load_records([tmp / "study"])}
    assert cli(["features", "export", *world, "--out", str(tmp / "exported")]) == 0
    imported_overrides = [o for o in world if not o.startswith("dataset=")]
    out = tmp / "imported"
    assert cli(["features", "import", str(tmp / "exported"), *imported_overrides, "--out", str(out)]) == 0
    imported = {r["row"]: r for r in load_records([out])}
    pair = "synth-weak→synth-strong"
    differences = {}
    for label in TRANSFER_ROWS:
        row = f"{label} {pair}"
        differences[row] = max(abs(imported[row]["metrics"][m] - v) for m, v in study[row]["metrics"].items())
    for label in ADAPTER_ROWS:
        differences[f"{label} adapter"] = _adapter_difference(
            study[f"{label} {pair}"], imported[f"{label} {pair}"]
        )
    print("\nround trip, max abs difference:", differences)
    assert max(differences.values()) <= 1e-6, differences


def test_novel_class_rows_in_the_train_file_are_pointed_out(tmp_path, capsys):
    from transmiter.exchange.importer import plan_import

    folder = tmp_path / "files" / "smoke" / "1" / "16"
    _write_files(folder, classes=6, **{TRAIN_FILE: {"labels": torch.arange(6).repeat(2)}})
    jobs = plan_import(tmp_path / "files", FAST, tmp_path / "out")
    assert len(jobs) == 1 and not (tmp_path / "out").exists()  # planning writes nothing
    assert "holds 6 rows of novel classes" in capsys.readouterr().out
