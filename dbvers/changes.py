"""Row-level changes between two states of a database, through SQLite's session extension.

This is the only module that uses apsw sessions. It works on a private
connection whose ``main`` is the newer state and whose ``base`` (attached) is the
older one, and produces a patchset that turns ``base`` into ``main``, with
per-table counts. Everything here runs on dbvers's private files only. L2: what the
tables are is :mod:`dbvers.tables`; replaying a patchset is :mod:`dbvers.replay`; private
connections are :mod:`dbvers.privatedb`.

Three things the session extension alone would get wrong are handled here:

* ``Session.diff`` compares with SQL equality, so integer 7 and real 7.0 in a
  column without affinity look equal. Such type-only changes are found with
  ``typeof()`` and put into the patchset by diffing from an in-memory copy of
  the old table where those rows hold a sentinel (a patchset carries only new
  values, so the sentinel never reaches it). The base state is never written.
* Rows whose primary key contains NULL are invisible to sessions; a table that
  has them is compared in SQL and, if it changed, forces a keyframe.
* Virtual tables' shadow tables are not replayed through patchsets; a change to
  them forces a keyframe so they are kept exactly. The planner's ``sqlite_stat*``
  tables are left out altogether unless ``[stats] version`` asks for them (then
  they are kept like shadow tables).
  ``sqlite_sequence`` is carried in the commit itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from .objects import RowidFixups, TableCounts

# The names after "as" moved to smaller modules and stay reachable as ``changes.X`` (``ch.X``)
# for today's callers; new code imports them from where they live.
from .privatedb import attach as attach
from .privatedb import detach as detach
from .privatedb import open_private as open_private
from .replay import apply_patchsets as apply_patchsets
from .replay import restore_extras as restore_extras
from .rowidstream import row_fits
from .tables import ROWID_NAMES as ROWID_NAMES
from .tables import TableInfo, classify_tables, is_stats_table, read_schema
from .tables import TableSet as TableSet
from .tables import affinity as affinity
from .tables import read_pragmas as read_pragmas
from .tables import read_sequences as read_sequences
from .values import quote


@dataclass
class Changes:
    """What turns ``base`` into ``main``."""

    patchset: bytes | None
    counts: dict[str, TableCounts]
    schema_changed: bool
    needs_keyframe: list[str] = field(default_factory=list)  # why a patchset can't carry it
    untracked: list[str] = field(default_factory=list)  # virtual tables, named in status
    key_changed: list[str] = field(default_factory=list)  # tables whose key changed
    tables: dict[str, TableInfo] = field(default_factory=dict)  # main's tracked tables
    rowids: RowidFixups | None = None  # filled in for a commit (rowid_fixups)

    def __repr__(self) -> str:  # bounded: the patchset can be megabytes
        size = len(self.patchset) if self.patchset else 0
        return (f"<dbvers.Changes {len(self.changed_tables)} table(s) changed, patchset {size:,} bytes, "
                f"schema {'changed' if self.schema_changed else 'unchanged'}>")

    @property
    def changed_tables(self) -> list[str]:
        return sorted(t for t, c in self.counts.items() if c.total)

    @property
    def empty(self) -> bool:
        return not self.patchset and not self.changed_tables and not self.schema_changed and not self.needs_keyframe


def _count(conn: apsw.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def _key_match(key: Iterable[str], a: str, b: str) -> str:
    return " AND ".join(f"{a}.{k} IS {b}.{k}" for k in key)


def _differs(cols: Iterable[str], a: str, b: str, renamed: dict[str, str] | None = None) -> str:
    """SQL for "row *a* and row *b* differ on *cols*" (types included); a column
    renamed in *a* (*renamed*: a's name -> b's) is compared under b's old name."""
    parts = []
    for c in cols:
        x, y = f"{a}.{quote(c)}", f"{b}.{quote((renamed or {}).get(c, c))}"
        parts.append(f"({x} IS NOT {y} OR typeof({x}) <> typeof({y}))")
    return " OR ".join(parts) if parts else "0"


def renamed_columns(before: TableInfo, after: TableInfo) -> dict[str, str]:
    """{new name: old name} when one column is gone and one is new at the same place:
    ``ALTER TABLE ... RENAME COLUMN`` (as the schema change says), whose values are
    compared, not counted as a dropped and a filled column."""
    new = [c for c in after.columns if c not in before.columns]
    gone = [c for c in before.columns if c not in after.columns]
    if len(new) == 1 and len(gone) == 1 and before.columns.index(gone[0]) == after.columns.index(new[0]):
        return {new[0]: gone[0]}
    return {}


def count_by_key(
    conn: apsw.Connection, table: str, key: tuple[str, ...], shared: list[str],
    added: Sequence[str] = (), renamed: dict[str, str] | None = None,
) -> TableCounts:
    """Count inserts/updates/deletes between base.table and main.table matching rows on *key*.

    Used where the session extension can't be (the table's columns changed).
    Values are compared on the columns both sides share, types included; a
    column only main has counts as NULL on the base side (as a diff shows it),
    so filling a new column modifies the row. A renamed column (*renamed*: new
    name -> old) is one of the shared ones.
    """
    t = quote(table)
    inserts = _count(
        conn,
        f"SELECT count(*) FROM main.{t} AS n WHERE NOT EXISTS "
        f"(SELECT 1 FROM base.{t} AS o WHERE {_key_match(key, 'o', 'n')})",
    )
    deletes = _count(
        conn,
        f"SELECT count(*) FROM base.{t} AS o WHERE NOT EXISTS "
        f"(SELECT 1 FROM main.{t} AS n WHERE {_key_match(key, 'o', 'n')})",
    )
    updates = _count(
        conn,
        f"SELECT count(*) FROM main.{t} AS n JOIN base.{t} AS o ON {_key_match(key, 'o', 'n')} "
        f"WHERE {_differs(shared, 'n', 'o', renamed)}"
        + "".join(f" OR n.{quote(c)} IS NOT NULL" for c in added),
    )
    return TableCounts(inserts, updates, deletes)


def _null_pk_counts(conn: apsw.Connection, info: TableInfo) -> TableCounts:
    """Rows with a NULL in the primary key are invisible to sessions: count them in SQL, as the
    diff (``rowdiff``) matches them, so that a commit's counts are its diff's.

    A key holding NULL identifies no row (NULLs are distinct in SQL: two rows can hold the
    same such key), so such a row is the same row only at its own rowid with the same key
    (``IS``); otherwise it is removed and another added. (A row that got a non-NULL key is
    removed here and added by the session, as the diff shows it.)
    """
    t, rid = quote(info.name), info.rowid_name
    nullpk = " OR ".join(f"{{a}}.{quote(c)} IS NULL" for c in info.pk)
    o_null, n_null = (f"({nullpk.format(a=a)})" for a in ("o", "n"))
    if not conn.execute(f"SELECT EXISTS (SELECT 1 FROM main.{t} AS n WHERE {n_null}) "
                        f"OR EXISTS (SELECT 1 FROM base.{t} AS o WHERE {o_null})").fetchone()[0]:
        return TableCounts()
    match = _key_match(info.key, "o", "n")
    inserts, updates, deletes = conn.execute(
        f"SELECT (SELECT count(*) FROM main.{t} AS n WHERE {n_null} AND NOT EXISTS "
        f"(SELECT 1 FROM base.{t} AS o WHERE o.{rid} = n.{rid} AND {match})), "
        f"(SELECT count(*) FROM base.{t} AS o JOIN main.{t} AS n ON n.{rid} = o.{rid} AND {match} "
        f"WHERE {o_null} AND ({_differs_as_diff(info, 'n', 'o')})), "
        f"(SELECT count(*) FROM base.{t} AS o WHERE {o_null} AND NOT EXISTS "
        f"(SELECT 1 FROM main.{t} AS n WHERE o.{rid} = n.{rid} AND {match}))"
    ).fetchone()
    return TableCounts(inserts, updates, deletes)


def _differs_as_diff(info: TableInfo, a: str, b: str) -> str:
    """SQL for "row *a* differs from row *b* of the same key", column by column as the diff
    compares them (``rowdiff.changed_sql``): where both 7 and 7.0 can be stored (no affinity,
    or ANY) type and the sign of zero count, elsewhere SQL's ``IS``; key columns only there."""
    parts = []
    for c, decl in zip(info.columns, info.types, strict=True):
        typed = affinity(decl) == "BLOB" or decl.upper() == "ANY"
        x, y = f"{a}.{quote(c)}", f"{b}.{quote(c)}"
        if typed:
            parts.append(f"NOT {_same_value(x, y)}")
        elif c not in info.pk:
            parts.append(f"{x} IS NOT {y}")
    return " OR ".join(parts) or "0"


def _type_only_condition(qc: str) -> str:
    # Only integer<->real can compare equal across types; filtering on that first
    # keeps the join small for text/blob columns. 0.0 and -0.0 are equal too;
    # atan2(x, -1) tells their signs apart.
    return (
        f"typeof(n.{qc}) IN ('integer', 'real') AND typeof(o.{qc}) IN ('integer', 'real') "
        f"AND n.{qc} = o.{qc} AND (typeof(n.{qc}) <> typeof(o.{qc}) "
        f"OR (n.{qc} = 0 AND atan2(n.{qc}, -1) <> atan2(o.{qc}, -1)))"
    )


def _type_only_source(conn: apsw.Connection, info: TableInfo) -> str:
    """The schema to diff *info*'s table from: ``base``, or a marked copy if values changed type only.

    Session.diff compares with SQL equality and misses 7 -> 7.0. When such rows
    exist, the old table is copied into an in-memory ``typefix`` database and
    those rows' old values get a sentinel, so the diff records them (a patchset
    carries only new values, so the sentinel never reaches it). The base state
    itself is never written: other readers may have it open.
    """
    t = quote(info.name)
    key = info.key
    match = _key_match(key, "o", "n")
    cols = info.untyped_columns()
    found = [
        c for c in cols
        if conn.execute(
            f"SELECT 1 FROM main.{t} AS n JOIN base.{t} AS o ON {match} "
            f"WHERE {_type_only_condition(quote(c))} LIMIT 1"
        ).fetchone()
    ]
    if not found:
        return "base"
    if not conn.execute("SELECT 1 FROM pragma_database_list WHERE name = 'typefix'").fetchone():
        conn.execute("ATTACH ':memory:' AS typefix")
    sql = conn.execute(
        "SELECT sql FROM base.sqlite_schema WHERE type = 'table' AND name = ?", (info.name,)
    ).fetchone()[0]
    # sqlite_schema keeps "CREATE TABLE " normalized, then the text as written.
    conn.execute(f"DROP TABLE IF EXISTS typefix.{t}")
    conn.execute("CREATE TABLE typefix." + sql[len("CREATE TABLE "):])
    stored = [c for c in info.columns if c not in info.generated]
    names = ", ".join(quote(c) for c in stored)
    rid = "" if info.without_rowid or info.rowid_hidden else f"{info.rowid_name}, "
    conn.execute(f"INSERT INTO typefix.{t}({rid}{names}) SELECT {rid}{names} FROM base.{t}")
    key_list = ", ".join(f"o.{k}" for k in key)
    target = f"({', '.join(key)})" if len(key) > 1 else key[0]
    for c in found:
        qc = quote(c)
        conn.execute(
            f"UPDATE typefix.{t} AS u SET {qc} = (SELECT CASE typeof(n.{qc}) WHEN 'blob' "
            f"THEN 'dbvers-' || hex(randomblob(16)) ELSE randomblob(16) END "
            f"FROM main.{t} AS n WHERE {_key_match(key, 'n', 'u')}) "
            f"WHERE {target} IN (SELECT {key_list} FROM main.{t} AS n JOIN base.{t} AS o "
            f"ON {match} WHERE {_type_only_condition(qc)})"
        )
    return "typefix"


def _same_value(a: str, b: str) -> str:
    """SQL for "a and b hold the same value": type included, and 0.0 differs from -0.0."""
    return (f"({a} IS {b} AND typeof({a}) = typeof({b}) "
            f"AND NOT ({a} = 0 AND atan2({a}, -1) <> atan2({b}, -1)))")


def _stored_columns_patchset(conn: apsw.Connection, info: TableInfo) -> bytes | None:
    """The patchset of a table with generated columns.

    ``Session.diff`` can't record an UPDATE of such a table (SQLite stops with
    "database schema has changed"), so the rows that differ are copied, stored
    columns only, into two private in-memory tables shaped as the session sees
    the real one (the same columns in the same order, the same key), and those
    are diffed instead. The patchset names the table, not the schema, so it
    applies to the real table; SQLite recomputes the generated columns. Values
    are copied without affinity, and the old copy's values that equal the new
    ones in SQL but not in type (7 and 7.0, 0.0 and -0.0) get a sentinel, as in
    :func:`_type_only_source`, so the diff records them.
    """
    t = quote(info.name)
    stored = [c for c in info.columns if c not in info.generated]
    nonkey = [quote(c) for c in stored if c not in info.pk]
    rid = [] if info.pk or info.without_rowid else [info.rowid_name]
    names = ", ".join([*rid, *(quote(c) for c in stored)])
    defs = ", ".join(quote(c) for c in stored)
    if info.pk:
        defs += f", PRIMARY KEY ({', '.join(quote(c) for c in info.pk)})"
    tail = " WITHOUT ROWID" if info.without_rowid else ""
    for db in ("gen_new", "gen_old"):
        if not conn.execute("SELECT 1 FROM pragma_database_list WHERE name = ?", (db,)).fetchone():
            conn.execute(f"ATTACH ':memory:' AS {db}")
        conn.execute(f"DROP TABLE IF EXISTS {db}.{t}")
        conn.execute(f"CREATE TABLE {db}.{t}({defs}){tail}")
    same_row = " AND ".join([_key_match(info.key, "o", "n"),
                             *(_same_value(f"n.{c}", f"o.{c}") for c in nonkey)])
    for db, src, other in (("gen_new", "main", "base"), ("gen_old", "base", "main")):
        a, b = ("n", "o") if src == "main" else ("o", "n")
        conn.execute(
            f"INSERT INTO {db}.{t}({names}) SELECT {', '.join(f'{a}.{c}' for c in names.split(', '))} "
            f"FROM {src}.{t} AS {a} WHERE NOT EXISTS "
            f"(SELECT 1 FROM {other}.{t} AS {b} WHERE {same_row})"
        )
    for c in nonkey:
        conn.execute(
            f"UPDATE gen_old.{t} AS u SET {c} = CASE typeof(n.{c}) WHEN 'blob' "
            f"THEN 'dbvers-' || hex(randomblob(16)) ELSE randomblob(16) END "
            f"FROM gen_new.{t} AS n WHERE {_key_match(info.key, 'n', 'u')} AND n.{c} IS u.{c} "
            f"AND NOT {_same_value(f'n.{c}', f'u.{c}')}"
        )
    session = apsw.Session(conn, "gen_new")
    try:
        session.config(apsw.SQLITE_SESSION_OBJCONFIG_ROWID, 1)
        session.attach(info.name)
        session.diff("gen_old", info.name)
        patchset = session.patchset() or None
    finally:
        session.close()
    for db in ("gen_new", "gen_old"):
        conn.execute(f"DROP TABLE {db}.{t}")
    return patchset


def _hidden_rowid_counts(conn: apsw.Connection, info: TableInfo) -> TableCounts:
    """Changes of a table whose rowid sessions can't see (see ``TableInfo.rowid_hidden``)."""
    if info.rowid_name not in info.columns:
        return count_by_key(conn, info.name, info.key, list(info.columns))
    # rowid, _rowid_ and oid are all columns: no way to reach the rowid, compare the rows.
    t = quote(info.name)
    cols = ", ".join(f"{quote(c)}, typeof({quote(c)})" for c in info.columns)
    added = _count(conn, f"SELECT count(*) FROM (SELECT {cols} FROM main.{t} EXCEPT SELECT {cols} FROM base.{t})")
    removed = _count(conn, f"SELECT count(*) FROM (SELECT {cols} FROM base.{t} EXCEPT SELECT {cols} FROM main.{t})")
    return TableCounts(inserts=added, deletes=removed)


def _key_type_changes(conn: apsw.Connection, info: TableInfo) -> int:
    """Rows whose untyped primary-key value changed type only (7 -> 7.0, 0.0 -> -0.0).

    Such keys are equal to SQL, so the session extension pairs the rows and
    reports nothing; a patchset can't express it either, so it takes a keyframe.
    """
    cols = [c for c, t in zip(info.columns, info.types, strict=True)
            if c in info.pk and affinity(t) == "BLOB"]
    if not cols:
        return 0
    t = quote(info.name)
    cond = " OR ".join(
        f"typeof(n.{q}) <> typeof(o.{q}) OR (typeof(n.{q}) = 'real' AND n.{q} = 0 "
        f"AND atan2(n.{q}, -1) <> atan2(o.{q}, -1))"
        for q in map(quote, cols)
    )
    return _count(
        conn,
        f"SELECT count(*) FROM main.{t} AS n JOIN base.{t} AS o ON {_key_match(info.key, 'o', 'n')} "
        f"WHERE {cond}",
    )


def count_patchset(patchset: bytes) -> dict[str, TableCounts]:
    tallies: dict[str, list[int]] = {}
    slot = {"INSERT": 0, "UPDATE": 1, "DELETE": 2}
    for change in apsw.Changeset.iter(patchset):
        tallies.setdefault(change.name, [0, 0, 0])[slot[change.op]] += 1
    return {t: TableCounts(*v) for t, v in tallies.items()}


def compute_changes(conn: apsw.Connection, *, stats: bool = False) -> Changes:
    """Compare ``main`` (new) against the attached ``base`` (old); the planner's
    statistics tables count only with *stats*."""
    new_schema, old_schema = read_schema(conn, "main", stats=stats), read_schema(conn, "base", stats=stats)
    new, old = classify_tables(conn, "main", stats=stats), classify_tables(conn, "base", stats=stats)
    counts, key_changed, same_shape = _reshaped_counts(conn, new, old)
    needs_keyframe: list[str] = []
    patchset = _session_patchset(conn, same_shape, counts, needs_keyframe) if same_shape else None
    needs_keyframe += _opaque_changes(conn, new, old)
    return Changes(
        patchset=patchset,
        counts={t: c for t, c in counts.items() if c.total},
        schema_changed=new_schema.id != old_schema.id,
        needs_keyframe=needs_keyframe,
        untracked=new.virtual,
        key_changed=key_changed,
        tables=new.tracked,
    )


def _reshaped_counts(conn: apsw.Connection, new: TableSet, old: TableSet,
                     ) -> tuple[dict[str, TableCounts], list[str], list[TableInfo]]:
    """Counts of the tables a session can't diff (new, dropped, columns or key changed), the
    tables whose key changed, and the tables of the same shape on both sides (for the session)."""
    counts: dict[str, TableCounts] = {}
    key_changed: list[str] = []
    same_shape: list[TableInfo] = []
    for name, info in new.tracked.items():
        before = old.tracked.get(name)
        if before is None:
            counts[name] = TableCounts(inserts=_count(conn, f"SELECT count(*) FROM main.{quote(name)}"))
        elif before.shape == info.shape:
            same_shape.append(info)
        elif before.pk == info.pk and before.without_rowid == info.without_rowid:
            renamed = renamed_columns(before, info)
            shared = [c for c in info.columns
                      if (c in before.columns or c in renamed) and c not in info.pk]
            added = [c for c in info.columns if c not in before.columns and c not in renamed]
            counts[name] = count_by_key(conn, name, info.key, shared, added, renamed)
        else:
            key_changed.append(name)
            counts[name] = TableCounts(
                inserts=_count(conn, f"SELECT count(*) FROM main.{quote(name)}"),
                deletes=_count(conn, f"SELECT count(*) FROM base.{quote(name)}"),
            )
    for name in old.tracked.keys() - new.tracked.keys():
        counts[name] = TableCounts(deletes=_count(conn, f"SELECT count(*) FROM base.{quote(name)}"))
    return counts, key_changed, same_shape


def _session_patchset(conn: apsw.Connection, same_shape: list[TableInfo],
                      counts: dict[str, TableCounts], needs_keyframe: list[str]) -> bytes | None:
    """The patchset turning ``base`` into ``main`` for tables of the same shape; adds their
    counts to *counts*, and to *needs_keyframe* why a patchset can't carry some change."""
    patchset: bytes | None = None
    # Before the main session exists: these attach private schemas of their own.
    generated_parts = [
        ps for info in same_shape
        if info.generated and not info.rowid_hidden and (ps := _stored_columns_patchset(conn, info))
    ]
    session = apsw.Session(conn, "main")
    session.config(apsw.SQLITE_SESSION_OBJCONFIG_ROWID, 1)
    try:
        for info in same_shape:
            if info.rowid_hidden:
                # Sessions can't see this table's rowid: compare it in SQL, keep it by keyframe.
                if (c := _hidden_rowid_counts(conn, info)).total:
                    counts[info.name] = c
                    needs_keyframe.append(f"{info.name} changed (a column named _rowid_ hides its rowid)")
                continue
            if info.has_nullable_pk and (nulls := _null_pk_counts(conn, info)).total:
                counts[info.name] = nulls
                needs_keyframe.append(f"rows with a NULL primary key changed in {info.name}")
            if not info.generated:  # those were diffed above
                source = _type_only_source(conn, info) if info.untyped_columns() else "base"
                session.attach(info.name)
                session.diff(source, info.name)
            if (n := _key_type_changes(conn, info)):
                # 7 -> 7.0 in a key: sessions match the rows as equal and see nothing.
                e = counts.get(info.name, TableCounts())
                counts[info.name] = TableCounts(e.inserts, e.updates + n, e.deletes)
                needs_keyframe.append(f"primary-key values of {info.name} changed type only")
        patchset = session.patchset() or None
        for part in generated_parts:
            patchset = apsw.Changeset.concat(patchset, part) if patchset else part
    finally:
        session.close()
        if conn.execute("SELECT 1 FROM pragma_database_list WHERE name = 'typefix'").fetchone():
            conn.execute("DETACH typefix")
    if patchset:
        for t, c in count_patchset(patchset).items():
            e = counts.get(t, TableCounts())
            counts[t] = TableCounts(c.inserts + e.inserts, c.updates + e.updates, c.deletes + e.deletes)
    return patchset


def _opaque_changes(conn: apsw.Connection, new: TableSet, old: TableSet) -> list[str]:
    """Why a keyframe is needed for shadow tables (FTS5 and friends) and sqlite_stat*: any change."""
    needs_keyframe: list[str] = []
    opaque_same = [
        i for n, i in new.opaque.items() if n in old.opaque and old.opaque[n].shape == i.shape
    ]
    # sqlite_stat1 rows of tables without an index have a NULL idx, which sessions
    # (matching on tbl, idx with =) report as changed on every comparison, so the
    # statistics tables are compared in SQL, where EXCEPT treats NULLs as equal.
    stats_same = [i for i in opaque_same if is_stats_table(i.name)]
    if stats_same and any(contents_differ(conn, i.name) for i in stats_same):
        needs_keyframe.append("contents of sqlite_stat tables changed")
    shadow_same = [i for i in opaque_same if not is_stats_table(i.name)]
    if shadow_same:
        probe = apsw.Session(conn, "main")
        probe.config(apsw.SQLITE_SESSION_OBJCONFIG_ROWID, 1)
        try:
            for info in shadow_same:
                probe.attach(info.name)
                probe.diff("base", info.name)
            if not probe.is_empty:
                needs_keyframe.append(f"contents of {', '.join(new.virtual)} changed")
        finally:
            probe.close()
    return needs_keyframe


def contents_differ(conn: apsw.Connection, table: str, new: str = "main", old: str = "base") -> bool:
    """Whether *table*'s rows differ between schemas *new* and *old* (as sets, NULLs equal)."""
    q, n, o = quote(table), quote(new), quote(old)
    return bool(conn.execute(
        f"SELECT EXISTS (SELECT * FROM {n}.{q} EXCEPT SELECT * FROM {o}.{q})"
        f" OR EXISTS (SELECT * FROM {o}.{q} EXCEPT SELECT * FROM {n}.{q})"
    ).fetchone()[0])


def changed_virtual_tables(conn: apsw.Connection, new: str = "main", old: str = "base") -> list[str]:
    """Virtual tables (FTS5 and friends) whose contents differ: their shadow tables'
    rows, compared in SQL; a virtual table only one side has counts as changed."""
    a, b = classify_tables(conn, old), classify_tables(conn, new)
    changed = sorted(set(a.virtual) ^ set(b.virtual))
    for v in sorted(set(a.virtual) & set(b.virtual)):
        shadows = [n for n in b.opaque if n.startswith(v + "_")]
        if any(n not in a.opaque or a.opaque[n].shape != b.opaque[n].shape
               or contents_differ(conn, n, new, old) for n in shadows):
            changed.append(v)
    return changed


def rowid_fixups(conn: apsw.Connection, changes: Changes) -> RowidFixups | None:
    """The hidden rowids (``TableInfo.hidden_rowid``) of the rows *changes*' patchset inserts,
    and of the rows it updates whose rowid changed (``INSERT OR REPLACE`` gives a row a new
    one), as ``main`` holds them (``base`` attached: the parent state); None when there are none.
    """
    tables = {name: info for name, info in changes.tables.items()
              if info.hidden_rowid and info.rowid_name not in info.columns
              and (c := changes.counts.get(name)) is not None and c.inserts + c.updates}
    if not tables or not changes.patchset:
        return None
    keys: dict[str, list[tuple[Any, ...]]] = {}
    columns: dict[str, tuple[str, ...]] = {}
    for change in apsw.Changeset.iter(changes.patchset):
        info = tables.get(change.name)
        if info is None or change.opcode not in (apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE):
            continue
        positions = sorted(change.pk_columns)
        columns[change.name] = tuple(info.columns[i] for i in positions)
        try:
            values = change.new if change.opcode == apsw.SQLITE_INSERT else change.old  # an update's old holds its key
        except UnicodeDecodeError:
            # Text that isn't UTF-8 (apsw can't decode it): the commit keeps a snapshot
            # instead, which holds every rowid as it is, so no replay needs fixups.
            changes.needs_keyframe.append(f"{change.name}: a key holds text that isn't UTF-8")
            return None
        keys.setdefault(change.name, []).append(tuple(values[i] for i in positions))
    found: dict[str, tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]] = {}
    for name, rows in keys.items():
        cols, rid, t = columns[name], tables[name].rowid_name, quote(name)
        ks = [f"k{i}" for i in range(len(cols))]
        conn.execute(f"CREATE TEMP TABLE dbvers_fix({', '.join(ks)})")
        try:
            conn.executemany(f"INSERT INTO temp.dbvers_fix VALUES ({', '.join('?' * len(ks))})", rows)
            on_n, on_o = (" AND ".join(f"{a}.{quote(c)} IS k.{k}" for c, k in zip(cols, ks, strict=True))
                          for a in ("n", "o"))
            moved = conn.execute(
                f"SELECT n.{rid}, {', '.join('k.' + k for k in ks)} FROM temp.dbvers_fix AS k "
                f"JOIN main.{t} AS n ON {on_n} LEFT JOIN base.{t} AS o ON {on_o} "
                f"WHERE o.{rid} IS NOT n.{rid} ORDER BY n.{rid}"
            ).fetchall()
        finally:
            conn.execute("DROP TABLE temp.dbvers_fix")
        if not all(map(row_fits, moved)):
            # A key too long for a rowids entry (rowidstream.ROW_MAX): a snapshot holds the rowids.
            changes.needs_keyframe.append(f"{name}: a key too long to record its row's rowid")
            return None
        if moved:
            found[name] = (cols, tuple(tuple(r) for r in moved))
    return RowidFixups(found) if found else None
