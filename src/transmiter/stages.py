"""Content-addressed stages: a stage's outputs live in a folder named by the hash of everything that
determines them, so a re-run (or another study needing the same stage) reuses finished work.

    store = StageStore(cache_dir / "stages")
    result = store.run("finetune", identity={"model": ..., "data": ..., "hparams": ...}, fn=train)
    result.path / "model.safetensors"; result.outputs["final_metrics"]

`fn(workdir: Path) -> dict` does the work inside `workdir` (the stage folder itself, so checkpoints
written there survive an interruption and let the next attempt resume) and returns a JSON-able dict.
The stage is complete only once `stage.json` is written (atomically, last). Concurrent attempts on the
same stage serialise on a file lock; the second one finds the stage done and reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transmiter.features.store import ArrayCache, canonical_json

DONE_FILE = "stage.json"


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
        done = self._load(path)
        if done is not None:
            return StageResult(name, path.name, path, done["outputs"], True, float(done.get("seconds", 0.0)))
        path.mkdir(parents=True, exist_ok=True)
        with _locked(path / ".lock"):
            done = self._load(path)  # another process may have finished it while we waited
            if done is not None:
                return StageResult(
                    name, path.name, path, done["outputs"], True, float(done.get("seconds", 0.0))
                )
            (path / "identity.json").write_text(json.dumps(identity, indent=1, sort_keys=True, default=str))
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
            tmp = path / f".{DONE_FILE}.tmp-{os.getpid()}"
            tmp.write_text(json.dumps(record, indent=1, default=str))
            os.replace(tmp, path / DONE_FILE)
        return StageResult(name, path.name, path, outputs, False, seconds)

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads((path / DONE_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
