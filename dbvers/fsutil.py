"""Crash-safe file primitives shared by the store, the refs and the caches.

Every file dbvers writes is written to a temporary name in the same directory,
flushed and fsynced, then renamed over the target, and the directory is fsynced:
a process killed at any instant leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import RepositoryBusyError, StorageError

TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(directory: Path, suffix: str = "") -> Path:
    """A fresh private file name in *directory* (same file system as the target)."""
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=directory)
    # mkstemp makes 0600 files; published files get the usual permissions so a team can share a store.
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    return Path(name)


def publish(tmp: Path, target: Path) -> None:
    """fsync *tmp*, rename it to *target*, fsync the directory: the atomic step."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def copy_atomic(src: Path, target: Path) -> None:
    """Copy *src* to *target* through a temp file beside it: *target* is old or new, never half."""
    import shutil

    tmp = temp_path(target.parent, ".db")
    try:
        shutil.copyfile(src, tmp)
        publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target.parent)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        publish(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(str(target), e) from e


def append_line(target: Path, line: str) -> None:
    """Append one durable line (the reflog). A torn last line is ignored on read.

    A torn last line (a writer killed mid-append) is closed with a newline first,
    so the new line is not glued onto it and lost with it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "a+b") as f:
            data = (line.rstrip("\n") + "\n").encode("utf-8")
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise StorageError(str(target), e) from e


def remove_stale_temps(directory: Path, older_than: float = 3600.0) -> int:
    """Delete temp files left by killed processes (only old ones: a live process may own new ones)."""
    removed = 0
    if not directory.is_dir():
        return 0
    now = time.time()
    for p in directory.rglob(TMP_PREFIX + "*"):
        try:
            if now - p.stat().st_mtime > older_than:
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


class RepoLock:
    """An exclusive advisory lock on the store (``flock``: released when the process dies).

    Concurrent dbvers processes queue on it; after *timeout* seconds a clear
    "repository is busy" error is raised instead of waiting forever.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        if self._depth:
            self._depth += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                waited = time.monotonic() - start
                if waited >= self.timeout:
                    os.close(fd)
                    raise RepositoryBusyError(str(self.path), waited) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
