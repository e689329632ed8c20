"""The keyed row-diff engine: which rows of a table differ between two attached states.

Layer L2. Two states are schemas of one apsw connection (by default ``a`` = the old
side, ``main`` = the new side; any two attached names work, so a three-way merge
can attach base, ours and theirs once and diff base..ours and base..theirs).

* :func:`table_specs` / :func:`table_spec` say how each table is compared
  (:class:`TableSpec`: its key, its columns on each side, renames, typed columns).
* :func:`diff_sql` is one streaming query yielding the changed rows in Dolt's
  ``dolt_diff_<table>`` shape (``diff_type``, then ``from_<col>``, ``to_<col>``
  for every column, key columns first); :class:`dbvers.diff.Diff` filters, pages and
  counts over it.
* :func:`row_changes` runs it and yields :class:`RowChange` records (key, old and
  new values by column) — the form a merge or revert consumes.
* :func:`bag_changes` compares a table as a bag of rows matched by their full
  values (Dolt's rule for keyless tables: rowids are not identities across branches).
* :class:`KeyHint` (made by ``history.changed_keys``) narrows a diff to the keys
  a history's patches name; :func:`make_key_table` puts them on the connection.

Rows are matched on the primary key (rowid for tables without one). When a
table's columns changed, rows are compared on the columns both sides share and a
column only the new side has counts as NULL on the old side; if the key itself
changed, the table is reported as all rows removed and added (``key_changed``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from . import changes as ch
from .values import read_rows

DIFF_TYPES = ("added", "modified", "removed")
_ADDED, _MODIFIED, _REMOVED = ("'added'", "'modified'", "'removed'")  # as SQL literals
OLD, NEW = "a", "main"  # the schema names a Diff attaches its two states as
_key_tables = itertools.count()  # names for row_changes' own key tables (unique per process)


@dataclass(frozen=True)
class TableSpec:
    """How one table is compared: its key, its columns on each side, the output columns."""

    name: str
    key: tuple[str, ...]  # column names; ("rowid",) style for rowid tables without a PK
    key_exprs: tuple[str, ...]  # SQL expressions for the key (quoted names or rowid)
    columns: tuple[str, ...]  # output order: key columns first, then B's order, then A-only
    in_a: frozenset[str]
    in_b: frozenset[str]
    types: dict[str, str] = field(default_factory=dict)  # declared type, B's if present
    key_changed: bool = False
    only_in: str | None = None  # "a" or "b" when the table exists on one side only
    key_a: tuple[str, ...] = ()  # key expressions on each side (a rowid's name can differ)
    key_b: tuple[str, ...] = ()
    row_a: str = "rowid"  # an expression that is NULL only when an outer-joined row is missing
    row_b: str = "rowid"
    typed: frozenset[str] = frozenset()  # columns where 7 and 7.0 can both be stored: compare typeof too
    key_colorder: tuple[int, ...] = (0,)  # key positions sorted by column position (a patch's key order)
    generated: frozenset[str] = frozenset()  # B's generated columns (never inserted or set)
    rowid_b: str | None = None  # B's rowid when B is a rowid table keyed on other columns
    renamed: dict[str, str] = field(default_factory=dict)  # B's name -> A's, for a renamed column
    types_a: dict[str, str] = field(default_factory=dict)  # declared types on each side, by output name
    types_b: dict[str, str] = field(default_factory=dict)

    def a_col(self, c: str) -> str:
        """The quoted name of output column *c* in A's table."""
        return ch.quote(self.renamed.get(c, c))

    @property
    def output_columns(self) -> list[str]:
        out = ["diff_type"]
        for c in self.columns:
            out += [f"from_{c}", f"to_{c}"]
        return out

    @property
    def comparable(self) -> bool:
        """Whether rows are matched by key (the table is on both sides with the same key)."""
        return not (self.only_in or self.key_changed)

    def side_affinity(self, name: str) -> str | None:
        """The affinity of output column *name* on the side it comes from; None when that side lacks it."""
        if name == "diff_type":
            return "TEXT"
        side, c = name.split("_", 1)
        decl = (self.types_a if side == "from" else self.types_b).get(c)
        return None if decl is None else ch.affinity(decl)

    def null_decl(self, name: str) -> str:
        """The declared type that picks an all-NULL output column's Arrow type (none when the
        column's affinity changed between the sides)."""
        if name == "diff_type":
            return "TEXT"
        c = name.split("_", 1)[1]
        return "" if c in self.typed else self.types.get(c, "")


@dataclass(frozen=True)
class RowChange:
    """One changed row: *kind* (``DIFF_TYPES``), its key (``TableSpec.key`` order), and its
    values by output column on each side (None for the side without the row). A side's
    dict holds the columns that side's table has (a rowid key is in ``key`` only)."""

    kind: str
    key: tuple[Any, ...]
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass
class KeyHint:
    """The keys of every row that can differ between two commits, read from their patches.

    ``keys[table]`` holds candidate keys (column order, a scalar for a one-column
    key); a row whose key is not listed is equal on both sides. A table in
    ``unknown`` must be compared in full; a table in neither has no changed rows.
    """

    keys: dict[str, set[Any]]
    unknown: set[str]

    def unchanged(self, spec: TableSpec) -> bool:
        """Whether the history shows no row of *spec*'s table changed."""
        return spec.comparable and spec.name not in self.keys and spec.name not in self.unknown

    def keyed(self, spec: TableSpec) -> bool:
        """Whether *spec*'s rows that can differ are listed (look them up rather than scan)."""
        return spec.comparable and spec.name in self.keys and spec.name not in self.unknown

    def copy(self) -> KeyHint:
        return KeyHint(dict(self.keys), set(self.unknown))  # the key sets are only read


def identical(a: Any, b: Any) -> bool:
    """Whether two SQLite values are the same value of the same type (0.0 and -0.0 differ)."""
    if type(a) is not type(b) or a != b:
        return False
    return not isinstance(a, float) or math.copysign(1.0, a) == math.copysign(1.0, b)


def is_rowid(spec: TableSpec, c: str) -> bool:
    """Whether key column *c* is the rowid of a table without a primary key (not a real column)."""
    return c in ch.ROWID_NAMES and c in spec.key and c not in spec.in_a | spec.in_b


# -- specs ---------------------------------------------------------------------------


def table_specs(conn: apsw.Connection, old: str = OLD, new: str = NEW) -> dict[str, TableSpec]:
    """A spec for every tracked table on either side, by name (sorted)."""
    a, b = ch.classify_tables(conn, old).tracked, ch.classify_tables(conn, new).tracked
    return {name: table_spec(name, a.get(name), b.get(name)) for name in sorted(a.keys() | b.keys())}


def _typed_columns(a: ch.TableInfo | None, b: ch.TableInfo | None, in_both: Iterable[str],
                   types_a: dict[str, str], types_b: dict[str, str]) -> frozenset[str]:
    """Columns that can hold both 7 and 7.0: no affinity, STRICT's ANY, or an affinity that
    changed (only there can two values be equal to SQL and differ in type)."""
    typed: set[str] = set()
    if a and b:
        for c in in_both:
            ta, tb = types_a[c], types_b[c]
            aff = {ch.affinity(ta), ch.affinity(tb)}
            if len(aff) > 1 or "BLOB" in aff or "ANY" in (ta.upper(), tb.upper()):
                typed.add(c)
    return frozenset(typed)


def _row_expr(info: ch.TableInfo | None) -> str:
    if info is None:
        return "rowid"
    return ch.quote(info.pk[0]) if info.without_rowid else info.rowid_name


def table_spec(name: str, a: ch.TableInfo | None, b: ch.TableInfo | None) -> TableSpec:
    """How table *name* is compared, from its description on the old side (*a*) and new (*b*)."""
    ref = b or a
    assert ref is not None
    key_changed = bool(a and b and (a.pk != b.pk or a.without_rowid != b.without_rowid))
    key = ref.pk if ref.pk else (ref.rowid_name,)
    # One column gone and one new at the same place: a rename (as schema_changes
    # says), so its values are compared, not shown as a dropped and an added column.
    renamed = ch.renamed_columns(a, b) if a and b and not key_changed else {}
    back = {old: new for new, old in renamed.items()}
    a_names = tuple(back.get(c, c) for c in a.columns) if a else ()
    in_a = frozenset(a_names)
    in_b = frozenset(b.columns) if b else frozenset()
    ordered: list[str] = list(key)
    for cols in (b.columns if b else (), a_names):
        ordered += [c for c in cols if c not in ordered]
    types_a = dict(zip(a_names, a.types, strict=True)) if a else {}
    types_b = dict(zip(b.columns, b.types, strict=True)) if b else {}
    if not ref.pk:  # the rowid stands in for the key, on each side the table has
        for side, info in ((types_a, a), (types_b, b)):
            if info is not None:
                side[ref.rowid_name] = "INTEGER"
    colorder = tuple(sorted(range(len(key)), key=lambda i: ref.columns.index(key[i]))) if ref.pk else (0,)
    return TableSpec(
        name=name, key=tuple(key), key_exprs=ref.key, columns=tuple(ordered),
        in_a=in_a, in_b=in_b, types={**types_a, **types_b}, key_changed=key_changed,
        only_in=None if (a and b) else ("a" if a else "b"),
        key_a=a.key if a else ref.key, key_b=b.key if b else ref.key,
        row_a=_row_expr(a), row_b=_row_expr(b),
        typed=_typed_columns(a, b, in_a & in_b, types_a, types_b), key_colorder=colorder,
        generated=frozenset(ref.generated),
        rowid_b=b.rowid_name if b and b.hidden_rowid else None,
        renamed=renamed, types_a=types_a, types_b=types_b,
    )


# -- the diff query --------------------------------------------------------------------


def differs_exactly(n: str, o: str) -> str:
    """SQL for "n and o hold different values": type included, and 0.0 differs from -0.0
    (atan2(-0.0, -1) is -pi)."""
    return (f"({n} IS NOT {o} OR typeof({n}) <> typeof({o}) "
            f"OR ({n} = 0 AND atan2({n}, -1) <> atan2({o}, -1)))")


def changed_sql(spec: TableSpec) -> str:
    """SQL that is true when row n (B) differs from row o (A) with the same key; empty
    when no column can differ."""
    differs = []
    for c in spec.columns:
        if c not in spec.in_b or (c in spec.key and c not in spec.typed):
            continue
        q = ch.quote(c)
        if c not in spec.in_a:
            differs.append(f"n.{q} IS NOT NULL")  # a new column counts as NULL on A's side
        elif c in spec.typed:
            # Rows are matched with SQL's '=', so a key too can change in type or sign only
            # (7 -> 7.0, 0.0 -> -0.0): commit records that, so the diff shows it.
            differs.append(differs_exactly(f"n.{q}", f"o.{spec.a_col(c)}"))
        else:
            differs.append(f"n.{q} IS NOT o.{spec.a_col(c)}")
    return " OR ".join(differs)


def _select(spec: TableSpec, kind: str, o: str | None, n: str | None) -> str:
    """``SELECT <kind> AS diff_type, from_/to_ columns`` reading A's row as alias *o* and B's
    as *n* (None: that side has no row)."""

    def value(alias: str | None, present: frozenset[str], c: str) -> str:
        if alias is None:
            return "NULL"
        if is_rowid(spec, c):
            return f"{alias}.{(spec.key_a if alias == 'o' else spec.key_b)[0]}"
        if c not in present:
            return "NULL"
        return f"{alias}.{spec.a_col(c) if alias == 'o' else ch.quote(c)}"

    cols = [f"{kind} AS diff_type"]
    for c in spec.columns:
        cols.append(f"{value(o, spec.in_a, c)} AS {ch.quote('from_' + c)}")
        cols.append(f"{value(n, spec.in_b, c)} AS {ch.quote('to_' + c)}")
    return "SELECT " + ", ".join(cols)


def _keyed_sql(spec: TableSpec, keys: str, oa: str, nb: str) -> str:
    """The changed rows among the candidate keys in ``temp.<keys>`` (``make_key_table``)."""
    o_row, n_row = f"o.{spec.row_a}", f"n.{spec.row_b}"
    changed = changed_sql(spec)
    pairs = [(spec.key_a[j], spec.key_b[j], f"k.k{i}") for i, j in enumerate(spec.key_colorder)]
    # '=' rather than 'IS': candidate keys are never NULL (a patchset can't carry one)
    on_o = " AND ".join(f"o.{ka} = {kk}" for ka, _, kk in pairs)
    on_n = " AND ".join(f"n.{kb} = {kk}" for _, kb, kk in pairs)
    kind = (f"CASE WHEN {o_row} IS NULL THEN 'added' WHEN {n_row} IS NULL THEN 'removed' "
            "ELSE 'modified' END")
    cond = f"({o_row} IS NULL) <> ({n_row} IS NULL)"
    if changed:
        cond += f" OR ({o_row} IS NOT NULL AND {n_row} IS NOT NULL AND ({changed}))"
    return (f"{_select(spec, kind, 'o', 'n')} FROM temp.{keys} AS k LEFT JOIN {oa} AS o ON {on_o} "
            f"LEFT JOIN {nb} AS n ON {on_n} WHERE {cond}")


def _scan_arms(spec: TableSpec, oa: str, nb: str) -> list[tuple[str, str, str]]:
    """The arms of a full comparison: (select ... from, where, the scanned side's rowid).

    Like sqldiff: A left-joined to B (removed and modified rows), then B's rows that
    A lacks (added), each with index lookups into the other side.
    """
    changed = changed_sql(spec)
    n_row = f"n.{spec.row_b}"

    def km(x: str, y: str) -> str:  # x: an alias of A's table, y: of B's
        return " AND ".join(f"{x}.{ka} IS {y}.{kb}" for ka, kb in zip(spec.key_a, spec.key_b, strict=True))

    match = km("o", "n")
    kind = f"CASE WHEN {n_row} IS NULL THEN 'removed' ELSE 'modified' END"
    if not (spec.rowid_b is not None and spec.row_a in ch.ROWID_NAMES):
        return [
            (f"{_select(spec, kind, 'o', 'n')} FROM {oa} AS o LEFT JOIN {nb} AS n ON {match}",
             f"{n_row} IS NULL" + (f" OR {changed}" if changed else ""), f"o.{spec.row_a}"),
            (f"{_select(spec, _ADDED, None, 'n')} FROM {nb} AS n",
             f"NOT EXISTS (SELECT 1 FROM {oa} AS o WHERE {match})", f"n.{spec.row_b}"),
        ]
    # A rowid table keyed on other columns: a row keeps its rowid across updates, so
    # pair rows by rowid first (both scans then read the other side in rowid order,
    # like a merge join) and look keys up in the index only for rows without a
    # same-key partner at the same rowid. Those are paired by key with '=': a key
    # holding a NULL identifies no row (NULLs are distinct in SQL, two rows can hold
    # the same such key), so such a row is only ever the row at its own rowid.
    ra, rb = spec.row_a, spec.row_b

    def same(x: str, y: str) -> str:  # x: an alias of A's table, y: of B's
        return " AND ".join(f"{x}.{ka} = {y}.{kb}" for ka, kb in zip(spec.key_a, spec.key_b, strict=True))

    gone = f"NOT EXISTS (SELECT 1 FROM {nb} AS x WHERE {same('o', 'x')})"
    arms = [(
        f"{_select(spec, kind, 'o', 'n')} FROM {oa} AS o LEFT JOIN {nb} AS n ON n.{rb} = o.{ra} AND {match}",
        f"({n_row} IS NULL AND {gone})" + (f" OR ({n_row} IS NOT NULL AND ({changed}))" if changed else ""),
        f"o.{ra}",
    )]
    if changed:  # same key at another rowid
        arms.append((
            f"{_select(spec, _MODIFIED, 'o', 'n')} FROM {oa} AS o LEFT JOIN {nb} AS r "
            f"ON r.{rb} = o.{ra} AND {km('o', 'r')} JOIN {nb} AS n ON {same('o', 'n')}",
            f"r.{rb} IS NULL AND ({changed})", f"o.{ra}",
        ))
    arms.append((
        f"{_select(spec, _ADDED, None, 'n')} FROM {nb} AS n LEFT JOIN {oa} AS r "
        f"ON r.{ra} = n.{rb} AND {km('r', 'n')}",
        f"CASE WHEN r.{ra} IS NULL THEN NOT EXISTS (SELECT 1 FROM {oa} AS o WHERE {same('o', 'n')}) ELSE 0 END",
        f"n.{rb}",
    ))
    return arms


def diff_sql(spec: TableSpec, *, old: str = OLD, new: str = NEW, keys: str | None = None,
             unchanged: bool = False, scan: tuple[int, int, int] | None = None) -> str:
    """One query yielding every changed row of *spec*'s table, streaming, in the
    ``dolt_diff_<table>`` shape (``spec.output_columns``).

    *keys* names a temp table of candidate keys (``make_key_table``): only those are
    looked up on both sides, in key order. *unchanged*: the caller knows no row
    changed (an empty query). Otherwise both sides are scanned in full; *scan* =
    (arm, lo, hi) asks for one arm of that comparison, restricted to the rowids
    lo..hi of the side it scans (``scanned_arms``, ``rowid_ranges``).
    """
    t = ch.quote(spec.name)
    oa, nb = f"{ch.quote(old)}.{t}", f"{ch.quote(new)}.{t}"
    if not spec.comparable:
        arms = []
        if spec.in_a:
            arms.append(f"{_select(spec, _REMOVED, 'o', None)} FROM {oa} AS o")
        if spec.in_b:
            arms.append(f"{_select(spec, _ADDED, None, 'n')} FROM {nb} AS n")
        return " UNION ALL ".join(arms)
    if unchanged:
        return f"{_select(spec, _MODIFIED, None, None)} WHERE 0"
    if keys is not None:
        return _keyed_sql(spec, keys, oa, nb)
    arms = _scan_arms(spec, oa, nb)
    if scan is None:
        return " UNION ALL ".join(f"{head} WHERE {cond}" for head, cond, _ in arms)
    arm, lo, hi = scan
    head, cond, rowid = arms[arm]
    return f"{head} WHERE ({cond}) AND {rowid} BETWEEN {int(lo)} AND {int(hi)}"


def scanned_arms(spec: TableSpec) -> int:
    """How many arms ``diff_sql`` unions when it scans both sides in full, each in rowid
    order (so each can be split into rowid ranges); 0 when the sides aren't rowid-ordered."""
    if not spec.comparable or spec.row_a not in ch.ROWID_NAMES or spec.row_b not in ch.ROWID_NAMES:
        return 0
    return 3 if spec.rowid_b is not None and changed_sql(spec) else 2


def rowid_ranges(conn: apsw.Connection, spec: TableSpec, parts: int, old: str = OLD,
                 new: str = NEW) -> list[tuple[int, int]]:
    """*parts* contiguous ranges covering the rowids of both sides of *spec*'s table."""
    t = ch.quote(spec.name)
    # one aggregate per query: SQLite answers a lone min() or max() of the rowid from the
    # b-tree's ends, both in one query by a full scan
    ends = [conn.execute(f"SELECT (SELECT min({row}) FROM {db}.{t}), (SELECT max({row}) FROM {db}.{t})").fetchone()
            for db, row in ((ch.quote(old), spec.row_a), (ch.quote(new), spec.row_b))]
    lows = [lo for lo, _ in ends if lo is not None]
    highs = [hi for _, hi in ends if hi is not None]
    if not lows:
        return [(0, 0)]
    lo, hi = min(lows), max(highs)
    step = max(1, -(-(hi - lo + 1) // parts))
    return [(start, min(start + step - 1, hi)) for start in range(lo, hi + 1, step)]


def make_key_table(conn: apsw.Connection, spec: TableSpec, keys: Iterable[Any], name: str) -> str:
    """Put candidate *keys* (``KeyHint.keys[table]``: column order, scalars for one column)
    in a temp table *name* on *conn*, for ``diff_sql(keys=name)``; returns *name*."""
    cols = ", ".join(f"k{i}" for i in range(len(spec.key_colorder)))
    marks = ", ".join("?" for _ in spec.key_colorder)
    conn.execute(f"CREATE TEMP TABLE {ch.quote(name)}({cols}, PRIMARY KEY({cols})) WITHOUT ROWID")
    ordered: Any = keys
    with contextlib.suppress(TypeError):  # in order, the b-tree fills by appending
        ordered = sorted(keys)  # (values of mixed types don't sort in Python: as they come)
    rows = ordered if len(spec.key_colorder) > 1 else ((k,) for k in ordered)
    with conn:
        conn.executemany(f"INSERT OR IGNORE INTO temp.{ch.quote(name)} VALUES ({marks})", rows)
    return name


# -- changes as records ------------------------------------------------------------------


def change_of(spec: TableSpec, row: Sequence[Any]) -> RowChange:
    """A row of ``diff_sql`` (all its output columns) as a record."""
    kind = row[0]
    old = new = None
    if kind != "added":
        old = {c: v for c, v in zip(spec.columns, row[1::2], strict=True) if c in spec.in_a}
    if kind != "removed":
        new = {c: v for c, v in zip(spec.columns, row[2::2], strict=True) if c in spec.in_b}
    side = row[1::2] if kind != "added" else row[2::2]
    key = tuple(side[spec.columns.index(k)] for k in spec.key)
    return RowChange(kind, key, old, new)


def row_changes(conn: apsw.Connection, spec: TableSpec, *, old: str = OLD, new: str = NEW,
                hint: KeyHint | None = None, keys: str | None = None,
                where: str | None = None) -> Iterator[RowChange]:
    """Every changed row of *spec*'s table between schemas *old* and *new* of *conn*, matched
    by key, as records with old and new values (text that isn't UTF-8 as ``values``
    reads it).

    *hint* (``history.changed_keys`` between the two commits) narrows the
    comparison to the keys it names, through a temp table dropped when done;
    *keys* names such a table the caller made (``make_key_table``). *where* is SQL
    over the output columns (``spec.output_columns``).
    """
    made = None
    if hint is not None and hint.unchanged(spec):
        return
    if hint is not None and keys is None and hint.keyed(spec):
        keys = made = make_key_table(conn, spec, hint.keys[spec.name], f"dbvers_keys_{next(_key_tables)}")
    q = f"SELECT * FROM ({diff_sql(spec, old=old, new=new, keys=keys)})"
    if where:
        q += f" WHERE ({where})"
    try:
        for row in read_rows(conn, q):
            yield change_of(spec, row)
    finally:
        if made is not None:
            conn.execute(f"DROP TABLE temp.{ch.quote(made)}")


def bag_changes(conn: apsw.Connection, spec: TableSpec, *, old: str = OLD,
                new: str = NEW) -> Iterator[RowChange]:
    """*spec*'s table compared as a bag of rows matched by their full values (each value
    with its SQLite type): one ``removed`` record per copy of a row the new side has
    fewer of, one ``added`` per copy it has more of; ``key`` is empty.

    Rows are compared on the new side's columns (a column only it has is NULL on
    the old side), as the keyed diff compares them. Zero's sign is not compared.
    """
    cols = [c for c in spec.columns if c in spec.in_b and not is_rowid(spec, c)] if spec.in_b else \
        [c for c in spec.columns if c in spec.in_a and not is_rowid(spec, c)]

    def grouped(db: str, present: frozenset[str], a_side: bool) -> str:
        exprs = [(spec.a_col(c) if a_side else ch.quote(c)) if c in present else "NULL" for c in cols]
        sel = ", ".join(f"{e} AS c{i}, typeof({e}) AS t{i}" for i, e in enumerate(exprs))
        by = ", ".join(f"{e}, typeof({e})" for e in exprs)  # expressions: a column may be named c0
        t = f"{ch.quote(db)}.{ch.quote(spec.name)}"
        if not present:  # the table is on the other side only
            return f"SELECT {sel}, 0 AS n WHERE 0"
        return f"SELECT {sel}, count(*) AS n FROM {t} GROUP BY {by}"

    same = " AND ".join(f"x.c{i} IS y.c{i} AND x.t{i} = y.t{i}" for i in range(len(cols))) or "1"
    picked = ", ".join(f"x.c{i}" for i in range(len(cols)))
    o, n = grouped(old, spec.in_a, True), grouped(new, spec.in_b, False)
    q = (f"WITH o AS ({o}), n AS ({n}) "
         f"SELECT 'removed', x.n - coalesce(y.n, 0), {picked} FROM o AS x LEFT JOIN n AS y ON {same} "
         f"WHERE x.n > coalesce(y.n, 0) "
         f"UNION ALL SELECT 'added', x.n - coalesce(y.n, 0), {picked} FROM n AS x LEFT JOIN o AS y ON {same} "
         f"WHERE x.n > coalesce(y.n, 0)")
    for kind, count, *values in read_rows(conn, q):
        row = dict(zip(cols, values, strict=True))
        for _ in range(count):
            yield RowChange(kind, (), dict(row) if kind == "removed" else None,
                            dict(row) if kind == "added" else None)


__all__ = ["DIFF_TYPES", "NEW", "OLD", "KeyHint", "RowChange", "TableSpec", "bag_changes", "change_of", "changed_sql",
           "diff_sql", "differs_exactly", "identical", "is_rowid", "make_key_table", "row_changes",
           "rowid_ranges", "scanned_arms", "table_spec", "table_specs"]
