"""Diff: every row that differs between two states, as rows, Arrow tables or DataFrames.

Layer L3: the ``Diff`` facade. Two materialized states are pinned in a private
directory and attached to one private, read-only apsw connection (``main`` = B,
the newer side; ``a`` = A). The row-diff engine is :mod:`dbvers.rowdiff` (one
streaming query per table in Dolt's ``dolt_diff_<table>`` shape), the SQL script
``to_sql`` writes is :mod:`dbvers.sqlgen`'s, Arrow/pandas conversion is
:mod:`dbvers.frames`', and the history walk that narrows a diff between two
commits to the keys their patches name is ``history.changed_keys``; :func:`between`
wires them for ``Repo.diff``. The display
(``str``, HTML, the widget) goes through the one display hook, :mod:`dbvers.display`.

pandas and pyarrow are imported only by the methods that return them.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from . import changes as ch
from . import columnar, display, frames, rowdiff, sqlgen
from .errors import TableNotFoundError, UsageError
from .fsutil import temp_prefix
from .objects import SchemaChange, TableCounts
from .rowdiff import KeyHint, TableSpec
from .values import Rows, read_rows

if TYPE_CHECKING:
    import pandas
    import pyarrow

    from .repo import Repo

COMMIT_COLUMNS = ("from_commit", "to_commit")  # after the rows' columns in to_pandas/to_arrow
#: Below this many candidate keys (or half as many rows to compare) one connection is as
#: fast as several: the columnar path splits a read across ``columnar.workers()`` only above it.
PARALLEL_ROWS = 20_000
_CLASSES_PER_MASK = 15  # 4 bits per column in one 64-bit integer
_log = logging.getLogger(__name__)


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
        self._last_read: str | None = None

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
        hint = None if self._hint is None else self._hint.copy()
        return Diff(self._a, self._b, a_label=self.a_label, b_label=self.b_label,
                    a_commit=self.a_commit, b_commit=self.b_commit, workdir=self._dir.parent, hint=hint)

    def against_empty(self, a_label: str = "(empty)") -> Diff:
        """B against an empty database (what a root commit added), on a connection of its own;
        close it too. Made from this Diff's own pinned files: no lock, no cache."""
        empty = self._dir / "empty.db"
        empty.write_bytes(b"")
        return Diff(empty, self._b, a_label=a_label, b_label=self.b_label, b_commit=self.b_commit,
                    owned=[empty], workdir=self._dir.parent)

    @property
    def hint(self) -> KeyHint | None:
        """The keys the history between the two commits says can differ (None: compared in full)."""
        return self._hint

    @property
    def last_read(self) -> str | None:
        """How the last ``to_pandas``/``to_arrow`` read its rows: ``"columnar"`` (SQLite straight
        into Arrow through the ADBC driver) or ``"rows"`` (row by row through apsw, when the
        driver is missing or would change a value's type); None before the first."""
        return self._last_read

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

    # -- views, through the display hook (dbvers.render.display registers them) --------
    def __str__(self) -> str:
        """What ``dbvers diff`` prints, each table cut to its first rows (plain text)."""
        return str(display.render(self, "text", colour=False))

    def _repr_html_(self) -> str:
        return str(display.render(self, "html"))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else str(display.render(self, "text")))

    def widget(self, **options: Any) -> Any:
        """An ipywidgets view: summary, one tab per table, paging, filter, skinny, export.

        Options: ``page_size``, ``where``, ``skinny``, ``namespace`` (where the export
        button puts DataFrames; default: the IPython user namespace).
        """
        return display.render(self, "widget", **options)

    # -- structure -------------------------------------------------------------
    @property
    def specs(self) -> dict[str, TableSpec]:
        if self._specs is None:
            self._specs = rowdiff.table_specs(self._conn)
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
        return self._hint is not None and self._hint.unchanged(spec)

    def _keyed(self, spec: TableSpec) -> bool:
        """Whether *spec*'s diff looks up the keys the patches name (a key table) rather than scan."""
        return self._hint is not None and self._hint.keyed(spec)

    def _key_table(self, spec: TableSpec) -> str:
        """A temp table of the candidate keys of *spec*'s table (from the patches), made once."""
        name = self._key_tables.get(spec.name)
        if name is None:
            assert self._hint is not None
            name = rowdiff.make_key_table(self._conn, spec, self._hint.keys[spec.name],
                                          f"dbvers_keys_{len(self._key_tables)}")
            self._key_tables[spec.name] = name
        return name

    def _union_sql(self, spec: TableSpec, keys: str | None = None,
                   scan: tuple[int, int, int] | None = None) -> str:
        """``rowdiff.diff_sql`` for *spec*'s table, narrowed by the history's keys when it has them.

        *keys* names a temp table of candidate keys the caller has made on the
        connection that runs the query; by default the diff's own is made. *scan*:
        as in ``rowdiff.diff_sql``.
        """
        if self._keyed(spec):
            return rowdiff.diff_sql(spec, keys=keys or self._key_table(spec))
        return rowdiff.diff_sql(spec, unchanged=self._hint is not None and self._hint.unchanged(spec), scan=scan)

    def _scanned_arms(self, spec: TableSpec) -> int:
        """How many arms ``_union_sql`` unions when it scans both sides, each in rowid order
        (so each can be split into rowid ranges); 0 when it doesn't."""
        if self.unchanged(spec.name) or self._keyed(spec):
            return 0
        return rowdiff.scanned_arms(spec)

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
        self._last_read = "rows" if got is None else "columnar"
        if got is not None:
            return cols, got[0], got[1]
        _, cur = self.query(table, where=where, limit=limit, columns=cols)
        rows = list(cur)
        n = len(rows)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(cols)
        del rows
        arrays = [frames.arrow_column(values, spec.null_decl(name)) for name, values in zip(cols, columns, strict=True)]
        return cols, arrays, n

    def _columns_columnar(self, spec: TableSpec, cols: list[str], where: str | None,
                          limit: int | None) -> tuple[list[Any], int] | None:
        """``_columns``'s arrays straight from SQLite into Arrow, or None to go row by row.

        Columns whose affinity lets several storage classes in (BLOB, NUMERIC) get
        their classes counted in the same query; the rest are checked against their
        affinity: whatever the driver inferred must be what the values were.
        """
        if not columnar.available():
            return None
        counted = [c for c in cols if spec.side_affinity(c) in ("BLOB", "NUMERIC")]
        selected = ", ".join([ch.quote(c) for c in cols] + _class_masks(counted))
        planned = self._columnar_queries(spec, selected, where, limit)
        if planned is None:
            return None
        queries, max_rows = planned
        try:
            result = columnar.read(self._b, {"a": self._a}, queries, max_rows)
        except columnar.ColumnarError as e:  # a bad --where (apsw will say so), a type it would change
            _log.debug("%s: %s, read row by row", spec.name, e)
            return None
        classes = _classes_seen(result, len(cols), counted)
        arrays = []
        for i, name in enumerate(cols):
            arr = frames.faithful_column(result.column(i), spec.side_affinity(name),
                                         classes.get(name), spec.null_decl(name))
            if arr is None:
                _log.debug("%s: %s holds values the driver converted, read row by row", spec.name, name)
                return None
            arrays.append(arr)
        return arrays, result.num_rows

    def _columnar_queries(self, spec: TableSpec, selected: str, where: str | None,
                          limit: int | None) -> tuple[list[columnar.Query], int] | None:
        """The queries the columnar driver runs for *spec*'s diff, and the most rows they yield.

        Between commits the patches' keys are split into contiguous ranges, one per
        core, each looked up on its own connection; the parts concatenate in key order.
        A full comparison of large rowid tables runs each arm in rowid ranges likewise.
        """
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
            parts = columnar.workers() if limit is None and n >= PARALLEL_ROWS else 1
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
            if arms and limit is None and max_rows >= 2 * PARALLEL_ROWS:
                # each arm of the comparison in rowid ranges, arm after arm as the one query lists them
                ranges = rowdiff.rowid_ranges(self._conn, spec, columnar.workers())
                queries = [(self._filtered_sql(spec.name, selected, where, scan=(arm, lo, hi)), {})
                           for arm in range(arms) for lo, hi in ranges]
        if limit is not None:
            max_rows = min(max_rows, int(limit))
        return queries, max_rows

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
        arrays += [frames.repeat_text(self.a_commit, n), frames.repeat_text(self.b_commit, n)]
        return pa.Table.from_arrays(arrays, names=[*cols, *frames.meta_columns(cols, COMMIT_COLUMNS)])

    def to_pandas(self, table: str, *, where: str | None = None, limit: int | None = None,
                  skinny: bool = False) -> pandas.DataFrame:
        """Changed rows as a DataFrame: nullable integers stay integers, BLOBs are bytes,
        a column of mixed SQLite types is an object column holding each value as stored.
        The commit-id columns are named as in ``to_arrow``."""
        cols, arrays, n = self._columns(table, where, limit, skinny)
        return frames.frame([*cols, *frames.meta_columns(cols, COMMIT_COLUMNS)],
                            [*arrays, frames.repeat_text(self.a_commit, n), frames.repeat_text(self.b_commit, n)])

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
        and the header pragmas (``sqlgen``).
        """
        plan = sqlgen.SchemaPlan(self._conn, self.specs) if tables is None else None
        if plan is not None:
            yield from plan.pre
        for table in tables if tables is not None else self.specs:
            spec = self.spec(table)
            if spec.only_in == "a":
                continue  # dropped above (a part of the diff can't drop it: its schema is B's)
            if plan is not None and (table in plan.rebuilt or spec.only_in == "b"):
                yield from sqlgen.insert_all(self._conn, spec)
            else:
                yield from sqlgen.row_statements(self._conn, spec, self._changes(spec))
        if plan is not None:
            yield from plan.post

    def _changes(self, spec: TableSpec) -> Iterator[rowdiff.RowChange]:
        """*spec*'s changed rows as records: removals first (a key freed before it is reused)."""
        for where in ("diff_type = 'removed'", "diff_type <> 'removed'"):
            _, cur = self.query(spec.name, where=where)
            for row in cur:
                yield rowdiff.change_of(spec, row)


def between(repo: Repo, a: str | None = "HEAD", b: str | None = None) -> Diff:
    """What changed from *a* to *b* in *repo* (a ref, or ``None`` for the working database)."""
    from .history import changed_keys

    with repo.locked(write=False):
        owned: list[Path] = []

        def side(ref: str | None) -> tuple[Path, str, str | None]:
            if ref is None:
                tmp = repo.worktree.copy_out()
                owned.append(tmp)
                return tmp, "working", None
            oid = repo.resolve(ref)
            return repo.materialize(oid), ref, oid

        try:
            a_path, a_label, a_id = side(a)
            b_path, b_label, b_id = side(b)
            # Two commits: their patches name the rows that can differ (no full scan).
            hint = changed_keys(repo, a_id, b_id) if a_id and b_id else None
            return Diff(a_path, b_path, a_label=a_label, b_label=b_label, a_commit=a_id,
                        b_commit=b_id, owned=owned, workdir=repo.cache_dir, hint=hint)
        finally:
            for p in owned:
                p.unlink(missing_ok=True)


def _class_masks(counted: list[str]) -> list[str]:
    """Select terms that OR together the storage classes each *counted* column holds,
    4 bits a column, ``_CLASSES_PER_MASK`` columns an integer (read by ``_classes_seen``)."""
    select = []
    for m in range(0, len(counted), _CLASSES_PER_MASK):
        # parenthesized: SQLite's << and | bind equally, left to right
        terms = [f"((CASE typeof({ch.quote(c)}) WHEN 'integer' THEN 1 WHEN 'real' THEN 2 "
                 f"WHEN 'text' THEN 4 WHEN 'blob' THEN 8 ELSE 0 END) << {4 * j})"
                 for j, c in enumerate(counted[m:m + _CLASSES_PER_MASK])]
        select.append(" | ".join(terms) + f" AS dbvers_classes_{m // _CLASSES_PER_MASK}")
    return select


def _classes_seen(result: pyarrow.Table, first: int, counted: list[str]) -> dict[str, int]:
    """The storage classes (1 integer, 2 real, 4 text, 8 blob, OR-ed) each counted column held
    over all rows, from the mask columns ``_class_masks`` added after column *first*."""
    import numpy as np

    classes: dict[str, int] = {}
    for m in range(0, len(counted), _CLASSES_PER_MASK):
        masks = result.column(first + m // _CLASSES_PER_MASK).to_numpy()
        seen = int(np.bitwise_or.reduce(masks)) if len(masks) else 0
        for j, c in enumerate(counted[m:m + _CLASSES_PER_MASK]):
            classes[c] = (seen >> (4 * j)) & 15
    return classes


def _cleanup(conn: apsw.Connection, directory: Path) -> None:
    with contextlib.suppress(Exception):
        conn.close()
    shutil.rmtree(directory, ignore_errors=True)
