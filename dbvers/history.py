"""What the history tells: the log, one commit shown, a table at a version (``read_table``),
the history of one row (``row_history``), and the keys that can differ between two commits
(``changed_keys``).

L3 (it reads states through the Repo). The walks are :mod:`dbvers.graph`'s. For a row's
history, patches tell cheaply which commits touched the row (their records carry the key);
only those commits' states are read for the row's full values. Commits whose
patch doesn't account for every change they counted (keyframes after a schema
change, rows with a NULL key, ...) are checked by comparing the row in both states.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import apsw

from . import changes as ch
from . import graph
from .errors import UsageError
from .frames import arrow_column, frame, meta_columns, rows_frame
from .objects import Commit, CommitLog, Schema, SchemaChange, TableCounts
from .replay import iter_changes
from .rowdiff import KeyHint
from .schemadiff import describe_schema_changes
from .states import table_rows
from .values import param, read_rows

if TYPE_CHECKING:
    import pandas

    from .repo import Repo


#: dbvers's columns in a row's history, before the row's own (Dolt's dolt_history names).
HISTORY_COLUMNS = ("commit_hash", "commit_date", "commit_author", "commit_message", "diff_type")


def log(repo: Repo, ref: str = "HEAD", n: int | None = None) -> CommitLog:
    """Commits reachable from *ref*, newest first (``graph.ancestors``' order), at most *n*."""
    walk = graph.ancestors(repo.get_commit, repo.resolve(ref))
    return CommitLog((c for _, c in islice(walk, n)), repo=repo)


def show(repo: Repo, ref: str = "HEAD") -> tuple[Commit, list[SchemaChange]]:
    """A commit and its schema changes against its first parent (a root's: against nothing)."""
    c = repo.get_commit(repo.resolve(ref))
    old = repo.get_schema(repo.get_commit(c.parents[0]).schema) if c.parents else Schema(())
    return c, describe_schema_changes(old, repo.get_schema(c.schema))


def read_table(repo: Repo, table: str, at: str | None = "HEAD") -> pandas.DataFrame:
    """A table's rows at *at* (``None``: the working database) as a DataFrame, with
    ``Diff.to_pandas``'s dtypes (a NULL doesn't make integers floats)."""
    with repo.locked(write=False):
        if at is not None:
            rows, names, types = table_rows(repo.materialize(repo.resolve(at)), table, at)
        else:
            tmp = repo.worktree.copy_out()
            try:
                with repo.worktree.reading_copy(tmp):
                    rows, names, types = table_rows(tmp, table, "the working database")
            finally:
                tmp.unlink(missing_ok=True)
    return rows_frame(names, rows, types)


def _key_values(pk: Any, info: ch.TableInfo) -> tuple[Any, ...]:
    """The key as a tuple in primary-key order (the rowid for a table without a primary key).

    *pk* is a value, a tuple/list in primary-key order, or a dict by column name.
    """
    names = list(info.pk) if info.pk else [info.rowid_name]
    if isinstance(pk, dict):
        missing = [n for n in names if n not in pk]
        if missing or len(pk) != len(names):
            raise UsageError(f"the key of {info.name} is ({', '.join(names)}); pk= gave {', '.join(map(str, pk))}")
        return tuple(pk[n] for n in names)
    values = tuple(pk) if isinstance(pk, (tuple, list)) else (pk,)
    if len(values) != len(names):
        raise UsageError(f"the key of {info.name} has {len(names)} column(s) ({', '.join(names)}); "
                         f"pk= gave {len(values)} value(s)")
    return values


def _column_order(key: tuple[Any, ...], info: ch.TableInfo) -> tuple[Any, ...]:
    """The key's values in the order its columns have in the table (a patch's order)."""
    if not info.pk:
        return key
    pos = [info.columns.index(c) for c in info.pk]
    return tuple(key[i] for i in sorted(range(len(key)), key=pos.__getitem__))


def _read_row(repo: Repo, oid: str, table: str, pk: Any) -> tuple[list[str], tuple[Any, ...] | None]:
    conn = ch.open_private(repo.materialize(oid))
    try:
        tables = ch.classify_tables(conn).tracked
        if table not in tables:
            return [], None
        info = tables[table]
        key = _key_values(pk, info)
        params = [param(v) for v in key]
        cond = " AND ".join(f"{k} IS {mark}" for k, (mark, _) in zip(info.key, params, strict=True))
        cols = list(info.columns)
        select = ", ".join(ch.quote(c) for c in cols)
        row = next(read_rows(conn, f"SELECT {select} FROM {ch.quote(table)} WHERE {cond}",
                             [v for _, v in params]), None)
        return cols, row
    finally:
        conn.close()


def _table_info(repo: Repo, oid: str, table: str) -> ch.TableInfo | None:
    conn = ch.open_private(repo.materialize(oid))
    try:
        return ch.classify_tables(conn).tracked.get(table)
    finally:
        conn.close()


def _patch_touches(repo: Repo, patch: str, table: str, key: tuple[Any, ...]) -> tuple[bool, dict[str, int]]:
    """Whether the patch changes the row with *key* (column order), and its changes to *table* by kind."""
    found = False
    tally = {"INSERT": 0, "UPDATE": 0, "DELETE": 0}
    for change in iter_changes(patch, repo.objects.open_body(patch, "patch")):
        if change.name != table:
            continue
        tally[change.op] += 1
        if found:
            continue
        try:
            values = change.new if change.op == "INSERT" else change.old
        except UnicodeDecodeError:  # text that isn't UTF-8: let the states tell
            found = True
            continue
        pk_values = tuple(values[i] for i in sorted(change.pk_columns))
        if pk_values == key and all(type(a) is type(b) for a, b in zip(pk_values, key, strict=True)):
            found = True
    return found, tally


def _same(pcols: list[str], before: tuple[Any, ...] | None, cols: list[str],
          after: tuple[Any, ...] | None) -> bool:
    """The row is unchanged, compared as a diff does: on the newer columns, a new column NULL before."""
    if before is None or after is None:
        return before is None and after is None
    old = dict(zip(pcols, before, strict=True))
    for c, v in zip(cols, after, strict=True):
        o = old.get(c)
        if o != v or type(o) is not type(v):
            return False
    return True


def row_history(repo: Repo, table: str, pk: Any, ref: str = "HEAD") -> pandas.DataFrame:
    """Every commit reachable from *ref* (first parents) that changed the row, newest first.

    Columns: ``HISTORY_COLUMNS`` (commit_hash, commit_date, commit_author,
    commit_message, diff_type), then the row's values after the change (before it,
    for a removal). A row column with one of those names keeps it, and dbvers's
    column is prefixed (``frames.meta_columns``): no two columns share a name.
    """
    records: list[tuple[list[Any], dict[str, Any]]] = []
    columns: list[str] = []
    start = repo.resolve(ref)
    info_cache: dict[str, ch.TableInfo | None] = {}

    def info_at(o: str) -> ch.TableInfo | None:
        if o not in info_cache:
            info_cache[o] = _table_info(repo, o, table)
        return info_cache[o]

    head_info = info_at(start)
    if head_info is not None:
        _key_values(pk, head_info)  # a key of the wrong shape: one clear error up front
    for oid, c in graph.first_parents(repo.get_commit, start):
        parent = c.parents[0] if c.parents else None
        if table in c.counts:
            check = True
            if c.patch is not None and parent is not None:
                p = repo.get_commit(parent)
                info = info_at(oid)
                if p.schema == c.schema and info is not None:
                    key = _column_order(_key_values(pk, info), info)
                    touched, tally = _patch_touches(repo, c.patch, table, key)
                    n = c.counts[table]
                    # a patch that accounts for every change counted can say "not this row"
                    exact = [tally["INSERT"], tally["UPDATE"], tally["DELETE"]] == [n.inserts, n.updates, n.deletes]
                    check = touched or not exact
            if check:
                cols, after = _read_row(repo, oid, table, pk)
                pcols, before = _read_row(repo, parent, table, pk) if parent else ([], None)
                if not _same(pcols, before, cols, after):
                    kind = "added" if before is None else "removed" if after is None else "modified"
                    names, values = (cols, after) if after is not None else (pcols, before)
                    columns += [n for n in names if n not in columns]
                    meta = [oid, c.timestamp, c.author, c.summary, kind]
                    records.append((meta, dict(zip(names, values or (), strict=True))))
    # Column by column like a diff's DataFrame: integers stay integers beside NULLs,
    # and a column whose values changed type keeps each value's own type.
    base = meta_columns(columns, HISTORY_COLUMNS)
    arrays = [arrow_column([m[i] for m, _ in records], "TEXT") for i in range(len(base))]
    # a column that is NULL in every listed version is typed by its declaration
    declared = {c: t for info in info_cache.values() if info is not None
                for c, t in zip(info.columns, info.types, strict=True)}
    arrays += [arrow_column([r.get(n) for _, r in records], declared.get(n, "")) for n in columns]
    return frame(base + columns, arrays)


# -- which keys can differ, from the history between two commits -------------------

_INSERT, _UPDATE, _DELETE = apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE, apsw.SQLITE_DELETE


def _first_parent_path(repo: Any, a: str, b: str, max_commits: int) -> list[str] | None:
    """The commits between *a* and *b* on their first-parent chains (back to the first
    common commit, which is left out), or None when the walk would pass *max_commits*."""
    depth: dict[str, int] = {}
    chain_a: list[str] = []
    cur: str | None = a
    while cur is not None and len(chain_a) <= max_commits:
        depth[cur] = len(chain_a)
        chain_a.append(cur)
        c = repo.get_commit(cur)
        cur = c.parents[0] if c.parents else None
    path: list[str] = []
    cur = b
    while cur not in depth:
        if cur is None or len(path) > max_commits:
            return None
        path.append(cur)
        c = repo.get_commit(cur)
        cur = c.parents[0] if c.parents else None
    return path + chain_a[: depth[cur]]


def _patch_keys(changes: Iterable[apsw.TableChange], keys: dict[str, set[Any]], unknown: set[str]) -> dict[str, list[int]]:
    """Add the keys a patchset's changes name to *keys* (a table whose text isn't UTF-8 to
    *unknown*); its changes per table, indexed by opcode."""
    tallies: dict[str, list[int]] = {}
    last = None
    get: Any = None
    add: Any = None
    tally: list[int] = []
    for change in changes:
        if change.name != last:  # a patchset holds each table's changes together
            last = change.name
            get = itemgetter(*sorted(change.pk_columns))
            add = keys.setdefault(last, set()).add
            tally = tallies.setdefault(last, [0] * 32)
        op = change.opcode
        try:
            add(get(change.new if op == _INSERT else change.old))
        except UnicodeDecodeError:  # text that isn't UTF-8: compare the table in full
            unknown.add(last)
        tally[op] += 1
    return tallies


def changed_keys(repo: Any, a: str, b: str, *, max_commits: int = 10_000,
                 max_changes: int = 20_000_000) -> KeyHint | None:
    """Candidate keys between commits *a* and *b*, or None when only a full comparison can tell.

    Both first-parent chains are walked back to their first common commit; every
    commit on the way must keep its parent's schema (a patchset carries no DDL),
    and a table's patch must account for every change the commit counted (changes
    a patchset can't carry, such as rows with a NULL key, make the commit a
    keyframe: its tables are then compared in full).
    """
    if a == b:
        return KeyHint({}, set())
    path = _first_parent_path(repo, a, b, max_commits)
    if path is None:
        return None
    keys: dict[str, set[Any]] = {}
    unknown: set[str] = set()
    seen = 0
    for oid in path:
        c = repo.get_commit(oid)
        if not c.parents or repo.get_commit(c.parents[0]).schema != c.schema:
            return None
        tallies: dict[str, list[int]] = {}
        if c.patch:
            tallies = _patch_keys(iter_changes(c.patch, repo.objects.open_body(c.patch, "patch")), keys, unknown)
            seen += sum(map(sum, tallies.values()))
            if seen > max_changes:
                return None
        for t in tallies.keys() | c.counts.keys():
            n = c.counts.get(t, TableCounts())
            got = tallies.get(t, [0] * 32)
            if [got[_INSERT], got[_UPDATE], got[_DELETE]] != [n.inserts, n.updates, n.deletes]:
                unknown.add(t)
    for t in unknown:
        keys.pop(t, None)
    return KeyHint({t: k for t, k in keys.items() if k}, unknown)
