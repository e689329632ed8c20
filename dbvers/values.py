"""SQLite values as Python values, and the one rule for text that isn't UTF-8.

SQLite stores whatever bytes it is given as TEXT (``CAST(x'c328ff41' AS TEXT)`` is
legal), while apsw decodes every TEXT value as strict UTF-8 and raises
``UnicodeDecodeError`` on the first bad byte. dbvers's rule, applied by every
reader of user values:

* In Python (rows, DataFrames, Arrow) such a value is a ``str`` decoded with
  ``surrogateescape``: each byte that isn't part of valid UTF-8 becomes a lone
  surrogate U+DC80..U+DCFF, and ``encode_text(s)``
  (``s.encode("utf-8", "surrogateescape")``) gives back the stored bytes exactly.
  Valid text never holds a lone surrogate, so the two can't be confused.
* In SQL it is written ``CAST(x'<hex>' AS TEXT)`` (``sql_text``), which stores the
  same bytes again; as a bound parameter it is bound the same way (``param``).
* Human output escapes it (``dbvers.render.text``); machine formats say in the
  guide how they carry it.

``read_rows`` reads a query the fast way (apsw's own decoding) and, only if a value
fails to decode, reads it again with text fetched as bytes and decoded here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import apsw

# A lone surrogate: what surrogateescape makes of a byte that isn't UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_text(data: bytes) -> str:
    """Stored TEXT bytes as a ``str`` (bytes that aren't UTF-8 as surrogate escapes)."""
    return data.decode("utf-8", "surrogateescape")


def encode_text(text: str) -> bytes:
    """The bytes SQLite stores for *text* (inverse of ``decode_text``)."""
    return text.encode("utf-8", "surrogateescape")


def is_raw_text(v: Any) -> bool:
    """Whether *v* is text whose stored bytes aren't UTF-8 (it holds surrogate escapes)."""
    return isinstance(v, str) and _SURROGATE.search(v) is not None


def sql_text(text: str) -> str:
    """An SQL literal storing exactly *text*'s bytes (quoted text when it is UTF-8)."""
    # A quoted literal would end at a NUL (and Python refuses such a script): hex too.
    if is_raw_text(text) or "\x00" in text:
        return f"CAST(x'{encode_text(text).hex()}' AS TEXT)"
    return "'" + text.replace("'", "''") + "'"


def param(v: Any) -> tuple[str, Any]:
    """A placeholder and its binding for *v*: apsw can't bind a ``str`` holding surrogate
    escapes, so such text is bound as its bytes and cast back to TEXT in SQL."""
    if is_raw_text(v):
        return "CAST(? AS TEXT)", encode_text(v)
    return "?", v


def sql_literal(v: Any) -> str:
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
        return _real_literal(v)
    if isinstance(v, bytes):
        return "X'" + v.hex() + "'"
    return sql_text(str(v))


def _real_literal(v: float) -> str:
    """A REAL literal that every SQLite parses to exactly *v*.

    Older SQLite (3.40, for one) doesn't round every decimal correctly, so a
    decimal is written only when it is *v* exactly (9.5, 20.0, 1.25); other values
    as exact arithmetic on an integer and powers of two, with the decimal in a
    comment: ``(3602879701896397 * 1.0 / 36028797018963968 /* 0.1 */)``.
    """
    from decimal import Decimal

    text = repr(v)
    if "e" not in text and "." not in text:
        text += ".0"
    d = Decimal(text)
    if d == Decimal(v) and len(d.as_tuple().digits) <= 18 and abs(d.adjusted()) <= 18:
        return text
    p, q = v.as_integer_ratio()  # q is a power of two; p fits 53 bits unless q == 1
    shift = 0
    while p % 2 == 0 and p:
        p //= 2
        shift += 1
    k = q.bit_length() - 1 - shift  # v = p / 2**k (k < 0: times 2**-k)
    out = f"{p} * 1.0"
    op = " / " if k > 0 else " * "
    k = abs(k)
    while k:
        step = min(k, 62)
        out += f"{op}{2 ** step}"
        k -= step
    return f"({out} /* {v!r} */)"


def quote(name: str) -> str:
    """Quote an SQL identifier (every identifier that reaches SQL goes through this)."""
    return '"' + name.replace('"', '""') + '"'


class Rows:
    """A query's rows: an iterator with a cursor's ``fetchone``/``fetchall``."""

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows  # iterated directly (csv's writerows, list()) at the generator's speed

    def __next__(self) -> tuple[Any, ...]:
        return next(self._rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self._rows, None)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)


def read_rows(conn: apsw.Connection, sql: str, bindings: Sequence[Any] = ()) -> Rows:
    """The rows of one SELECT *sql*, text that isn't UTF-8 decoded by ``decode_text``.

    The query runs as is; if a value fails to decode, it runs again wrapped so that
    TEXT comes as bytes with a flag, the rows already given are skipped (the same
    statement over the same read-only files yields the same rows in the same
    order), and the rest are decoded here.
    """
    cur = conn.execute(sql, bindings)  # now: an error in the SQL raises here, not when iterated
    return Rows(_rows(cur, conn, sql, bindings))


def _rows(cur: apsw.Cursor, conn: apsw.Connection, sql: str,
          bindings: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
    n = 0
    try:
        for n, row in enumerate(cur, 1):  # noqa: B007 - n counts the rows given
            yield row
        return
    except UnicodeDecodeError:
        ncols = len(cur.get_description())
    yield from _raw_rows(conn, sql, bindings, ncols, n)


def _raw_rows(conn: apsw.Connection, sql: str, bindings: Sequence[Any], ncols: int,
              skip: int) -> Iterator[tuple[Any, ...]]:
    names = [f"c{i}" for i in range(ncols)]
    # A CTE with a column list names the query's columns by position (its own may repeat).
    exprs = []
    for c in names:
        exprs += [f"CASE WHEN typeof({c}) = 'text' THEN CAST({c} AS BLOB) ELSE {c} END",
                  f"typeof({c}) = 'text'"]
    wrapped = (f"WITH dbvers_q({', '.join(map(quote, names))}) AS ({sql}) "
               f"SELECT {', '.join(exprs)} FROM dbvers_q")
    for i, raw in enumerate(conn.execute(wrapped, bindings)):
        if i < skip:
            continue
        yield tuple(decode_text(raw[j]) if raw[j + 1] else raw[j] for j in range(0, 2 * ncols, 2))


__all__ = ["Rows", "decode_text", "encode_text", "is_raw_text", "param", "read_rows", "sql_literal", "sql_text"]
