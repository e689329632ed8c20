"""Keyframes: full copies of a state, checked when written and when read back.

A snapshot object is the raw bytes of a private, self-contained database file
(rollback journal mode), made from a consistent backup-API copy. Restoring one
goes to memory (``deserialize``): replaying patchsets in memory is several
times faster than into a file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import apsw

from .changes import open_private
from .errors import CorruptObjectError, DbversError, StorageError
from .fsutil import publish, temp_path
from .store import ObjectStore


class IntegrityError(DbversError):
    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{what} fails PRAGMA integrity_check ({problems[0][:100]}); "
            "repair it (e.g. sqlite3 .recover) before committing"
        )


def integrity_problems(conn: apsw.Connection, quick: bool = False) -> list[str]:
    pragma = "quick_check" if quick else "integrity_check"
    rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
    return [] if rows == ["ok"] else rows


def file_problems(path: Path, quick: bool = False) -> list[str]:
    """``integrity_problems`` of a private database file (opened and closed here)."""
    conn = open_private(path)
    try:
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


def load(store: ObjectStore, oid: str) -> apsw.Connection:
    """An in-memory connection holding snapshot *oid* (hash already verified by the store)."""
    return load_bytes(store.get(oid, "snapshot"), oid)


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


def save(conn: apsw.Connection, target: Path) -> None:
    """Write an (in-memory) connection's database atomically to *target*."""
    data = conn.serialize("main")
    tmp = temp_path(target.parent, ".db")
    try:
        with open(tmp, "wb") as f:
            f.write(data if data is not None else b"")
        publish(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(str(target), e) from e
