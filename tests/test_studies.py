"""Study jobs, sweeps, dry runs, resumption and the DDP guard (wandb runs: test_tracking.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from omegaconf import open_dict

from transmiter.app import guard_multirun_ddp, run
from transmiter.config import ConfigError
from transmiter.config.instantiate import dataset_spec_from_config
from transmiter.data.fake import write_fake_dataset
from transmiter.methods.transmiter import DIAGNOSTIC_ROWS
from transmiter.reporting.records import load_records
from transmiter.reporting.tables import results_table


def _fake(cfg, classes=6):
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=classes, per_class=(4, 2, 3)
    )


def _cli(args, root, **env):
    full = {**os.environ, "TRANSMITER_ROOT": str(root), "TRANSMITER_PROGRESS": "0", **env}
    return subprocess.run(
        [sys.executable, "-m", "transmiter", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=root,
        timeout=1200,
    )


def test_ddp_guard_refuses_multirun_ddp(compose):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    def multirun(overrides):
        cfg = compose(overrides)
        OmegaConf.set_readonly(cfg.hydra, False)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN
        HydraConfig.instance().set_config(cfg)
        return cfg

    with pytest.raises(ConfigError, match="ddp_spawn"):
        guard_multirun_ddp(multirun(["trainer=ddp"]))
    # the working alternatives pass
    for overrides in (
        ["trainer=ddp_cpu"],
        ["trainer=ddp", "trainer.devices=1"],
        ["trainer=ddp", "hydra/launcher=slurm"],
    ):
        guard_multirun_ddp(multirun(overrides))
    single = compose(["trainer=ddp"])  # a single run under ddp is fine
    HydraConfig.instance().set_config(single)
    guard_multirun_ddp(single)


def test_study_job_writes_one_record_per_row_and_is_skipped_when_done(compose, tmp_path, capsys):
    out = tmp_path / "job"
    cfg = compose(["experiment=smoke_study", f"paths.output_dir={out}"])
    _fake(cfg)
    run(cfg)
    records = load_records([out])
    rows = {r["row"] for r in records}
    assert len(records) == 15 and any(r.startswith("TransMiter+") for r in rows)
    pair = "tiny-random→tiny-random-b"
    for label in ("EFT", "EFT base-change", "EFT ensemble", "EFT self-ensemble"):  # distinct EFT rows
        assert f"{label} {pair}" in rows, label
    assert {r["protocol"] for r in records} == {"coop-separate", "masked-joint"}
    by_row = {r["row"]: r for r in records}
    tm, tm_plus = by_row[f"TransMiter {pair}"], by_row[f"TransMiter+ {pair}"]
    # the diagnostic rows: marked for reports, with metrics and costs, from TransMiter's own stages
    diagnostics = {r["extra"]["diagnostic"]: r for r in records if r["extra"].get("diagnostic")}
    assert [by_row[f"{label} {pair}"]["extra"]["diagnostic"] for label in DIAGNOSTIC_ROWS.values()] == list(
        DIAGNOSTIC_ROWS
    )
    for kind, rec in diagnostics.items():
        assert set(rec["metrics"]) == {"base", "novel", "hm"} and rec["protocol"] == "masked-joint", kind
        assert rec["costs"]["adapter_flops_per_image"] > 0 and rec["costs"]["fit_time_s"] > 0, kind
    source_row, unrotated, oracle = (diagnostics[k] for k in DIAGNOSTIC_ROWS)
    assert source_row["extra"]["stages_reused"] == {"adapter_fit": True}  # TransMiter's fit
    assert source_row["costs"]["fit_time_s"] == tm["costs"]["fit_time_s"]
    assert oracle["extra"]["stages_reused"] == {"adapter_fit": False}  # the only new training
    assert oracle["costs"]["target_finetune_time_s"] > 0 and "source_finetune_time_s" not in oracle["costs"]
    # transfer figures (the fitting set) and the guard (few-shot val) in every transfer record
    figures = tm["extra"]["transfer_figures"]
    assert set(figures) == {"residual_before", "residual_after", "rotation_distance", "cka", "num_rows"}
    assert 0 < figures["rotation_distance"] and figures["residual_after"] < figures["residual_before"]
    assert (
        -1e-9 < figures["cka"] <= 1 + 1e-9 and figures["num_rows"] == 3 * 4 * 2
    )  # 3 base classes x 4 shots x 2 views
    assert tm_plus["extra"]["transfer_figures"] == figures
    assert unrotated["extra"]["transfer_figures"] == {
        **figures,
        "residual_after": figures["residual_before"],
        "rotation_distance": 0.0,
    }
    for rec in (tm, tm_plus, unrotated, by_row[f"EFT {pair}"]):
        guard = rec["extra"]["guard"]
        assert guard["checked"] and guard["split"] == "val" and guard["num_images"] == 3 * 2, rec["row"]
        assert guard["fires"] == (guard["source_finetuned_val_acc"] < guard["target_zeroshot_val_acc"])
    # TransMiter+ reuses TransMiter's fit and transfer: its costs still hold their first-measured seconds
    assert tm_plus["extra"]["stages_reused"] == {
        "adapter_fit": True,
        "adapter_transfer": True,
        "adapter_refine": False,
    }
    for key in ("fit_time_s", "transfer_time_s"):
        assert tm_plus["costs"][key] == tm["costs"][key] > 0, key
    assert tm_plus["timings"]["fit_s"] < tm_plus["costs"]["fit_time_s"]  # this row's own (reuse) time
    assert tm_plus["costs"]["refine_time_s"] > 0 and tm["costs"]["feature_pass_time_s"] > 0
    assert all(
        r["extra"].get("source_finetune") == "skip_tuning" for r in records if r["extra"]["role"] == "pair"
    )
    assert (out / "job.json").is_file()
    ledger = json.loads((out / "stages.json").read_text())
    names = sorted({v["name"] for v in ledger.values()})
    assert names == ["adapter_fit", "adapter_refine", "adapter_transfer", "ft", "skip_tuning"]
    # Skip Tuning of the source is trained once: the TransMiter rows reuse the row's training; the
    # target oracle reuses the target's.
    assert sum(1 for v in ledger.values() if v["name"] == "skip_tuning") == 2  # source and target
    assert sum(1 for v in ledger.values() if v["name"] == "adapter_fit") == 2  # source and target oracle
    tm = next(r for r in records if r["row"].startswith("TransMiter "))
    assert tm["costs"]["adapter_flops_per_image"] > 0 and tm["costs"]["train_time_s"] > 0
    capsys.readouterr()
    assert run(cfg) == {}  # done: skipped
    assert "[skipped]" in capsys.readouterr().out
    # forced re-run: every stage is reused, nothing is trained again
    with open_dict(cfg):
        cfg.skip_done = False
    (out / "stages.json").unlink()
    run(cfg)
    ledger = json.loads((out / "stages.json").read_text())
    assert all(v["reused"] for v in ledger.values())


@pytest.mark.slow
def test_dry_run_lists_jobs_and_done_stages(tmp_path):
    proc = _cli(["-m", "experiment=b2n", "dry_run=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [
        ln for ln in proc.stdout.splitlines() if ln.lstrip("[ ").startswith(("pending", "partial", "done"))
    ]
    assert len(lines) == 33  # 11 datasets x 3 seeds
    assert all("pending" in ln and "data: MISSING" in ln for ln in lines)
    assert {ln.split("dataset=")[1].split()[0] for ln in lines} >= {
        "ImageNet",
        "OxfordPets",
        "SUN397",
        "UCF101",
    }


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_multirun_two_jobs_report_and_reuse(tmp_path, launcher):
    root = tmp_path
    assert (
        _cli(["data", "fake", "dataset=smoke", "--classes", "6", "--per-class", "4,2,3"], root).returncode
        == 0
    )
    sweep = [
        "-m",
        "experiment=smoke_study",
        "seed=1,2",
        f"hydra/launcher={launcher}",
        "hydra.sweep.dir=outputs/sweep",
        "hydra.sweep.subdir=seed${seed}",
    ]
    proc = _cli(sweep, root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    console = (proc.stdout + proc.stderr).splitlines()
    # in a sweep each job says one line (the report tables them all), never its own table
    assert sum(" | base2novel | seed " in ln and ": 15 rows in " in ln for ln in console) == 2, console
    assert not any(ln.split() == ["row", "base", "novel", "hm"] for ln in console)
    records = load_records([root / "outputs" / "sweep"])
    assert sorted({r["seed"] for r in records}) == [1, 2] and len(records) == 30  # 15 rows x 2 seeds
    rep = _cli(["report", "outputs/sweep", "--out", "outputs/report"], root)
    assert rep.returncode == 0 and "TransMiter+" in (root / "outputs/report/results.md").read_text()
    assert rep.stdout.rstrip().splitlines()[-1].lstrip().startswith("TransMiter (target oracle)"), rep.stdout
    plan = _cli([*sweep, "dry_run=true"], root)
    assert plan.stdout.count("[   done]") == 2, plan.stdout[-2000:]
    # the same command again: both jobs are done and skipped; no fit runs again
    again = _cli(sweep, root)
    assert again.returncode == 0 and again.stdout.count("[skipped]") == 2
    # forcing the jobs: every stage (fits included) is reused from the content-addressed store
    forced = _cli([*sweep, "skip_done=false"], root)
    assert forced.returncode == 0, forced.stderr[-3000:]
    forced_console = forced.stdout + forced.stderr
    assert " stage adapter_fit " not in forced_console  # reused stages: one summary line per job
    assert forced_console.count("stage(s) reused from the cache (") == 2, forced_console[-3000:]
    for seed in (1, 2):
        ledger = json.loads((root / "outputs" / "sweep" / f"seed{seed}" / "stages.json").read_text())
        fits = [v for v in ledger.values() if v["name"] == "adapter_fit"]
        assert fits and all(v["reused"] for v in fits)


def test_dry_run_line_names_finished_stages_of_a_partial_job(compose, tmp_path):
    from transmiter.planning import describe_job

    cfg = compose(["experiment=smoke_study", f"paths.output_dir={tmp_path}"])
    (tmp_path / "stages.json").write_text(
        json.dumps(
            {
                "skip_tuning/abc": {
                    "name": "skip_tuning",
                    "key": "abc",
                    "path": "x",
                    "seconds": 1.0,
                    "reused": False,
                },
                "adapter_fit/def": {
                    "name": "adapter_fit",
                    "key": "def",
                    "path": "y",
                    "seconds": 1.0,
                    "reused": False,
                },
            }
        )
    )
    line = describe_job(cfg, tmp_path)
    assert line.startswith("[partial]") and "stages done: adapter_fit, skip_tuning" in line
    assert "data: MISSING" in line and "weights: source ok" in line


def test_study_source_finetuner_falls_back_to_ft_when_skip_tuning_cannot_split_the_source(
    compose, tmp_path, monkeypatch, capsys
):
    """As for an RN50 source: the source's Skip Tuning row is not run (printed and listed in job.json with
    the reason, no empty record), and every transfer row fine-tunes the source with FT instead, with the
    notice in its record."""
    import transmiter.methods.study as study_mod

    reason = "the image tower of this model is a ModifiedResNet (test stand-in)"
    monkeypatch.setattr(
        study_mod,
        "skip_tuning_unsupported",
        lambda bundle: reason if bundle.spec.name == "tiny-random" else None,  # the pair's source only
    )
    out = tmp_path / "job"
    cfg = compose(["experiment=smoke_study", f"paths.output_dir={out}"])
    _fake(cfg)
    run(cfg)  # no crash
    records = {r["row"]: r for r in load_records([out])}
    assert "Skip Tuning tiny-random" not in records and all(r["metrics"] for r in records.values())
    assert json.loads((out / "job.json").read_text())["not_run"] == {"Skip Tuning tiny-random": reason}
    assert (
        f"Skip Tuning tiny-random | Smoke | base2novel | seed 1: not run ({reason})"
        in capsys.readouterr().out
    )
    assert records["Skip Tuning tiny-random-b"]["metrics"]  # the target is still Skip-Tuned
    transfer = [r for r in records.values() if r["extra"]["role"] == "pair"]
    assert (
        len(transfer) == 9
    )  # 4 EFT, TransMiter, its 3 diagnostics (the oracle fine-tunes the target by FT too), +
    for r in transfer:
        assert r["extra"]["source_finetune"] == "ft" and r["metrics"], r["row"]
        assert reason in r["extra"]["source_finetune_fallback"]
    ledger = json.loads((out / "stages.json").read_text())
    assert sum(1 for v in ledger.values() if v["name"] == "skip_tuning") == 1  # the target's only
    report = results_table(list(load_records([out])))
    assert "Skip Tuning tiny-random" not in {r.method for r in report}  # n/a: left out of the tables


def test_source_finetune_plan_and_splittability_decisions():
    import open_clip
    import torch
    from open_clip.model import CLIP

    from tests.toys import register_tiny_config
    from transmiter.methods.study import needs_tower_split, skip_tuning_unsupported, source_finetune_plan

    class Recipe:
        def __init__(self, kind):
            self.kind, self.name = kind, kind

    class Transfer:
        def __init__(self, finetuner):
            self.source_finetune = finetuner

    torch.manual_seed(0)
    resnet = CLIP(
        32,
        dict(layers=[1, 1, 1, 1], width=16, image_size=64, head_width=8),
        dict(context_length=16, width=32, heads=2, layers=2),
    )
    reason = skip_tuning_unsupported(resnet)
    assert reason and "ModifiedResNet" in reason
    assert skip_tuning_unsupported(open_clip.create_model(register_tiny_config(), pretrained=None)) is None

    skip, ft = Recipe("skip_tuning"), Recipe("ft")
    assert needs_tower_split(skip) and not needs_tower_split(ft)
    assert source_finetune_plan(Transfer(skip), None, ft) == (skip, None)  # splittable: as configured
    assert source_finetune_plan(Transfer(ft), reason, ft) == (ft, None)  # FT configured: nothing to do
    chosen, notice = source_finetune_plan(Transfer(skip), reason, ft)
    assert chosen is ft and "falls back from skip_tuning to ft" in notice and reason in notice
    chosen, notice = source_finetune_plan(Transfer(skip), reason, None)
    assert chosen is None and "no FT config" in notice
