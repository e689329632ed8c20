"""apsw connections on dbvers's own private files (temp copies, the base cache, materializations,
snapshots): the other side of the two-library rule from :mod:`dbvers.sqlio`, which alone opens the
user's database, with the standard library's sqlite3 (DESIGN.md section 2).

L1: imports only dbvers.values.
"""

from __future__ import annotations

from pathlib import Path

import apsw

from .values import quote


def open_private(path: Path | str) -> apsw.Connection:
    """Open one of dbvers's own files with apsw, triggers and foreign keys off.

    Replaying a patchset must not fire triggers: their effects are already in
    the patchset, and firing them again would duplicate rows.
    """
    conn = apsw.Connection(str(path))
    conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 0)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.set_busy_timeout(10_000)
    _tune(conn, "main")
    return conn


def _tune(conn: apsw.Connection, schema: str) -> None:
    # Diffing two large states is page-bound: a big page cache and memory-mapped
    # reads cut Session.diff's time by about a quarter at 1M rows. Both are limits
    # (pages are used only as needed) and these files are private.
    conn.execute(f"PRAGMA {quote(schema)}.cache_size = -262144")
    conn.execute(f"PRAGMA {quote(schema)}.mmap_size = 1073741824")


def attach(conn: apsw.Connection, path: Path | str, name: str = "base") -> None:
    conn.execute(f"ATTACH ? AS {quote(name)}", (str(path),))
    _tune(conn, name)


def detach(conn: apsw.Connection, name: str = "base") -> None:
    conn.execute(f"DETACH {quote(name)}")
