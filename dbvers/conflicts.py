"""A merge's conflicts, kept in a private SQLite file until they are resolved (L2).

One table per conflicted user table holds each conflicting row's key, its stored
columns in base, ours and theirs (values exactly as stored: types, BLOBs, text
that isn't UTF-8), the conflict kind and, for constraint conflicts, the constraint.
A view over it has Dolt's ``dolt_conflicts_<table>`` shape, so the DataFrames a
user reads and the ``--where`` a user filters with speak the same column names::

    conflict_id, <key columns>, base_<col>..., our_<col>..., their_<col>...,
    our_diff_type, their_diff_type, conflict, constraint

(the names get ``META_PREFIX`` in front where a user's column already has one).
``our_diff_type``/``their_diff_type`` are ``added``, ``modified``, ``removed``, or
NULL where that side left the row as it was in base.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pandas

from .changes import open_private, quote
from .errors import UsageError
from .frames import rows_frame
from .rowmerge import MergeOutcome, Row, RowConflict, same_row
from .values import param, read_rows


def _diff_type(base: Row | None, side: Row | None) -> str | None:
    if base is None:
        return None if side is None else "added"
    if side is None:
        return "removed"
    return None if same_row(base, side) else "modified"


def write(path: Path, outcome: MergeOutcome) -> None:
    """Write ``outcome``'s conflicts to a new file at ``path`` (through a temp name and a
    rename: a reader sees no conflicts file or a whole one)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by an earlier write that was killed
    conn = open_private(tmp)
    try:
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE meta (n INTEGER PRIMARY KEY, name TEXT UNIQUE, columns TEXT, key TEXT, types TEXT)")
        for n, (name, tm) in enumerate(sorted(outcome.tables.items())):
            if not tm.conflicts:
                continue
            conn.execute("INSERT INTO meta VALUES (?, ?, ?, ?, ?)",
                         (n, name, json.dumps(tm.columns), json.dumps(tm.key), json.dumps(tm.types)))
            _create(conn, n, tm.columns, tm.key)
            for c in tm.conflicts:
                _insert(conn, n, len(tm.columns), len(tm.key), c)
        conn.execute("COMMIT")
    finally:
        conn.close()
    os.replace(tmp, path)


def _names(columns: Sequence[str], key: Sequence[str]) -> list[str]:
    """The data table's own column names: positions, never a user's names (any name works)."""
    return (["kind", "cname", "o_diff", "t_diff"] + [f"k{i}" for i in range(len(key))]
            + [f"{s}{i}" for s in "bot" for i in range(len(columns))] + ["b_has", "o_has", "t_has"])


def _create(conn: apsw.Connection, n: int, columns: Sequence[str], key: Sequence[str]) -> None:
    conn.execute(f"CREATE TABLE rows_{n} (conflict_id INTEGER PRIMARY KEY, {', '.join(_names(columns, key))})")


def _insert(conn: apsw.Connection, n: int, ncols: int, nkey: int, c: RowConflict) -> None:
    def side(row: Row | None) -> list[Any]:
        return list(row) if row is not None else [None] * ncols

    values = [c.kind, c.constraint, _diff_type(c.base, c.ours), _diff_type(c.base, c.theirs),
              *(c.key if nkey else ()), *side(c.base), *side(c.ours), *side(c.theirs),
              c.base is not None, c.ours is not None, c.theirs is not None]
    marks, args = zip(*(param(v) for v in values), strict=True)
    conn.execute(f"INSERT INTO rows_{n} ({', '.join(_names([''] * ncols, [''] * nkey))}) "
                 f"VALUES ({', '.join(marks)})", list(args))


class ConflictFile:
    """Read and shrink a conflicts file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _open(self) -> Iterator[apsw.Connection]:
        conn = open_private(self.path)
        try:
            yield conn
        finally:
            conn.close()

    def _tables(self, conn: apsw.Connection) -> dict[str, tuple[int, list[str], list[str], list[str]]]:
        return {name: (n, json.loads(cols), json.loads(key), json.loads(types))
                for n, name, cols, key, types in conn.execute("SELECT n, name, columns, key, types FROM meta")}

    def _view(self, conn: apsw.Connection, name: str) -> tuple[str, list[str], list[str]]:
        """A temp view of one table's conflicts in Dolt's shape; returns it, its columns, their types."""
        n, cols, key, types = self._tables(conn)[name]
        reserved = {"conflict_id", "our_diff_type", "their_diff_type", "conflict", "constraint"}
        taken = set(key) | {f"{s}_{c}" for s in ("base", "our", "their") for c in cols}
        pre = "dbvers_" if reserved & taken else ""
        out = [f"conflict_id AS {quote(pre + 'conflict_id')}"]
        names, decl = [pre + "conflict_id"], ["INTEGER"]
        for i, k in enumerate(key):
            out.append(f"k{i} AS {quote(k)}")
            names.append(k)
            decl.append(types[cols.index(k)] if k in cols else "")
        for s, label in (("b", "base"), ("o", "our"), ("t", "their")):
            for i, c in enumerate(cols):
                out.append(f"{s}{i} AS {quote(f'{label}_{c}')}")
                names.append(f"{label}_{c}")
                decl.append(types[i])
        for col, label in (("o_diff", "our_diff_type"), ("t_diff", "their_diff_type"),
                           ("kind", "conflict"), ("cname", "constraint")):
            out.append(f"{col} AS {quote(pre + label)}")
            names.append(pre + label)
            decl.append("TEXT")
        conn.execute(f"CREATE TEMP VIEW IF NOT EXISTS v_{n} AS SELECT {', '.join(out)} FROM rows_{n}")
        return f"temp.v_{n}", names, decl

    def counts(self) -> dict[str, int]:
        if not self.path.exists():
            return {}
        with self._open() as conn:
            return {name: conn.execute(f"SELECT count(*) FROM rows_{n}").fetchone()[0]
                    for name, (n, *_rest) in self._tables(conn).items()
                    if conn.execute(f"SELECT 1 FROM rows_{n} LIMIT 1").fetchone()}

    def frames(self, table: str | None = None) -> dict[str, pandas.DataFrame]:
        """Each conflicted table's conflicts as a DataFrame (only ``table``'s when given)."""
        out: dict[str, pandas.DataFrame] = {}
        with self._open() as conn:
            names = sorted(self._tables(conn)) if table is None else [table]
            for name in names:
                if name not in self._tables(conn):
                    raise UsageError(f"table {name!r} has no conflicts; 'dbvers conflicts' lists those that do")
                view, cols, decl = self._view(conn, name)
                rows = read_rows(conn, f"SELECT * FROM {view} ORDER BY 1").fetchall()
                if rows or table is not None:
                    out[name] = rows_frame(cols, rows, decl)
        return out

    def select(self, table: str, where: str | None = None) -> list[RowConflict]:
        """The conflicts of ``table`` that ``where`` (SQL over the DataFrame's columns) picks."""
        with self._open() as conn:
            tables = self._tables(conn)
            if table not in tables:
                raise UsageError(f"table {table!r} has no conflicts; 'dbvers conflicts' lists those that do")
            n, cols, key, _types = tables[table]
            view, names, _ = self._view(conn, table)
            ids = f"SELECT {quote(names[0])} FROM {view}" + (f" WHERE {where}" if where else "")
            try:
                rows = read_rows(conn, f"SELECT * FROM rows_{n} WHERE conflict_id IN ({ids}) ORDER BY 1").fetchall()
            except apsw.SQLError as e:
                raise UsageError(f"--where {where!r} is not a valid condition on the conflicts: {e}") from None
        return [_row_conflict(r, len(cols), len(key)) for r in rows]

    def remove(self, table: str, conflicts: Sequence[RowConflict]) -> None:
        """Forget resolved conflicts (by their conflict ids)."""
        with self._open() as conn:
            n = self._tables(conn)[table][0]
            conn.execute("BEGIN")
            conn.executemany(f"DELETE FROM rows_{n} WHERE conflict_id = ?", [(c.conflict_id,) for c in conflicts])
            conn.execute("COMMIT")

    def columns(self, table: str) -> tuple[list[str], list[str]]:
        """The stored columns and the key columns a table's conflict rows hold."""
        with self._open() as conn:
            _n, cols, key, _types = self._tables(conn)[table]
        return cols, key

    def tables(self) -> list[str]:
        return sorted(self.counts())


def _row_conflict(r: Sequence[Any], ncols: int, nkey: int) -> RowConflict:
    cid, kind, cname = r[0], r[1], r[2]
    k = tuple(r[5:5 + nkey])
    start = 5 + nkey
    b, o, t = (tuple(r[start + i * ncols:start + (i + 1) * ncols]) for i in range(3))
    b_has, o_has, t_has = r[start + 3 * ncols:start + 3 * ncols + 3]
    return RowConflict(kind, k, b if b_has else None, o if o_has else None, t if t_has else None, cname, cid)
