"""Faults and first contact (issue 19): typos never run the wrong job, bad values and machines are refused
before any heavy work with the key and the fix, and help texts are complete.

Stage healing, changed images, disks and reports have their own files (test_faults_stages.py,
test_faults_data.py, test_faults_disk.py, test_faults_report.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.toys import write_fake_data
from transmiter.app import run
from transmiter.cli import SUBCOMMANDS
from transmiter.config import ConfigError, validate_config
from transmiter.config.schema import check_trainer_keys

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "transmiter", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**__import__("os").environ, "HYDRA_FULL_ERROR": "0"},
    )


# ------------------------------------------------------------------------- no silent wrong job (item 3)


@pytest.mark.parametrize("override", ["methd=ft", "+methd=ft", "++methd=ft", "+sed=3"])
def test_unknown_top_level_key_is_refused_with_the_closest_key(capsys, override):
    from transmiter.cli import main

    assert main([override, "dry_run=true"]) == 2
    captured = capsys.readouterr()
    key = override.lstrip("+").split("=")[0]
    guess = {"methd": "method=ft", "sed": "seed=3"}[key]
    assert f"unknown key {key!r}" in captured.err and f"did you mean {guess}?" in captured.err, captured.err
    assert "[pending]" not in captured.out  # nothing ran (a dry run would print the plan)


@pytest.mark.parametrize(
    ("override", "key", "guess"),
    [
        ("+methd=ft", "methd", "method"),
        ("+model.archh=RN50", "model.archh", "model.arch"),
        ("+method.templatess=coop", "method.templatess", "method.templates"),
        ("+dataset.on_corupt_image=skip", "dataset.on_corupt_image", "dataset.on_corrupt_image"),
    ],
)
def test_keys_added_with_plus_are_checked_against_the_schema(compose, override, key, guess):
    """Composing (the app, the sub-commands and tests alike) refuses a `+key` that no schema declares."""
    with pytest.raises(ConfigError) as err:
        compose([override])
    assert f"unknown key {key!r}" in str(err.value) and f"did you mean {guess}?" in str(err.value)


@pytest.mark.parametrize(
    ("trainer", "override", "guess"),
    [("cpu", "+trainer.max_epoch=3", "max_epochs"), ("ddp_cpu", "+trainer.precison=bf16-mixed", "precision")],
)
def test_a_trainer_key_lightning_does_not_take_is_refused_before_the_job_runs(
    compose, tmp_path, trainer, override, guess
):
    """The trainer node is untyped, so the app checks its keys against its class's keyword arguments before
    it loads data or models."""
    base = [
        "experiment=smoke",
        f"trainer={trainer}",
        f"paths.output_dir={tmp_path}/run",
        f"paths.data_dir={tmp_path}/data",
    ]
    write_fake_data(compose(base))
    with pytest.raises(ConfigError) as err:
        run(compose([*base, override]))
    key = override.lstrip("+").split("=")[0]
    assert f"unknown key {key!r}" in str(err.value) and f"did you mean trainer.{guess}?" in str(err.value)
    assert not (tmp_path / "run" / "job.json").exists()
    # the right key passes
    check_trainer_keys(compose([*base, f"++trainer.{guess}={override.split('=')[1]}"]))


def test_the_app_refuses_a_plus_key_even_in_a_config_composed_elsewhere(compose, tmp_path):
    from omegaconf import open_dict

    cfg = compose(["experiment=smoke", f"paths.output_dir={tmp_path}/run", "dry_run=true"])
    with open_dict(cfg):
        cfg.methd = "ft"
    with pytest.raises(ConfigError, match="did you mean method"):
        run(cfg)


@pytest.mark.parametrize(
    "override",
    [
        "+model.force_quick_gelu=true",  # a schema key without a value yet
        "+dataset.train_crop_scale=[1.0,1.0]",
        "+trainer.gradient_clip_val=1.0",  # trainer, logger and callbacks are Lightning's own arguments
        "+logger.entity=me",
        "+model.extra.output_dict=true",  # a free-form dict
        "hydra.verbose=true",
    ],
)
def test_documented_plus_uses_keep_working(compose, override):
    compose([override])


def test_sweep_and_option_values_are_not_mistaken_for_keys():
    from transmiter.config.compose import check_override_keys

    check_override_keys(["-m", "seed=1,2", "--cfg", "job", "-cn", "config", "hydra/launcher=local"])
    check_override_keys(["method@method.source_finetune=ft", "~logger", "experiment=smoke"])
    with pytest.raises(ConfigError, match="did you mean dataset=dtd"):
        check_override_keys(["-m", "datset=dtd", "seed=1,2"])


# ---------------------------------------------------------------- bad values, before heavy work (item 7)


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        (["method=ft", "method.module.lr=-1"], "method.module.lr", "positive learning rate"),
        (["method=ft", "method.module.lr=0"], "method.module.lr", "positive learning rate"),
        (["method=ft", "method.module.epochs=0"], "method.module.epochs", "positive number of epochs"),
        (["method=ft", "method.module.weight_decay=-1"], "method.module.weight_decay", ">= 0"),
        (["method=skip_tuning", "method.module.text_lr=-1e-5"], "method.module.text_lr", "positive"),
        (
            ["method=skip_tuning", "method.per_setting.base2base.image_lr=0"],
            "method.per_setting.base2base.image_lr",
            "positive",
        ),
        (["method=skip_tuning", "method.module.epochs=0"], "method.module.epochs", "positive"),
        (["method=transmiter", "method.fit.lr=-1"], "method.fit.lr", "positive learning rate"),
        (["method=transmiter", "method.fit.epochs=0"], "method.fit.epochs", "positive"),
        (["method=transmiter_plus", "method.refine.lr=-1"], "method.refine.lr", "positive"),
        (
            ["method=study", "method.methods.ft.module.lr=-1"],
            "method.methods.ft.module.lr",
            "positive learning rate",
        ),
        (["trainer.devices=0"], "trainer.devices", "positive number of devices"),
        (["trainer.devices=-2"], "trainer.devices", "positive number of devices"),
        (["trainer.num_nodes=0"], "trainer.num_nodes", "positive number of nodes"),
        (
            ["method=skip_tuning", "method.module.omega=2"],  # tiny_random: 2 image blocks
            "method.module.omega",
            "leaving no block for Skip Tuning to tune",
        ),
        (
            ["method=skip_tuning", "method.module.text_omega=2"],
            "method.module.text_omega",
            "0 <= text_omega <= 1",
        ),
        (
            ["method=study", "method.source_finetuner=foo"],
            "method.source_finetuner",
            "one of ft, skip_tuning",
        ),
    ],
)
def test_bad_values_are_refused_before_any_stage_starts(compose, tmp_path, overrides, key, fix):
    cfg = compose(["experiment=smoke", "pair=tiny_random", f"paths.output_dir={tmp_path}/run", *overrides])
    write_fake_data(cfg)
    with pytest.raises(ConfigError) as err:
        run(cfg)
    message = str(err.value)
    assert message.startswith(f"{key}=") and fix in message, message
    stages = Path(str(cfg.paths.cache_dir)) / "stages"
    assert not stages.exists(), "a refused job left a stage folder behind"


def test_gpu_trainer_on_a_machine_without_gpu_names_the_cpu_trainer(compose, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for overrides in (["trainer=gpu"], ["trainer.accelerator=gpu"], ["trainer.accelerator=cuda"]):
        with pytest.raises(ConfigError) as err:
            validate_config(compose(["model=tiny_random", *overrides]), check_data=False)
        message = str(err.value)
        assert message.startswith("trainer.accelerator=") and "trainer=cpu" in message, message


def test_more_gpus_than_the_machine_has_is_refused(compose, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"trainer.devices=4 is invalid here: this machine has 2 visible"):
        validate_config(compose(["model=tiny_random", "trainer=gpu", "trainer.devices=4"]), check_data=False)
    validate_config(compose(["model=tiny_random", "trainer=gpu", "trainer.devices=2"]), check_data=False)


def test_config_errors_print_the_message_without_a_traceback(tmp_path):
    proc = _cli("setting.shots=-3", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: setting.shots=-3 is invalid" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_messages_never_cite_documents_outside_the_repository():
    """Error messages and comments once sent users to protocol.md / engineering.md, which a clone lacks."""
    outside = ("protocol.md", "engineering.md", "skip_tuning.md", "transmiter.md", "shared/specs")
    found = [
        f"{path.relative_to(REPO)}: {name}"
        for folder in ("src", "conf", "bench", "experiments")
        for path in (REPO / folder).rglob("*")
        if path.is_file() and path.suffix in (".py", ".yaml", ".md")
        for name in outside
        if name in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert not found, found


# ----------------------------------------------------------------------------- help texts (item 8)


def test_help_lists_the_sub_commands(tmp_path):
    proc = _cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in SUBCOMMANDS:
        assert f"transmiter {command} " in proc.stdout, proc.stdout
    assert "== Configuration groups ==" in proc.stdout and "powered by Hydra" not in proc.stdout


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_sub_command_help_is_complete(capsys, command):
    """The description is the module's whole usage paragraph, never its first line cut mid-sentence."""
    import importlib

    from transmiter.cli import main

    doc = importlib.import_module(SUBCOMMANDS[command]).__doc__
    first_paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert first_paragraph in " ".join(out.split()), out


# ------------------------------------------------------------------------------- data check (item 7)


def test_data_check_says_whether_images_were_decoded(compose, tmp_path):
    from transmiter.cli.data import main as data_main
    from transmiter.context import RunContext

    cfg = compose(["experiment=smoke", f"paths.data_dir={tmp_path}/data", f"paths.output_dir={tmp_path}/o"])
    write_fake_data(cfg)
    bad = RunContext.from_config(cfg).splits("all").test[0].impath
    Path(bad).write_bytes(Path(bad).read_bytes()[:40])
    args = ["check", "dataset=smoke", f"paths.data_dir={tmp_path}/data"]

    proc = _cli("data", *args, cwd=tmp_path)
    assert proc.returncode == 0 and "[ok] Smoke" in proc.stdout, proc.stdout + proc.stderr
    assert "images not opened (--decode" in proc.stdout, proc.stdout

    proc = _cli("data", *args, "--decode", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[BROKEN] Smoke" in proc.stdout and bad in proc.stdout, proc.stdout
    assert "1 of" in proc.stdout and "dataset.on_corrupt_image=skip" in proc.stdout, proc.stdout
    assert data_main(args[:1] + args[1:]) == 0  # the in-process entry point agrees


# ------------------------------------------------------------------------- the README (item 8)

README = REPO / "README.md"


def _readme_table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after `heading` in the README."""
    text = README.read_text()
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # header and rule out


def _backticked(cell: str) -> set[str]:
    """The config names in backticks (commands such as `make demo` or `WANDB_MODE=online` are left out)."""
    import re

    return {name for name in re.findall(r"`([^`]+)`", cell) if re.fullmatch(r"[\w\-]+", name)}


@pytest.mark.parametrize(
    "group",
    [
        "model",
        "dataset",
        "method",
        "pair",
        "setting",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "hydra/launcher",
        "world",
    ],
)
def test_the_readme_lists_every_shipped_config(group):
    """The config-groups table names exactly the files of each conf/ group (a new config must be listed)."""
    from transmiter.config import CONFIG_DIR

    shipped = {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}
    rows = {row[0].strip("`").rstrip("/"): row for row in _readme_table("### Config groups")}
    assert group in rows, f"no row for {group}/ in the README's config table"
    listed = _backticked(rows[group][-1])
    assert shipped <= listed, f"{group}/: not in the README: {sorted(shipped - listed)}"
    assert listed <= shipped, f"{group}/: in the README but not shipped: {sorted(listed - shipped)}"


def test_the_readme_methods_table_covers_every_method_config():
    from transmiter.config import CONFIG_DIR

    shipped = {p.stem for p in (CONFIG_DIR / "method").glob("*.yaml")}
    listed = set().union(*(_backticked(row[0]) for row in _readme_table("### Methods")))
    assert shipped <= listed, sorted(shipped - listed)


def test_the_readme_explains_offline_runs_and_the_smoke_timing():
    text = README.read_text()
    assert "HF_HUB_OFFLINE=1" in text and "transmiter weights check" in text
    assert "random init" in text  # how random-init rows are labelled
    assert "tiny ViT, seconds)" not in text  # `make smoke` is not "seconds" (issue 19): a measured figure


@pytest.mark.parametrize(
    ("target", "readme"),
    [
        ("demo", "experiments/demo/class_knowledge.md"),  # make demo's world
        ("reproduce-demo", "experiments/demo_full/README.md"),  # both worlds: domain_shift's is the README
    ],
)
def test_the_demo_targets_write_nothing_tracked(target, readme):
    """`make demo` leaves the tracked tree clean: its report goes under outputs/; only the explicit
    `*-readme` target rewrites the study README's results block."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def commands(name: str) -> str:
        proc = subprocess.run(
            ["make", "-n", "-C", str(REPO), name], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    study = commands(target)
    assert "transmiter report" in study and "--readme" not in study and "--out outputs/" in study, study
    assert f"--readme {readme}" in commands(f"{target}-readme")


# ------------------------------------------------------------------------ checkpoints (item 7)


class _Payload:
    """A pickled object that is not a tensor (a weights-only load must refuse it)."""


@pytest.mark.parametrize("content", ["garbage", "pickled-object"])
def test_an_unreadable_checkpoint_never_passes_on_torchs_weights_only_false_advice(tmp_path, content):
    import torch

    from transmiter.methods.resume import CheckpointError, verify_checkpoint
    from transmiter.models.clip import ModelError, ModelSpec, load_clip

    path = tmp_path / "weights.pt"
    if content == "garbage":
        path.write_bytes(bytes(range(256)) * 16)
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload()}, path)
    with pytest.raises(ModelError) as err:
        load_clip(ModelSpec(arch="tm-tiny-ViT", pretrained=str(path)))
    message = str(err.value)
    assert str(path) in message and "re-create or re-download it" in message, message
    assert "weights_only=False" not in message and "weights_only` set to `False`" not in message, message
    if content == "pickled-object":
        assert "not a weights-only torch checkpoint" in message, message
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(path)
    assert "weights_only" not in str(err.value) and f"rm {path}" in str(err.value), str(err.value)


# --------------------------------------------------------------------- random-init labels (item 5)


def test_a_random_init_model_is_labelled_as_such_in_rows_and_reports(compose, tmp_path):
    from transmiter.models.clip import ModelSpec
    from transmiter.reporting.records import load_records
    from transmiter.reporting.report import write_report

    assert ModelSpec("ViT-B-16", None, name="ViT-B-16").label == "ViT-B-16 (random init)"
    assert ModelSpec("ViT-B-16", "openai", name="ViT-B-16").label == "ViT-B-16"
    assert ModelSpec("tm-tiny-ViT", None, name="tiny-random").label == "tiny-random"  # says so already

    cfg = compose(["experiment=smoke", "model.name=ViT-B-16", f"paths.output_dir={tmp_path}/run"])
    write_fake_data(cfg)
    run(cfg)
    (record,) = load_records([tmp_path / "run"])
    assert record["row"] == "Zero-shot ViT-B-16 (random init)"
    paths = write_report([record], tmp_path / "report")
    assert "Zero-shot ViT-B-16 (random init)" in paths["markdown"].read_text()


def test_curves_and_settings_are_logged_per_stage_and_model(compose, tmp_path):
    """Tracking per role (a CSV logger here, wandb in test_tracking.py): each training stage's curves carry
    the stage and the model they belong to, and the logged config keeps every stage's settings where they
    live in the config (no stage's `lr` or `epochs` at the top level, overwriting another's)."""
    import csv

    import yaml

    out = tmp_path / "run"
    cfg = compose(
        [
            "experiment=smoke",
            "pair=tiny_random",
            "method=transmiter",
            "method@method.source_finetune=ft",
            "method.source_finetune.module.epochs=2",
            "method.source_finetune.module.lr=2e-5",
            "method.fit.epochs=1",
            "method.fit.lr=3e-3",
            "method.K=64",
            "method.views=1",
            "logger=csv",
            f"paths.output_dir={out}",
        ]
    )
    write_fake_data(cfg)
    run(cfg)
    (version,) = (out / "csv").iterdir()
    with open(version / "metrics.csv") as handle:
        columns = next(csv.reader(handle))
    assert "ft/tiny-random/train/loss_epoch" in columns and "fit/tiny-random/train/kl" in columns, columns
    assert not [c for c in columns if c.startswith("train/")], columns  # no curve without its stage
    logged = yaml.safe_load((version / "hparams.yaml").read_text())
    assert not {"lr", "epochs", "momentum", "weight_decay"} & set(logged), sorted(logged)
    assert logged["method"]["source_finetune"]["module"]["lr"] == 2e-5
    assert logged["method"]["fit"]["lr"] == 3e-3
