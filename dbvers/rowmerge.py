"""Three-way, cell-level merge of two states of a database against their base (L2).

``merge_states(out, base, theirs)`` takes a private file ``out`` holding *ours* and
changes it, in one transaction, into the merge of ours and theirs against base,
Dolt's way:

* Rows of keyed tables are matched by primary key and merged per cell: a row
  changed on one side takes that side; the same change on both sides is taken
  once; changes to *different* columns of one row both apply; the same column
  changed to different values, delete against modify, and an insert of the same
  key with different values are conflicts. Values compare with their SQLite type
  (``1``, ``1.0`` and ``'1'`` differ; so do ``0.0`` and ``-0.0``).
* Tables without a primary key (and keyed tables holding NULL keys, which SQLite
  allows and which identify nothing) are bags of rows matched by all their values:
  a row's count in the result is ``ours + theirs - base`` (never below zero), so
  appends on both sides never conflict and a row both sides deleted is deleted once.
* A conflicting row keeps *ours* in ``out`` (Dolt's working-set rule); after the
  data merge, UNIQUE, NOT NULL, CHECK and foreign-key violations caused by
  theirs' changes are conflicts of their own kind, and the row goes back to ours.
* Schema: a table, column, index, trigger or view added or changed on one side
  comes through (a table with its values); the same change on both sides is fine;
  anything incompatible raises :class:`~dbvers.errors.MergeSchemaError` naming each
  clash, before ``out`` is touched.

Only theirs' changes are computed against the base (one keyed comparison of two
states, the cost of ``sqldiff``); ours' rows are looked at only where theirs
changed something. Triggers don't fire (``open_private`` disables them): theirs'
rows already hold their triggers' effects.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from .changes import (
    TableInfo,
    affinity,
    attach,
    classify_tables,
    detach,
    is_stats_table,
    open_private,
    quote,
)
from .errors import MergeSchemaError
from .values import param, read_rows

#: The kinds of conflict, as the conflicts DataFrame names them.
KINDS = ("data", "delete-modify", "insert-insert", "constraint", "schema")

Row = tuple[Any, ...]


@dataclass(frozen=True)
class RowConflict:
    """One conflicting row: its key and its stored columns in base, ours and theirs
    (``None`` where the row doesn't exist on that side)."""

    kind: str
    key: Row
    base: Row | None
    ours: Row | None
    theirs: Row | None
    constraint: str | None = None
    conflict_id: int | None = None  # its id in a conflicts file, once stored there


@dataclass
class TableMerge:
    """What the merge did to one table."""

    table: str
    columns: tuple[str, ...]  # the stored columns, in the order of RowConflict's rows
    key: tuple[str, ...]  # the key columns; empty for a table merged as a bag of rows
    types: tuple[str, ...] = ()  # the columns' declared types
    conflicts: list[RowConflict] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    # (base, ours, theirs) rows of the keys theirs' changes were written to: a constraint
    # theirs' change breaks puts ours' row back from here.
    touched: dict[Row, tuple[Row | None, Row | None, Row | None]] = field(default_factory=dict, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


@dataclass
class MergeOutcome:
    tables: dict[str, TableMerge] = field(default_factory=dict)
    schema_taken: list[str] = field(default_factory=list)  # objects taken from theirs' schema

    @property
    def conflict_counts(self) -> dict[str, int]:
        return {t: len(m.conflicts) for t, m in self.tables.items() if m.conflicts}

    @property
    def changed(self) -> bool:
        return bool(self.schema_taken) or any(m.changed for m in self.tables.values())


# -- comparing values -------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """SQLite's identity of two values: equal, of the same type, and 0.0 is not -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def same_row(a: Row | None, b: Row | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


# -- the schema plan ----------------------------------------------------------


@dataclass
class _Entry:
    type: str
    name: str
    tbl_name: str
    sql: str | None


def _schema(conn: apsw.Connection, db: str) -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    for kind, name, tbl, sql in conn.execute(
        f"SELECT type, name, tbl_name, sql FROM {quote(db)}.sqlite_schema"
    ):
        if name.startswith("sqlite_") or is_stats_table(tbl):
            continue  # internal objects, autoindexes and planner statistics
        out[name] = _Entry(kind, name, tbl, sql)
    return out


@dataclass
class Plan:
    """How each table is merged, decided before anything is written."""

    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # table -> (base src, theirs src)
    take: list[str] = field(default_factory=list)  # tables theirs added: copied whole
    drop: list[str] = field(default_factory=list)  # tables theirs dropped, unchanged by ours
    rebuild: list[str] = field(default_factory=list)  # ours' rows moved into theirs' new schema
    conform: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # source -> [(table, schema of)]
    objects: dict[str, tuple[_Entry | None, _Entry | None]] = field(default_factory=dict)  # name -> (now, wanted)


class _Planner:
    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.b, self.o, self.t = (_schema(conn, db) for db in ("base", "main", "theirs"))
        self.sets = {db: classify_tables(conn, db) for db in ("base", "main", "theirs")}
        self.clashes: list[tuple[str, str]] = []
        self.plan = Plan()

    def sql(self, side: dict[str, _Entry], name: str) -> str | None:
        e = side.get(name)
        return e.sql if e else None

    def run(self) -> Plan:
        tables = {n for side in (self.b, self.o, self.t) for n, e in side.items() if e.type == "table"}
        for name in sorted(tables):
            self.table(name)
        self.others()
        if self.clashes:
            raise MergeSchemaError(self.clashes)
        return self.plan

    def table(self, name: str) -> None:
        b, o, t = (self.sql(s, name) for s in (self.b, self.o, self.t))
        if b == o == t and any(name in self.sets[db].opaque for db in ("main", "theirs")):
            self.shadow(name)
        elif o == t:
            if o is not None and self.keyed_or_bag(name):
                self.rows(name, base_src="base" if b == o else self.conformed("base", name, "main"))
        elif t == b:  # only ours changed this table's schema
            if o is None:
                if self.data_differs("theirs", name):
                    self.clash(name, "dropped on our side, changed on theirs")
            elif self.keyed_or_bag(name) and self.drops_ok(name, dropped_by="main", other="theirs"):
                self.rows(name, base_src=self.conformed("base", name, "main"),
                          theirs_src=self.conformed("theirs", name, "main"))
        elif o == b:  # only theirs changed it
            if t is None:
                if self.data_differs("main", name):
                    self.clash(name, "dropped on their side, changed on ours")
                else:
                    self.plan.drop.append(name)
            elif b is None:
                self.plan.take.append(name)
            elif self.keyed_or_bag(name) and self.drops_ok(name, dropped_by="theirs", other="main"):
                self.plan.rebuild.append(name)
                self.conformed("main", name, "theirs")
                self.rows(name, base_src=self.conformed("base", name, "theirs"))
        else:
            what = "added with different definitions" if b is None else "changed differently on both sides"
            self.clash(name, f"schema {what}")

    def keyed_or_bag(self, name: str) -> bool:
        # A virtual table's rows live in its shadow tables, merged by ``shadow``.
        return any(name in self.sets[db].tracked for db in ("main", "theirs"))

    def shadow(self, name: str) -> None:
        """A virtual table's shadow table holds an index, not rows a user wrote: it can't be
        merged cell by cell, only taken whole from the one side that changed it."""
        if self.data_differs("theirs", name):
            if self.data_differs("main", name):
                self.clash(name, "virtual table data changed on both sides")
            else:
                self.plan.take.append(name)

    def rows(self, name: str, *, base_src: str, theirs_src: str = "theirs") -> None:
        if name in self.b or base_src != "base":
            self.plan.rows[name] = (base_src, theirs_src)
        else:
            self.plan.rows[name] = ("", theirs_src)  # both added the same table: an empty base

    def conformed(self, src: str, name: str, shape_of: str) -> str:
        """The name of the private database that will hold ``src``'s rows of ``name`` in
        ``shape_of``'s schema (filled by ``conform`` when the plan runs)."""
        if self.pk(src, name) != self.pk(shape_of, name) and self.has(src, name):
            self.clash(name, "primary key changed")
        self.plan.conform.setdefault(src, []).append((name, shape_of))
        return "conf_" + src

    def has(self, db: str, name: str) -> bool:
        return name in self.sets[db].tracked or name in self.sets[db].opaque

    def info(self, db: str, name: str) -> TableInfo | None:
        s = self.sets[db]
        return s.tracked.get(name) or s.opaque.get(name)

    def pk(self, db: str, name: str) -> tuple[str, ...]:
        info = self.info(db, name)
        return info.pk if info else ()

    def drops_ok(self, name: str, *, dropped_by: str, other: str) -> bool:
        """A column one side dropped must not hold changes from the other side."""
        base, new = self.info("base", name), self.info(dropped_by, name)
        if base is None or new is None:
            return True
        gone = [c for c in base.columns if c not in new.columns and c not in base.generated]
        if gone and self.data_differs(other, name, columns=gone):
            self.clash(name, f"column {', '.join(gone)} dropped on one side, changed on the other")
            return False
        return True

    def data_differs(self, db: str, name: str, columns: Sequence[str] | None = None) -> bool:
        base, new = self.info("base", name), self.info(db, name)
        if base is None or new is None:
            return (base is None) != (new is None)
        cols = [quote(c) for c in (columns or [c for c in base.columns if c in new.columns
                                                 and c not in base.generated])]
        if not cols:
            return False
        key = [quote(c) for c in base.pk] or [base.rowid_name]
        sel = ", ".join(key + cols)
        t = quote(name)
        for a, b in ((db, "base"), ("base", db)):
            q = f"SELECT {sel} FROM {quote(a)}.{t} EXCEPT SELECT {sel} FROM {quote(b)}.{t} LIMIT 1"
            if self.conn.execute(q).fetchone() is not None:
                return True
        return False

    def others(self) -> None:
        """Indexes, triggers and views: three-way on their SQL, by name."""
        names = {n for side in (self.b, self.o, self.t) for n, e in side.items() if e.type != "table"}
        rebuilt = set(self.plan.rebuild) | set(self.plan.take)
        for name in sorted(names):
            b, o, t = (s.get(name) for s in (self.b, self.o, self.t))
            bs, os_, ts = (e.sql if e else None for e in (b, o, t))
            if os_ == ts or ts == bs:
                wanted = o
            elif os_ == bs:
                wanted = t
            else:
                self.clash(name, f"{(o or t or b).type} changed differently on both sides")  # type: ignore[union-attr]
                continue
            on = (wanted or o or t or b).tbl_name  # type: ignore[union-attr]
            if wanted is not o or (on in rebuilt and wanted is not None):
                self.plan.objects[name] = (o, wanted)

    def clash(self, name: str, what: str) -> None:
        self.clashes.append((name, what))


# -- running the plan -----------------------------------------------------------


def merge_states(out: Path, base: Path, theirs: Path) -> MergeOutcome:
    """Turn ``out`` (a private copy of ours) into the merge of ours and ``theirs`` against
    ``base``. Raises MergeSchemaError, leaving ``out`` as it was, when the schemas clash."""
    conn = open_private(out)
    try:
        attach(conn, base, "base")
        attach(conn, theirs, "theirs")
        plan = _Planner(conn).run()
        with _conformed(conn, plan, out.parent) as _:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("BEGIN")
            try:
                outcome = _apply(conn, plan)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return outcome
    finally:
        conn.close()


@contextlib.contextmanager
def _conformed(conn: apsw.Connection, plan: Plan, where: Path) -> Iterator[None]:
    """Private databases holding a side's rows in another side's schema of the same table:
    the comparisons then see one shape (a column added reads as its default)."""
    made: list[tuple[str, str]] = []
    try:
        for src, tables in sorted(plan.conform.items()):
            fd, tmp = tempfile.mkstemp(prefix=".tmp-merge-", suffix=".db", dir=where)
            os.close(fd)
            made.append(("conf_" + src, tmp))
            side = open_private(tmp)
            try:
                attach(side, _file_of(conn, src), "src")
                for table, shape_of in tables:
                    _conform_one(conn, side, src, table, shape_of)
            finally:
                side.close()
            attach(conn, tmp, "conf_" + src)
        yield
    finally:
        for schema, tmp in made:
            with contextlib.suppress(apsw.Error):
                detach(conn, schema)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _file_of(conn: apsw.Connection, db: str) -> str:
    return conn.db_filename(db)


def _conform_one(conn: apsw.Connection, side: apsw.Connection, src: str, table: str, shape_of: str) -> None:
    sql = conn.execute(
        f"SELECT sql FROM {quote(shape_of)}.sqlite_schema WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()[0]
    side.execute(sql)
    target = _stored(classify_tables(side).tracked[table])
    have = classify_tables(conn, src).tracked.get(table)
    if have is None:
        return  # the source side has no such table: conformed, it is empty
    common = [c for c in target if c in have.columns and c not in have.generated]
    rowid = [] if have.without_rowid or not common else [have.rowid_name]
    cols = ", ".join(quote(c) for c in rowid + common)
    side.execute(f"INSERT INTO main.{quote(table)} ({cols}) SELECT {cols} FROM src.{quote(table)}")


def _stored(info: TableInfo) -> tuple[str, ...]:
    """The columns a merge reads and writes: generated ones are SQLite's to compute."""
    return tuple(c for c in info.columns if c not in info.generated)


def _apply(conn: apsw.Connection, plan: Plan) -> MergeOutcome:
    outcome = MergeOutcome()
    fk_before = _fk_violations(conn)
    for name in plan.drop:
        conn.execute(f"DROP TABLE IF EXISTS main.{quote(name)}")  # a virtual table took its shadows
        outcome.schema_taken.append(name)
    for name in plan.take:
        _take_table(conn, name)
        outcome.schema_taken.append(name)
    for name in plan.rebuild:
        _rebuild(conn, name)
        outcome.schema_taken.append(name)
    for name, (base_src, theirs_src) in sorted(plan.rows.items()):
        tm = _merge_rows(conn, name, base_src, theirs_src)
        if tm is not None:
            outcome.tables[name] = tm
    _apply_objects(conn, plan, outcome)
    _constraint_conflicts(conn, outcome, fk_before)
    _merge_sequences(conn)
    return outcome


def _take_table(conn: apsw.Connection, name: str) -> None:
    """Theirs' table, rows included (a shadow table a virtual table made is emptied first)."""
    if conn.execute("SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone():
        conn.execute(f"DELETE FROM main.{quote(name)}")
    else:
        sql = conn.execute(
            "SELECT sql FROM theirs.sqlite_schema WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()[0]
        conn.execute(sql)
    tables = classify_tables(conn, "theirs")
    info = tables.tracked.get(name) or tables.opaque.get(name)
    if info is not None:  # virtual tables' rows come with their shadow tables
        _copy_rows(conn, "theirs", name, info)


def _rebuild(conn: apsw.Connection, name: str) -> None:
    """Ours' rows of ``name`` in theirs' new schema (prepared in conf_main)."""
    sql = conn.execute(
        "SELECT sql FROM theirs.sqlite_schema WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()[0]
    conn.execute("PRAGMA legacy_alter_table = ON")  # keep other tables' references as they are
    conn.execute(f"DROP TABLE main.{quote(name)}")
    conn.execute(sql)
    conn.execute("PRAGMA legacy_alter_table = OFF")
    _copy_rows(conn, "conf_main", name, classify_tables(conn, "main").tracked[name])


def _copy_rows(conn: apsw.Connection, src: str, name: str, info: TableInfo) -> None:
    rowid = [] if info.without_rowid else [info.rowid_name]
    cols = ", ".join(rowid + [quote(c) for c in _stored(info)])
    conn.execute(f"INSERT INTO main.{quote(name)} ({cols}) SELECT {cols} FROM {quote(src)}.{quote(name)}")


def _apply_objects(conn: apsw.Connection, plan: Plan, outcome: MergeOutcome) -> None:
    # Views first out and last in: they may name the tables and each other.
    order = {"view": 0, "trigger": 1, "index": 2}
    items = sorted(plan.objects.items(), key=lambda kv: order.get((kv[1][0] or kv[1][1]).type, 3))  # type: ignore[union-attr]
    for name, (now, _wanted) in items:
        if now is not None:
            conn.execute(f"DROP {now.type.upper()} IF EXISTS main.{quote(name)}")
    for name, (_now, wanted) in reversed(items):
        if wanted is not None and wanted.sql:
            try:
                conn.execute(wanted.sql)
            except apsw.ConstraintError as e:  # a UNIQUE index the merged rows break
                raise MergeSchemaError([(name, f"cannot be built on the merged rows ({e})")]) from None
        outcome.schema_taken.append(name)


# -- rows -----------------------------------------------------------------------


def _merge_rows(conn: apsw.Connection, name: str, base_src: str, theirs_src: str) -> TableMerge | None:
    info = classify_tables(conn, "main").tracked.get(name)
    if info is None:
        return None
    cols = _stored(info)
    types = tuple(info.types[info.columns.index(c)] for c in cols)
    if not info.pk or _has_null_keys(conn, info, ("main", base_src, theirs_src)):
        tm = TableMerge(name, cols, (), types)
        _merge_bag(conn, info, tm, base_src, theirs_src)
    else:
        tm = TableMerge(name, cols, info.pk, types)
        _merge_keyed(conn, info, tm, base_src, theirs_src)
    return tm


def _has_null_keys(conn: apsw.Connection, info: TableInfo, dbs: Sequence[str]) -> bool:
    if not info.has_nullable_pk:
        return False
    cond = " OR ".join(f"{quote(c)} IS NULL" for c in info.pk)
    return any(
        conn.execute(f"SELECT 1 FROM {quote(db)}.{quote(info.name)} WHERE {cond} LIMIT 1").fetchone()
        for db in dbs if db
    )


def _changed_keys(conn: apsw.Connection, info: TableInfo, base_src: str, theirs_src: str) -> list[Row]:
    """The keys of the rows theirs inserted, deleted or changed, against base: one join of
    the two states on the key (sqldiff's query), with the value test kept cheap."""
    t = quote(info.name)
    key = [quote(c) for c in info.pk]
    if not base_src:
        return list(conn.execute(f"SELECT {', '.join(key)} FROM {quote(theirs_src)}.{t}"))
    match = " AND ".join(f"b.{k} = n.{k}" for k in key)
    n_keys = ", ".join(f"n.{k}" for k in key)
    b_keys = ", ".join(f"b.{k}" for k in key)
    b, n = quote(base_src), quote(theirs_src)
    sql = (
        f"SELECT {n_keys} FROM {n}.{t} AS n LEFT JOIN {b}.{t} AS b ON {match} "
        f"WHERE b.{key[0]} IS NULL OR {_row_differs(info)} "
        f"UNION ALL SELECT {b_keys} FROM {b}.{t} AS b WHERE NOT EXISTS "
        f"(SELECT 1 FROM {n}.{t} AS n WHERE {match})"
    )
    return list(conn.execute(sql))


def _row_differs(info: TableInfo) -> str:
    """SQL true when row ``n`` differs from row ``b`` in any stored column, type included;
    the sign of a zero is looked at only where a column can hold a REAL."""
    parts = []
    for c, decl in zip(info.columns, info.types, strict=True):
        if c in info.generated or c in info.pk:
            continue
        n, b = f"n.{quote(c)}", f"b.{quote(c)}"
        parts.append(f"{n} IS NOT {b} OR typeof({n}) <> typeof({b})")
        if affinity(decl) in ("REAL", "NUMERIC", "BLOB"):
            parts.append(f"({n} = 0 AND atan2({n}, -1) <> atan2({b}, -1))")
    return "(" + " OR ".join(parts) + ")" if parts else "0"


def _rows_by_key(conn: apsw.Connection, info: TableInfo, db: str, extra: Sequence[str] = ()) -> dict[Row, Row]:
    """The rows of ``db`` whose keys are in temp.merge_keys, by key (extra columns last)."""
    if not db:
        return {}
    t = quote(info.name)
    match = " AND ".join(f"x.{quote(c)} = k.{quote(c)}" for c in info.pk)
    cols = [f"x.{quote(c)}" for c in _stored(info)] + [f"x.{c}" for c in extra]
    sql = f"SELECT {', '.join(cols)} FROM temp.merge_keys AS k JOIN {quote(db)}.{t} AS x ON {match}"
    idx = [info.columns.index(c) for c in info.pk]
    stored = _stored(info)
    kpos = [stored.index(info.columns[i]) for i in idx]
    return {tuple(r[i] for i in kpos): tuple(r) for r in read_rows(conn, sql)}


def _merge_keyed(conn: apsw.Connection, info: TableInfo, tm: TableMerge, base_src: str, theirs_src: str) -> None:
    keys = _changed_keys(conn, info, base_src, theirs_src)
    if not keys:
        return
    conn.execute("DROP TABLE IF EXISTS temp.merge_keys")
    conn.execute(f"CREATE TEMP TABLE merge_keys ({', '.join(quote(c) for c in info.pk)})")
    marks = ", ".join("?" for _ in info.pk)
    conn.executemany(f"INSERT INTO temp.merge_keys VALUES ({marks})", keys)
    rowid = [] if info.without_rowid or info.aliases_rowid else [info.rowid_name]
    base = _rows_by_key(conn, info, base_src)
    ours = _rows_by_key(conn, info, "main")
    theirs = _rows_by_key(conn, info, theirs_src, rowid)
    conn.execute("DROP TABLE temp.merge_keys")
    ops: list[tuple[str, Row, Row | None, Row | None]] = []
    for key in dict.fromkeys(tuple(k) for k in keys):
        b, o = base.get(key), ours.get(key)
        t_full = theirs.get(key)
        t = t_full[: len(tm.columns)] if t_full is not None else None
        op = _three_way(tm, key, b, o, t)
        if op is not None:
            ops.append((op, key, o, t_full))
    _write(conn, info, tm, ops, base)


def _three_way(tm: TableMerge, key: Row, b: Row | None, o: Row | None, t: Row | None) -> str | None:
    """What theirs' change to one row does to ours: "take" (theirs' whole row, or its
    deletion), "cells" (theirs' changed cells), None (nothing); or a conflict, recorded."""
    if same_row(o, t):
        return None
    if same_row(o, b):
        return "take"
    if b is None:
        kind = "insert-insert"
    elif o is None or t is None:
        kind = "delete-modify"
    else:
        clash = any(not same(bv, ov) and not same(bv, tv) and not same(ov, tv)
                    for bv, ov, tv in zip(b, o, t, strict=True))
        if not clash:
            return "cells"
        kind = "data"
    tm.conflicts.append(RowConflict(kind, key, b, o, t))
    return None


def _write(conn: apsw.Connection, info: TableInfo, tm: TableMerge,
           ops: list[tuple[str, Row, Row | None, Row | None]], base: dict[Row, Row]) -> None:
    """Apply the row operations, each in a savepoint so that one a constraint refuses
    becomes a constraint conflict (the row stays ours) instead of failing the merge."""
    for op, key, o, t_full in ops:
        conn.execute("SAVEPOINT merge_row")
        try:
            _write_one(conn, info, tm, op, key, o, t_full, base.get(key))
            t = t_full[: len(tm.columns)] if t_full is not None else None
            tm.touched[key] = (base.get(key), o, t)
        except apsw.ConstraintError as e:
            conn.execute("ROLLBACK TO merge_row")
            t = t_full[: len(tm.columns)] if t_full is not None else None
            tm.conflicts.append(RowConflict("constraint", key, base.get(key), o, t, _constraint_text(e)))
        conn.execute("RELEASE merge_row")


def _constraint_text(e: apsw.ConstraintError) -> str:
    """SQLite's own words for the constraint ("UNIQUE constraint failed: u.email")."""
    text = str(e)
    prefix = "ConstraintError: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _write_one(conn: apsw.Connection, info: TableInfo, tm: TableMerge, op: str, key: Row,
               o: Row | None, t_full: Row | None, b: Row | None) -> None:
    t = quote(info.name)
    where, wargs = _key_where(info.pk, key)
    if t_full is None:  # theirs deleted the row
        conn.execute(f"DELETE FROM main.{t} WHERE {where}", wargs)
        tm.deleted += 1
        return
    row = t_full[: len(tm.columns)]
    if o is None:
        _insert(conn, info, tm.columns, row, t_full[len(tm.columns):])
        tm.inserted += 1
        return
    if op == "take":
        changed = [i for i, (ov, tv) in enumerate(zip(o, row, strict=True)) if not same(ov, tv)]
    else:  # theirs' cells where theirs changed and ours didn't
        assert b is not None
        changed = [i for i, (bv, ov, tv) in enumerate(zip(b, o, row, strict=True))
                   if not same(bv, tv) and same(bv, ov)]
    sets, args = [], []
    for i in changed:
        mark, value = param(row[i])
        sets.append(f"{quote(tm.columns[i])} = {mark}")
        args.append(value)
    if sets:
        conn.execute(f"UPDATE main.{t} SET {', '.join(sets)} WHERE {where}", [*args, *wargs])
        tm.updated += 1


def _key_where(pk: Sequence[str], key: Row) -> tuple[str, list[Any]]:
    parts, args = [], []
    for c, v in zip(pk, key, strict=True):
        mark, value = param(v)
        parts.append(f"{quote(c)} = {mark}")
        args.append(value)
    return " AND ".join(parts), args


def _insert(conn: apsw.Connection, info: TableInfo, cols: Sequence[str], row: Row, rowid: Row) -> None:
    """Insert theirs' row; a hidden rowid comes along when it is free in ours."""
    names = [quote(c) for c in cols]
    values = list(row)
    if rowid and conn.execute(
        f"SELECT 1 FROM main.{quote(info.name)} WHERE {info.rowid_name} = ?", (rowid[0],)
    ).fetchone() is None:
        names.insert(0, info.rowid_name)
        values.insert(0, rowid[0])
    marks, args = zip(*(param(v) for v in values), strict=True)
    conn.execute(f"INSERT INTO main.{quote(info.name)} ({', '.join(names)}) VALUES ({', '.join(marks)})",
                 list(args))


def _merge_bag(conn: apsw.Connection, info: TableInfo, tm: TableMerge, base_src: str, theirs_src: str) -> None:
    """A table without a key: each distinct row's count becomes ours + theirs - base."""
    cols = [quote(c) for c in tm.columns]
    if not cols:
        return
    t = quote(info.name)
    typed = ", ".join([*cols, *(f"typeof({c})" for c in cols)])
    parts = [f"SELECT {', '.join(cols)}, 1 AS n_t, 0 AS n_b FROM {quote(theirs_src)}.{t}"]
    if base_src:
        parts.append(f"SELECT {', '.join(cols)}, 0, 1 FROM {quote(base_src)}.{t}")
    sql = (f"SELECT {', '.join(cols)}, sum(n_t), sum(n_b) FROM ({' UNION ALL '.join(parts)}) "
           f"GROUP BY {typed} HAVING sum(n_t) <> sum(n_b)")
    changed = read_rows(conn, sql).fetchall()
    if not changed:
        return
    matches = _bag_matches(conn, t, cols, [r[:-2] for r in changed])
    doomed: list[tuple[int]] = []
    for i, row in enumerate(changed):
        values, n_t, n_b = row[:-2], row[-2], row[-1]
        rowids = matches.get(i, [])
        delta = max(0, len(rowids) + n_t - n_b) - len(rowids)
        for _ in range(delta):
            conn.execute("SAVEPOINT merge_row")
            try:
                _insert(conn, info, tm.columns, values, ())
            except apsw.ConstraintError as e:
                conn.execute("ROLLBACK TO merge_row")
                tm.conflicts.append(RowConflict("constraint", (), None, None, tuple(values), _constraint_text(e)))
                delta -= 1
            conn.execute("RELEASE merge_row")
        doomed.extend((r,) for r in rowids[:max(0, -delta)])
        tm.inserted += max(0, delta)
    conn.executemany(f"DELETE FROM main.{t} WHERE rowid = ?", doomed)
    tm.deleted += len(doomed)


def _bag_matches(conn: apsw.Connection, t: str, cols: Sequence[str], values: list[Row]) -> dict[int, list[int]]:
    """The rowids of ours' rows holding each of ``values`` (by index), in one scan of ours:
    the values go into an indexed temp table that each of ours' rows is looked up in."""
    names = [f"c{i}" for i in range(len(cols))]
    conn.execute("DROP TABLE IF EXISTS temp.merge_bag")
    conn.execute(f"CREATE TEMP TABLE merge_bag (i INTEGER PRIMARY KEY, {', '.join(names)})")
    for i, row in enumerate(values):
        marks, args = zip(*(param(v) for v in row), strict=True)
        conn.execute(f"INSERT INTO temp.merge_bag VALUES ({i}, {', '.join(marks)})", list(args))
    conn.execute(f"CREATE INDEX temp.merge_bag_values ON merge_bag ({', '.join(names)})")
    on = " AND ".join(f"x.{c} IS b.{n} AND typeof(x.{c}) = typeof(b.{n})" for c, n in zip(cols, names, strict=True))
    out: dict[int, list[int]] = {}
    for i, rowid in conn.execute(
        f"SELECT b.i, x.rowid FROM main.{t} AS x CROSS JOIN temp.merge_bag AS b ON {on} ORDER BY x.rowid"
    ):
        out.setdefault(i, []).append(rowid)
    conn.execute("DROP TABLE temp.merge_bag")
    return out


def _value_where(cols: Sequence[str], values: Row) -> tuple[str, list[Any]]:
    parts, args = [], []
    for c, v in zip(cols, values, strict=True):
        mark, value = param(v)
        parts.append(f"({c} IS {mark} AND typeof({c}) = typeof({mark}))")
        args.extend([value, value])
    return " AND ".join(parts), args


# -- constraints and sequences --------------------------------------------------------


def _fk_violations(conn: apsw.Connection) -> set[tuple[str, int | None, int]]:
    return {(t, rowid, fkid) for t, rowid, _parent, fkid in conn.execute("PRAGMA main.foreign_key_check")}


def _constraint_conflicts(conn: apsw.Connection, outcome: MergeOutcome,
                          before: set[tuple[str, int | None, int]]) -> None:
    """Foreign keys theirs' changes broke: the rows go back to ours, as conflicts."""
    for _round in range(8):  # reverting a row can expose another; a few rounds settle it
        new = _fk_violations(conn) - before
        if not new:
            return
        progressed = False
        for table, rowid, fkid in sorted(new, key=lambda v: (v[0], v[1] or 0, v[2])):
            progressed |= _revert_fk(conn, outcome, table, rowid, fkid)
        if not progressed:
            before |= new  # nothing of theirs to revert (an ours-only dangling key): leave it
    return


def _revert_fk(conn: apsw.Connection, outcome: MergeOutcome, table: str, rowid: int | None, fkid: int) -> bool:
    """Undo theirs' side of one broken foreign key: the child row theirs wrote, or else the
    parent row theirs deleted or changed that ours' child still references."""
    fk = [(r[2], r[3], r[4]) for r in conn.execute(f"PRAGMA main.foreign_key_list({quote(table)})") if r[0] == fkid]
    if not fk or rowid is None:
        return False
    parent = fk[0][0]
    what = f"FOREIGN KEY ({', '.join(f for _, f, _ in fk)}) REFERENCES {parent}"
    child = outcome.tables.get(table)
    if child is not None and child.key:
        key = conn.execute(f"SELECT {', '.join(quote(c) for c in child.key)} FROM main.{quote(table)} "
                           "WHERE rowid = ?", (rowid,)).fetchone()
        if key is not None and tuple(key) in child.touched:
            return _revert_row(conn, child, tuple(key), what)
    up = outcome.tables.get(parent)
    if up is None or not up.key:
        return False
    refs = read_rows(conn, f"SELECT {', '.join(quote(f) for _, f, _ in fk)} FROM main.{quote(table)} "
                     "WHERE rowid = ?", (rowid,)).fetchone()
    to = [t or up.key[i] for i, (_, _, t) in enumerate(fk)]
    if refs is None or list(to) != list(up.key):
        return False  # a reference to non-key columns: nothing keyed to put back
    key = tuple(refs)
    return key in up.touched and _revert_row(conn, up, key, what)


def _revert_row(conn: apsw.Connection, tm: TableMerge, key: Row, constraint: str) -> bool:
    """Put ours' row back for a key theirs' change was written to."""
    b, ours, theirs = tm.touched.pop(key)
    where, wargs = _key_where(tm.key, key)
    t = quote(tm.table)
    conn.execute(f"DELETE FROM main.{t} WHERE {where}", wargs)
    if ours is not None:
        marks, args = zip(*(param(v) for v in ours), strict=True)
        conn.execute(f"INSERT INTO main.{t} ({', '.join(quote(c) for c in tm.columns)}) "
                     f"VALUES ({', '.join(marks)})", list(args))
    tm.conflicts.append(RowConflict("constraint", key, b, ours, theirs, constraint))
    return True


def _merge_sequences(conn: apsw.Connection) -> None:
    """AUTOINCREMENT counters: the larger of the two, so neither side's ids come back."""
    has = [db for db in ("main", "theirs")
           if conn.execute(f"SELECT 1 FROM {db}.sqlite_schema WHERE name = 'sqlite_sequence'").fetchone()]
    if has != ["main", "theirs"]:
        return
    conn.execute(
        "UPDATE main.sqlite_sequence SET seq = max(seq, (SELECT t.seq FROM theirs.sqlite_sequence AS t "
        "WHERE t.name = main.sqlite_sequence.name)) WHERE name IN (SELECT name FROM theirs.sqlite_sequence)"
    )
