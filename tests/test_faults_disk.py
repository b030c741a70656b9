"""Disks and folders (issue 19, item 6): the output and cache folders are checked before any work (a folder
under a regular file, read-only, a full disk), a full disk during a job names the file being written and
leaves no temporary file, the log file stops with one line instead of a 'Logging error' per record, and
nothing half-written is ever taken for finished.

A full disk is real where the tests may mount a small tmpfs (root); otherwise, and in every case that needs
the disk to fill at one exact write, OSError(ENOSPC) is injected where the io layer writes."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.toys import write_fake_data
from transmiter.app import run
from transmiter.io import LogFileHandler, WriteError, atomic_write, check_folder
from transmiter.planning import JOB_FILE


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, read_only=False) -> a fresh tmpfs folder (root only; the test skips where it cannot)."""
    mounted = []

    def mount(size: str = "1m", read_only: bool = False) -> Path:
        folder = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip() or 'not root'})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(folder: Path) -> None:
    """Use up every free byte of `folder`'s file system."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * (64 << 10)):
            pass
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- before any work


def test_an_output_folder_under_a_regular_file_is_refused_at_once(compose, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder should be")
    cfg = compose(["experiment=smoke", f"paths.output_dir={blocker}/run"])
    with pytest.raises(WriteError) as err:
        run(cfg)
    message = str(err.value)
    assert message.startswith(f"paths.output_dir={blocker}/run cannot be used: {blocker} is a regular file")
    assert "set paths.output_dir to another folder" in message


def test_a_cache_folder_under_a_regular_file_is_refused_before_the_feature_pass(compose, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("")
    cfg = compose(
        ["experiment=smoke", f"paths.output_dir={tmp_path}/o", f"paths.cache_dir={blocker}/transmiter"]
    )
    write_fake_data(cfg)
    with pytest.raises(WriteError, match=r"^paths.cache_dir=.* is a regular file, not a folder"):
        run(cfg)
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_read_only_cache_folder_is_refused(compose, tmp_path, tmpfs):
    read_only = tmpfs("1m", read_only=True) if os.geteuid() == 0 else tmp_path / "ro"
    if os.geteuid() != 0:
        read_only.mkdir()
        read_only.chmod(0o555)
    cfg = compose(["experiment=smoke", f"paths.output_dir={tmp_path}/o", f"paths.cache_dir={read_only}/c"])
    with pytest.raises(WriteError) as err:
        run(cfg)
    assert str(err.value).startswith(f"paths.cache_dir={read_only}/c is not writable (Read-only file system")
    assert "set paths.cache_dir to a folder this user can write" in str(err.value)


def test_a_full_disk_is_refused_before_the_job_starts(tmpfs):
    full = tmpfs("2m")
    with pytest.raises(
        WriteError, match=r"only 2.0 MiB free on its file system \(a job needs at least 64.0 MiB\)"
    ):
        check_folder(full, "paths.cache_dir")
    check_folder(full, "paths.cache_dir", min_free=1 << 20)


def test_the_command_refuses_a_full_run_folder_without_a_traceback(tmp_path, tmpfs):
    full = tmpfs("2m")
    proc = subprocess.run(
        [sys.executable, "-m", "transmiter", "experiment=smoke", f"hydra.run.dir={full}/run"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "TRANSMITER_ROOT": str(tmp_path), "HYDRA_FULL_ERROR": "0"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (
        f"error: hydra.run.dir={full}/run: only" in proc.stderr and "free on its file system" in proc.stderr
    )
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------- a disk that fills up


def test_a_disk_that_fills_during_the_job_names_the_file_and_leaves_nothing_half_written(
    compose, tmp_path, tmpfs, monkeypatch
):
    """Real ENOSPC: the output folder is a tmpfs that fills up just before the results record is written."""
    import transmiter.job as job

    out = tmpfs("3m") / "run"
    cfg = compose(["experiment=smoke", f"paths.output_dir={out}"])
    write_fake_data(cfg)
    monkeypatch.setenv("TRANSMITER_MIN_FREE_MB", "1")
    real_write_record = job.write_record

    def fill_then_write(ctx, result, subdir=None):
        _fill(out)
        return real_write_record(ctx, result, subdir)

    monkeypatch.setattr(job, "write_record", fill_then_write)
    with pytest.raises(WriteError) as err:
        run(cfg)
    message = str(err.value)
    assert message.startswith(f"cannot write {out / 'results.json'}: No space left on device"), message
    assert "0.0 MiB free on its file system" in message and "run the same command again" in message
    left = sorted(p.name for p in out.iterdir())
    assert "results.json" not in left and JOB_FILE not in left, left  # not taken for done
    assert not [name for name in left if "tmp" in name], left  # no temporary file

    (out / "filler").unlink()
    monkeypatch.setattr(job, "write_record", real_write_record)
    assert set(run(cfg)) == {"base", "novel", "hm"}  # not taken for done: it runs, and finishes
    assert (out / JOB_FILE).is_file() and (out / "results.json").is_file()


@pytest.mark.parametrize("target", ["results.json", "stage.json", "meta.json"])
def test_injected_enospc_names_the_file_and_leaves_no_temporary_file(compose, tmp_path, monkeypatch, target):
    """Everywhere a job publishes a file (records, stage records, cache entries), without root: the write of
    `target` raises ENOSPC; the error names it and no temporary file or folder is left behind."""
    real_write_text = Path.write_text

    def full_disk_write_text(self, data, *args, **kwargs):
        if self.name.startswith(f".{target}.") or (target == "meta.json" and self.name == "meta.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk_write_text)
    overrides = ["experiment=smoke", f"paths.output_dir={tmp_path}/run"]
    if target == "stage.json":
        overrides += ["method=ft", "method.module.epochs=1"]
    cfg = compose(overrides)
    write_fake_data(cfg)
    with pytest.raises(WriteError) as err:
        run(cfg)
    message = str(err.value)
    assert message.startswith("cannot write ") and "No space left on device" in message, message
    written = Path(message.split()[2].rstrip(":"))
    if target == "meta.json":  # a feature-cache entry: named by its folder
        assert written.parent.parent.name == "features", written
    else:
        assert written.name == target, written
    leftovers = [p for p in Path(tmp_path).rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    assert not (tmp_path / "run" / JOB_FILE).exists()
    if target == "stage.json":
        stage = written.parent
        assert not (stage / "stage.json").exists()  # the stage is not finished: a re-run does it again


def test_atomic_write_on_a_full_disk_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    atomic_write(path, "old")
    real = Path.write_text

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(WriteError, match=rf"^cannot write {path}: No space left on device"):
        atomic_write(path, "new")
    monkeypatch.setattr(Path, "write_text", real)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


# --------------------------------------------------------------------------------------- the log file


class _FullDisk:
    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
        pass

    def close(self):
        pass


def test_a_log_file_on_a_full_disk_stops_with_one_line(tmp_path, capsys):
    handler = LogFileHandler(tmp_path / "job.log")
    handler.stream.close()
    handler.stream = _FullDisk()
    logger = logging.getLogger("transmiter.test_full_log")
    logger.addHandler(handler)
    try:
        for i in range(10):
            logger.warning("line %d", i)
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err, err
    assert err.count("cannot be written") == 1 and str(tmp_path / "job.log") in err, err


def test_the_run_log_uses_that_handler(compose):
    cfg = compose([])
    assert cfg.hydra.job_logging.handlers.file["class"] == "transmiter.io.LogFileHandler"
