"""Replaying stored patchsets onto a private state (materialization's inner step).

Each patch applies in order, in one transaction, followed by the hidden rowids it would get wrong
(:class:`~dbvers.objects.RowidFixups`); :func:`restore_extras` then sets what patchsets don't
carry (the header pragmas, ``sqlite_sequence``). A patch that doesn't fit its parent state means
the store is inconsistent: a :class:`~dbvers.errors.CorruptObjectError`, never skipped.

L2: imports tables and L0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Protocol

import apsw

from .errors import CorruptObjectError
from .objects import RowidFixups
from .tables import classify_tables
from .values import quote


def restore_rowids(conn: apsw.Connection, fixups: RowidFixups, oid: str) -> None:
    """Move each listed row to its recorded rowid: first all of them out of the way (below
    the smallest rowid, or above the largest), then each to its place, so no two collide."""
    tracked = classify_tables(conn, "main").tracked
    for name, (cols, rows) in fixups.tables.items():
        info = tracked.get(name)
        if info is None or info.rowid_name in info.columns:
            raise CorruptObjectError(oid, f"rowids recorded for {name}, which has no hidden rowid")
        rid, t, n = info.rowid_name, quote(name), len(rows)
        lo = conn.execute(f"SELECT min({rid}) FROM main.{t}").fetchone()[0]
        hi = conn.execute(f"SELECT max({rid}) FROM main.{t}").fetchone()[0]
        if lo is None:
            raise CorruptObjectError(oid, f"rowids recorded for rows of {name}, which is empty")
        if lo - n >= -(2**63):
            start = lo - n
        elif hi + n <= 2**63 - 1:
            start = hi + 1
        else:
            raise CorruptObjectError(oid, f"no room to renumber rows of {name}")
        where = " AND ".join(f"{quote(c)} IS ?" for c in cols)
        sql = f"UPDATE main.{t} SET {rid} = ? WHERE {where}"
        before = conn.total_changes()
        conn.executemany(sql, [(start + i, *row[1:]) for i, row in enumerate(rows)])
        if conn.total_changes() - before != n:
            raise CorruptObjectError(oid, f"recorded rowids name rows of {name} the state lacks")
        # A row the replay left at a recorded rowid had already lost its own (a VACUUM or
        # an UPDATE of the rowid, which no patchset carries): it moves to a free rowid,
        # its values untouched, rather than the replay failing.
        taken = [r for (r,) in conn.execute(
            f"SELECT {rid} FROM main.{t} WHERE {rid} IN (SELECT value FROM json_each(?))",
            (json.dumps([row[0] for row in rows]),))]
        for r in taken:
            top = conn.execute(f"SELECT max({rid}) FROM main.{t}").fetchone()[0]
            free = top + 1 if top < 2**63 - 1 else conn.execute(f"SELECT min({rid}) FROM main.{t}").fetchone()[0] - 1
            conn.execute(f"UPDATE main.{t} SET {rid} = ? WHERE {rid} = ?", (free, r))
        conn.executemany(sql, [(row[0], *row[1:]) for row in rows])



class PatchReader(Protocol):
    """A patch object's body as a stream that verifies itself (``storage.base.BodyReader``)."""

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


def apply_patchsets(conn: apsw.Connection,
                    patchsets: Iterable[tuple[str, bytes | PatchReader, RowidFixups | None]]) -> None:
    """Apply (id, patchset, rowid fixups) in order, in one transaction.

    A patchset is bytes or a reader: SQLite then pulls it in small pieces, so a
    patch never has to fit in memory. The reader verifies the object's hash as the
    end is reached (and is drained here to make sure it is), so a damaged patch
    raises its CorruptObjectError and everything applied is rolled back.

    Any conflict means the store is inconsistent (a patch that doesn't fit its
    parent state), so it is reported as a corrupt object, never skipped.
    """
    conflicts: list[str] = []

    def on_conflict(reason: int, change: apsw.TableChange) -> int:
        conflicts.append(f"{change.op} on {change.name}")
        return apsw.SQLITE_CHANGESET_ABORT

    conn.execute("BEGIN")
    oid = ""
    try:
        for oid, ps, fixups in patchsets:  # oid names the failing patch below
            try:
                apsw.Changeset.apply(
                    ps if isinstance(ps, bytes) else ps.read, conn, conflict=on_conflict,
                    flags=apsw.SQLITE_CHANGESETAPPLY_NOSAVEPOINT
                )
                if not isinstance(ps, bytes):
                    while ps.read(1 << 20):  # SQLite stopped early: the rest is still verified
                        pass
            finally:
                if (close := getattr(ps, "close", None)) is not None:
                    close()
            if fixups is not None:
                restore_rowids(conn, fixups, oid)
    except CorruptObjectError:
        conn.execute("ROLLBACK")
        raise
    except apsw.Error as e:
        conn.execute("ROLLBACK")
        what = conflicts[0] if conflicts else str(e)
        raise CorruptObjectError(oid, f"patch does not apply to its parent state: {what}") from None
    conn.execute("COMMIT")


def restore_extras(
    conn: apsw.Connection, pragmas: dict[str, int], sequences: tuple[tuple[int, str, int], ...]
) -> None:
    """Set what patchsets don't carry: the header pragmas and sqlite_sequence."""
    with conn:
        if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").fetchone():
            conn.execute("DELETE FROM sqlite_sequence")
            conn.executemany(
                "INSERT INTO sqlite_sequence(rowid, name, seq) VALUES (?, ?, ?)", sequences
            )
        for name in ("user_version", "application_id"):
            if name in pragmas:
                conn.execute(f"PRAGMA {name} = {int(pragmas[name])}")
