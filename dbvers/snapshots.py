"""Keyframes: full copies of a state, checked when written and when read back.

A snapshot object is the raw bytes of a private, self-contained database file
(rollback journal mode), made from a consistent backup-API copy. Restoring one
goes to memory (``deserialize``): replaying patchsets in memory is several
times faster than into a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import apsw

from .errors import CorruptObjectError, IntegrityError, StorageError
from .fsutil import publish, temp_path
from .privatedb import open_private
from .storage.base import ObjectStore

# IntegrityError lived here once; dbvers.errors owns it now (snapshots.IntegrityError is the same class).


def integrity_problems(conn: apsw.Connection, quick: bool = False) -> list[str]:
    pragma = "quick_check" if quick else "integrity_check"
    rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
    return [] if rows == ["ok"] else rows


def file_problems(path: Path, quick: bool = False) -> list[str]:
    """``integrity_problems`` of a private database file (opened and closed here)."""
    conn = open_private(path)
    try:
        _bounded(conn)  # a check reads every page once: no point caching them all
        return integrity_problems(conn, quick)
    finally:
        conn.close()


_MAGIC = b"SQLite format 3\x00"


def looks_whole(path: Path) -> bool:
    """A cheap (constant-time) check that the private file *path* is a whole SQLite database.

    For derived files (the materialization cache) that are rebuilt when this says
    no: the header's magic and page size, and the file's size against the page
    count the header records. It catches garbage, truncation and a zero-length
    file (never a valid materialization here: rebuilding one is cheap). It does not
    read every page: a file damaged inside a page is found by SQLite on use.
    """
    try:
        size = path.stat().st_size
        # A private file no connection writes in place (caches are replaced by rename),
        # so a descriptor closed here can't drop a lock anybody relies on.
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError:
        return False
    if len(head) < 100 or not head.startswith(_MAGIC):
        return False
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1) or size % page:
        return False
    pages = int.from_bytes(head[28:32], "big")
    # The in-header page count is valid only when its version stamp matches the change counter.
    if pages and head[24:28] == head[92:96] and head[18] == 1 and head[19] == 1:
        return pages * page == size
    return size > 0


def make(store: ObjectStore, db_file: Path) -> str:
    """Integrity-check the private file *db_file* and store it as a snapshot object."""
    problems = file_problems(db_file)
    if problems:
        raise IntegrityError("the database", problems)
    return store.put_file("snapshot", db_file)


# States up to this size are rebuilt in memory (several times faster); larger ones in a
# private file, so that memory stays flat whatever size a snapshot (or a zstd bomb) claims.
IN_MEMORY_MAX = 32 << 20


class FileState(apsw.Connection):
    """A state being rebuilt in a private temp file; the file goes when the connection closes."""

    def close(self, force: bool = False) -> None:
        try:
            path = self.db_filename("main")
        except apsw.ConnectionClosedError:  # released (see release): the file is no longer ours
            return
        super().close(force)
        for p in (path, path + "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(p)

    def release(self) -> Path:
        """Close, keeping the file (in rollback-journal mode, nothing pending): the caller's now."""
        if self.in_transaction:
            raise RuntimeError("a state is released with its transaction still open")
        self.execute("PRAGMA journal_mode = DELETE")  # a snapshot of a WAL database opened in WAL
        path = Path(self.db_filename("main"))
        super().close()
        return path


def _bounded(conn: apsw.Connection) -> None:
    conn.execute("PRAGMA cache_size = -8192")
    conn.execute("PRAGMA mmap_size = 0")


def open_unpacked(path: Path, what: str, *, memory_limit: int) -> apsw.Connection:
    """A state on *path*, a private file holding the verified body of snapshot *what* (written
    as it was fetched: see ``States.unpacking``). The file becomes the state's own: it goes
    when the connection closes, or is renamed into the cache when the state is saved.

    Up to *memory_limit*, the replay's changed pages stay in memory until it commits (no
    spill, no rollback journal: after any error the file is dropped unread), so the file is
    written once, like a state rebuilt in memory, but without the copies in and out of it.
    """
    conn = _open_file_state(path, what)
    size = path.stat().st_size
    if size <= memory_limit:
        conn.execute(f"PRAGMA cache_size = -{size // 1024 + 8192}")
        conn.execute("PRAGMA cache_spill = OFF")
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute(f"PRAGMA mmap_size = {size}")
    return conn


def _open_file_state(path: Path, what: str) -> apsw.Connection:
    conn = FileState(str(path))
    try:
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 0)
        conn.execute("PRAGMA foreign_keys = OFF")
        _bounded(conn)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except apsw.Error as e:
        conn.close()
        raise CorruptObjectError(what, f"not a usable database: {e}") from None
    return conn


def load(store: ObjectStore, oid: str, scratch: Path | None = None, *,
         memory_limit: int = IN_MEMORY_MAX) -> apsw.Connection:
    """A connection holding snapshot *oid* (hash verified by the store while it streams).

    In memory when small; a private file in *scratch* when larger than *memory_limit*
    (the size the object's header declares: reads never exceed it).
    """
    if scratch is not None and store.body_size(oid) > memory_limit:
        scratch.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(scratch, ".db")
        store.get_to_file(oid, tmp, "snapshot")
        return _open_file_state(tmp, oid)
    return load_bytes(store.get(oid, "snapshot"), oid)


def load_file(path: Path, what: str, scratch: Path, *, memory_limit: int = IN_MEMORY_MAX) -> apsw.Connection:
    """A private, writable copy of the database file *path* (memory up to *memory_limit*, else a temp file)."""
    if path.stat().st_size <= memory_limit:
        return load_bytes(path.read_bytes(), what)
    tmp = temp_path(scratch, ".db")
    try:
        shutil.copyfile(path, tmp)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(str(tmp), e) from e
    return _open_file_state(tmp, what)


def load_bytes(data: bytes, what: str) -> apsw.Connection:
    conn = open_private(":memory:")
    try:
        conn.deserialize("main", data)
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 0)
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except apsw.Error as e:
        conn.close()
        raise CorruptObjectError(what, f"not a usable database: {e}") from None
    return conn


def save(conn: apsw.Connection, target: Path, finish: Callable[[Path], None] | None = None) -> None:
    """Write a state's database atomically to *target* (page by page when it is a file);
    *finish* is called with the written file (closed by apsw) before it takes *target*'s name."""
    own_file = isinstance(conn, FileState) and Path(conn.db_filename("main")).parent == target.parent
    # A state in a file beside the target becomes the target itself: no copy of the database.
    tmp = conn.release() if isinstance(conn, FileState) and own_file else temp_path(target.parent, ".db")
    try:
        if own_file:
            pass
        elif isinstance(conn, FileState):
            dest = apsw.Connection(str(tmp))
            try:
                with dest.backup("main", conn, "main") as b:
                    while not b.done:
                        b.step(1024)
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()
        else:
            data = conn.serialize("main")
            with open(tmp, "wb") as f:
                f.write(data if data is not None else b"")
        if finish is not None:
            finish(tmp)
        publish(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(str(target), e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
