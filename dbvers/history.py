"""The history of one row: every commit that changed it, with its values after the change.

Patches tell cheaply which commits touched the row (their records carry the key);
only those commits' states are read for the row's full values. Keyframe commits
without a patch (schema changes) are checked by comparing the row in both states.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import apsw

from . import changes as ch
from .errors import UsageError

if TYPE_CHECKING:
    import pandas

    from .repo import Repo


def _key_values(pk: Any, width: int) -> tuple[Any, ...]:
    if isinstance(pk, dict):
        return tuple(pk.values())
    values = tuple(pk) if isinstance(pk, (tuple, list)) else (pk,)
    if len(values) != width:
        raise UsageError(f"the key has {width} column(s); pk= gave {len(values)} value(s)")
    return values


def _read_row(repo: Repo, oid: str, table: str, pk: Any) -> tuple[list[str], tuple[Any, ...] | None]:
    conn = ch.open_private(repo.materialize(oid))
    try:
        tables = ch.classify_tables(conn).tracked
        if table not in tables:
            return [], None
        info = tables[table]
        key = _key_values(pk, len(info.key))
        cond = " AND ".join(f"{k} IS ?" for k in info.key)
        cols = list(info.columns)
        select = ", ".join(ch.quote(c) for c in cols)
        row = conn.execute(f"SELECT {select} FROM {ch.quote(table)} WHERE {cond}", key).fetchone()
        return cols, row
    finally:
        conn.close()


def _patch_touches(repo: Repo, patch: str, table: str, pk: Any) -> bool:
    for change in apsw.Changeset.iter(repo.objects.get(patch, "patch")):
        if change.name != table:
            continue
        values = change.new if change.op == "INSERT" else change.old
        pk_values = tuple(values[i] for i in sorted(change.pk_columns))
        key = _key_values(pk, len(pk_values))
        if pk_values == key and all(type(a) is type(b) for a, b in zip(pk_values, key, strict=True)):
            return True
    return False


def _same(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b and all(type(x) is type(y) for x, y in zip(a, b, strict=True))


def row_history(repo: Repo, table: str, pk: Any, ref: str = "HEAD") -> pandas.DataFrame:
    """Every commit reachable from *ref* (first parents) that changed the row, newest first.

    Columns: commit, timestamp, author, message, diff_type, then the row's
    values after the change (before it, for a removal).
    """
    import pandas as pd

    records: list[dict[str, Any]] = []
    columns: list[str] = []
    oid: str | None = repo.resolve(ref)
    while oid is not None:
        c = repo.get_commit(oid)
        parent = c.parents[0] if c.parents else None
        if table in c.counts and (c.patch is None or _patch_touches(repo, c.patch, table, pk)):
            cols, after = _read_row(repo, oid, table, pk)
            pcols, before = _read_row(repo, parent, table, pk) if parent else ([], None)
            if not _same(before, after):
                kind = "added" if before is None else "removed" if after is None else "modified"
                names, values = (cols, after) if after is not None else (pcols, before)
                columns += [n for n in names if n not in columns]
                rec = {"commit": oid, "timestamp": c.timestamp, "author": c.author,
                       "message": c.summary, "diff_type": kind}
                rec.update(zip(names, values or (), strict=True))
                records.append(rec)
        oid = parent
    base = ["commit", "timestamp", "author", "message", "diff_type"]
    return pd.DataFrame.from_records(records, columns=base + columns)
