"""Content-addressed stages: a stage's outputs live in a folder named by the hash of everything that
determines them, so a re-run (or another study needing the same stage) reuses finished work.

    store = StageStore(cache_dir / "stages")
    result = store.run("finetune", identity={"model": ..., "data": ..., "hparams": ...}, fn=train)
    result.path / "model.safetensors"; result.outputs["final_metrics"]

`fn(workdir: Path) -> dict` does the work inside `workdir` (the stage folder itself, so checkpoints
written there survive an interruption and let the next attempt resume) and returns a JSON-able dict.
The stage is complete only once `stage.json` is written (atomically, last); it records the size and
BLAKE2b hash of every file `fn` left in the folder (checkpoints aside). Reusing a finished stage checks
them: a missing, truncated or altered output makes the stage unfinished, with a warning naming the file,
and it is recomputed from scratch. Concurrent attempts on the same stage serialise on a file lock; the
second one finds the stage done and reuses it.

Several ranks of one job (`strategy=ddp` under torchrun, SLURM or Lightning's launcher: every rank runs
the whole app). All ranks must run `fn`, since the training inside it meets at collectives, but only
global rank 0 takes the lock and publishes. Rank 0 asks for the lock and, once it holds it and has found the
stage not done, drops a decision file `.decision-<job>-<n>` in the stage folder (n counts this process's
requests for the stage, the same on every rank). Each other rank, having found the stage not done itself,
waits for either that file (then runs `fn` too) or `stage.json` (then reuses it), so all ranks agree even when
another job finishes the stage while rank 0 waits for the lock, and they read the same resume checkpoints,
which nobody else can write while rank 0 holds the lock. The other ranks run `fn` in a private folder
`.<rank>-<pid>/` that shows rank 0's `checkpoints/` (so they resume from the same epoch) and is deleted
afterwards; whatever `fn` writes there is thrown away. They then wait until rank 0 has published and return
its outputs, so every rank leaves with the same paths and the stage done on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transmiter.distributed import global_rank_label, is_global_zero, job_token
from transmiter.features.store import ArrayCache, canonical_json, file_hash
from transmiter.io import atomic_write, file_lock

DONE_FILE = "stage.json"
IDENTITY_FILE = "identity.json"
CHECKPOINT_DIR = "checkpoints"  # resume checkpoints of a training stage, inside its folder
POLL_S = 0.2  # how often a waiting rank looks for rank 0's decision or publication

log = logging.getLogger("transmiter")

# How often this process has asked for each stage folder. The ranks of a job ask for the same stages in the
# same order, so (job, folder, count) names one request identically on every rank.
_REQUESTS: dict[str, int] = {}
# Outputs this process has hashed, by path: (size, mtime_ns, inode, hash). A study reuses one stage many
# times; an output whose file is unchanged since it was hashed is not read again.
_HASHED: dict[str, tuple[int, int, int, str]] = {}


class StageOutputError(RuntimeError):
    """An output of a finished stage that cannot be used; the message names the file and the stage folder
    to delete."""


def unreadable_output(file: str | os.PathLike, err: BaseException) -> StageOutputError:
    """The error for a stage output that a consumer cannot read (damaged after the stage was verified, or
    a stage finished before outputs were recorded): the file, why, and the fix (delete its stage folder)."""
    file = Path(file)
    folder = next((p for p in file.parents if (p / DONE_FILE).is_file()), file.parent)
    cause = err.__cause__ if err.__cause__ is not None else err
    return StageOutputError(
        f"{file} cannot be read ({type(cause).__name__}: {cause}); it is an output of the finished stage "
        f"{folder}. Delete that folder (rm -r '{folder}') and run the same command again: the stage is "
        "recomputed"
    )


@dataclass
class StageResult:
    name: str
    key: str
    path: Path
    outputs: dict[str, Any]
    reused: bool
    seconds: float  # wall time the work took when it ran (also when reused now)


class StageStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def key(self, identity: Mapping[str, Any]) -> str:
        return ArrayCache.key(identity)

    def path(self, name: str, identity: Mapping[str, Any]) -> Path:
        return self.root / name / self.key(identity)

    def is_done(self, name: str, identity: Mapping[str, Any]) -> bool:
        """Whether the stage is finished and its outputs have their recorded sizes (dry runs: no hashing)."""
        path = self.path(name, identity)
        done = self._load(path)
        return done is not None and damaged_output(path, done, hashes=False) is None

    def run(
        self, name: str, identity: Mapping[str, Any], fn: Callable[[Path], dict[str, Any]]
    ) -> StageResult:
        path = self.path(name, identity)
        request = _REQUESTS[str(path)] = _REQUESTS.get(str(path), 0) + 1
        done = self._finished(name, path, warn=is_global_zero())
        if done is not None:
            return _reused(name, path, done)
        if not is_global_zero():
            return self._follow(name, path, fn, _decision_file(path, job_token(), request))
        path.mkdir(parents=True, exist_ok=True)
        with file_lock(path / ".lock"):
            done = self._finished(name, path)  # another process may have finished it while we waited
            if done is not None:
                return _reused(name, path, done)
            if (path / DONE_FILE).exists():  # finished once, damaged since: start again from nothing
                _clear_stage(path)
            decision = _decision_file(path, job_token(), request)
            try:
                if decision is not None:  # the job's other ranks run fn with us from here
                    atomic_write(decision, "run")
                (path / IDENTITY_FILE).write_text(json.dumps(identity, indent=1, sort_keys=True, default=str))
                start = time.perf_counter()
                outputs = fn(path)
                seconds = time.perf_counter() - start
                record = {
                    "name": name,
                    "key": path.name,
                    "identity_json": canonical_json(identity),
                    "outputs": outputs,
                    "seconds": seconds,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "files": output_files(path),
                }
                atomic_write(path / DONE_FILE, json.dumps(record, indent=1, default=str))
            finally:
                if decision is not None:
                    decision.unlink(missing_ok=True)
        return StageResult(name, path.name, path, outputs, False, seconds)

    def _follow(
        self, name: str, path: Path, fn: Callable[[Path], dict[str, Any]], decision: Path | None
    ) -> StageResult:
        """A rank other than 0: run `fn` alongside rank 0 (never alone, never publishing), then return the
        outputs rank 0 published. Without a job name (`decision` None) nothing tells this rank what rank 0
        decided, so it runs `fn` at once; the app always names its jobs (transmiter.distributed.begin_job)."""
        parent = os.getppid()
        announced = False
        while decision is not None and not decision.is_file():
            done = self._finished(name, path)
            if done is not None:  # rank 0 reused it (or found it done after waiting for the lock)
                return _reused(name, path, done)
            _check_parent(parent, name, path)
            if not announced:
                log.info("%s: %s waits for global rank 0 to take stage %s", name, global_rank_label(), path)
                announced = True
            time.sleep(POLL_S)
        scratch = path / f".{global_rank_label()}-{os.getpid()}"
        try:
            scratch.mkdir(parents=True, exist_ok=True)
            # rank 0's resume checkpoints, read (never written: Lightning saves on global rank 0 only)
            (scratch / CHECKPOINT_DIR).symlink_to(path / CHECKPOINT_DIR, target_is_directory=True)
            start = time.perf_counter()
            fn(scratch)
            seconds = time.perf_counter() - start
            done = self._await_publication(name, path, decision, parent)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return StageResult(name, path.name, path, done["outputs"], False, seconds)

    def _await_publication(self, name: str, path: Path, decision: Path | None, parent: int) -> dict[str, Any]:
        while True:
            done = self._finished(name, path)
            if done is not None:
                return done
            if decision is not None and not decision.exists():
                done = self._finished(name, path)  # published just before the decision file went
                if done is not None:
                    return done
                raise RuntimeError(
                    f"stage {name!r} ({path}): global rank 0 stopped without publishing it; its log says why"
                )
            _check_parent(parent, name, path)
            time.sleep(POLL_S)

    def _finished(self, name: str, path: Path, warn: bool = False) -> dict[str, Any] | None:
        """The stage's record when it is finished and every output is as recorded; None otherwise (with
        `warn`, a damaged output is named in a warning)."""
        done = self._load(path)
        if done is None:
            return None
        damage = damaged_output(path, done)
        if damage is None:
            return done
        if warn:
            log.warning(
                "stage %s (%s): %s; the stage is recomputed (a finished stage's outputs must match the sizes and "
                "hashes recorded in its %s)",
                name,
                path,
                damage,
                DONE_FILE,
            )
        return None

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            done = json.loads((path / DONE_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return done if isinstance(done, dict) and "outputs" in done else None


def output_files(path: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {bytes, blake2b}} of the files a stage's work left in `path`: everything but the
    stage's own bookkeeping (stage.json, identity.json, hidden files) and its resume checkpoints."""
    files = {}
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if (
            not file.is_file()
            or rel.parts[0] in (CHECKPOINT_DIR, DONE_FILE, IDENTITY_FILE)
            or any(part.startswith(".") for part in rel.parts)
        ):
            continue
        files[rel.as_posix()] = {"bytes": file.stat().st_size, "blake2b": _hash(file)}
    return files


def damaged_output(path: Path, done: Mapping[str, Any], hashes: bool = True) -> str | None:
    """What is wrong with a finished stage's outputs (the first problem found), or None when every file
    recorded in `done` has its size and (with `hashes`) its hash. Records written before outputs were
    recorded have nothing to check."""
    for rel, info in (done.get("files") or {}).items():
        file = path / rel
        try:
            size = file.stat().st_size
        except OSError:
            return f"output {file} is missing"
        if size != info.get("bytes"):
            return f"output {file} has {size} bytes, {info.get('bytes')} when the stage finished"
        if hashes and _hash(file) != info.get("blake2b"):
            return f"output {file} does not match the hash recorded when the stage finished (damaged on disk)"
    return None


def _hash(file: Path) -> str:
    stat = file.stat()
    seen = _HASHED.get(str(file))
    if seen is not None and seen[:3] == (stat.st_size, stat.st_mtime_ns, stat.st_ino):
        return seen[3]
    digest = file_hash(file)
    _HASHED[str(file)] = (stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)
    return digest


def _clear_stage(path: Path) -> None:
    """Empty a damaged stage's folder for a fresh run: its record first (so nobody takes the stage for
    finished any more), then outputs and checkpoints; the lock we hold stays."""
    (path / DONE_FILE).unlink(missing_ok=True)
    for entry in path.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _reused(name: str, path: Path, done: dict[str, Any]) -> StageResult:
    return StageResult(name, path.name, path, done["outputs"], True, float(done.get("seconds", 0.0)))


def _decision_file(path: Path, token: str | None, request: int) -> Path | None:
    if token is None:
        return None
    job = hashlib.blake2b(token.encode(), digest_size=8).hexdigest()
    return path / f".decision-{job}-{request}"


def _check_parent(parent: int, name: str, path: Path) -> None:
    """A child that Lightning's launcher started is re-parented when rank 0 (its parent) dies: stop waiting."""
    if os.getppid() != parent:
        raise RuntimeError(f"stage {name!r} ({path}): the process that started this rank has exited")
