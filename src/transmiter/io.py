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

A write that fails for lack of space or permission raises `WriteError` naming the file, the free space and
the fix; `check_folder` asks the same questions of a folder before a job starts:

    check_folder(cache_dir, "paths.cache_dir")      # WriteError: under a regular file, read-only, disk full

Standard library and `filelock` only, so the command line can use it before any heavy import.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOFT_LOCKS_ENV = "TRANSMITER_SOFT_LOCKS"
# A job refuses to start on a file system with less free space than this (it could not write its
# results); TRANSMITER_MIN_FREE_MB changes it.
MIN_FREE_ENV = "TRANSMITER_MIN_FREE_MB"
MIN_FREE_BYTES = 64 << 20
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


class WriteError(OSError):
    """A file or folder the framework cannot write; the message names it, why, and the fix."""

    def __init__(self, message: str, path: str | os.PathLike, code: int | None = None):
        super().__init__(message)
        self.path, self.errno = str(path), code  # (not `filename`: OSError would print it instead)


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def free_space(path: str | os.PathLike) -> int | None:
    """Bytes free on the file system of `path` (its nearest existing folder), None when unknown."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def is_disk_error(err: BaseException) -> bool:
    """A write that failed because the disk is full or the place is not writable (not a bug)."""
    return isinstance(err, OSError) and err.errno in (*_FULL, *_DENIED, errno.ENOTDIR)


def write_error(path: str | os.PathLike, err: OSError) -> WriteError:
    """The WriteError for `err` (a failed write of `path`): what happened, where, and what to do."""
    if isinstance(err, WriteError):
        return err
    reason = os.strerror(err.errno) if err.errno else str(err)
    if err.errno in _FULL:
        free = free_space(path)
        fix = (
            f"{_size(free)} free on its file system" if free is not None else "its file system is full"
        ) + (
            "; free some space there, or point paths.output_dir / paths.cache_dir (TRANSMITER_CACHE) at "
            "another disk, then run the same command again (finished stages are kept)"
        )
    elif err.errno in _DENIED:
        fix = "the folder is read-only here: make it writable, or choose another folder"
    else:
        fix = "check that every parent of it is a folder"
    return WriteError(f"cannot write {path}: {reason} ({fix})", path, err.errno)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path`; renamed onto `path` when the block succeeds, removed otherwise.

    `fsync=True` flushes the file to disk before the rename (files that must survive a power cut).
    `mode` sets the permission bits (default: as `open` creates files)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # created exclusively with the usual permissions (umask applies), unlike mkstemp's 0600
        with open(tmp, "xb"):
            pass
    except OSError as err:
        raise (write_error(path, err) if is_disk_error(err) else err) from err
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if is_disk_error(err):
            raise write_error(path, err) from err
        raise
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


def check_folder(folder: str | os.PathLike, key: str, min_free: int | None = None) -> Path:
    """Make sure `folder` (the value of config key `key`) can be written before any work starts: it is
    created when missing, a probe file is written and removed, and its file system has `min_free` bytes
    (default: TRANSMITER_MIN_FREE_MB, else MIN_FREE_BYTES). Raises WriteError naming the key, the folder and
    the fix."""
    folder = Path(folder)
    if min_free is None:
        setting = os.environ.get(MIN_FREE_ENV, "").strip()
        min_free = int(float(setting) * (1 << 20)) if setting else MIN_FREE_BYTES
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise WriteError(
            f"{key}={folder} cannot be used: {blocker} is a regular file, not a folder; move that file away "
            f"or set {key} to another folder",
            folder,
            errno.ENOTDIR,
        )
    probe = folder / f".transmiter-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        probe.unlink(missing_ok=True)
        raise WriteError(
            f"{key}={folder} is not writable ({os.strerror(err.errno) if err.errno else err}): make it "
            f"writable, or set {key} to a folder this user can write",
            folder,
            err.errno,
        ) from err
    free = free_space(folder)
    if free is not None and free < min_free:
        raise WriteError(
            f"{key}={folder}: only {_size(free)} free on its file system (a job needs at least "
            f"{_size(min_free)}); free some space there, or set {key} to a folder on another disk",
            folder,
            errno.ENOSPC,
        )
    return folder


class LogFileHandler(logging.FileHandler):
    """A log file that stops, saying so once, when it cannot be written (disk full, folder gone): the job
    goes on logging to the console instead of printing a 'Logging error' traceback for every line."""

    def handleError(self, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        if not isinstance(err, OSError):
            super().handleError(record)
            return
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        print(
            f"transmiter: log file {self.baseFilename} cannot be written ({err.strerror or err}); it stops "
            "here, the console log goes on",
            file=sys.stderr,
        )

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(self, "_stopped", False):
            super().emit(record)
