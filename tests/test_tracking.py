"""wandb runs read back with wandb's own reader of the run file (`wandb leet inspect --json`): the resolved
config, per-stage training curves, the final Base/Novel/HM, the results table, and a failed job's run
closed as failed; the mode switch (WANDB_MODE / logger.mode) reaches wandb.init."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transmiter.config import ConfigError, validate_config
from transmiter.config.instantiate import dataset_spec_from_config
from transmiter.data.fake import write_fake_dataset
from transmiter.reporting.records import load_records


def read_wandb_run(run_file: Path) -> tuple[list[dict], dict]:
    """(records, summary) of a local run file, as wandb's reader (wandb-core) decodes it."""

    def inspect(*flags: str):
        proc = subprocess.run(
            [sys.executable, "-m", "wandb", "leet", "inspect", "--json", *flags, str(run_file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    records = [json.loads(line) for line in inspect().splitlines() if line.strip()]
    return records, json.loads(inspect("--summary"))


def _run_file(output_dir: Path) -> Path:
    (path,) = output_dir.glob("wandb/offline-run-*/run-*.wandb")  # one run per job
    return path


def _history(records: list[dict]) -> dict[str, list]:
    """{metric: values in logging order} from the run's history records."""
    curves: dict[str, list] = {}
    for r in records:
        if r["type"] == "history":
            for key, value in r["history"]["item"].items():
                curves.setdefault(key, []).append(value)
    return curves


def _config(records: list[dict]) -> dict:
    config: dict = {}
    for r in records:
        if r["type"] == "config":
            config.update(r["config"]["update"])
    return config


@pytest.mark.slow
def test_offline_study_run_read_back_holds_config_curves_results_and_table(tmp_path):
    root = tmp_path
    env = {**os.environ, "TRANSMITER_ROOT": str(root), "TRANSMITER_PROGRESS": "0", "WANDB_MODE": "offline"}
    for args in (
        ["data", "fake", "dataset=smoke", "--classes", "6", "--per-class", "4,2,3"],
        ["experiment=smoke_study", "logger=wandb", "hydra.run.dir=outputs/w"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "transmiter", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
    out = root / "outputs" / "w"
    records, summary = read_wandb_run(_run_file(out))
    job_records = load_records([out])

    # the resolved config: interpolations resolved, every group present
    config = _config(records)
    assert config["dataset"]["name"] == "Smoke" and config["seed"] == 1
    assert config["logger"]["mode"] == "offline" and config["paths"]["output_dir"] == str(out)
    assert config["method"]["methods"]["transmiter"]["K"] == 64

    # per-stage curves: each training stage of the study under its own prefix, one point per epoch
    curves = _history(records)
    for stage in (
        "ft/tiny-random",
        "ft/tiny-random-b",
        "skip_tuning/tiny-random",
        "skip_tuning/tiny-random-b",
    ):
        assert len(curves[f"{stage}/train/loss_epoch"]) == 2, stage  # 2 epochs
    # adapter fitting on the source (TransMiter) and on the target (the oracle row), then refinement
    for stage in ("fit/tiny-random", "fit/tiny-random-b"):
        assert len(curves[f"{stage}/train/kl"]) == 2, stage
    assert len(curves["refine/train/ce"]) == 2

    # the final Base / Novel / HM of every row equal its results record
    assert len(job_records) >= 12
    for rec in job_records:
        for metric in ("base", "novel", "hm"):
            (value,) = curves[f"results/{rec['row']}/{metric}"]
            # records keep 4 decimals
            assert value == pytest.approx(rec["metrics"][metric], abs=5e-5), (rec["row"], metric)

    # the results table: found through the run's summary, one row per record
    table = summary["summary"]["results"]
    assert table["_type"] == "table-file" and table["nrows"] == len(job_records)
    content = json.loads((_run_file(out).parent / "files" / table["path"]).read_text())
    assert content["columns"][:4] == ["dataset", "setting", "seed", "method"]
    by_row = {row[3]: row for row in content["data"]}
    assert set(by_row) == {r["row"] for r in job_records}
    hm = content["columns"].index("hm")
    assert all(by_row[r["row"]][hm] == pytest.approx(r["metrics"]["hm"], abs=5e-5) for r in job_records)

    assert summary["state"] == "finished" and summary["exit_code"] == 0


def test_failed_job_closes_its_run_as_failed(compose, tmp_path, monkeypatch):
    from transmiter.app import run

    cfg = compose(
        [
            "experiment=smoke",
            "method=skip_tuning",
            "logger=wandb",
            "logger.mode=offline",
            f"paths.output_dir={tmp_path / 'job'}",
        ]
    )
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=6, per_class=(4, 2, 3)
    )

    def broken_stage(*args, **kwargs):
        raise RuntimeError("injected failure in the training stage")

    monkeypatch.setattr("transmiter.methods.resume.fit_resumable", broken_stage)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(cfg)
    records, summary = read_wandb_run(_run_file(tmp_path / "job"))
    assert summary["state"] == "failed" and summary["exit_code"] == 1
    assert _config(records)["method"]["name"] == "skip_tuning"  # the run had started: config logged
    assert not (tmp_path / "job" / "job.json").exists()


@pytest.mark.parametrize(
    "env_mode, overrides, expected",
    [
        ("online", [], "online"),
        ("offline", [], "offline"),
        (None, [], "offline"),  # the default
        ("disabled", [], "disabled"),
        ("offline", ["logger.mode=online"], "online"),  # the command line wins
    ],
)
def test_wandb_mode_switch_reaches_wandb_init(compose, monkeypatch, env_mode, overrides, expected):
    """What Lightning's WandbLogger hands to wandb.init, with wandb.init replaced by a recorder (no network):
    the chosen mode, and WANDB_MODE left as it was (Lightning's offline flag would set it to dryrun)."""
    import wandb

    from transmiter.trainers import build_logger

    if env_mode is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env_mode)
    cfg = compose(["experiment=smoke", "logger=wandb", *overrides])
    validate_config(cfg, check_data=False)
    seen = {}

    def recording_init(**kwargs):
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(wandb, "init", recording_init)
    build_logger(cfg.logger).experiment  # noqa: B018  (creating the run calls wandb.init)
    assert seen["mode"] == expected
    assert os.environ.get("WANDB_MODE") == env_mode


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["logger.mode=streaming"], "logger.mode"),
        (["logger.mode=online", "logger.offline=true"], "logger.offline"),
    ],
)
def test_contradictory_or_unknown_wandb_mode_is_refused(compose, overrides, key):
    cfg = compose(["experiment=smoke", "logger=wandb", *overrides])
    with pytest.raises(ConfigError, match=key):
        validate_config(cfg, check_data=False)
