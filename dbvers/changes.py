"""Row-level changes between two states of a database, through SQLite's session extension.

This is the only module that uses apsw sessions. It works on a private
connection whose ``main`` is the newer state and whose ``base`` (attached) is the
older one, and produces a patchset that turns ``base`` into ``main``, with
per-table counts. Everything here runs on dbvers's private files only.

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

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import apsw

from .errors import CorruptObjectError
from .objects import RowidFixups, Schema, SchemaEntry, TableCounts

ROWID_NAMES = ("rowid", "_rowid_", "oid")
INTERNAL_TABLES = ("sqlite_sequence",)


def quote(name: str) -> str:
    """Quote an SQL identifier (every identifier that reaches SQL goes through this)."""
    return '"' + name.replace('"', '""') + '"'


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


# -- reading a state --------------------------------------------------------


def is_stats_table(name: str) -> bool:
    """``sqlite_stat1``..``sqlite_stat4``: the query planner's statistics (ANALYZE, PRAGMA optimize)."""
    return name.startswith("sqlite_stat")


def read_schema(conn: apsw.Connection, db: str = "main", *, stats: bool = False) -> Schema:
    """The schema of *db*; the planner's statistics tables only when *stats* (they are
    planner data, not the user's: see ``[stats] version`` in the guide)."""
    rows = conn.execute(
        f"SELECT type, name, tbl_name, sql FROM {quote(db)}.sqlite_schema ORDER BY rowid"
    ).fetchall()
    if not stats:
        rows = [r for r in rows if not is_stats_table(r[1])]
    # Sorted, so that two states with the same objects have the same schema id
    # whatever order their sqlite_schema rows happen to be in.
    return Schema(tuple(sorted((SchemaEntry(*r) for r in rows), key=lambda e: (e.type, e.name))))


def read_pragmas(conn: apsw.Connection, db: str = "main") -> dict[str, int]:
    q = quote(db)
    return {
        "user_version": conn.execute(f"PRAGMA {q}.user_version").fetchone()[0],
        "application_id": conn.execute(f"PRAGMA {q}.application_id").fetchone()[0],
    }


def read_sequences(conn: apsw.Connection, db: str = "main") -> tuple[tuple[int, str, int], ...]:
    q = quote(db)
    exists = conn.execute(
        f"SELECT 1 FROM {q}.sqlite_schema WHERE name = 'sqlite_sequence'"
    ).fetchone()
    if not exists:
        return ()
    rows = conn.execute(f"SELECT rowid, name, seq FROM {q}.sqlite_sequence ORDER BY rowid")
    return tuple((r[0], r[1], r[2]) for r in rows)


def affinity(decl_type: str) -> str:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html §3.1)."""
    t = decl_type.upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    pk: tuple[str, ...]  # in primary-key order; empty for rowid tables without one
    without_rowid: bool
    generated: tuple[str, ...] = ()
    notnull: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[object, ...]:
        return (self.columns, self.pk, self.without_rowid)

    @property
    def rowid_name(self) -> str:
        for n in ROWID_NAMES:
            if n not in self.columns:
                return n
        return "rowid"  # all three shadowed: such a table has no reachable rowid

    @property
    def key(self) -> tuple[str, ...]:
        """Expressions that identify a row: the primary key, or the rowid."""
        return tuple(quote(c) for c in self.pk) if self.pk else (self.rowid_name,)

    @property
    def rowid_hidden(self) -> bool:
        """A rowid table without PK with a column named ``_rowid_``: the session extension
        names the rowid ``_rowid_`` in its SQL, so it would key rows on that column instead."""
        return not self.pk and not self.without_rowid and "_rowid_" in self.columns

    @property
    def aliases_rowid(self) -> bool:
        """An INTEGER PRIMARY KEY: the key column is the rowid itself."""
        return (len(self.pk) == 1 and not self.without_rowid
                and self.types[self.columns.index(self.pk[0])].upper() == "INTEGER")

    @property
    def hidden_rowid(self) -> bool:
        """A rowid table keyed on other columns: its rowid is in no column and in no patchset."""
        return bool(self.pk) and not self.without_rowid and not self.aliases_rowid

    @property
    def has_nullable_pk(self) -> bool:
        # Ordinary tables with a non-INTEGER PRIMARY KEY accept NULL key values
        # (a SQLite legacy); WITHOUT ROWID tables and rowid aliases cannot hold them.
        return bool(self.pk) and not self.without_rowid and not set(self.pk) <= set(self.notnull) \
            and not self.aliases_rowid

    def untyped_columns(self) -> list[str]:
        """Non-key columns where int 7 and real 7.0 can both be stored (BLOB affinity)."""
        return [
            c
            for c, t in zip(self.columns, self.types, strict=True)
            if affinity(t) == "BLOB" and c not in self.pk and c not in self.generated
        ]


@dataclass
class TableSet:
    tracked: dict[str, TableInfo]
    virtual: list[str]  # virtual tables: their data lives in shadow tables
    opaque: dict[str, TableInfo]  # shadow and sqlite_stat tables: kept through keyframes


def classify_tables(conn: apsw.Connection, db: str = "main", *, stats: bool = False) -> TableSet:
    q = quote(db)
    tracked: dict[str, TableInfo] = {}
    opaque: dict[str, TableInfo] = {}
    virtual: list[str] = []
    for _schema, name, kind, _ncol, wr, _strict in conn.execute(f"PRAGMA {q}.table_list"):
        if _schema != db or name in INTERNAL_TABLES or name.startswith("sqlite_temp"):
            continue
        if name == "sqlite_schema" or name == "sqlite_master":
            continue
        if kind == "virtual":
            virtual.append(name)
            continue
        if kind == "view":
            continue
        if is_stats_table(name) and not stats:
            continue
        info = table_info(conn, name, db, bool(wr))
        if kind == "shadow" or is_stats_table(name):
            opaque[name] = info
        elif kind == "table":
            tracked[name] = info
    return TableSet(tracked, sorted(virtual), opaque)


def table_info(conn: apsw.Connection, table: str, db: str, without_rowid: bool) -> TableInfo:
    cols: list[str] = []
    types: list[str] = []
    pk: list[tuple[int, str]] = []
    generated: list[str] = []
    notnull: list[str] = []
    for _cid, name, ctype, nn, _dflt, pkidx, hidden in conn.execute(
        f"PRAGMA {quote(db)}.table_xinfo({quote(table)})"
    ):
        if hidden == 1:  # hidden columns of virtual tables
            continue
        cols.append(name)
        types.append(ctype or "")
        if pkidx:
            pk.append((pkidx, name))
        if hidden in (2, 3):
            generated.append(name)
        if nn:
            notnull.append(name)
    return TableInfo(
        table,
        tuple(cols),
        tuple(types),
        tuple(n for _, n in sorted(pk)),
        without_rowid,
        tuple(generated),
        tuple(notnull),
    )


# -- comparing two states ---------------------------------------------------


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
    """Rows with a NULL in the primary key are invisible to sessions: compare them in SQL.

    Such rows are matched on their rowid (a table that can hold them is a rowid
    table), so a changed row counts once, as an update.
    """
    t = quote(info.name)
    nullpk = " OR ".join(f"{quote(c)} IS NULL" for c in info.pk)
    cols = ", ".join(f"{quote(c)}, typeof({quote(c)})" for c in info.columns)
    rid = info.rowid_name
    has_new = conn.execute(f"SELECT 1 FROM main.{t} WHERE {nullpk} LIMIT 1").fetchone()
    has_old = conn.execute(f"SELECT 1 FROM base.{t} WHERE {nullpk} LIMIT 1").fetchone()
    if not has_new and not has_old:
        return TableCounts()
    inserts, updates, deletes = conn.execute(
        f"WITH n(r) AS (SELECT {rid} FROM (SELECT {rid}, {cols} FROM main.{t} WHERE {nullpk} "
        f"EXCEPT SELECT {rid}, {cols} FROM base.{t} WHERE {nullpk})), "
        f"o(r) AS (SELECT {rid} FROM (SELECT {rid}, {cols} FROM base.{t} WHERE {nullpk} "
        f"EXCEPT SELECT {rid}, {cols} FROM main.{t} WHERE {nullpk})) "
        "SELECT (SELECT count(*) FROM n WHERE r NOT IN o), (SELECT count(*) FROM n WHERE r IN o), "
        "(SELECT count(*) FROM o WHERE r NOT IN n)"
    ).fetchone()
    return TableCounts(inserts, updates, deletes)


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
    counts: dict[str, TableCounts] = {}
    needs_keyframe: list[str] = []
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

    patchset: bytes | None = None
    # Before the main session exists: these attach private schemas of their own.
    generated_parts = [
        ps for info in same_shape
        if info.generated and not info.rowid_hidden and (ps := _stored_columns_patchset(conn, info))
    ]
    if same_shape:
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

    # Shadow tables (FTS5 and friends) and sqlite_stat*: a change means a keyframe.
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

    return Changes(
        patchset=patchset,
        counts={t: c for t, c in counts.items() if c.total},
        schema_changed=new_schema.id != old_schema.id,
        needs_keyframe=needs_keyframe,
        untracked=new.virtual,
        key_changed=key_changed,
        tables=new.tracked,
    )


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
        if moved:
            found[name] = (cols, tuple(tuple(r) for r in moved))
    return RowidFixups(found) if found else None


def _restore_rowids(conn: apsw.Connection, fixups: RowidFixups, oid: str) -> None:
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


# -- replaying --------------------------------------------------------------


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
                _restore_rowids(conn, fixups, oid)
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
