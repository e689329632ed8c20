"""The two-library boundary: the only code that opens the user's working database.

apsw and the standard library's ``sqlite3`` each bundle their own SQLite. Two
SQLite libraries must never have the same file open in one process (each one's
``close()`` drops the other's POSIX locks), so the working database is opened
here, with ``sqlite3`` only, and only to copy a consistent state out of it or a
verified state into it, both through SQLite's online backup API. apsw works on
dbvers's private files alone; those are never open in ``sqlite3`` and apsw at
the same time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import DatabaseLockedError, NotADatabaseError, StorageError

SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


def check_database_file(path: Path) -> None:
    """Refuse anything that is not a SQLite database file (an empty file is a valid empty one)."""
    if not path.exists():
        raise NotADatabaseError(str(path), "no such file")
    if path.is_dir():
        raise NotADatabaseError(str(path), "it is a directory")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise NotADatabaseError(str(path), e.strerror or str(e)) from None
    if head and head != SQLITE_MAGIC:
        raise NotADatabaseError(str(path), "wrong file header")


@contextlib.contextmanager
def _connect(path: Path, timeout: float) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _is_busy(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in _BUSY_CODES) or "locked" in str(e)


def _is_damage(e: sqlite3.Error) -> bool:
    """SQLITE_CORRUPT / SQLITE_NOTADB: the file itself is damaged."""
    code = getattr(e, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in (11, 26)) or "malformed" in str(e) or "not a database" in str(e)


def create_empty(path: Path) -> None:
    """Create a new, empty SQLite database at *path* (for ``init`` of a path that doesn't exist)."""
    with _connect(path, 5.0) as conn:
        conn.execute("PRAGMA user_version = 0")
        conn.execute("VACUUM")


def copy_out(working: Path, dest: Path, timeout: float) -> None:
    """Copy one consistent committed state of *working* into the private file *dest*.

    A read transaction is opened first, so the copy is one snapshot even while
    other processes write (in WAL mode they are not blocked at all); if a writer
    holds the database exclusively for longer than *timeout*, a clear error is
    raised instead of waiting forever.
    """
    check_database_file(working)
    start = time.monotonic()
    try:
        with _connect(working, timeout) as src, _connect(dest, timeout) as dst:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            src.backup(dst)
            src.execute("COMMIT")
            # A private copy must be one self-contained file, whatever the user's journal mode.
            dst.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.DatabaseError as e:
        with contextlib.suppress(OSError):
            dest.unlink()
        if _is_busy(e):
            raise DatabaseLockedError(str(working), time.monotonic() - start) from None
        if "not a database" in str(e) or "malformed" in str(e):
            raise NotADatabaseError(str(working), str(e)) from None
        raise
    except OSError as e:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise StorageError(str(dest), e) from e


def copy_in(private: Path, working: Path, timeout: float) -> None:
    """Replace the contents of *working* with the private file *private*, in one transaction.

    The backup API writes every page under one write transaction on *working*, so
    readers see either the old or the new state, and connections other code holds
    open see the new state on their next statement.
    """
    try:
        check_database_file(working)
    except NotADatabaseError:
        # Missing or destroyed: nothing to preserve and no SQLite reader to keep
        # consistent, so put a whole new file in place atomically.
        _replace_file(private, working)
        return
    start = time.monotonic()

    def progress(status: int, remaining: int, total: int) -> None:
        if status in _BUSY_CODES and time.monotonic() - start > timeout:
            raise DatabaseLockedError(str(working), time.monotonic() - start)

    try:
        with _connect(private, timeout) as src, _connect(working, timeout) as dst:
            src.backup(dst, pages=-1, progress=progress, sleep=0.05)
    except sqlite3.DatabaseError as e:
        if _is_busy(e):
            raise DatabaseLockedError(str(working), time.monotonic() - start) from None
        if _is_damage(e):
            # A truncated or page-corrupted file has no consistent state to keep for its
            # readers (and SQLite cannot write pages into it): the verified private state
            # replaces it as a whole, which is what restore --force is for.
            _replace_file(private, working)
            return
        raise


def _replace_file(private: Path, working: Path) -> None:
    from .fsutil import copy_atomic

    try:
        for suffix in ("-wal", "-shm", "-journal"):
            Path(str(working) + suffix).unlink(missing_ok=True)
        copy_atomic(private, working)
    except OSError as e:
        raise StorageError(str(working), e) from e


def fingerprint(path: Path) -> str | None:
    """A cheap key that changes whenever the working database's content can have changed.

    Inode, size and mtime (ns) of the file and of its WAL, plus SQLite's file
    change counter (header bytes 24-27, bumped by every write transaction in
    rollback-journal mode). Like git's index stat data: equal fingerprints let
    status and checkout skip a full diff; any doubt means a real diff.
    """
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            f.seek(24)
            counter = int.from_bytes(f.read(4) or b"\0", "big")
    except OSError:
        return None
    parts = [st.st_ino, st.st_size, st.st_mtime_ns, counter]
    try:
        wal = os.stat(str(path) + "-wal")
        parts += [wal.st_ino, wal.st_size, wal.st_mtime_ns]
    except FileNotFoundError:
        parts.append("nowal")
    return ":".join(map(str, parts))
