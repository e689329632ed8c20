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
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from . import changes as ch
from .errors import TableNotFoundError, UsageError
from .objects import SchemaChange, TableCounts

if TYPE_CHECKING:
    import pandas
    import pyarrow

DIFF_TYPES = ("added", "modified", "removed")


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

    @property
    def output_columns(self) -> list[str]:
        out = ["diff_type"]
        for c in self.columns:
            out += [f"from_{c}", f"to_{c}"]
        return out


def _literal(v: Any) -> str:
    """An SQL literal that reproduces *v* exactly (type included)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "NULL"
        if v in (float("inf"), float("-inf")):
            return "9e999" if v > 0 else "-9e999"
        text = repr(v)
        return text if ("e" in text or "." in text) else text + ".0"
    if isinstance(v, bytes):
        return "X'" + v.hex() + "'"
    return "'" + str(v).replace("'", "''") + "'"


class Diff:
    """The differences from state A to state B. Use as a context manager or call ``close()``."""

    def __init__(self, a_path: Path, b_path: Path, *, a_label: str, b_label: str,
                 a_commit: str | None = None, b_commit: str | None = None,
                 owned: Sequence[Path] = (), workdir: Path | None = None) -> None:
        self.a_label, self.b_label = a_label, b_label
        self.a_commit, self.b_commit = a_commit, b_commit
        # Hard links (or copies) of both states in a private directory: the cache
        # may prune its files while this Diff is alive.
        self._dir = Path(tempfile.mkdtemp(prefix=".tmp-diff-", dir=workdir))
        self._a = self._pin(a_path, "a.db")
        self._b = self._pin(b_path, "b.db")
        for p in owned:
            p.unlink(missing_ok=True)
        self._conn = apsw.Connection(
            f"file:{self._b}?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        )
        self._conn.execute("ATTACH ? AS a", (f"file:{self._a}?immutable=1",))
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

    def __enter__(self) -> Diff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<dbvers.Diff {self.a_label}..{self.b_label}: {len(self.tables)} table(s) changed>"

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
        from .repo import describe_schema_changes

        return describe_schema_changes(ch.read_schema(self._conn, "a"), ch.read_schema(self._conn, "main"))

    def counts(self) -> dict[str, TableCounts]:
        """Per-table added/modified/removed counts (all tables that differ)."""
        if self._counts is None:
            self._counts = {}
            for name in self.specs:
                if (c := self.count_kinds(name)).total:
                    self._counts[name] = c
        return self._counts

    def count_kinds(self, table: str, where: str | None = None) -> TableCounts:
        """Added/modified/removed counts of one table, optionally filtered by *where*."""
        q = ("SELECT sum(diff_type = 'added'), sum(diff_type = 'modified'), "
             f"sum(diff_type = 'removed') FROM ({self._union_sql(self.spec(table))})")
        if where:
            q += f" WHERE ({where})"
        try:
            row = self._conn.execute(q).fetchone()
        except apsw.SQLError as e:
            raise UsageError(f"bad --where expression for {table}: {e}") from None
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
    def _union_sql(self, spec: TableSpec) -> str:
        """One query yielding every changed row of *spec*'s table, streaming.

        Three arms joined by UNION ALL (removed, modified, added), each a scan
        of one side with index lookups into the other, like sqldiff's.
        """
        t = ch.quote(spec.name)

        def value(alias: str | None, present: frozenset[str], c: str) -> str:
            if alias is None:
                return "NULL"
            if _is_rowid(spec, c):
                return f"{alias}.{c}"
            return f"{alias}.{ch.quote(c)}" if c in present else "NULL"

        def select(kind: str, o: str | None, n: str | None) -> str:
            cols = [f"'{kind}' AS diff_type"]
            for c in spec.columns:
                cols.append(f"{value(o, spec.in_a, c)} AS {ch.quote('from_' + c)}")
                cols.append(f"{value(n, spec.in_b, c)} AS {ch.quote('to_' + c)}")
            return "SELECT " + ", ".join(cols)

        if spec.only_in or spec.key_changed:
            arms = []
            if spec.in_a:
                arms.append(f"{select('removed', 'o', None)} FROM a.{t} AS o")
            if spec.in_b:
                arms.append(f"{select('added', None, 'n')} FROM main.{t} AS n")
            return " UNION ALL ".join(arms)
        match = " AND ".join(f"o.{k} IS n.{k}" for k in spec.key_exprs)
        shared = [c for c in spec.columns if c in spec.in_a and c in spec.in_b and c not in spec.key]
        only_b = [c for c in spec.columns if c in spec.in_b and c not in spec.in_a]
        differs = [
            f"(n.{ch.quote(c)} IS NOT o.{ch.quote(c)} OR typeof(n.{ch.quote(c)}) <> typeof(o.{ch.quote(c)}))"
            for c in shared
        ] + [f"n.{ch.quote(c)} IS NOT NULL" for c in only_b]
        arms = [
            f"{select('removed', 'o', None)} FROM a.{t} AS o "
            f"WHERE NOT EXISTS (SELECT 1 FROM main.{t} AS n WHERE {match})"
        ]
        if differs:
            arms.append(
                f"{select('modified', 'o', 'n')} FROM main.{t} AS n JOIN a.{t} AS o "
                f"ON {match} WHERE {' OR '.join(differs)}"
            )
        arms.append(
            f"{select('added', None, 'n')} FROM main.{t} AS n "
            f"WHERE NOT EXISTS (SELECT 1 FROM a.{t} AS o WHERE {match})"
        )
        return " UNION ALL ".join(arms)

    def query(self, table: str, *, where: str | None = None, limit: int | None = None,
              columns: Sequence[str] | None = None) -> tuple[list[str], apsw.Cursor]:
        """The changed rows of *table* as a streaming cursor over the output columns."""
        spec = self.spec(table)
        sql = self._union_sql(spec)
        out = list(columns) if columns is not None else spec.output_columns
        select = ", ".join(ch.quote(c) for c in out)
        q = f"SELECT {select} FROM ({sql})"
        if where:
            q += f" WHERE ({where})"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        try:
            cur = self._conn.execute(q)
        except apsw.SQLError as e:
            raise UsageError(f"bad --where expression for {table}: {e}") from None
        return out, cur

    def changed_columns(self, table: str, where: str | None = None) -> list[str]:
        """Key columns plus columns whose value differs in at least one changed row (``--skinny``)."""
        spec = self.spec(table)
        checks = [
            f"max({ch.quote('from_' + c)} IS NOT {ch.quote('to_' + c)} OR "
            f"typeof({ch.quote('from_' + c)}) <> typeof({ch.quote('to_' + c)}))"
            for c in spec.columns
        ]
        q = f"SELECT {', '.join(checks)} FROM ({self._union_sql(spec)})"
        if where:
            q += f" WHERE ({where})"
        try:
            flags = self._conn.execute(q).fetchone()
        except apsw.SQLError as e:
            raise UsageError(f"bad --where expression for {table}: {e}") from None
        return [c for c, f in zip(spec.columns, flags, strict=True) if c in spec.key or f]

    def output_columns(self, table: str, *, skinny: bool = False, where: str | None = None) -> list[str]:
        spec = self.spec(table)
        cols = self.changed_columns(table, where) if skinny else list(spec.columns)
        out = ["diff_type"]
        for c in cols:
            out += [f"from_{c}", f"to_{c}"]
        return out

    def iter_rows(self, table: str, *, where: str | None = None, limit: int | None = None,
                  skinny: bool = False) -> Iterator[tuple[Any, ...]]:
        cols = self.output_columns(table, skinny=skinny, where=where)
        _, cur = self.query(table, where=where, limit=limit, columns=cols)
        yield from cur

    def count(self, table: str, where: str | None = None) -> int:
        spec = self.spec(table)
        q = f"SELECT count(*) FROM ({self._union_sql(spec)})"
        if where:
            q += f" WHERE ({where})"
        try:
            return int(self._conn.execute(q).fetchone()[0])
        except apsw.SQLError as e:
            raise UsageError(f"bad --where expression for {table}: {e}") from None

    def _columns(self, table: str, where: str | None, limit: int | None,
                 skinny: bool) -> tuple[list[str], list[Any], int]:
        """Output names, one array per column (pyarrow, or a list for mixed types), row count."""
        spec = self.spec(table)
        cols = self.output_columns(table, skinny=skinny, where=where)
        _, cur = self.query(table, where=where, limit=limit, columns=cols)
        rows = cur.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(cols)
        arrays = [
            _arrow_column(list(values), spec.types.get(name.split("_", 1)[1], "") if name != "diff_type" else "TEXT")
            for name, values in zip(cols, columns, strict=True)
        ]
        return cols, arrays, len(rows)

    def to_arrow(self, table: str, *, where: str | None = None, limit: int | None = None,
                 skinny: bool = False) -> pyarrow.Table:
        """Changed rows as a pyarrow Table (plus from_commit/to_commit), built column by column.

        A column holding several SQLite storage classes becomes a dense union
        (int64, float64, string, binary), so no value changes type.
        """
        import pyarrow as pa

        cols, arrays, n = self._columns(table, where, limit, skinny)
        arrays = [a if isinstance(a, pa.Array) else _union_array(a) for a in arrays]
        arrays += [pa.array([self.a_commit] * n, type=pa.string()),
                   pa.array([self.b_commit] * n, type=pa.string())]
        return pa.Table.from_arrays(arrays, names=[*cols, "from_commit", "to_commit"])

    def to_pandas(self, table: str, *, where: str | None = None, limit: int | None = None,
                  skinny: bool = False) -> pandas.DataFrame:
        """Changed rows as a DataFrame: nullable integers stay integers, BLOBs are bytes,
        a column of mixed SQLite types is an object column holding each value as stored."""
        import pandas as pd
        import pyarrow as pa

        cols, arrays, n = self._columns(table, where, limit, skinny)
        typed = [(c, a) for c, a in zip(cols, arrays, strict=True) if isinstance(a, pa.Array)]
        mapping = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(),
                   pa.string(): pd.StringDtype()}
        df = pa.Table.from_arrays([a for _, a in typed], names=[c for c, _ in typed]).to_pandas(
            types_mapper=mapping.get
        )
        for i, (c, a) in enumerate(zip(cols, arrays, strict=True)):
            if not isinstance(a, pa.Array):
                df.insert(i, c, pd.Series(a, dtype=object))
        df["from_commit"] = pd.Series([self.a_commit] * n, dtype=pd.StringDtype())
        df["to_commit"] = pd.Series([self.b_commit] * n, dtype=pd.StringDtype())
        return df

    # -- SQL that turns A into B -------------------------------------------------
    def to_sql(self, tables: Sequence[str] | None = None) -> Iterator[str]:
        """Statements that, run on A, make its tables' rows (and schema) equal B's."""
        if tables is None:
            yield from _schema_sql(self)
        for table in tables if tables is not None else self.specs:
            spec = self.spec(table)
            if spec.only_in == "a":
                continue  # dropped above
            t = ch.quote(table)
            rowid_key = bool(spec.key) and _is_rowid(spec, spec.key[0])
            cols_b = [c for c in spec.columns if c in spec.in_b and not _is_rowid(spec, c)]
            _, cur = self.query(table)
            for row in cur:
                kind = row[0]
                old = dict(zip(spec.columns, row[1::2], strict=True))
                new = dict(zip(spec.columns, row[2::2], strict=True))
                cond = " AND ".join(f"{_key_sql(spec, k)} IS {_literal(old[k])}" for k in spec.key)
                if kind == "removed":
                    yield f"DELETE FROM {t} WHERE {cond};"
                elif kind == "added":
                    names = ([spec.key[0]] if rowid_key else []) + cols_b
                    values = ", ".join(_literal(new[c]) for c in names)
                    yield f"INSERT INTO {t}({', '.join(_key_sql(spec, c) for c in names)}) VALUES ({values});"
                else:
                    sets = [
                        f"{ch.quote(c)} = {_literal(new[c])}"
                        for c in cols_b
                        if c not in spec.key
                        and (c not in spec.in_a or new[c] != old[c] or type(new[c]) is not type(old[c]))
                    ]
                    if sets:
                        yield f"UPDATE {t} SET {', '.join(sets)} WHERE {cond};"


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
    in_a = frozenset(a.columns) if a else frozenset()
    in_b = frozenset(b.columns) if b else frozenset()
    ordered: list[str] = list(key)
    for info in (b, a):
        if info:
            ordered += [c for c in info.columns if c not in ordered]
    types: dict[str, str] = {}
    for info in (a, b):
        if info:
            types.update(zip(info.columns, info.types, strict=True))
    if not ref.pk:
        types[ref.rowid_name] = "INTEGER"
    return TableSpec(
        name=name, key=tuple(key), key_exprs=key_exprs, columns=tuple(ordered),
        in_a=in_a, in_b=in_b, types=types, key_changed=key_changed,
        only_in=None if (a and b) else ("a" if a else "b"),
    )


def _arrow_column(values: list[Any], decl_type: str) -> Any:
    """A column of SQLite values as the narrowest faithful Arrow array (a list if types mix)."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        aff = ch.affinity(decl_type)
        target = {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string()}.get(aff, pa.binary())
        return pa.nulls(len(values), type=target)
    single = {int: pa.int64(), float: pa.float64(), str: pa.string(), bytes: pa.binary()}
    if len(kinds) == 1 and (t := single.get(next(iter(kinds)))) is not None:
        return pa.array(values, type=t)
    return values  # 1, 1.0 and '1' in one column: keep each value's own type


def _union_array(values: list[Any]) -> pyarrow.Array:
    import pyarrow as pa

    kinds = [int, float, str, bytes]
    types = [pa.int64(), pa.float64(), pa.string(), pa.binary()]
    children: list[list[Any]] = [[] for _ in kinds]
    codes, offsets = [], []
    for v in values:
        k = 0 if v is None else kinds.index(type(v))
        codes.append(k)
        offsets.append(len(children[k]))
        children[k].append(v)
    return pa.UnionArray.from_dense(
        pa.array(codes, type=pa.int8()), pa.array(offsets, type=pa.int32()),
        [pa.array(c, type=t) for c, t in zip(children, types, strict=True)],
        ["integer", "real", "text", "blob"],
    )


def _cleanup(conn: apsw.Connection, directory: Path) -> None:
    with contextlib.suppress(Exception):
        conn.close()
    shutil.rmtree(directory, ignore_errors=True)


def _schema_sql(d: Diff) -> Iterator[str]:
    """DDL for schema differences: drop what B lacks, create what B adds, add/drop columns."""
    a_schema = ch.read_schema(d._conn, "a").by_name()
    b_schema = ch.read_schema(d._conn, "main").by_name()
    kinds_order = ("trigger", "view", "index", "table")
    for kind in kinds_order:
        for name, e in sorted(a_schema.items()):
            if e.type == kind and e.sql and (name not in b_schema or (kind != "table" and b_schema[name].sql != e.sql)):
                yield f"DROP {kind.upper()} IF EXISTS {ch.quote(name)};"
    for name, spec in d.specs.items():
        if spec.only_in is None:
            for c in spec.columns:
                if c in spec.in_a and c not in spec.in_b:
                    yield f"ALTER TABLE {ch.quote(name)} DROP COLUMN {ch.quote(c)};"
            for c in spec.columns:
                if c in spec.in_b and c not in spec.in_a:
                    yield f"ALTER TABLE {ch.quote(name)} ADD COLUMN {ch.quote(c)} {spec.types.get(c, '')};".replace(" ;", ";")
    for kind in reversed(kinds_order):
        for name, e in sorted(b_schema.items()):
            if e.type == kind and e.sql and (name not in a_schema or (kind != "table" and a_schema[name].sql != e.sql)):
                yield e.sql + ";"
