"""Studies on a real SLURM cluster: slurmctld, slurmd and slurmdbd on localhost (2 CPUs), started here.

A multirun goes through `hydra/launcher=slurm` (submitit) as a job array; a DDP job runs as 2 processes
that SLURM starts (CPU, gloo); one job is cancelled mid-stage with `scancel` and the same command, submitted
again, resumes it from its checkpoint. Every results record and trained weight equals that of the same job
run locally. `make test-slurm` runs only these; they install slurm-wlm, munge, slurmdbd and mariadb-server
with apt when missing (root), and skip, saying why, where that or starting the daemons is impossible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_cluster import ClusterUnavailable, LocalSlurmCluster, ensure_packages
from transmiter.reporting.records import load_records


def on_cluster(test):
    """The tests that start the cluster: slow tier and `make test-slurm`."""
    return pytest.mark.slow(pytest.mark.slurm(pytest.mark.timeout(1800)(test)))


# One Skip Tuning job: 12 training images in batches of 4, so 3 steps per epoch and a checkpoint after each.
JOB = ["experiment=smoke", "method=skip_tuning", "method.module.epochs=3"]
ON_SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=20",
]
STEP_TIMEOUT_S = 600  # any one command or wait; the whole module takes a few minutes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        ensure_packages()
        cluster = LocalSlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=2)
        cluster.start()
    except ClusterUnavailable as err:
        pytest.skip(str(err))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from transmiter.config import compose_config
    from transmiter.config.instantiate import dataset_spec_from_config
    from transmiter.data.fake import write_fake_dataset

    folder = tmp_path_factory.mktemp("data")
    cfg = compose_config(["experiment=smoke", f"paths.data_dir={folder}"])
    write_fake_dataset(dataset_spec_from_config(cfg.dataset), folder, num_classes=6, per_class=(4, 2, 3))
    return folder


def _env(root: Path, data: Path, cluster: LocalSlurmCluster | None = None, **extra) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TRANSMITER_FAULT"))}
    env = cluster.env(base) if cluster else base
    env.update(
        TRANSMITER_ROOT=str(root), TRANSMITER_DATA=str(data), TRANSMITER_PROGRESS="0", WANDB_MODE="disabled"
    )
    env.update(extra)
    root.mkdir(parents=True, exist_ok=True)
    return env


def _transmiter(args, env) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "transmiter", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env["TRANSMITER_ROOT"],
        timeout=STEP_TIMEOUT_S,
    )
    return proc


def _sweep(name: str, *overrides: str) -> list[str]:
    return ["-m", *JOB, *overrides, f"hydra.sweep.dir=outputs/{name}", "hydra.sweep.subdir=seed${seed}"]


def _stage_weights(root: Path) -> dict[str, dict]:
    """{stage key: tensors} of every finished Skip Tuning stage under `root`'s cache."""
    from safetensors.torch import load_file

    stages = root / ".cache" / "transmiter" / "stages" / "skip_tuning"
    return {p.parent.name: load_file(str(p)) for p in stages.glob("*/model.safetensors")}


def _same_tensors(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _records(folder: Path) -> dict[int, dict]:
    return {r["seed"]: r for r in load_records([folder])}


def _job_logs(sweep: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(sweep.glob(".submitit/*/*_log.*")))


def _assert_same_results(slurm: dict, local: dict) -> None:
    """Two records of one job: same row, metrics, data identity and resolved config but for launcher keys."""
    assert slurm["row"] == local["row"] and slurm["metrics"] == local["metrics"], (slurm, local)
    for key in ("dataset", "setting", "seed", "protocol"):
        assert slurm[key] == local[key], key


@pytest.mark.parametrize(
    "make_vars, tasks, gpus, partition",
    [
        (["SLURM=1", "GPUS=4", "PARTITION=gpu"], 4, 4, "gpu"),
        (["SLURM=1"], 1, 1, None),  # one GPU: the gpu trainer, one task
    ],
)
def test_makefile_slurm_command_composes_to_one_task_per_gpu(make_vars, tasks, gpus, partition, compose):
    """The study command `make reproduce-b2n SLURM=1 ...` runs composes, and asks SLURM for what the trainer uses."""
    from omegaconf import OmegaConf

    repo = Path(__file__).resolve().parents[1]
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "_reproduce", "STUDY=b2n", *make_vars],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (line,) = [ln for ln in dry.stdout.splitlines() if "transmiter -m experiment=b2n" in ln]
    overrides = line.split("transmiter -m ", 1)[1].split()
    launcher = OmegaConf.to_container(compose(overrides).hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (tasks, gpus, 1)
    assert launcher["partition"] == partition


def test_cpu_ddp_on_slurm_asks_for_tasks_and_no_gpus(compose):
    from omegaconf import OmegaConf

    cfg = compose(["trainer=ddp_cpu", "trainer.strategy=ddp", "hydra/launcher=slurm"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    # a GPU request on a cluster without GPUs makes sbatch fail ("Invalid generic resource")
    assert launcher["tasks_per_node"] == 2 and launcher["gpus_per_node"] is None


@pytest.mark.parametrize("devices", ["auto", -1])
def test_slurm_needs_a_gpu_count(devices, compose):
    from omegaconf import OmegaConf

    cfg = compose(["trainer=gpu", f"trainer.devices={devices}", "hydra/launcher=slurm"])
    with pytest.raises(Exception, match="trainer.devices"):
        OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@on_cluster
def test_multirun_on_slurm_equals_local_and_a_cancelled_job_resumes(cluster, data, tmp_path):
    local_root, slurm_root, hold = tmp_path / "local", tmp_path / "slurm", tmp_path / "hold"
    local = _transmiter(_sweep("sweep", "seed=1,2"), _env(local_root, data))
    assert local.returncode == 0, local.stderr[-3000:]

    # 1. Submit the 2-job array; both jobs stop at their 5th Skip Tuning step (epoch 2, after the first
    #    epoch's checkpoint) until released; cancel the second one there, then release the first.
    command = [sys.executable, "-m", "transmiter", *_sweep("sweep", "seed=1,2"), *ON_SLURM]
    env = _env(slurm_root, data, cluster)
    started = time.monotonic()
    submit = subprocess.Popen(
        command,
        env={**env, "TRANSMITER_FAULT_HOLD": f"skip_tuning:5:{hold}"},
        cwd=slurm_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        held = cluster.wait_until(
            lambda: len(list(hold.glob("held-*.json"))) == 2 or submit.poll() is not None,
            STEP_TIMEOUT_S,
            "both jobs reaching their 5th training step",
        )
        assert submit.poll() is None, submit.stdout.read()[-3000:] if submit.stdout else ""
        held = [json.loads(p.read_text()) for p in hold.glob("held-*.json")]
        (second,) = [h for h in held if h["SLURM_ARRAY_TASK_ID"] == "1"]
        job = f"{second['SLURM_ARRAY_JOB_ID']}_1"
        checkpoints = list(
            (slurm_root / ".cache/transmiter/stages/skip_tuning").glob("*/checkpoints/last.ckpt")
        )
        assert len(checkpoints) == 2, checkpoints  # each job is mid-stage, past its first epoch's checkpoint
        cluster.command("scancel", job)
        cluster.wait_until(
            lambda: cluster.accounting(job).get(job, "").startswith("CANCELLED"),  # "CANCELLED by 0"
            120,
            f"sacct reporting {job} cancelled",
        )
        (hold / "release").touch()
        output, _ = submit.communicate(timeout=STEP_TIMEOUT_S)
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait(timeout=30)
    first_submission_s = time.monotonic() - started
    # the launcher reports the cancelled job and fails; the other job finished
    assert submit.returncode != 0 and "CANCELLED" in output, output[-3000:]
    sweep = slurm_root / "outputs" / "sweep"
    assert (sweep / "seed1" / "job.json").is_file() and not (sweep / "seed2" / "job.json").exists()

    # 2. The same command again: job 1 is skipped as done, job 2 resumes from its checkpoint.
    started = time.monotonic()
    again = _transmiter(command[3:], env)
    second_submission_s = time.monotonic() - started
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    logs = _job_logs(sweep)
    assert "seed 1 is done" in logs and "skip_tuning: resuming from" in logs, logs[-4000:]

    # 3. Every record and trained weight equals the local run's.
    slurm_records, local_records = _records(sweep), _records(local_root / "outputs" / "sweep")
    assert sorted(slurm_records) == sorted(local_records) == [1, 2]
    for seed in (1, 2):
        _assert_same_results(slurm_records[seed], local_records[seed])
    mine, theirs = _stage_weights(slurm_root), _stage_weights(local_root)
    assert mine.keys() == theirs.keys() and len(mine) == 2
    assert all(_same_tensors(mine[k], theirs[k]) for k in mine)
    print(
        f"SLURM multirun: first submission {first_submission_s:.0f} s, resubmission {second_submission_s:.0f} s"
    )


@on_cluster
def test_ddp_job_of_two_slurm_tasks_equals_local_ddp(cluster, data, tmp_path):
    """trainer.strategy=ddp with SLURM starting both processes (one task each) against the same job with
    torchrun starting them on this machine: same record, bit-identical weights."""
    from slurm_cluster import free_port

    local_root, slurm_root = tmp_path / "local", tmp_path / "slurm"
    ddp = ["trainer=ddp_cpu", "trainer.strategy=ddp"]
    env = _env(local_root, data)
    local = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
        + ["-m", "transmiter", *JOB, "seed=1", *ddp, "hydra.run.dir=outputs/ddp/seed1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=local_root,
        timeout=STEP_TIMEOUT_S,
    )
    assert local.returncode == 0, local.stderr[-3000:]

    started = time.monotonic()
    proc = _transmiter(_sweep("ddp", "seed=1", *ddp, *ON_SLURM), _env(slurm_root, data, cluster))
    ddp_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    sweep = slurm_root / "outputs" / "ddp"
    logs = sorted(sweep.glob(".submitit/*/*_log.out"))
    assert len(logs) == 2, logs  # one log per SLURM task
    text = _job_logs(sweep)
    assert "MEMBER: 1/2" in text and "MEMBER: 2/2" in text  # the two tasks formed one process group
    slurm, local_rec = _records(sweep), _records(local_root / "outputs" / "ddp")
    assert list(slurm) == [1]  # one record, written by rank 0
    _assert_same_results(slurm[1], local_rec[1])
    mine, theirs = _stage_weights(slurm_root), _stage_weights(local_root)
    assert mine.keys() == theirs.keys() and len(mine) == 1
    assert all(_same_tensors(mine[k], theirs[k]) for k in mine)
    print(f"SLURM DDP job (2 tasks): {ddp_s:.0f} s")
