"""Crash-safe file primitives shared by the store, the refs and the caches.

Every file dbvers writes is written to a temporary name in the same directory,
flushed and fsynced, then renamed over the target, and the directory is fsynced:
a process killed at any instant leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import LockFileError, ReadOnlyStoreError, RepositoryBusyError, StorageError

TMP_PREFIX = ".tmp-"
# Temp names carry their owner: <host tag>.<pid>.<process start time>, so a cleanup can tell a
# killed process's leftovers from a live process's files (a Diff's pinned states live for hours).
_OWNER_RE = re.compile(r"(?:^|[-.])o([0-9a-f]{8})\.(\d+)\.(\d+)-")
# Names without an owner (older dbvers, foreign tools) are removed only when this old.
UNOWNED_MAX_AGE = 24 * 3600.0


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by its name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path


def _host_tag() -> str:
    """Which pid space a pid belongs to: this boot of this machine, this pid namespace.

    A pid from another host sharing the store (or another container) says nothing
    about liveness here, so files carrying another tag are never judged dead by pid.
    """
    parts = []
    for src in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(src) if src.endswith("/pid") else Path(src).read_text().strip())
        except OSError:
            parts.append("")
    import socket

    parts.append(socket.gethostname())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def _start_time(pid: int) -> int | None:
    """The kernel's start time of *pid* (clock ticks since boot): a reused pid has another."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


_owner_cache: tuple[int, str] | None = None


def owner_tag() -> str:
    """This process's owner mark for temp names (recomputed after a fork: a new pid)."""
    global _owner_cache
    pid = os.getpid()
    if _owner_cache is None or _owner_cache[0] != pid:
        _owner_cache = (pid, f"o{_host_tag()}.{pid}.{_start_time(pid) or 0}")
    return _owner_cache[1]


def temp_prefix(kind: str = "") -> str:
    """``.tmp-[kind-]<owner>-``: the prefix of every temp file or directory dbvers makes."""
    return f"{TMP_PREFIX}{kind + '-' if kind else ''}{owner_tag()}-"


def _pid_alive(pid: int, start: int) -> bool:
    if pid == os.getpid():
        return True
    now = _start_time(pid)
    if now is not None:
        return start == 0 or now == start
    if Path("/proc/self/stat").exists():
        return False  # /proc works here and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def temp_owner_alive(name: str) -> bool | None:
    """Whether the process that made temp entry *name* still runs (None: can't tell)."""
    m = _OWNER_RE.search(name)
    if m is None:
        return None
    tag, pid, start = m[1], int(m[2]), int(m[3])
    if tag != owner_tag()[1:9]:
        return None  # another host or pid namespace
    return _pid_alive(pid, start)


def temp_path(directory: Path, suffix: str = "") -> Path:
    """A fresh, empty file in *directory* (same file system as the target), made like ``mkstemp``
    but with mode 0666 filtered by the process's umask (and the directory's default ACL), as any
    file the user makes: published files get the usual permissions so a team can share a store.

    The kernel applies the umask at creation, so it is never read (reading it means setting it,
    process-wide, which races with other threads creating files).
    """
    prefix = temp_prefix()
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(directory))


class NotRegularFileError(OSError):
    """A path that should be a small file is a FIFO, a device, a folder... (never read)."""


def read_small_file(path: Path, limit: int) -> bytes:
    """At most *limit* bytes of the regular file *path*: a FIFO or a device put where a small
    file belongs (a marker, a record) can neither hang the command nor feed it without end.

    Raises what ``open`` raises (FileNotFoundError, NotADirectoryError, ...) and
    :class:`NotRegularFileError` for anything but a regular file.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(errno.EINVAL, "is not a regular file", str(path))
        return os.read(fd, limit)
    finally:
        os.close(fd)


def publish(tmp: Path, target: Path) -> None:
    """fsync *tmp*, rename it to *target*, fsync the directory: the atomic step."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


class WriteBehind:
    """A file being written whose pages go to disk as it grows, so that the fsync making it
    durable (``publish``) has little left to do.

    An fsync right after a large write waits for all of it to reach the disk (on ext4 the
    first fsync after a download flushes every file written since): a 35 MB object and an
    80 MB decoded snapshot cost a clone 0.2 s of waiting, after its downloads. Here each
    write past *every* bytes starts an ``fdatasync`` in a background thread when none is
    running, so the disk works while the download and decode go on. ``close`` waits for the
    one running, and raises its error: a failed write-back must not be forgotten (after an
    error, Linux may report the next fsync of the file as a success).
    """

    def __init__(self, out: BinaryIO, every: int = 8 << 20) -> None:
        self._out, self._every, self._pending = out, every, 0
        self._sync: threading.Thread | None = None
        self._error: OSError | None = None

    def write(self, data: bytes) -> int:
        n = self._out.write(data)
        self._pending += n
        if self._pending >= self._every and (self._sync is None or not self._sync.is_alive()):
            self._pending = 0
            self._out.flush()
            self._sync = threading.Thread(target=self._datasync, name="dbvers-writeback", daemon=True)
            self._sync.start()
        return n

    def _datasync(self) -> None:
        try:
            os.fdatasync(self._out.fileno())
        except OSError as e:
            self._error = e

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        """Wait for the write-back running (the file itself stays open: its owner closes it)."""
        if self._sync is not None:
            self._sync.join()
            self._sync = None
        if self._error is not None:
            raise self._error

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif self._sync is not None:  # the error on its way out is the one to report
            self._sync.join()


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


def remove_stale_temps(directory: Path, *, recursive: bool = False, pattern: str = "*",
                       unowned_max_age: float = UNOWNED_MAX_AGE) -> int:
    """Delete temp files and directories (``.tmp-<pattern>``) whose owner process is dead.

    The one cleanup rule for every temp dbvers makes: an entry is removed only
    when the pid in its name is provably gone (a reused pid has another start
    time); an entry whose owner can't be judged (no owner in the name, another
    host) only once it is *unowned_max_age* old. So a live process's files, such
    as the states a live ``Diff`` pinned, are never removed, whoever sweeps.
    """
    removed = 0
    if not directory.is_dir():
        return 0
    now = time.time()
    found = directory.rglob(TMP_PREFIX + pattern) if recursive else directory.glob(TMP_PREFIX + pattern)
    for p in list(found):
        try:
            alive = temp_owner_alive(p.name)
            if alive is None:
                alive = now - p.lstat().st_mtime <= unowned_max_age
            if alive:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
            removed += 1
        except OSError:
            pass
    return removed


#: The folders of a store directory (``.dbvers/``), made by ``init`` and by a restore.
STORE_DIRS = ("objects", "refs/heads", "refs/tags", "logs", "cache", "keyframes")


def make_store_skeleton(root: Path) -> None:
    """Create the folders of a store at *root* (those already there are kept).

    The one place the store's directory layout is made: ``init`` builds a new store
    with it and a restore completes the store it extracted from an archive.
    """
    for sub in STORE_DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)


def sqlite_lock_holder(db: Path) -> str | int | None:
    """Who holds POSIX locks on SQLite database *db* (or its ``-shm``): ``"process"`` when
    only this process does (a connection of the caller's own), another pid, or None.

    Read from ``/proc/locks`` and ``os.stat`` only: opening the database to ask
    (``F_GETLK``) would drop this process's own SQLite locks when closed.
    """
    keys = set()
    for path in (db, db.with_name(db.name + "-shm")):
        with contextlib.suppress(OSError):
            st = os.stat(path)
            keys.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    writers: set[int] = set()
    readers: set[int] = set()
    for line in text.splitlines():
        f = line.split()
        # "3: POSIX  ADVISORY  WRITE 1234 fe:00:2149728 120 120" (a "->" line is a waiter)
        if len(f) < 8 or f[1] != "POSIX":
            continue
        try:
            major, minor, ino = f[5].split(":")
            key, pid = (int(major, 16), int(minor, 16), int(ino)), int(f[4])
        except ValueError:
            continue
        if key in keys and pid > 0:
            (writers if f[3] == "WRITE" else readers).add(pid)
    me = os.getpid()
    for pids in (writers, readers):
        if pids:
            others = pids - {me}
            return min(others) if others else "process"
    return None


# Lock files this process holds through some RepoLock, by (device, inode): a waiter that
# times out can then say the holder is this very process (another Repo object on the store).
_held_here: dict[tuple[int, int], int] = {}
_held_here_mutex = threading.Lock()


def _file_key(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


class RepoLock:
    """The store's lock: exclusive between processes (``flock``, released when the process
    dies), re-entrant within one thread, and waited for by other threads.

    A ``threading.RLock`` is held around the file lock, so one ``Repo`` used from
    two threads serializes exactly as two processes do: the second waits for the
    first, with the same *timeout* and the same "repository is busy" error. The
    holder's pid is written into the lock file so a waiter can say who holds it.

    A store this process can't write (a read-only mount, another user's files) is
    locked *shared* instead, through a read-only descriptor: readers still wait for
    a writer; ``acquire(write=True)`` refuses with :class:`ReadOnlyStoreError`.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._mutex = threading.RLock()
        self._fd: int | None = None
        self._depth = 0  # the owning thread's nesting (only the RLock's owner touches it)
        self._owner: int | None = None
        self.read_only = False  # whether the lock held now is the shared one of a read-only store

    @property
    def depth(self) -> int:
        """How many nested holds the owning thread has now (0: the lock is free, or not this
        thread's; meaningful in the thread that asks about its own lock)."""
        return self._depth if self._owner == threading.get_ident() else 0

    def _open(self, write: bool) -> tuple[int | None, bool]:
        """A descriptor on the lock file and whether the store is read-only for us."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666), False
        except IsADirectoryError:
            raise LockFileError(str(self.path), "is a directory") from None
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise LockFileError(str(self.path), f"can't be opened ({e.strerror or e})") from None
        store = str(self.path.parent)
        if write:
            raise ReadOnlyStoreError(store)
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), True
        except FileNotFoundError:
            # No lock file and none can be made: no writer can have used this store as it is.
            return None, True
        except OSError as e:
            raise LockFileError(str(self.path), f"can't be opened ({e.strerror or e})") from None

    def acquire(self, write: bool = True) -> bool:
        """Take the lock (waiting up to *timeout*); True when this call took the file lock."""
        start = time.monotonic()
        if not self._mutex.acquire(timeout=max(self.timeout, 0.0)):
            raise RepositoryBusyError(str(self.path), time.monotonic() - start, holder="thread")
        try:
            if self._depth:
                if write and self.read_only:
                    raise ReadOnlyStoreError(str(self.path.parent))
                self._depth += 1
                return False
            self._lock_file(write, start)
        except BaseException:
            self._mutex.release()
            raise
        self._depth = 1
        self._owner = threading.get_ident()
        return True

    def _lock_file(self, write: bool, start: float) -> None:
        fd, read_only = self._open(write)
        if fd is None:
            self._fd, self.read_only = None, True
            return
        mode = fcntl.LOCK_SH if read_only else fcntl.LOCK_EX
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise LockFileError(str(self.path), f"can't be locked ({e.strerror or e})") from None
                waited = time.monotonic() - start
                if waited >= self.timeout:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise RepositoryBusyError(str(self.path), waited, holder=holder) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        if not read_only:
            # Who holds it, for a waiter's message; a failure here is no reason to fail the lock.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        key = _file_key(fd)
        with _held_here_mutex:
            _held_here[key] = _held_here.get(key, 0) + 1
        self._fd, self.read_only = fd, read_only

    @staticmethod
    def _holder(fd: int) -> str | int | None:
        """Who holds the lock *fd* waited for: "process" (this one), a pid, or None (unknown)."""
        with _held_here_mutex:
            if _held_here.get(_file_key(fd)):
                return "process"
        try:
            text = os.pread(fd, 32, 0).decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not text.isdigit():
            return None
        pid = int(text)
        return "process" if pid == os.getpid() else pid

    def release(self) -> None:
        if self._owner != threading.get_ident() or not self._depth:
            return  # not held by this thread: nothing to release
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd = self._fd, None
            if fd is not None:
                with _held_here_mutex:
                    key = _file_key(fd)
                    if _held_here.get(key, 0) <= 1:
                        _held_here.pop(key, None)
                    else:
                        _held_here[key] -= 1
                if not self.read_only:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            self.read_only = False
            self._owner = None
        self._mutex.release()

    @contextlib.contextmanager
    def held(self, write: bool = True) -> Iterator[bool]:
        """Hold the lock for a block; yields True when the file lock was taken just now."""
        fresh = self.acquire(write)
        try:
            yield fresh
        finally:
            self.release()
