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

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from . import mergeplan
from .changes import (
    TableInfo,
    affinity,
    attach,
    classify_tables,
    open_private,
    quote,
)
from .errors import MergeSchemaError
from .mergeplan import Plan, stored
from .values import param, read_rows

if TYPE_CHECKING:
    from .rowdiff import KeyHint

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


# -- running the plan -----------------------------------------------------------


def merge_states(out: Path, base: Path, theirs: Path, hint: KeyHint | None = None) -> MergeOutcome:
    """Turn ``out`` (a private copy of ours) into the merge of ours and ``theirs`` against
    ``base``. Raises MergeSchemaError, leaving ``out`` as it was, when the schemas clash."""
    conn = open_private(out)
    try:
        attach(conn, base, "base")
        attach(conn, theirs, "theirs")
        plan = mergeplan.plan(conn)
        with mergeplan.conformed(conn, plan, out.parent) as _:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("BEGIN")
            try:
                outcome = _apply(conn, plan, hint)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return outcome
    finally:
        conn.close()


def _apply(conn: apsw.Connection, plan: Plan, hint: KeyHint | None) -> MergeOutcome:
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
        # The history's hint names base/theirs rows by key: good only where neither is reshaped.
        usable = hint if (base_src, theirs_src) == ("base", "theirs") and hint is not None else None
        tm = _merge_rows(conn, name, base_src, theirs_src, usable)
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
    cols = ", ".join(rowid + [quote(c) for c in stored(info)])
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


def _merge_rows(conn: apsw.Connection, name: str, base_src: str, theirs_src: str,
                hint: KeyHint | None = None) -> TableMerge | None:
    info = classify_tables(conn, "main").tracked.get(name)
    if info is None:
        return None
    cols = stored(info)
    types = tuple(info.types[info.columns.index(c)] for c in cols)
    keyless = not info.pk
    if keyless or _has_null_keys(conn, info, ("main", base_src, theirs_src)):
        tm = TableMerge(name, cols, (), types)
        known = hint is not None and keyless and name not in hint.unknown
        if not (known and name not in hint.keys):  # type: ignore[union-attr]
            _merge_bag(conn, info, tm, base_src, theirs_src,
                       hint.keys[name] if known else None)  # type: ignore[union-attr]
    else:
        tm = TableMerge(name, cols, info.pk, types)
        known = hint is not None and name not in hint.unknown
        if not (known and name not in hint.keys):  # type: ignore[union-attr]
            _merge_keyed(conn, info, tm, base_src, theirs_src,
                         hint.keys[name] if known else None)  # type: ignore[union-attr]
    return tm


def _candidates(conn: apsw.Connection, width: int, keys: Collection[Any]) -> None:
    """temp.merge_cand: the keys the history says can differ (a scalar for a one-column key)."""
    conn.execute("DROP TABLE IF EXISTS temp.merge_cand")
    names = [f"k{i}" for i in range(width)]
    conn.execute(f"CREATE TEMP TABLE merge_cand ({', '.join(names)}, PRIMARY KEY ({', '.join(names)}))")
    rows = [k if isinstance(k, tuple) else (k,) for k in keys]
    conn.executemany(f"INSERT OR IGNORE INTO temp.merge_cand VALUES ({', '.join('?' * width)})", rows)


def _has_null_keys(conn: apsw.Connection, info: TableInfo, dbs: Sequence[str]) -> bool:
    if not info.has_nullable_pk:
        return False
    cond = " OR ".join(f"{quote(c)} IS NULL" for c in info.pk)
    return any(
        conn.execute(f"SELECT 1 FROM {quote(db)}.{quote(info.name)} WHERE {cond} LIMIT 1").fetchone()
        for db in dbs if db
    )


def _changed_keys(conn: apsw.Connection, info: TableInfo, base_src: str, theirs_src: str,
                  candidates: Collection[Any] | None = None) -> list[Row]:
    """The keys of the rows theirs inserted, deleted or changed, against base: one join of
    the two states on the key (sqldiff's query), with the value test kept cheap; with
    *candidates* (from the patches between them) only those keys are looked at, so the
    cost follows the change."""
    t = quote(info.name)
    key = [quote(c) for c in info.pk]
    if not base_src:
        return list(conn.execute(f"SELECT {', '.join(key)} FROM {quote(theirs_src)}.{t}"))
    match = " AND ".join(f"b.{k} = n.{k}" for k in key)
    n_keys = ", ".join(f"n.{k}" for k in key)
    b_keys = ", ".join(f"b.{k}" for k in key)
    b, n = quote(base_src), quote(theirs_src)
    n_from, b_from = f"{n}.{t} AS n", f"{b}.{t} AS b"
    if candidates is not None:
        _candidates(conn, len(key), candidates)
        on_n = " AND ".join(f"n.{k} = c.k{i}" for i, k in enumerate(key))
        on_b = " AND ".join(f"b.{k} = c.k{i}" for i, k in enumerate(key))
        n_from = f"temp.merge_cand AS c CROSS JOIN {n}.{t} AS n ON {on_n}"
        b_from = f"temp.merge_cand AS c CROSS JOIN {b}.{t} AS b ON {on_b}"
    sql = (
        f"SELECT {n_keys} FROM {n_from} LEFT JOIN {b}.{t} AS b ON {match} "
        f"WHERE b.{key[0]} IS NULL OR {_row_differs(info)} "
        f"UNION ALL SELECT {b_keys} FROM {b_from} WHERE NOT EXISTS "
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
    cols = [f"x.{quote(c)}" for c in stored(info)] + [f"x.{c}" for c in extra]
    sql = f"SELECT {', '.join(cols)} FROM temp.merge_keys AS k JOIN {quote(db)}.{t} AS x ON {match}"
    idx = [info.columns.index(c) for c in info.pk]
    columns = stored(info)
    kpos = [columns.index(info.columns[i]) for i in idx]
    return {tuple(r[i] for i in kpos): tuple(r) for r in read_rows(conn, sql)}


def _merge_keyed(conn: apsw.Connection, info: TableInfo, tm: TableMerge, base_src: str, theirs_src: str,
                 candidates: Collection[Any] | None = None) -> None:
    keys = _changed_keys(conn, info, base_src, theirs_src, candidates)
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


def _merge_bag(conn: apsw.Connection, info: TableInfo, tm: TableMerge, base_src: str, theirs_src: str,
               rowids: Collection[Any] | None = None) -> None:
    """A table without a key: each distinct row's count becomes ours + theirs - base.

    With *rowids* (the rows the patches between base and theirs touched; every other row
    is the same row at the same rowid on both sides) only those rows are counted."""
    cols = [quote(c) for c in tm.columns]
    if not cols:
        return
    t = quote(info.name)
    typed = ", ".join([*cols, *(f"typeof({c})" for c in cols)])
    only = ""
    if rowids is not None:
        _candidates(conn, 1, rowids)
        only = f" WHERE {info.rowid_name} IN (SELECT k0 FROM temp.merge_cand)"
    parts = [f"SELECT {', '.join(cols)}, 1 AS n_t, 0 AS n_b FROM {quote(theirs_src)}.{t}{only}"]
    if base_src:
        parts.append(f"SELECT {', '.join(cols)}, 0, 1 FROM {quote(base_src)}.{t}{only}")
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
