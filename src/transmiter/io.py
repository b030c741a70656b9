"""Files the framework publishes: atomic writes, content digests and inter-process locks.

    atomic_write(path, json.dumps(record))             # readers see the old file or the new one, never half
    with atomic_path(path) as tmp:                      # for writers that want a file name (safetensors, ...)
        save_file(tensors, tmp)
    file_digest(path)                                   # hex SHA-256 of the bytes (blake2b: algorithm=...)
    with file_lock(folder / ".lock"):                   # one process at a time, across processes
        ...

Every temporary file lives beside its target (a rename never crosses file systems) and is removed when
the write fails. Locks use the `filelock` package: OS locks (flock) by default; set
TRANSMITER_SOFT_LOCKS=1 on network file systems without working flock, where a lock is then a file that
exists while it is held (a crashed holder leaves it behind: delete it by hand).

Standard library and `filelock` only, so the command line can use it before any heavy import.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOFT_LOCKS_ENV = "TRANSMITER_SOFT_LOCKS"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path`; renamed onto `path` when the block succeeds, removed otherwise.

    `fsync=True` flushes the file to disk before the rename (files that must survive a power cut).
    `mode` sets the permission bits (default: as `open` creates files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # created exclusively with the usual permissions (umask applies), unlike mkstemp's 0600
    with open(tmp, "xb"):
        pass
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(
    path: str | os.PathLike, data: str | bytes, *, fsync: bool = False, mode: int | None = None
) -> Path:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically; returns `path`."""
    with atomic_path(path, fsync=fsync, mode=mode) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", digest_size: int | None = None) -> str:
    """Hex digest of a file's bytes, read in chunks (`algorithm` as hashlib names it; `digest_size` for
    the blake2 family)."""
    options = {} if digest_size is None else {"digest_size": digest_size}

    def factory() -> Any:
        return hashlib.new(algorithm, **options)

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, factory).hexdigest()


def absolute(path: str | os.PathLike) -> Path:
    """`path` with `~` expanded, made absolute (config paths are relative to the launch folder)."""
    return Path(str(path)).expanduser().resolve()


def soft_locks() -> bool:
    return os.environ.get(SOFT_LOCKS_ENV, "0").lower() not in ("0", "", "false", "no")


def file_lock(path: str | os.PathLike, *, soft: bool | None = None):
    """An exclusive inter-process lock on `path` (created with its folder), as a context manager.

    `soft=None` follows TRANSMITER_SOFT_LOCKS (see the module docstring)."""
    from filelock import FileLock, SoftFileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    use_soft = soft_locks() if soft is None else soft
    return (SoftFileLock if use_soft else FileLock)(str(path))
