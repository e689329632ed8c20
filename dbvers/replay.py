"""Replaying stored patchsets onto a private state (materialization's inner step).

Each patch applies in order, in one transaction, followed by the hidden rowids it would get wrong
(:class:`~dbvers.objects.RowidFixups`, streamed by :class:`~dbvers.rowidstream.RowidStream`);
:func:`restore_extras` then sets what patchsets don't carry (the header pragmas,
``sqlite_sequence``). A patch that doesn't fit its parent state means the store is
inconsistent: a :class:`~dbvers.errors.CorruptObjectError`, never skipped.

L2: imports tables and L0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import apsw

from .errors import CorruptObjectError
from .rowidstream import RowidStream
from .tables import classify_tables
from .values import quote


def restore_rowids(conn: apsw.Connection, fixups: RowidStream) -> None:
    """Move each listed row to its recorded rowid: first all of them out of the way (below
    the smallest rowid, or above the largest), then each to its place, so no two collide.

    The rows stream into a temporary table (SQLite's temp store is a file: memory stays
    bounded whatever the object's size); a table listing more rows than it holds is refused
    as they are read, so a crafted object costs no more than the state it names.
    """
    oid = fixups.oid
    tracked = classify_tables(conn, "main").tracked
    for name, cols, rows in fixups.tables():
        info = tracked.get(name)
        if info is None or info.rowid_name in info.columns:
            raise CorruptObjectError(oid, f"rowids recorded for {name}, which has no hidden rowid")
        rid, t = info.rowid_name, quote(name)
        # Two queries: SQLite reads a lone min() or max() from one end of the b-tree, but
        # scans the whole table for both in one SELECT (32 ms per replayed commit for a 300,000-row
        # table, the benchmark's `inventory` at 1M rows in all).
        lo = conn.execute(f"SELECT min({rid}) FROM main.{t}").fetchone()[0]
        hi = conn.execute(f"SELECT max({rid}) FROM main.{t}").fetchone()[0]
        if lo is None:
            raise CorruptObjectError(oid, f"rowids recorded for rows of {name}, which is empty")
        ks = [f"k{i}" for i in range(len(cols))]
        conn.execute(f"CREATE TEMP TABLE dbvers_rowids(i INTEGER PRIMARY KEY, r, {', '.join(ks)})")
        try:
            n = _load_rows(conn, rows, lambda t=t: _row_count(conn, t), hi - lo + 1, len(ks), CorruptObjectError(
                oid, f"recorded rowids name more rows of {name} than the state holds"))
            # Rows the replay already put at their recorded rowid (the common case: inserts
            # numbered as the user's database numbered them) stay where they are.
            on = " AND ".join(f"n.{quote(c)} IS r.{k}" for c, k in zip(cols, ks, strict=True))
            conn.execute(f"DELETE FROM temp.dbvers_rowids AS r WHERE EXISTS (SELECT 1 FROM main.{t} AS n "
                         f"WHERE n.{rid} = r.r AND {on})")  # a rowid lookup per listed row
            moving = n - conn.changes()
            if moving:
                _move_rows(conn, oid, name, rid, cols, ks, lo - n if lo - n >= -(2**63) else hi + 1, n, moving)
        finally:
            conn.execute("DROP TABLE temp.dbvers_rowids")


def _row_count(conn: apsw.Connection, t: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM main.{t}").fetchone()[0])


#: Rows loaded before the exact row count is taken (a full scan of the table: only worth it
#: for a large listing; below this, the rowid range bounds it, read from the index).
EXACT_COUNT_AFTER = 1 << 16


def _load_rows(conn: apsw.Connection, rows: Iterable[tuple[Any, ...]], count: Callable[[], int],
               span: int, nkeys: int, too_many: CorruptObjectError) -> int:
    """Insert *rows* into temp.dbvers_rowids as (i, rowid, keys...); how many.

    A table can't list more rows than it holds: at most *span* (its rowid range, which is
    at least its row count) and, once a listing is large, at most *count()* exactly.
    """
    n = 0
    bound = span

    def numbered() -> Iterator[tuple[Any, ...]]:
        nonlocal n, bound
        for row in rows:
            if n == EXACT_COUNT_AFTER:
                bound = min(bound, count())
            if n >= bound:
                raise too_many
            yield (n, *row)
            n += 1

    conn.executemany(f"INSERT INTO temp.dbvers_rowids VALUES (?, ?{', ?' * nkeys})", numbered())
    return n


def _move_rows(conn: apsw.Connection, oid: str, name: str, rid: str, cols: tuple[str, ...],
               ks: list[str], start: int, n: int, moving: int) -> None:
    """Listed rows to start.. (by key), the rows at recorded rowids to free ones, listed rows home.

    *n*: how many rows were listed (start..start+n-1 is free); *moving*: how many of them
    are still in temp.dbvers_rowids (not yet at their rowid)."""
    t = quote(name)
    if start + n - 1 > 2**63 - 1:  # neither below the smallest nor above the largest
        raise CorruptObjectError(oid, f"no room to renumber rows of {name}")
    where = " AND ".join(f"{quote(c)} IS ?" for c in cols)
    sql = f"UPDATE main.{t} SET {rid} = ? WHERE {where}"
    keys = ", ".join(ks)
    before = conn.total_changes()
    conn.executemany(sql, conn.execute(f"SELECT ? + i, {keys} FROM temp.dbvers_rowids ORDER BY i", (start,)))
    if conn.total_changes() - before != moving:
        raise CorruptObjectError(oid, f"recorded rowids name rows of {name} the state lacks")
    # A row the replay left at a recorded rowid had already lost its own (a VACUUM or
    # an UPDATE of the rowid, which no patchset carries): it moves to a free rowid,
    # its values untouched, rather than the replay failing.
    conn.execute(f"CREATE TEMP TABLE dbvers_taken AS SELECT {rid} AS r FROM main.{t} "
                 f"WHERE {rid} IN (SELECT r FROM temp.dbvers_rowids) ORDER BY {rid}")
    try:
        for (r,) in conn.execute("SELECT r FROM temp.dbvers_taken ORDER BY rowid"):
            top = conn.execute(f"SELECT max({rid}) FROM main.{t}").fetchone()[0]
            free = top + 1 if top < 2**63 - 1 else conn.execute(f"SELECT min({rid}) FROM main.{t}").fetchone()[0] - 1
            conn.execute(f"UPDATE main.{t} SET {rid} = ? WHERE {rid} = ?", (free, r))
    finally:
        conn.execute("DROP TABLE temp.dbvers_taken")
    conn.executemany(sql, conn.execute(f"SELECT r, {keys} FROM temp.dbvers_rowids ORDER BY i"))


class PatchReader(Protocol):
    """A patch object's body as a stream that verifies itself (``storage.base.BodyReader``)."""

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


def iter_changes(oid: str, patch: PatchReader) -> Iterator[apsw.TableChange]:
    """The changes of stored patch *oid*, read as a stream (never whole in memory), then the
    rest of it read, so the end's hash check runs; unparsable bytes are a CorruptObjectError."""
    try:
        yield from apsw.Changeset.iter(patch.read)
        while patch.read(1 << 20):
            pass
    except apsw.Error as e:
        raise CorruptObjectError(oid, f"patch unreadable: {e}") from None
    finally:
        patch.close()


def apply_patchsets(conn: apsw.Connection,
                    patchsets: Iterable[tuple[str, bytes | PatchReader, RowidStream | None]]) -> None:
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
        for oid, ps, fixups in patchsets:  # noqa: B007 - oid names the failing patch below
            try:
                apsw.Changeset.apply(
                    ps if isinstance(ps, bytes) else ps.read, conn, conflict=on_conflict,
                    flags=apsw.SQLITE_CHANGESETAPPLY_NOSAVEPOINT
                )
                if not isinstance(ps, bytes):
                    while ps.read(1 << 20):  # SQLite stopped early: the rest is still verified
                        pass
                if fixups is not None:
                    restore_rowids(conn, fixups)
            finally:
                if (close := getattr(ps, "close", None)) is not None:
                    close()
                if fixups is not None:
                    fixups.close()
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
