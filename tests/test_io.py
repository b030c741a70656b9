"""transmiter.io: atomic writes leave the old file or the new one (never a half file, never a temp file),
digests equal hashlib's, and locks exclude across processes (OS locks and soft locks)."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from transmiter.io import atomic_path, atomic_write, file_digest, file_lock


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "sub" / "record.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]
    assert target.stat().st_mode & 0o044, (
        "a published file is readable by others (umask), unlike mkstemp's 0600"
    )


def test_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_file_digest_equals_hashlib(tmp_path: Path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    assert file_digest(path, "blake2b", digest_size=16) == hashlib.blake2b(data, digest_size=16).hexdigest()


def _hold(lock_path: str, soft: bool, log_path: str, name: str) -> None:
    with file_lock(lock_path, soft=soft):
        with open(log_path, "a") as log:
            log.write(f"{name} in\n")
        time.sleep(0.3)
        with open(log_path, "a") as log:
            log.write(f"{name} out\n")


@pytest.mark.parametrize("soft", [False, True])
def test_lock_excludes_other_processes(tmp_path: Path, soft: bool):
    lock, log = tmp_path / "locks" / ".stage.lock", tmp_path / "log.txt"
    procs = [mp.get_context("fork").Process(target=_hold, args=(str(lock), soft, str(log), n)) for n in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    first, second = (log.read_text().splitlines()[i : i + 2] for i in (0, 2))
    # never both inside: each process leaves before the other enters
    for entered, left in (first, second):
        assert entered.split() == [entered.split()[0], "in"] and left == entered.split()[0] + " out"


def test_soft_locks_follow_the_environment(tmp_path: Path, monkeypatch):
    from filelock import FileLock, SoftFileLock

    monkeypatch.setenv("TRANSMITER_SOFT_LOCKS", "1")
    assert isinstance(file_lock(tmp_path / "a.lock"), SoftFileLock)
    monkeypatch.setenv("TRANSMITER_SOFT_LOCKS", "0")
    lock = file_lock(tmp_path / "b.lock")
    assert isinstance(lock, FileLock) and not isinstance(lock, SoftFileLock)
