"""Content-addressed stages: a stage's outputs live in a folder named by the hash of everything that
determines them, so a re-run (or another study needing the same stage) reuses finished work.

    store = StageStore(cache_dir / "stages")
    result = store.run("finetune", identity={"model": ..., "data": ..., "hparams": ...}, fn=train)
    result.path / "model.safetensors"; result.outputs["final_metrics"]

`fn(workdir: Path) -> dict` does the work inside `workdir` (the stage folder itself, so checkpoints
written there survive an interruption and let the next attempt resume) and returns a JSON-able dict.
The stage is complete only once `stage.json` is written (atomically, last). Concurrent attempts on the
same stage serialise on a file lock; the second one finds the stage done and reuses it.

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
from transmiter.features.store import ArrayCache, canonical_json
from transmiter.io import atomic_write, file_lock

DONE_FILE = "stage.json"
CHECKPOINT_DIR = "checkpoints"  # resume checkpoints of a training stage, inside its folder
POLL_S = 0.2  # how often a waiting rank looks for rank 0's decision or publication

log = logging.getLogger("transmiter")

# How often this process has asked for each stage folder. The ranks of a job ask for the same stages in the
# same order, so (job, folder, count) names one request identically on every rank.
_REQUESTS: dict[str, int] = {}


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
        return self._load(self.path(name, identity)) is not None

    def run(
        self, name: str, identity: Mapping[str, Any], fn: Callable[[Path], dict[str, Any]]
    ) -> StageResult:
        path = self.path(name, identity)
        request = _REQUESTS[str(path)] = _REQUESTS.get(str(path), 0) + 1
        done = self._load(path)
        if done is not None:
            return _reused(name, path, done)
        if not is_global_zero():
            return self._follow(name, path, fn, _decision_file(path, job_token(), request))
        path.mkdir(parents=True, exist_ok=True)
        with file_lock(path / ".lock"):
            done = self._load(path)  # another process may have finished it while we waited
            if done is not None:
                return _reused(name, path, done)
            decision = _decision_file(path, job_token(), request)
            try:
                if decision is not None:  # the job's other ranks run fn with us from here
                    atomic_write(decision, "run")
                (path / "identity.json").write_text(
                    json.dumps(identity, indent=1, sort_keys=True, default=str)
                )
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
            done = self._load(path)
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
            done = self._load(path)
            if done is not None:
                return done
            if decision is not None and not decision.exists():
                done = self._load(path)  # published just before the decision file went
                if done is not None:
                    return done
                raise RuntimeError(
                    f"stage {name!r} ({path}): global rank 0 stopped without publishing it; its log says why"
                )
            _check_parent(parent, name, path)
            time.sleep(POLL_S)

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads((path / DONE_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None


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
