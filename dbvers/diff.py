"""Diff: every row that differs between two states, as rows, Arrow tables or DataFrames.

Two materialized states are attached to one private, read-only apsw connection
(``main`` = B, the newer side; ``a`` = A). For each table a single streaming
query yields the changed rows in Dolt's ``dolt_diff_<table>`` shape:
``diff_type`` then ``from_<col>``, ``to_<col>`` for every column, key columns
first. Rows are matched on the primary key (rowid for tables without one);
when a table's columns changed, rows are compared on the columns both sides
share and a column only B has counts as NULL on A's side. If the key itself
changed, the table is reported as all rows removed and added (``key_changed``).

pandas and pyarrow are imported only by the methods that return them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from . import changes as ch
from . import columnar, frames
from .errors import TableNotFoundError, UsageError
from .fsutil import temp_prefix
from .objects import SchemaChange, TableCounts
from .values import Rows, param, read_rows, sql_literal

if TYPE_CHECKING:
    import pandas
    import pyarrow

DIFF_TYPES = ("added", "modified", "removed")
COMMIT_COLUMNS = ("from_commit", "to_commit")  # after the rows' columns in to_pandas/to_arrow
_ADDED, _MODIFIED, _REMOVED = ("'added'", "'modified'", "'removed'")  # as SQL literals
_INSERT, _UPDATE, _DELETE = apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE, apsw.SQLITE_DELETE
# Below this many candidate keys (or half as many rows to compare) one connection is
# as fast as several.
_PARALLEL_ROWS = 20_000
_CLASSES_PER_MASK = 15  # 4 bits per column in one 64-bit integer
_log = logging.getLogger(__name__)


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


def _identical(a: Any, b: Any) -> bool:
    """Whether two SQLite values are the same value of the same type (0.0 and -0.0 differ)."""
    if type(a) is not type(b) or a != b:
        return False
    return not isinstance(a, float) or math.copysign(1.0, a) == math.copysign(1.0, b)


class Diff:
    """The differences from state A to state B. Use as a context manager or call ``close()``."""

    def __init__(self, a_path: Path, b_path: Path, *, a_label: str, b_label: str,
                 a_commit: str | None = None, b_commit: str | None = None,
                 owned: Sequence[Path] = (), workdir: Path | None = None,
                 hint: KeyHint | None = None) -> None:
        self.a_label, self.b_label = a_label, b_label
        self.a_commit, self.b_commit = a_commit, b_commit
        # Which rows can differ, when the history between two commits says so (changed_keys).
        self._hint = hint
        self._key_tables: dict[str, str] = {}
        # Hard links (or copies) of both states in a private directory: the cache
        # may prune its files while this Diff is alive.
        # Its name carries this process's pid: recoveries remove it only once this process is gone.
        self._dir = Path(tempfile.mkdtemp(prefix=temp_prefix("diff"), dir=workdir))
        self._a = self._pin(a_path, "a.db")
        self._b = self._pin(b_path, "b.db")
        for p in owned:
            p.unlink(missing_ok=True)
        self._conn = apsw.Connection(
            columnar.uri(self._b), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        )
        self._conn.execute("ATTACH ? AS a", (columnar.uri(self._a),))
        self._finalizer = weakref.finalize(self, _cleanup, self._conn, self._dir)
        self._specs: dict[str, TableSpec] | None = None
        self._counts: dict[str, TableCounts] | None = None

    def _pin(self, src: Path, name: str) -> Path:
        dst = self._dir / name
        try:
            dst.hardlink_to(src)
        except OSError:
            shutil.copyfile(src, dst)
        return dst

    def close(self) -> None:
        self._finalizer()

    def copy(self) -> Diff:
        """The same two states on a connection of its own (for another thread); close it too."""
        h = self._hint
        hint = None if h is None else KeyHint(dict(h.keys), set(h.unknown))  # keys are only read
        return Diff(self._a, self._b, a_label=self.a_label, b_label=self.b_label,
                    a_commit=self.a_commit, b_commit=self.b_commit, workdir=self._dir.parent, hint=hint)

    @property
    def nbytes(self) -> int:
        """The size of both states' files: about what a full comparison has to read."""
        return self._a.stat().st_size + self._b.stat().st_size

    def __enter__(self) -> Diff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<dbvers.Diff {self.a_label}..{self.b_label}: {len(self.tables)} table(s) changed>"

    def __str__(self) -> str:
        """What ``dbvers diff`` prints, each table cut to its first rows (plain text)."""
        from .render.html import diff_text

        return diff_text(self, colour=False)

    # -- notebook views (dbvers.render; imported only when asked for) ----------------
    def _repr_html_(self) -> str:
        from .render.html import diff_html

        return diff_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from .render.html import diff_text

        p.text(repr(self) if cycle else diff_text(self))

    def widget(self, **options: Any) -> Any:
        """An ipywidgets view: summary, one tab per table, paging, filter, skinny, export.

        Options: ``page_size``, ``where``, ``skinny``, ``namespace`` (where the export
        button puts DataFrames; default: the IPython user namespace).
        """
        from .render.widgets import DiffView

        return DiffView(self, **options)

    # -- structure -------------------------------------------------------------
    def _table_sets(self) -> tuple[ch.TableSet, ch.TableSet]:
        return ch.classify_tables(self._conn, "a"), ch.classify_tables(self._conn, "main")

    @property
    def specs(self) -> dict[str, TableSpec]:
        if self._specs is None:
            old, new = self._table_sets()
            specs: dict[str, TableSpec] = {}
            for name in sorted(old.tracked.keys() | new.tracked.keys()):
                specs[name] = _spec(name, old.tracked.get(name), new.tracked.get(name))
            self._specs = specs
        return self._specs

    def spec(self, table: str) -> TableSpec:
        try:
            return self.specs[table]
        except KeyError:
            raise TableNotFoundError(table, f"{self.a_label} or {self.b_label}") from None

    @property
    def schema_changes(self) -> list[SchemaChange]:
        from .schemadiff import describe_schema_changes

        return describe_schema_changes(ch.read_schema(self._conn, "a"), ch.read_schema(self._conn, "main"))

    @property
    def pragma_changes(self) -> dict[str, tuple[int, int]]:
        """Header values a commit versions that differ: {name: (in A, in B)}."""
        pa, pb = ch.read_pragmas(self._conn, "a"), ch.read_pragmas(self._conn, "main")
        return {k: (pa[k], pb[k]) for k in pb if pa.get(k) != pb[k]}

    @property
    def virtual_changes(self) -> list[str]:
        """Virtual tables (FTS5, ...) whose contents differ; they have no row diff of their
        own (their rows live in shadow tables), so they are named, not shown row by row."""
        return ch.changed_virtual_tables(self._conn, "main", "a")

    @property
    def changed(self) -> bool:
        """Whether anything a commit would record differs: rows, schema, virtual tables'
        contents or header pragmas (what ``--exit-code`` and ``status`` go by)."""
        return bool(self.tables or self.virtual_changes or self.pragma_changes)

    def counts(self) -> dict[str, TableCounts]:
        """Per-table added/modified/removed counts (all tables that differ)."""
        if self._counts is None:
            self._counts = {}
            for name in self.specs:
                if (c := self.count_kinds(name)).total:
                    self._counts[name] = c
        return self._counts

    def _filtered_sql(self, table: str, select: str, where: str | None, tail: str = "",
                      keys: str | None = None, scan: tuple[int, int, int] | None = None) -> str:
        """``SELECT <select> FROM (<table's diff>) [WHERE where] <tail>``; *keys* and *scan*
        as in ``_union_sql``."""
        q = f"SELECT {select} FROM ({self._union_sql(self.spec(table), keys, scan)})"
        if where:
            q += f" WHERE ({where})"
        return q + tail

    def _filtered(self, table: str, select: str, where: str | None, tail: str = "") -> Rows:
        """Run ``_filtered_sql`` on the diff's connection; its rows (``read_rows``).

        *where* is the user's SQL; an error in it is one line, not a traceback.
        """
        try:
            return read_rows(self._conn, self._filtered_sql(table, select, where, tail))
        except apsw.SQLError as e:
            raise UsageError(f"bad --where expression for {table}: {e}") from None

    def count_kinds(self, table: str, where: str | None = None) -> TableCounts:
        """Added/modified/removed counts of one table, optionally filtered by *where*."""
        row = next(self._filtered(
            table, "sum(diff_type = 'added'), sum(diff_type = 'modified'), sum(diff_type = 'removed')",
            where))
        return TableCounts(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))

    def where_applies(self, table: str, where: str) -> bool:
        """Whether *where* is valid SQL over this table's diff columns (it may name others' columns)."""
        try:
            self._conn.execute(f"SELECT 1 FROM ({self._union_sql(self.spec(table))}) WHERE ({where}) LIMIT 0").fetchall()
        except apsw.SQLError:
            return False
        return True

    @property
    def tables(self) -> list[str]:
        """Tables whose rows or schema differ."""
        changed = set(self.counts())
        changed.update(s.name for s in self.schema_changes if s.type == "table")
        return sorted(changed)

    def summary(self) -> pandas.DataFrame:
        import pandas as pd

        schema = {}
        for s in self.schema_changes:
            if s.type == "table":
                schema[s.name] = s.change if not s.detail else f"{s.change} ({s.detail})"
        rows = []
        counts = self.counts()
        for t in self.tables:
            c = counts.get(t, TableCounts())
            rows.append({"table": t, "added": c.inserts, "modified": c.updates,
                         "removed": c.deletes, "schema_change": schema.get(t, "")})
        df = pd.DataFrame(rows, columns=["table", "added", "modified", "removed", "schema_change"])
        return df.astype({"added": "int64", "modified": "int64", "removed": "int64"})

    # -- rows ----------------------------------------------------------------
    def unchanged(self, table: str) -> bool:
        """True when the history between the two commits shows no row of *table* changed."""
        spec = self.spec(table)
        h = self._hint
        return (h is not None and spec.only_in is None and not spec.key_changed
                and table not in h.keys and table not in h.unknown)

    def _key_table(self, spec: TableSpec) -> str:
        """A temp table of the candidate keys of *spec*'s table (from the patches), made once."""
        name = self._key_tables.get(spec.name)
        if name is None:
            assert self._hint is not None
            keys = self._hint.keys[spec.name]
            name = f"dbvers_keys_{len(self._key_tables)}"
            cols = ", ".join(f"k{i}" for i in range(len(spec.key_colorder)))
            marks = ", ".join("?" for _ in spec.key_colorder)
            self._conn.execute(f"CREATE TEMP TABLE {name}({cols}, PRIMARY KEY({cols})) WITHOUT ROWID")
            ordered: Any = keys
            with contextlib.suppress(TypeError):  # in order, the b-tree fills by appending
                ordered = sorted(keys)  # (values of mixed types don't sort in Python: as they come)
            rows = ordered if len(spec.key_colorder) > 1 else ((k,) for k in ordered)
            with self._conn:
                self._conn.executemany(f"INSERT OR IGNORE INTO temp.{name} VALUES ({marks})", rows)
            self._key_tables[spec.name] = name
        return name

    def _keyed(self, spec: TableSpec) -> bool:
        """Whether *spec*'s diff looks up the keys the patches name (a key table) rather than scan."""
        return (self._hint is not None and spec.name not in self._hint.unknown
                and not (spec.only_in or spec.key_changed) and not self.unchanged(spec.name))

    def _union_sql(self, spec: TableSpec, keys: str | None = None,
                   scan: tuple[int, int, int] | None = None) -> str:
        """One query yielding every changed row of *spec*'s table, streaming.

        Between two commits whose patches name every changed key (``changed_keys``),
        only those keys are looked up on both sides, in key order. Otherwise both
        sides are scanned, like sqldiff: A left-joined to B (removed and modified
        rows), then B's rows that A lacks (added), each with index lookups into
        the other side.

        *keys* names a temp table of candidate keys the caller has made on the
        connection that runs the query; by default the diff's own is made.
        *scan* = (arm, lo, hi) asks for one arm of a full comparison, restricted to
        the rowids lo..hi of the side it scans (``_scanned_arms``).
        """
        t = ch.quote(spec.name)

        def value(alias: str | None, present: frozenset[str], c: str) -> str:
            if alias is None:
                return "NULL"
            if _is_rowid(spec, c):
                return f"{alias}.{(spec.key_a if alias == 'o' else spec.key_b)[0]}"
            if c not in present:
                return "NULL"
            return f"{alias}.{spec.a_col(c) if alias == 'o' else ch.quote(c)}"

        def select(kind: str, o: str | None, n: str | None) -> str:
            cols = [f"{kind} AS diff_type"]
            for c in spec.columns:
                cols.append(f"{value(o, spec.in_a, c)} AS {ch.quote('from_' + c)}")
                cols.append(f"{value(n, spec.in_b, c)} AS {ch.quote('to_' + c)}")
            return "SELECT " + ", ".join(cols)

        if spec.only_in or spec.key_changed:
            arms = []
            if spec.in_a:
                arms.append(f"{select(_REMOVED, 'o', None)} FROM a.{t} AS o")
            if spec.in_b:
                arms.append(f"{select(_ADDED, None, 'n')} FROM main.{t} AS n")
            return " UNION ALL ".join(arms)
        if self.unchanged(spec.name):
            return f"{select(_MODIFIED, None, None)} WHERE 0"
        changed = _changed_sql(spec)
        o_row, n_row = f"o.{spec.row_a}", f"n.{spec.row_b}"
        if self._keyed(spec):
            k = keys or self._key_table(spec)
            pairs = [(spec.key_a[j], spec.key_b[j], f"k.k{i}") for i, j in enumerate(spec.key_colorder)]
            # '=' rather than 'IS': candidate keys are never NULL (a patchset can't carry one)
            on_o = " AND ".join(f"o.{ka} = {kk}" for ka, _, kk in pairs)
            on_n = " AND ".join(f"n.{kb} = {kk}" for _, kb, kk in pairs)
            kind = (f"CASE WHEN {o_row} IS NULL THEN 'added' WHEN {n_row} IS NULL THEN 'removed' "
                    "ELSE 'modified' END")
            cond = f"({o_row} IS NULL) <> ({n_row} IS NULL)"
            if changed:
                cond += f" OR ({o_row} IS NOT NULL AND {n_row} IS NOT NULL AND ({changed}))"
            return (f"{select(kind, 'o', 'n')} FROM temp.{k} AS k LEFT JOIN a.{t} AS o ON {on_o} "
                    f"LEFT JOIN main.{t} AS n ON {on_n} WHERE {cond}")
        def km(x: str, y: str) -> str:  # x: an alias of A's table, y: of B's
            return " AND ".join(f"{x}.{ka} IS {y}.{kb}" for ka, kb in zip(spec.key_a, spec.key_b, strict=True))

        match = km("o", "n")
        kind = f"CASE WHEN {n_row} IS NULL THEN 'removed' ELSE 'modified' END"
        arms: list[tuple[str, str, str]] = []  # (select ... from, where, the scanned side's rowid)
        if spec.rowid_b is not None and spec.row_a in ch.ROWID_NAMES:
            # A rowid table keyed on other columns: a row keeps its rowid across
            # updates, so pair rows by rowid first (both scans then read the other
            # side in rowid order, like a merge join) and look keys up in the index
            # only for rows without a same-key partner at the same rowid.
            ra, rb = spec.row_a, spec.row_b
            gone = f"NOT EXISTS (SELECT 1 FROM main.{t} AS x WHERE {km('o', 'x')})"
            arms.append((
                f"{select(kind, 'o', 'n')} FROM a.{t} AS o LEFT JOIN main.{t} AS n ON n.{rb} = o.{ra} AND {match}",
                f"({n_row} IS NULL AND {gone})" + (f" OR ({n_row} IS NOT NULL AND ({changed}))" if changed else ""),
                f"o.{ra}",
            ))
            if changed:  # same key at another rowid
                arms.append((
                    f"{select(_MODIFIED, 'o', 'n')} FROM a.{t} AS o LEFT JOIN main.{t} AS r "
                    f"ON r.{rb} = o.{ra} AND {km('o', 'r')} JOIN main.{t} AS n ON {match}",
                    f"r.{rb} IS NULL AND ({changed})",
                    f"o.{ra}",
                ))
            arms.append((
                f"{select(_ADDED, None, 'n')} FROM main.{t} AS n LEFT JOIN a.{t} AS r "
                f"ON r.{ra} = n.{rb} AND {km('r', 'n')}",
                f"CASE WHEN r.{ra} IS NULL THEN NOT EXISTS (SELECT 1 FROM a.{t} AS o WHERE {match}) ELSE 0 END",
                f"n.{rb}",
            ))
        else:
            arms.append((
                f"{select(kind, 'o', 'n')} FROM a.{t} AS o LEFT JOIN main.{t} AS n ON {match}",
                f"{n_row} IS NULL" + (f" OR {changed}" if changed else ""),
                f"o.{spec.row_a}",
            ))
            arms.append((
                f"{select(_ADDED, None, 'n')} FROM main.{t} AS n",
                f"NOT EXISTS (SELECT 1 FROM a.{t} AS o WHERE {match})",
                f"n.{spec.row_b}",
            ))
        if scan is None:
            return " UNION ALL ".join(f"{head} WHERE {cond}" for head, cond, _ in arms)
        arm, lo, hi = scan
        head, cond, rowid = arms[arm]
        return f"{head} WHERE ({cond}) AND {rowid} BETWEEN {int(lo)} AND {int(hi)}"

    def _scanned_arms(self, spec: TableSpec) -> int:
        """How many arms ``_union_sql`` unions when it scans both sides, each in rowid order
        (so each can be split into rowid ranges); 0 when it doesn't."""
        if (spec.only_in or spec.key_changed or self.unchanged(spec.name) or self._keyed(spec)
                or spec.row_a not in ch.ROWID_NAMES or spec.row_b not in ch.ROWID_NAMES):
            return 0
        return 3 if spec.rowid_b is not None and _changed_sql(spec) else 2

    def query(self, table: str, *, where: str | None = None, limit: int | None = None,
              columns: Sequence[str] | None = None, offset: int = 0,
              exprs: Sequence[str] | None = None) -> tuple[list[str], Rows]:
        """The changed rows of *table* as a streaming cursor over the output columns.

        *offset* skips that many rows first (paging, as the notebook widget does).
        *exprs* selects SQL expressions over the output columns instead (formatting
        done by SQLite, as the CSV export does).
        """
        out = list(columns) if columns is not None else self.spec(table).output_columns
        select = ", ".join(exprs if exprs is not None else [ch.quote(c) for c in out])
        tail = ""
        if limit is not None or offset:
            tail += f" LIMIT {int(limit) if limit is not None else -1}"
        if offset:
            tail += f" OFFSET {int(offset)}"
        return out, self._filtered(table, select, where, tail)

    def changed_columns(self, table: str, where: str | None = None, *, limit: int | None = None,
                        offset: int = 0) -> list[str]:
        """Key columns plus columns whose value differs in at least one changed row (``--skinny``).

        With *limit*/*offset*, only the rows that page shows count (the same rows
        ``query`` returns for them): what is shown is computed from what is shown.
        """
        spec = self.spec(table)
        checks = ", ".join(
            f"max({ch.quote('from_' + c)} IS NOT {ch.quote('to_' + c)} OR "
            f"typeof({ch.quote('from_' + c)}) <> typeof({ch.quote('to_' + c)}))"
            for c in spec.columns
        )
        if limit is None and not offset:
            flags = next(self._filtered(table, checks, where))
        else:
            tail = f" LIMIT {int(limit) if limit is not None else -1} OFFSET {int(offset)}"
            try:
                flags = self._conn.execute(
                    f"SELECT {checks} FROM ({self._filtered_sql(table, '*', where, tail)})").fetchone()
            except apsw.SQLError as e:
                raise UsageError(f"bad --where expression for {table}: {e}") from None
        return [c for c, f in zip(spec.columns, flags, strict=True) if c in spec.key or f]

    def output_columns(self, table: str, *, skinny: bool = False, where: str | None = None,
                       limit: int | None = None, offset: int = 0) -> list[str]:
        spec = self.spec(table)
        cols = (self.changed_columns(table, where, limit=limit, offset=offset) if skinny
                else list(spec.columns))
        out = ["diff_type"]
        for c in cols:
            out += [f"from_{c}", f"to_{c}"]
        return out

    def iter_rows(self, table: str, *, where: str | None = None, limit: int | None = None,
                  skinny: bool = False, offset: int = 0) -> Iterator[tuple[Any, ...]]:
        cols = self.output_columns(table, skinny=skinny, where=where, limit=limit, offset=offset)
        _, cur = self.query(table, where=where, limit=limit, columns=cols, offset=offset)
        yield from cur

    def count(self, table: str, where: str | None = None) -> int:
        return int(next(self._filtered(table, "count(*)", where))[0])

    def _columns(self, table: str, where: str | None, limit: int | None,
                 skinny: bool) -> tuple[list[str], list[Any], int]:
        """Output names, one array per column (pyarrow, or a list for mixed types), row count.

        Built in C through ``columnar`` when it can tell every column's values kept
        their types; otherwise (or without the driver) row by row through apsw.
        """
        spec = self.spec(table)
        cols = self.output_columns(table, skinny=skinny, where=where, limit=limit)
        got = self._columns_columnar(spec, cols, where, limit)
        if got is not None:
            return cols, got[0], got[1]
        _, cur = self.query(table, where=where, limit=limit, columns=cols)
        rows = list(cur)
        n = len(rows)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(cols)
        del rows
        arrays = [frames.arrow_column(values, _null_decl(spec, name)) for name, values in zip(cols, columns, strict=True)]
        return cols, arrays, n

    def _columns_columnar(self, spec: TableSpec, cols: list[str], where: str | None,
                          limit: int | None) -> tuple[list[Any], int] | None:
        """``_columns``'s arrays straight from SQLite into Arrow, or None to go row by row.

        Columns whose affinity lets several storage classes in (BLOB, NUMERIC) get
        their classes counted in the same query; the rest are checked against their
        affinity: whatever the driver inferred must be what the values were.
        Between commits the patches' keys are split into contiguous ranges, one per
        core, each looked up on its own connection; the parts concatenate in key order.
        A full comparison of large rowid tables runs each arm in rowid ranges likewise.
        """
        if not columnar.available():
            return None
        import numpy as np

        select = [ch.quote(c) for c in cols]
        counted = [c for c in cols if _side_affinity(spec, c) in ("BLOB", "NUMERIC")]
        for m in range(0, len(counted), _CLASSES_PER_MASK):
            # parenthesized: SQLite's << and | bind equally, left to right
            terms = [f"((CASE typeof({ch.quote(c)}) WHEN 'integer' THEN 1 WHEN 'real' THEN 2 "
                     f"WHEN 'text' THEN 4 WHEN 'blob' THEN 8 ELSE 0 END) << {4 * j})"
                     for j, c in enumerate(counted[m:m + _CLASSES_PER_MASK])]
            select.append(" | ".join(terms) + f" AS dbvers_classes_{m // _CLASSES_PER_MASK}")
        selected = ", ".join(select)
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        queries: list[columnar.Query]
        if self.unchanged(spec.name):
            max_rows = 1
            queries = [(self._filtered_sql(spec.name, selected, where), {})]
        elif self._keyed(spec):  # at most a row per key
            assert self._hint is not None
            # in the order apsw's key table has, so both ways list rows alike
            table = columnar.key_table(self._hint.keys[spec.name], len(spec.key_colorder))
            if table is None:
                _log.debug("%s: keys of mixed types, read row by row", spec.name)
                return None
            n = table.num_rows
            parts = columnar.workers() if limit is None and n >= _PARALLEL_ROWS else 1
            step = max_rows = max(1, -(-n // parts))
            sql = self._filtered_sql(spec.name, selected, where, tail, keys="dbvers_keys")
            queries = [(sql, {"dbvers_keys": table.slice(i, step)}) for i in range(0, n, step)]
            queries = queries or [(sql, {"dbvers_keys": table})]
        else:  # at most every row of both sides (more: ColumnarError)
            t = ch.quote(spec.name)
            max_rows = sum(self._conn.execute(f"SELECT count(*) FROM {db}.{t}").fetchone()[0]
                           for db, present in (("a", spec.in_a), ("main", spec.in_b)) if present)
            queries = [(self._filtered_sql(spec.name, selected, where, tail), {})]
            arms = self._scanned_arms(spec)
            if arms and limit is None and max_rows >= 2 * _PARALLEL_ROWS:
                # each arm of the comparison in rowid ranges, arm after arm as the one query lists them
                ranges = _rowid_ranges(self._conn, spec, columnar.workers())
                queries = [(self._filtered_sql(spec.name, selected, where, scan=(arm, lo, hi)), {})
                           for arm in range(arms) for lo, hi in ranges]
        if limit is not None:
            max_rows = min(max_rows, int(limit))
        try:
            result = columnar.read(self._b, {"a": self._a}, queries, max_rows)
        except columnar.ColumnarError as e:  # a bad --where (apsw will say so), a type it would change
            _log.debug("%s: %s, read row by row", spec.name, e)
            return None
        classes: dict[str, int] = {}
        for m in range(0, len(counted), _CLASSES_PER_MASK):
            masks = result.column(len(cols) + m // _CLASSES_PER_MASK).to_numpy()
            seen = int(np.bitwise_or.reduce(masks)) if len(masks) else 0
            for j, c in enumerate(counted[m:m + _CLASSES_PER_MASK]):
                classes[c] = (seen >> (4 * j)) & 15
        arrays = []
        for i, name in enumerate(cols):
            arr = _faithful(result.column(i), _side_affinity(spec, name),
                            classes.get(name), _null_decl(spec, name))
            if arr is None:
                _log.debug("%s: %s holds values the driver converted, read row by row", spec.name, name)
                return None
            arrays.append(arr)
        return arrays, result.num_rows

    def to_arrow(self, table: str, *, where: str | None = None, limit: int | None = None,
                 skinny: bool = False) -> pyarrow.Table:
        """Changed rows as a pyarrow Table (plus from_commit/to_commit), built column by column.

        A column holding several SQLite storage classes becomes a dense union
        (int64, float64, string, binary), so no value changes type. A table with a
        column named ``commit`` has its own ``from_commit``/``to_commit``: the commit
        ids are then ``dbvers_from_commit``/``dbvers_to_commit`` (``frames.meta_columns``).
        """
        import pyarrow as pa

        cols, arrays, n = self._columns(table, where, limit, skinny)
        arrays = [frames.union_array(a) if isinstance(a, (list, tuple)) else a for a in arrays]
        arrays += [_repeat(self.a_commit, n), _repeat(self.b_commit, n)]
        return pa.Table.from_arrays(arrays, names=[*cols, *frames.meta_columns(cols, COMMIT_COLUMNS)])

    def to_pandas(self, table: str, *, where: str | None = None, limit: int | None = None,
                  skinny: bool = False) -> pandas.DataFrame:
        """Changed rows as a DataFrame: nullable integers stay integers, BLOBs are bytes,
        a column of mixed SQLite types is an object column holding each value as stored.
        The commit-id columns are named as in ``to_arrow``."""
        cols, arrays, n = self._columns(table, where, limit, skinny)
        return frames.frame([*cols, *frames.meta_columns(cols, COMMIT_COLUMNS)],
                            [*arrays, _repeat(self.a_commit, n), _repeat(self.b_commit, n)])

    # -- SQL that turns A into B -------------------------------------------------
    def to_sql(self, tables: Sequence[str] | None = None) -> Iterator[str]:
        """Statements that, run on A, make it equal B: rows, and for the whole diff the schema too.

        With *tables* (a part of the diff) only those tables' row changes are
        written. For the whole diff: triggers and views are dropped first and
        made again last (so no trigger fires while rows change); indexes and
        tables B lacks or changed are dropped; a table whose columns were added
        or dropped is altered when ``ALTER TABLE`` reproduces B's definition
        exactly, and otherwise rebuilt from B's definition and rows. Rows go
        deletes first, then updates and inserts (rowids included where the file
        has them); then B's new indexes, views, triggers, ``sqlite_sequence``
        and the header pragmas.
        """
        plan = _SchemaPlan(self) if tables is None else None
        if plan is not None:
            yield from plan.pre
        for table in tables if tables is not None else self.specs:
            spec = self.spec(table)
            if spec.only_in == "a":
                continue  # dropped above (a part of the diff can't drop it: its schema is B's)
            if plan is not None and (table in plan.rebuilt or spec.only_in == "b"):
                yield from self._insert_all(spec)
            else:
                yield from self._row_sql(spec)
        if plan is not None:
            yield from plan.post

    def _row_sql(self, spec: TableSpec) -> Iterator[str]:
        t = ch.quote(spec.name)
        rowid_key = bool(spec.key) and _is_rowid(spec, spec.key[0])
        cols_b = [c for c in spec.columns
                  if c in spec.in_b and not _is_rowid(spec, c) and c not in spec.generated]
        for where in ("diff_type = 'removed'", "diff_type <> 'removed'"):
            _, cur = self.query(spec.name, where=where)
            for row in cur:
                kind = row[0]
                old = dict(zip(spec.columns, row[1::2], strict=True))
                new = dict(zip(spec.columns, row[2::2], strict=True))
                if kind == "removed":
                    cond = " AND ".join(f"{_key_sql(spec, k)} IS {sql_literal(old[k])}" for k in spec.key)
                    yield f"DELETE FROM {t} WHERE {cond};"
                elif kind == "added":
                    names = [_key_sql(spec, spec.key[0])] if rowid_key else []
                    values = [sql_literal(new[spec.key[0]])] if rowid_key else []
                    if spec.rowid_b:  # a rowid table with another key: keep B's rowid
                        names.append(spec.rowid_b)
                        values.append(sql_literal(self._rowid_of(spec, new)))
                    names += [ch.quote(c) for c in cols_b]
                    values += [sql_literal(new[c]) for c in cols_b]
                    yield f"INSERT INTO {t}({', '.join(names)}) VALUES ({', '.join(values)});"
                else:
                    cond = " AND ".join(f"{_key_sql(spec, k)} IS {sql_literal(old[k])}" for k in spec.key)
                    # a key column too, when it changed in type or sign only (1 -> 1.0)
                    sets = [
                        f"{ch.quote(c)} = {sql_literal(new[c])}"
                        for c in cols_b
                        if c not in spec.in_a or not _identical(new[c], old[c])
                    ]
                    if sets:
                        yield f"UPDATE {t} SET {', '.join(sets)} WHERE {cond};"

    def _rowid_of(self, spec: TableSpec, new: dict[str, Any]) -> Any:
        params = [param(new[k]) for k in spec.key]
        cond = " AND ".join(f"{kb} IS {mark}" for kb, (mark, _) in zip(spec.key_b, params, strict=True))
        row = self._conn.execute(f"SELECT {spec.rowid_b} FROM main.{ch.quote(spec.name)} WHERE {cond}",
                                 tuple(v for _, v in params)).fetchone()
        return row[0] if row else None

    def _insert_all(self, spec: TableSpec) -> Iterator[str]:
        """Every row of B's table (a table B added, or one rebuilt from B's definition)."""
        t = ch.quote(spec.name)
        cols = [c for c in spec.columns if c in spec.in_b and c not in spec.generated]
        rid = spec.rowid_b or (spec.key_b[0] if spec.key_b and _is_rowid(spec, spec.key[0]) else None)
        names = ([rid] if rid else []) + [ch.quote(c) for c in cols]
        head = f"INSERT INTO {t}({', '.join(names)}) VALUES ("
        for row in read_rows(self._conn, f"SELECT {', '.join(names)} FROM main.{t}"):
            yield head + ", ".join(map(sql_literal, row)) + ");"


class _SchemaPlan:
    """The DDL around the row statements of ``Diff.to_sql`` (see there)."""

    def __init__(self, d: Diff) -> None:
        conn = d._conn
        a = _schema_rows(conn, "a")
        b = _schema_rows(conn, "main")
        old, new = ch.classify_tables(conn, "a").tracked, ch.classify_tables(conn, "main").tracked
        a_by, b_by = {r[1]: r for r in a}, {r[1]: r for r in b}
        self.pre: list[str] = []
        self.post: list[str] = []
        self.rebuilt: set[str] = set()
        q = ch.quote
        for kind, name, _tbl, _sql in a:
            if kind in ("trigger", "view"):
                self.pre.append(f"DROP {kind.upper()} {q(name)};")
        for kind, name, _tbl, sql in a:
            if kind == "index" and sql and (name not in b_by or b_by[name][3] != sql):
                self.pre.append(f"DROP INDEX {q(name)};")
        for name in old.keys() - new.keys():
            self.pre.append(f"DROP TABLE {q(name)};")
        for name in sorted(old.keys() & new.keys()):
            if a_by[name][3] == b_by[name][3]:
                continue
            spec = d.spec(name)
            alters = None if spec.key_changed else _alter_plan(a_by[name][3], b_by[name][3], name, spec)
            if alters is None:
                self.rebuilt.add(name)
                self.pre += [f"DROP TABLE {q(name)};", b_by[name][3] + ";"]
            else:
                self.pre += alters
                # ADD COLUMN fills the column's DEFAULT; the rows follow the diff, where a
                # new column is NULL on A's side (rows whose value isn't NULL get it set).
                for _cid, col, _t, notnull, dflt, _pk, hidden in conn.execute(
                    f"PRAGMA main.table_xinfo({q(name)})"
                ):
                    if (col in spec.in_b and col not in spec.in_a and dflt is not None
                            and not notnull and not hidden):
                        self.pre.append(f"UPDATE {q(name)} SET {q(col)} = NULL;")
        for kind, name, _tbl, sql in b:
            if kind == "table" and name in new and name not in old:
                self.pre.append(sql + ";")
        for kind, name, tbl, sql in b:
            if kind == "index" and sql and (
                name not in a_by or a_by[name][3] != sql or tbl in self.rebuilt
            ):
                self.post.append(sql + ";")
        for kind, _name, _tbl, sql in b:
            if kind in ("view", "trigger"):
                self.post.append(sql + ";")
        seq_a, seq_b = ch.read_sequences(conn, "a"), ch.read_sequences(conn, "main")
        if seq_a != seq_b and conn.execute(
            "SELECT 1 FROM main.sqlite_schema WHERE name = 'sqlite_sequence'"
        ).fetchone():
            self.post.append("DELETE FROM sqlite_sequence;")
            self.post += [f"INSERT INTO sqlite_sequence(rowid, name, seq) VALUES ({r}, {sql_literal(n)}, {s});"
                          for r, n, s in seq_b]
        pa, pb = ch.read_pragmas(conn, "a"), ch.read_pragmas(conn, "main")
        self.post += [f"PRAGMA {k} = {int(v)};" for k, v in pb.items() if pa.get(k) != v]


def _schema_rows(conn: apsw.Connection, db: str) -> list[tuple[str, str, str, str | None]]:
    """sqlite_schema in creation order (views and triggers are made again in it), internals left out."""
    rows = conn.execute(f"SELECT type, name, tbl_name, sql FROM {ch.quote(db)}.sqlite_schema ORDER BY rowid")
    return [r for r in rows if r[3] is not None and not r[1].startswith("sqlite_")]


def _alter_plan(sql_a: str, sql_b: str, name: str, spec: TableSpec) -> list[str] | None:
    """ALTER TABLE statements that turn *sql_a* into exactly *sql_b*, or None (rebuild the table).

    A renamed column is renamed, columns B lacks are dropped, then B's new columns
    added with their definitions as written in *sql_b*; the result is checked on
    an in-memory table.
    """
    forms = [lambda n: n, ch.quote] if spec.renamed else [ch.quote]
    for form in forms:
        stmts = _try_alter(sql_a, sql_b, name, spec, form)
        if stmts is not None:
            return stmts
    return None


def _try_alter(sql_a: str, sql_b: str, name: str, spec: TableSpec, form: Any) -> list[str] | None:
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
            # ADD COLUMN inserts ", <definitions>" at one place of the CREATE statement.
            n = len(sql_b) - len(base)
            p = 0
            while p < min(len(base), len(sql_b)) and base[p] == sql_b[p]:
                p += 1
            while p >= 0 and not (sql_b[p: p + n].startswith(", ") and sql_b[p + n:] == base[p:]):
                p -= 1
            if p < 0 or n <= 2:
                return None
            defs = _split_defs(sql_b[p + 2: p + n], added)
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


def _is_rowid(spec: TableSpec, c: str) -> bool:
    return c in ch.ROWID_NAMES and c in spec.key and c not in spec.in_a | spec.in_b


def _key_sql(spec: TableSpec, c: str) -> str:
    return c if _is_rowid(spec, c) else ch.quote(c)


def _spec(name: str, a: ch.TableInfo | None, b: ch.TableInfo | None) -> TableSpec:
    ref = b or a
    assert ref is not None
    key_changed = bool(a and b and (a.pk != b.pk or a.without_rowid != b.without_rowid))
    key = ref.pk if ref.pk else (ref.rowid_name,)
    key_exprs = ref.key
    renamed: dict[str, str] = {}
    if a and b and not key_changed:
        # One column gone and one new at the same place: a rename (as schema_changes
        # says), so its values are compared, not shown as a dropped and an added column.
        renamed = ch.renamed_columns(a, b)
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
    types = {**types_a, **types_b}
    typed: set[str] = set()
    if a and b:
        # Only where a column can hold both 7 and 7.0 (no affinity, STRICT's ANY, or an
        # affinity that changed) can two values be equal to SQL and differ in type.
        for c in in_a & in_b:
            ta, tb = types_a[c], types_b[c]
            aff = {ch.affinity(ta), ch.affinity(tb)}
            if len(aff) > 1 or "BLOB" in aff or "ANY" in (ta.upper(), tb.upper()):
                typed.add(c)

    def row(info: ch.TableInfo | None) -> str:
        if info is None:
            return "rowid"
        return ch.quote(info.pk[0]) if info.without_rowid else info.rowid_name

    colorder = tuple(sorted(range(len(key)), key=lambda i: ref.columns.index(key[i]))) if ref.pk else (0,)
    return TableSpec(
        name=name, key=tuple(key), key_exprs=key_exprs, columns=tuple(ordered),
        in_a=in_a, in_b=in_b, types=types, key_changed=key_changed,
        only_in=None if (a and b) else ("a" if a else "b"),
        key_a=a.key if a else key_exprs, key_b=b.key if b else key_exprs,
        row_a=row(a), row_b=row(b), typed=frozenset(typed), key_colorder=colorder,
        generated=frozenset(ref.generated),
        rowid_b=b.rowid_name if b and b.hidden_rowid else None,
        renamed=renamed, types_a=types_a, types_b=types_b,
    )


def _repeat(value: str | None, n: int) -> pyarrow.Array:
    """*value* n times as a string array, built without a Python list."""
    import pyarrow as pa

    if value is None:
        return pa.nulls(n, type=pa.string())
    import numpy as np

    zeros = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(zeros, pa.array([value])).cast(pa.string())


def _rowid_ranges(conn: apsw.Connection, spec: TableSpec, parts: int) -> list[tuple[int, int]]:
    """*parts* contiguous ranges covering the rowids of both sides of *spec*'s table."""
    t = ch.quote(spec.name)
    # one aggregate per query: SQLite answers a lone min() or max() of the rowid from the
    # b-tree's ends, both in one query by a full scan
    ends = [conn.execute(f"SELECT (SELECT min({row}) FROM {db}.{t}), (SELECT max({row}) FROM {db}.{t})").fetchone()
            for db, row in (("a", spec.row_a), ("main", spec.row_b))]
    lows = [lo for lo, _ in ends if lo is not None]
    highs = [hi for _, hi in ends if hi is not None]
    if not lows:
        return [(0, 0)]
    lo, hi = min(lows), max(highs)
    step = max(1, -(-(hi - lo + 1) // parts))
    return [(start, min(start + step - 1, hi)) for start in range(lo, hi + 1, step)]


def _changed_sql(spec: TableSpec) -> str:
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
            differs.append(_differs_exactly(f"n.{q}", f"o.{spec.a_col(c)}"))
        else:
            differs.append(f"n.{q} IS NOT o.{spec.a_col(c)}")
    return " OR ".join(differs)


def _differs_exactly(n: str, o: str) -> str:
    """SQL for "n and o hold different values": type included, and 0.0 differs from -0.0
    (atan2(-0.0, -1) is -pi)."""
    return (f"({n} IS NOT {o} OR typeof({n}) <> typeof({o}) "
            f"OR ({n} = 0 AND atan2({n}, -1) <> atan2({o}, -1)))")


def _side_affinity(spec: TableSpec, name: str) -> str | None:
    """The affinity of output column *name* on the side it comes from; None when that side lacks it."""
    if name == "diff_type":
        return "TEXT"
    side, c = name.split("_", 1)
    decl = (spec.types_a if side == "from" else spec.types_b).get(c)
    return None if decl is None else ch.affinity(decl)


def _null_decl(spec: TableSpec, name: str) -> str:
    """The declared type that picks an all-NULL output column's Arrow type (none when the
    column's affinity changed between the sides)."""
    if name == "diff_type":
        return "TEXT"
    c = name.split("_", 1)[1]
    return "" if c in spec.typed else spec.types.get(c, "")


def _faithful(arr: pyarrow.ChunkedArray, affinity: str | None, classes: int | None,
              null_decl: str) -> pyarrow.ChunkedArray | pyarrow.Array | None:
    """*arr* as read by the columnar driver if it holds every value as stored, else None.

    The driver types a column by all its values at once (``columnar``): ``int64``
    only when all are integers, ``double`` when integers and reals mix, ``string``
    when text and numbers mix, ``binary`` when any is a blob. So an INTEGER, REAL
    or TEXT affinity column read as its own type holds that class alone (those
    affinities turn numbers into reals or text); for the others *classes* (1
    integer, 2 real, 4 text, 8 blob, counted by SQLite) must name a single class.
    """
    import pyarrow as pa

    if len(arr) == arr.null_count:
        return pa.nulls(len(arr), type=frames.null_type(null_decl))
    if classes is not None:
        want = {1: pa.int64(), 2: pa.float64(), 4: pa.string(), 8: pa.binary()}.get(classes)
    elif arr.type == pa.int64():
        want = arr.type
    else:
        want = {"REAL": pa.float64(), "TEXT": pa.string()}.get(affinity or "")
    return arr if want is not None and arr.type == want else None


def _cleanup(conn: apsw.Connection, directory: Path) -> None:
    with contextlib.suppress(Exception):
        conn.close()
    shutil.rmtree(directory, ignore_errors=True)


# -- which keys can differ, from the history between two commits -------------------


@dataclass
class KeyHint:
    """The keys of every row that can differ between two commits, read from their patches.

    ``keys[table]`` holds candidate keys (column order, a scalar for a one-column
    key); a row whose key is not listed is equal on both sides. A table in
    ``unknown`` must be compared in full; a table in neither has no changed rows.
    """

    keys: dict[str, set[Any]]
    unknown: set[str]


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
    path += chain_a[: depth[cur]]
    from operator import itemgetter

    keys: dict[str, set[Any]] = {}
    unknown: set[str] = set()
    seen = 0
    for oid in path:
        c = repo.get_commit(oid)
        if not c.parents or repo.get_commit(c.parents[0]).schema != c.schema:
            return None
        tallies: dict[str, list[int]] = {}  # per table, indexed by opcode
        if c.patch:
            last = None
            get: Any = None
            add: Any = None
            tally: list[int] = []
            for change in apsw.Changeset.iter(repo.objects.get(c.patch, "patch")):
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
