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
