"""SQLite values as Arrow arrays and pandas DataFrames: one set of dtypes for every
DataFrame dbvers returns (diffs, ``read_table``, ``history``).

A column is the narrowest Arrow type that holds every value as stored: ``int64``
(pandas ``Int64``, nullable), ``float64`` (``Float64``), ``string`` (``string``),
``binary`` (bytes as objects). A column whose values have several SQLite storage
classes, or text that isn't UTF-8 (``values``: a ``str`` with surrogate escapes,
which Arrow strings can't hold), stays a list: an ``object`` column in pandas
holding each value as stored, a dense union in Arrow.

pandas and pyarrow are imported only by the functions that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .changes import affinity
from .values import encode_text, is_raw_text

if TYPE_CHECKING:
    import pandas
    import pyarrow


def null_type(decl_type: str) -> pyarrow.DataType:
    """The Arrow type of an all-NULL column with declared type *decl_type*."""
    import pyarrow as pa

    aff = affinity(decl_type)
    return {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string()}.get(aff, pa.binary())


def arrow_column(values: Sequence[Any], decl_type: str) -> Any:
    """A column of SQLite values as the narrowest faithful Arrow array (a list if types mix)."""
    import pyarrow as pa

    aff = affinity(decl_type)
    try:
        arr = pa.array(values)  # inferred in C; refuses to mix numbers with text or bytes
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, UnicodeEncodeError):
        # 1 and '1' in one column, or text that isn't UTF-8: keep each value as stored
        return values
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), type=null_type(decl_type))
    if t == pa.int64() or t == pa.string() or (t == pa.float64() and aff == "REAL"):
        return arr  # nothing else can hide in these (a REAL column turns integers into reals)
    # pyarrow reads 1 and 2.5 as doubles, and bytes and text as binary: look closer
    kinds = set(map(type, values))
    kinds.discard(type(None))
    single = {int: pa.int64(), float: pa.float64(), str: pa.string(), bytes: pa.binary()}
    if len(kinds) == 1 and (k := single.get(next(iter(kinds)))) is not None:
        return arr if k == t else pa.array(values, type=k)
    return values


#: The children of a mixed column's union, by value kind; ``text_bytes`` (text that
#: isn't UTF-8, as its bytes) is there only when such a value is.
UNION_KINDS = ("integer", "real", "text", "blob", "text_bytes")


def value_kind(v: Any) -> int:
    """The index in ``UNION_KINDS`` of a non-NULL value."""
    if isinstance(v, str):
        return 4 if is_raw_text(v) else 2
    return {int: 0, float: 1, bytes: 3}[type(v)]


def union_array(values: Sequence[Any]) -> pyarrow.Array:
    """Values of several storage classes as a dense union (``UNION_KINDS``)."""
    import pyarrow as pa

    types = [pa.int64(), pa.float64(), pa.string(), pa.binary(), pa.binary()]
    children: list[list[Any]] = [[] for _ in UNION_KINDS]
    codes, offsets = [], []
    for v in values:
        k = 0 if v is None else value_kind(v)
        codes.append(k)
        offsets.append(len(children[k]))
        children[k].append(encode_text(v) if k == 4 else v)
    n = len(UNION_KINDS) if children[4] else 4
    return pa.UnionArray.from_dense(
        pa.array(codes, type=pa.int8()), pa.array(offsets, type=pa.int32()),
        [pa.array(c, type=t) for c, t in zip(children[:n], types[:n], strict=True)],
        list(UNION_KINDS[:n]),
    )


#: What a column of dbvers's own gets in front of its name when the data has that name.
META_PREFIX = "dbvers_"


def meta_columns(data: Sequence[str], meta: Sequence[str]) -> list[str]:
    """Names for dbvers's own columns (*meta*) beside the data's columns (*data*).

    The data's columns keep their names (they are what ``where=`` SQL names); a
    column of dbvers's whose name the data already has gets ``META_PREFIX`` in front,
    again until the name is free. So no DataFrame dbvers returns has two columns of
    one name, and no value is lost.
    """
    taken = set(data)
    out = []
    for m in meta:
        while m in taken:
            m = META_PREFIX + m
        taken.add(m)
        out.append(m)
    return out


def frame(cols: Sequence[str], arrays: Sequence[Any]) -> pandas.DataFrame:
    """A DataFrame from ``arrow_column`` results: Int64/Float64/string dtypes, bytes and
    mixed-type columns as objects holding each value as stored. *cols* must be unique
    (``meta_columns``)."""
    import pandas as pd
    import pyarrow as pa

    if len(set(cols)) != len(cols):
        raise ValueError(f"duplicate column names in {list(cols)}")

    typed = [(c, a) for c, a in zip(cols, arrays, strict=True) if not isinstance(a, (list, tuple))]
    mapping = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(),
               pa.string(): pd.StringDtype()}
    df = pa.Table.from_arrays([a for _, a in typed], names=[c for c, _ in typed]).to_pandas(
        types_mapper=mapping.get
    )
    for i, (c, a) in enumerate(zip(cols, arrays, strict=True)):
        if isinstance(a, (list, tuple)):
            df.insert(i, c, pd.Series(list(a), dtype=object))
    return df


def rows_frame(names: Sequence[str], rows: Sequence[Sequence[Any]],
               decl_types: Sequence[str] | None = None) -> pandas.DataFrame:
    """Rows of SQLite values as a DataFrame with ``frame``'s dtypes (*decl_types* type
    all-NULL columns)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    types = list(decl_types) if decl_types is not None else [""] * len(names)
    return frame(names, [arrow_column(list(v), t) for v, t in zip(columns, types, strict=True)])


def repeat_text(value: str | None, n: int) -> pyarrow.Array:
    """*value* n times as a string array (all NULL for None), built without a Python list."""
    import pyarrow as pa

    if value is None:
        return pa.nulls(n, type=pa.string())
    import numpy as np

    zeros = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(zeros, pa.array([value])).cast(pa.string())


def faithful_column(arr: pyarrow.ChunkedArray, affinity: str | None, classes: int | None,
                    null_decl: str) -> pyarrow.ChunkedArray | pyarrow.Array | None:
    """*arr* as read by the columnar driver if it holds every value as stored, else None.

    The driver types a column by all its values at once (``columnar``): ``int64``
    only when all are integers, ``double`` when integers and reals mix, ``string``
    when text and numbers mix, ``binary`` when any is a blob. So an INTEGER, REAL
    or TEXT affinity column read as its own type holds that class alone (those
    affinities turn numbers into reals or text); for the others *classes* (1
    integer, 2 real, 4 text, 8 blob, counted by SQLite) must name a single class.
    An all-NULL column gets the type *null_decl* (a declared type) gives it.
    """
    import pyarrow as pa

    if len(arr) == arr.null_count:
        return pa.nulls(len(arr), type=null_type(null_decl))
    if classes is not None:
        want = {1: pa.int64(), 2: pa.float64(), 4: pa.string(), 8: pa.binary()}.get(classes)
    elif arr.type == pa.int64():
        want = arr.type
    else:
        want = {"REAL": pa.float64(), "TEXT": pa.string()}.get(affinity or "")
    return arr if want is not None and arr.type == want else None


__all__ = ["META_PREFIX", "UNION_KINDS", "arrow_column", "faithful_column", "frame", "meta_columns", "null_type",
           "repeat_text", "rows_frame", "union_array", "value_kind"]
