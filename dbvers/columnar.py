"""Query results as Arrow columns built in C, for DataFrames of many changed rows.

apsw hands out one Python object per cell, which caps a diff's ``to_pandas`` at
a few hundred thousand rows a second. ADBC's SQLite driver steps the same SQL
and fills Arrow buffers directly. It bundles its own SQLite library, so it keeps
the two-library rule (DESIGN §2) the strict way: it opens only dbvers's private,
never-written state files, read-only and with ``immutable=1`` -- as apsw's diff
connection does -- so neither library takes a file lock that the other's
``close()`` could drop, and no handle crosses between them.

Type fidelity is the caller's business, with one guarantee from here: a query's
rows come back as one batch, so the driver picks each column's Arrow type from
all of its values (an integer and a real make ``double``, a number and text make
``string``, anything with a blob makes ``binary``). Any failure raises
``ColumnarError``; callers then use the row-by-row path.

Several queries -- the parts of one result -- run at once, each on its own
connection in its own thread (SQLite and the driver release the GIL), each with
its own rows loaded into temp tables first; their results are concatenated in order.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote as urlquote

if TYPE_CHECKING:
    import pyarrow

# Pages through a memory map: a fresh connection reads them without copying (a large
# page cache, as the apsw connections have, only costs a short-lived one).
_PRAGMAS = ("mmap_size = 1073741824",)


class ColumnarError(Exception):
    """The columnar reader can't answer this query (missing driver, SQL error, a type it would change)."""


def available() -> bool:
    return importlib.util.find_spec("adbc_driver_sqlite") is not None


def workers() -> int:
    """How many partitions are worth running at once on this machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def uri(path: Path) -> str:
    """A read-only ``file:`` URI that makes SQLite take no locks (any character in the path is escaped)."""
    return f"file:{urlquote(str(path))}?mode=ro&immutable=1"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _run(main: Path, attached: Mapping[str, Path], sql: str,
         temp_tables: Mapping[str, pyarrow.Table], max_rows: int) -> pyarrow.Table:
    import adbc_driver_sqlite.dbapi as adbc
    import pyarrow as pa

    conn = adbc.connect(uri(main))
    try:
        cur = conn.cursor()
        for p in _PRAGMAS:
            cur.execute(f"PRAGMA main.{p}")
        for schema, path in attached.items():
            cur.execute(f"ATTACH '{uri(path).replace(chr(39), chr(39) * 2)}' AS {_quote(schema)}")
            for p in _PRAGMAS:
                cur.execute(f"PRAGMA {_quote(schema)}.{p}")
        try:
            for name, rows in temp_tables.items():
                _load(cur, name, rows)
            # One batch (the driver reserves 8 bytes a row per column for it up front).
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(max(1, max_rows))})
            cur.execute(sql)
            result = cur.fetch_arrow_table()
        finally:
            cur.close()
    finally:
        conn.close()
    if any(c.num_chunks > 1 for c in result.columns):
        # a later batch's values were converted to the first batch's types
        raise ColumnarError("the result came in more than one batch")
    for c in result.columns:
        if pa.types.is_string(c.type):
            c.validate(full=True)  # text that isn't UTF-8 (ArrowInvalid): read it row by row
    return result


def _load(cur: Any, name: str, rows: pyarrow.Table) -> None:
    """Make temp table *name* holding *rows*, with untyped columns: a declared type
    would give the values an affinity and change how they compare with others."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if rows.num_columns == 1 and rows.schema.types[0] == pa.int64() and rows.column(0).null_count == 0:
        # Integers as one JSON array that SQLite parses in C: about twice as fast as
        # binding them row by row.
        text = pc.cast(rows.column(0).combine_chunks(), pa.string())
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text), ",")
        cur.execute(f"CREATE TEMP TABLE {_quote(name)} AS SELECT value AS {_quote(rows.column_names[0])} "
                    "FROM json_each(?)", (f"[{joined[0].as_py()}]",))  # rows in array order
        return
    cur.execute(f"CREATE TEMP TABLE {_quote(name)}({', '.join(_quote(c) for c in rows.column_names)})")
    if rows.num_rows:
        cur.adbc_ingest(name, rows, mode="append", temporary=True)


Query = tuple[str, Mapping[str, "pyarrow.Table"]]  # SQL, and temp tables to load before it runs


def read(main: Path, attached: Mapping[str, Path], queries: Sequence[Query], max_rows: int) -> pyarrow.Table:
    """Run each query on its own connection to *main* (with *attached* databases), several
    at once; their rows, concatenated in order, as one table.

    Each query yields at most *max_rows* rows (more raise ``ColumnarError``). A column
    that is all NULL in one query takes the type the others found; two queries finding
    different types raise ``ColumnarError``.
    """
    if not available():
        raise ColumnarError("adbc-driver-sqlite is not installed")
    if max_rows >= 2**31 - 1:
        raise ColumnarError("too many rows for one batch")
    try:
        if len(queries) == 1:
            return _run(main, attached, *queries[0], max_rows)
        with ThreadPoolExecutor(max_workers=min(len(queries), workers())) as pool:
            parts = list(pool.map(lambda q: _run(main, attached, *q, max_rows), queries))
        return _concat(parts)
    except ColumnarError:
        raise
    except Exception as e:  # the driver's errors (type changes after the first batch, SQL errors)
        raise ColumnarError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e


def _concat(parts: list[pyarrow.Table]) -> pyarrow.Table:
    """Tables whose types each query inferred on its own, as one."""
    import pyarrow as pa

    fields = []
    for i, f in enumerate(parts[0].schema):
        found = {p.schema.types[i] for p in parts if p.column(i).null_count < p.num_rows}
        if len(found) > 1:
            raise ColumnarError(f"column {f.name} has values of several types")
        fields.append(f.with_type(found.pop()) if found else f)
    schema = pa.schema(fields)
    same = [p if p.schema == schema else
            pa.Table.from_arrays([c if c.type == t else pa.nulls(p.num_rows, t)
                                  for c, t in zip(p.columns, schema.types, strict=True)], schema=schema)
            for p in parts]
    return pa.concat_tables(same)


def key_table(keys: Collection[Any], width: int) -> pyarrow.Table | None:
    """Keys (scalars, or tuples of *width* values) as an Arrow table ``k0, k1, ...`` in SQLite's
    order (numbers by value, text and blobs by bytes); None when a column mixes types
    Arrow can't hold in one array."""
    import pyarrow as pa

    rows = list(keys)
    columns = [rows] if width == 1 else list(zip(*rows, strict=True)) or [[]] * width
    if any(len({type(v) for v in c}) > 1 for c in columns):
        # Arrow would convert one kind into another ('7' and b'a' become binary, 2**60 + 1 and
        # 0.5 doubles), and the converted key matches another row or none
        return None
    try:
        arrays = [pa.array(c) for c in columns]
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return None
    if any(pa.types.is_null(a.type) for a in arrays):
        return None
    names = [f"k{i}" for i in range(width)]
    return pa.Table.from_arrays(arrays, names=names).sort_by([(n, "ascending") for n in names])


__all__ = ["ColumnarError", "Query", "available", "key_table", "read", "uri", "workers"]
