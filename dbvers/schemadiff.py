"""What changed between two schemas, in words: tables, indexes, views and triggers created,
dropped or altered, and a table's columns added, dropped or renamed.

L2: imports tables and L0."""

from __future__ import annotations

from typing import Any

from .objects import Schema, SchemaChange
from .tables import read_schema
from .values import quote


def schema_changes(conn: Any, *, stats: bool = False) -> list[SchemaChange]:
    """Human lines for the schema differences between ``base`` and ``main``."""
    return describe_schema_changes(read_schema(conn, "base", stats=stats),
                                   read_schema(conn, "main", stats=stats))


def describe_schema_changes(old: Schema, new: Schema) -> list[SchemaChange]:
    out: list[SchemaChange] = []
    o, n = old.by_name(), new.by_name()
    for name in sorted(n.keys() - o.keys()):
        if not name.startswith("sqlite_autoindex"):
            out.append(SchemaChange(n[name].type, name, "created"))
    for name in sorted(o.keys() - n.keys()):
        if not name.startswith("sqlite_autoindex"):
            out.append(SchemaChange(o[name].type, name, "dropped"))
    for name in sorted(o.keys() & n.keys()):
        if o[name].sql != n[name].sql:
            detail = ""
            if o[name].type == "table":
                detail = _column_change(o[name].sql or "", n[name].sql or "")
            out.append(SchemaChange(n[name].type, name, "altered", detail))
    return out


def _table_columns(sql: str) -> list[str]:
    """Column names declared by a CREATE TABLE statement (parsed by SQLite itself)."""
    import apsw

    conn = apsw.Connection(":memory:")
    try:
        conn.execute(sql)
        name = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchone()[0]
        return [r[1] for r in conn.execute(f"PRAGMA table_info({quote(name)})")]
    except apsw.Error:
        return []
    finally:
        conn.close()


def _column_change(old_sql: str, new_sql: str) -> str:
    a, b = _table_columns(old_sql), _table_columns(new_sql)
    if not a or not b:
        return ""
    added = [c for c in b if c not in a]
    removed = [c for c in a if c not in b]
    if len(added) == 1 and len(removed) == 1 and a.index(removed[0]) == b.index(added[0]):
        return f"column {removed[0]} renamed to {added[0]}"
    parts = []
    if added:
        parts.append("columns added: " + ", ".join(added))
    if removed:
        parts.append("columns dropped: " + ", ".join(removed))
    return "; ".join(parts)
