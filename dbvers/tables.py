"""The tables of a state as dbvers sees them, read from a private apsw connection.

Its schema, header pragmas and ``sqlite_sequence``; each table's columns, declared types, key and
generated columns (:class:`TableInfo`); and the classification that decides how a table is
versioned (:func:`classify_tables`): ordinary tables are *tracked* through patchsets (a keyless one
by its rowid); virtual tables hold no rows of their own, their shadow tables and the planner's
``sqlite_stat*`` tables are *opaque*, kept exactly through keyframes.

L2: imports only L0 (errors, objects, values).
"""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from .errors import UndecodableSchemaError
from .objects import Schema, SchemaEntry
from .values import decode_text, quote

ROWID_NAMES = ("rowid", "_rowid_", "oid")
INTERNAL_TABLES = ("sqlite_sequence",)


def is_stats_table(name: str) -> bool:
    """``sqlite_stat1``..``sqlite_stat4``: the query planner's statistics (ANALYZE, PRAGMA optimize)."""
    return name.startswith("sqlite_stat")


def read_schema(conn: apsw.Connection, db: str = "main", *, stats: bool = False) -> Schema:
    """The schema of *db*; the planner's statistics tables only when *stats* (they are
    planner data, not the user's: see ``[stats] version`` in the guide)."""
    rows = schema_rows(conn, db)
    if not stats:
        rows = [r for r in rows if not is_stats_table(r[1])]
    # Sorted, so that two states with the same objects have the same schema id
    # whatever order their sqlite_schema rows happen to be in.
    return Schema(tuple(sorted((SchemaEntry(*r) for r in rows), key=lambda e: (e.type, e.name))))


def schema_rows(conn: apsw.Connection, db: str = "main") -> list[tuple[str, str, str, str | None]]:
    """``sqlite_schema``'s (type, name, tbl_name, sql) rows in rowid order, read as bytes so
    that text which isn't UTF-8 (legal in SQLite, but no statement can name it: both
    libraries take SQL as UTF-8) is an :class:`UndecodableSchemaError` naming the object."""
    out = []
    for kind, *parts in conn.execute(
        f"SELECT type, CAST(name AS BLOB), CAST(tbl_name AS BLOB), CAST(sql AS BLOB) "
        f"FROM {quote(db)}.sqlite_schema ORDER BY rowid"
    ):
        try:
            name, tbl, sql = (p if p is None else bytes(p).decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            if not _is_utf8(parts[0]) or _is_utf8(parts[1]):  # the object, by its own name
                raise UndecodableSchemaError(kind, decode_text(bytes(parts[0])),
                                             "sql" if _is_utf8(parts[0]) else "name") from None
            # an index or trigger of a table whose name isn't UTF-8: name the table
            raise UndecodableSchemaError("table", decode_text(bytes(parts[1])), "name") from None
        out.append((kind, name, tbl, sql))
    return out


def _is_utf8(data: bytes | None) -> bool:
    try:
        bytes(data or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
    try:
        listed = conn.execute(f"PRAGMA {q}.table_list").fetchall()
    except UnicodeDecodeError:
        schema_rows(conn, db)  # names the object whose name isn't UTF-8
        raise
    for _schema, name, kind, _ncol, wr, _strict in listed:
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
    try:
        # _dflt is a default's SQL text: the one column that may hold bytes that aren't UTF-8
        # in a table dbvers can version (sqlite_schema's text is checked by schema_rows)
        xinfo = conn.execute("SELECT cid, name, type, \"notnull\", NULL, pk, hidden "
                             "FROM pragma_table_xinfo(?, ?)", (table, db)).fetchall()
    except UnicodeDecodeError:
        schema_rows(conn, db)  # names the table whose SQL (a column's name) isn't UTF-8
        raise
    for _cid, name, ctype, nn, _dflt, pkidx, hidden in xinfo:
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

