"""SQL that turns one state into another: the statements ``Diff.to_sql`` writes.

Layer L2. Given a connection with both states attached (``rowdiff.OLD`` = the state
the script runs on, ``rowdiff.NEW`` = the state it must reach) and their
``rowdiff.TableSpec`` s:

* :class:`SchemaPlan` — the DDL around the row statements: triggers and views
  dropped first and made again last, changed tables altered (``ALTER TABLE`` when
  it reproduces the new definition exactly) or rebuilt, new indexes,
  ``sqlite_sequence`` and the header pragmas;
* :func:`row_statements` — DELETE / UPDATE / INSERT for ``rowdiff.RowChange`` records;
* :func:`insert_all` — every row of a table (one added or rebuilt).

Identifiers are quoted with ``changes.quote`` and values written with
``values.sql_literal`` (the one quoting and the one literal writer of the package).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import apsw

from . import changes as ch
from .rowdiff import NEW, OLD, RowChange, TableSpec, identical, is_rowid
from .values import param, read_rows, sql_literal


def key_sql(spec: TableSpec, c: str) -> str:
    """Key column *c* as SQL in the table: the rowid's name bare, a real column quoted."""
    return c if is_rowid(spec, c) else ch.quote(c)


def _key_cond(spec: TableSpec, key: tuple[Any, ...]) -> str:
    return " AND ".join(f"{key_sql(spec, k)} IS {sql_literal(v)}" for k, v in zip(spec.key, key, strict=True))


def rowid_of(conn: apsw.Connection, spec: TableSpec, key: tuple[Any, ...], new: str = NEW,
             *, side: str = "b") -> Any:
    """The rowid the row with *key* has in *new*'s table (a rowid table keyed on other columns);
    ``side="a"``: in the old side's table (*new* then names that schema)."""
    params = [param(v) for v in key]
    keys, rowid = (spec.key_b, spec.rowid_b) if side == "b" else (spec.key_a, spec.row_a)
    cond = " AND ".join(f"{k} IS {mark}" for k, (mark, _) in zip(keys, params, strict=True))
    row = conn.execute(f"SELECT {rowid} FROM {ch.quote(new)}.{ch.quote(spec.name)} WHERE {cond}",
                       tuple(v for _, v in params)).fetchone()
    return row[0] if row else None


def _moved_rowid(conn: apsw.Connection, spec: TableSpec, key: tuple[Any, ...], new: str) -> str | None:
    """``rowid = N`` when B gave the modified row with *key* another hidden rowid than A's
    (``INSERT OR REPLACE`` does), so the script leaves it where B has it; else None."""
    if not spec.rowid_b or spec.row_a not in ch.ROWID_NAMES:
        return None
    rb = rowid_of(conn, spec, key, new)
    if rb is None or rb == rowid_of(conn, spec, key, OLD, side="a"):
        return None
    return f"{spec.rowid_b} = {sql_literal(rb)}"


def row_statements(conn: apsw.Connection, spec: TableSpec, changes: Iterable[RowChange],
                   new: str = NEW) -> Iterator[str]:
    """A statement per change that makes the old side's row the new side's (rowids kept
    where the file has them); an update sets only the columns that differ."""
    t = ch.quote(spec.name)
    rowid_key = bool(spec.key) and is_rowid(spec, spec.key[0])
    cols_b = [c for c in spec.columns
              if c in spec.in_b and not is_rowid(spec, c) and c not in spec.generated]
    for change in changes:
        if change.kind == "removed":
            yield f"DELETE FROM {t} WHERE {_key_cond(spec, change.key)};"
            continue
        assert change.new is not None
        n = change.new
        if change.kind == "added":
            names = [key_sql(spec, spec.key[0])] if rowid_key else []
            values = [sql_literal(change.key[0])] if rowid_key else []
            if spec.rowid_b:  # a rowid table with another key: keep B's rowid
                names.append(spec.rowid_b)
                values.append(sql_literal(rowid_of(conn, spec, change.key, new)))
            names += [ch.quote(c) for c in cols_b]
            values += [sql_literal(n[c]) for c in cols_b]
            yield f"INSERT INTO {t}({', '.join(names)}) VALUES ({', '.join(values)});"
            continue
        old = change.old or {}
        # a key column too, when it changed in type or sign only (1 -> 1.0)
        sets = [f"{ch.quote(c)} = {sql_literal(n[c])}" for c in cols_b
                if c not in spec.in_a or not identical(n[c], old.get(c))]
        if (moved := _moved_rowid(conn, spec, change.key, new)) is not None:
            sets.insert(0, moved)
        if sets:
            yield f"UPDATE {t} SET {', '.join(sets)} WHERE {_key_cond(spec, change.key)};"


def insert_all(conn: apsw.Connection, spec: TableSpec, new: str = NEW) -> Iterator[str]:
    """Every row of *new*'s table (a table it added, or one rebuilt from its definition)."""
    t = ch.quote(spec.name)
    cols = [c for c in spec.columns if c in spec.in_b and c not in spec.generated]
    rid = spec.rowid_b or (spec.key_b[0] if spec.key_b and is_rowid(spec, spec.key[0]) else None)
    names = ([rid] if rid else []) + [ch.quote(c) for c in cols]
    head = f"INSERT INTO {t}({', '.join(names)}) VALUES ("
    for row in read_rows(conn, f"SELECT {', '.join(names)} FROM {ch.quote(new)}.{t}"):
        yield head + ", ".join(map(sql_literal, row)) + ");"


def schema_rows(conn: apsw.Connection, db: str) -> list[tuple[str, str, str, str | None]]:
    """sqlite_schema in creation order (views and triggers are made again in it), internals left out."""
    rows = conn.execute(f"SELECT type, name, tbl_name, sql FROM {ch.quote(db)}.sqlite_schema ORDER BY rowid")
    return [r for r in rows if r[3] is not None and not r[1].startswith("sqlite_")]


class SchemaPlan:
    """The DDL around the row statements of a script from *old* to *new* (``Diff.to_sql``):
    ``pre`` runs before the rows, ``post`` after; ``rebuilt`` tables are dropped and made
    again from the new definition (their rows: ``insert_all``)."""

    def __init__(self, conn: apsw.Connection, specs: Mapping[str, TableSpec], old: str = OLD,
                 new: str = NEW) -> None:
        self.pre: list[str] = []
        self.post: list[str] = []
        self.rebuilt: set[str] = set()
        a, b = schema_rows(conn, old), schema_rows(conn, new)
        tables_a, tables_b = ch.classify_tables(conn, old).tracked, ch.classify_tables(conn, new).tracked
        a_by, b_by = {r[1]: r for r in a}, {r[1]: r for r in b}
        q = ch.quote
        for kind, name, _tbl, _sql in a:
            if kind in ("trigger", "view"):
                self.pre.append(f"DROP {kind.upper()} {q(name)};")
        for kind, name, _tbl, sql in a:
            if kind == "index" and sql and (name not in b_by or b_by[name][3] != sql):
                self.pre.append(f"DROP INDEX {q(name)};")
        for name in tables_a.keys() - tables_b.keys():
            self.pre.append(f"DROP TABLE {q(name)};")
        for name in sorted(tables_a.keys() & tables_b.keys()):
            if a_by[name][3] != b_by[name][3]:
                self._change_table(conn, specs[name], a_by[name][3], b_by[name][3], new)
        for kind, name, _tbl, sql in b:
            if kind == "table" and name in tables_b and name not in tables_a:
                self.pre.append(sql + ";")
        for kind, name, tbl, sql in b:
            if kind == "index" and sql and (name not in a_by or a_by[name][3] != sql or tbl in self.rebuilt):
                self.post.append(sql + ";")
        for kind, _name, _tbl, sql in b:
            if kind in ("view", "trigger"):
                self.post.append(sql + ";")
        self._sequences_and_pragmas(conn, old, new)

    def _change_table(self, conn: apsw.Connection, spec: TableSpec, sql_a: str, sql_b: str, new: str) -> None:
        """Alter a table whose definition changed, or rebuild it."""
        q, name = ch.quote, spec.name
        alters = None if spec.key_changed else alter_plan(sql_a, sql_b, name, spec)
        if alters is None:
            self.rebuilt.add(name)
            self.pre += [f"DROP TABLE {q(name)};", sql_b + ";"]
            return
        self.pre += alters
        # ADD COLUMN fills the column's DEFAULT; the rows follow the diff, where a
        # new column is NULL on A's side (rows whose value isn't NULL get it set).
        for _cid, col, _t, notnull, dflt, _pk, hidden in conn.execute(f"PRAGMA {q(new)}.table_xinfo({q(name)})"):
            if col in spec.in_b and col not in spec.in_a and dflt is not None and not notnull and not hidden:
                self.pre.append(f"UPDATE {q(name)} SET {q(col)} = NULL;")

    def _sequences_and_pragmas(self, conn: apsw.Connection, old: str, new: str) -> None:
        seq_a, seq_b = ch.read_sequences(conn, old), ch.read_sequences(conn, new)
        if seq_a != seq_b and conn.execute(
            f"SELECT 1 FROM {ch.quote(new)}.sqlite_schema WHERE name = 'sqlite_sequence'"
        ).fetchone():
            self.post.append("DELETE FROM sqlite_sequence;")
            self.post += [f"INSERT INTO sqlite_sequence(rowid, name, seq) VALUES ({r}, {sql_literal(n)}, {s});"
                          for r, n, s in seq_b]
        pa, pb = ch.read_pragmas(conn, old), ch.read_pragmas(conn, new)
        self.post += [f"PRAGMA {k} = {int(v)};" for k, v in pb.items() if pa.get(k) != v]


def alter_plan(sql_a: str, sql_b: str, name: str, spec: TableSpec) -> list[str] | None:
    """ALTER TABLE statements that turn *sql_a* into exactly *sql_b*, or None (rebuild the table).

    A renamed column is renamed, columns B lacks are dropped, then B's new columns
    added with their definitions as written in *sql_b*; the result is checked on
    an in-memory table.
    """
    forms: list[Callable[[str], str]] = [lambda n: n, ch.quote] if spec.renamed else [ch.quote]
    for form in forms:
        stmts = _try_alter(sql_a, sql_b, name, spec, form)
        if stmts is not None:
            return stmts
    return None


def _added_defs(base: str, sql_b: str, added: list[str]) -> list[str] | None:
    """The column definitions *sql_b* has beyond *base*: ADD COLUMN inserts ", <definitions>"
    at one place of the CREATE statement."""
    n = len(sql_b) - len(base)
    p = 0
    while p < min(len(base), len(sql_b)) and base[p] == sql_b[p]:
        p += 1
    while p >= 0 and not (sql_b[p: p + n].startswith(", ") and sql_b[p + n:] == base[p:]):
        p -= 1
    if p < 0 or n <= 2:
        return None
    return _split_defs(sql_b[p + 2: p + n], added)


def _try_alter(sql_a: str, sql_b: str, name: str, spec: TableSpec,
               form: Callable[[str], str]) -> list[str] | None:
    dropped = [c for c in spec.columns if c in spec.in_a and c not in spec.in_b]
    added = [c for c in spec.columns if c in spec.in_b and c not in spec.in_a]
    t = ch.quote(name)
    conn = apsw.Connection(":memory:")
    try:
        conn.execute(sql_a)
        stmts = [f"ALTER TABLE {t} RENAME COLUMN {ch.quote(old)} TO {form(new)};"
                 for new, old in spec.renamed.items()]
        stmts += [f"ALTER TABLE {t} DROP COLUMN {spec.a_col(c)};" for c in dropped]
        for s in stmts:
            conn.execute(s)
        base = conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (name,)).fetchone()[0]
        if added:
            defs = _added_defs(base, sql_b, added)
            if defs is None:
                return None
            for d in defs:
                s = f"ALTER TABLE {t} ADD COLUMN {d};"
                conn.execute(s)
                stmts.append(s)
        final = conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (name,)).fetchone()[0]
        return stmts if final == sql_b else None
    except apsw.Error:
        return None
    finally:
        conn.close()


def _split_defs(text: str, names: list[str]) -> list[str] | None:
    """Split ``def1, def2, ...`` into one column definition per name (each starts with its name)."""
    if len(names) == 1:
        return [text]
    nxt = names[1]
    forms = (nxt, ch.quote(nxt), f"[{nxt}]", f"`{nxt}`", "'" + nxt.replace("'", "''") + "'")
    i = text.find(", ")
    while i != -1:
        rest = text[i + 2:]
        if any(rest.startswith(f) and (len(rest) == len(f) or not (rest[len(f)].isalnum() or rest[len(f)] == "_"))
               for f in forms):
            tail = _split_defs(rest, names[1:])
            if tail is not None:
                return [text[:i], *tail]
        i = text.find(", ", i + 1)
    return None


__all__ = ["SchemaPlan", "alter_plan", "insert_all", "key_sql", "row_statements", "rowid_of", "schema_rows"]
