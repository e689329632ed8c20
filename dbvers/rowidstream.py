"""Reading a ``rowids`` object as a stream: its tables, and their rows one at a time (L0).

The body is the canonical JSON of :class:`~dbvers.objects.RowidFixups`
(``{"<table>":{"key":[...],"rows":[[rowid, key values...],...]},...}``, no whitespace).
``json.loads`` would hold it whole, and its Python form takes several times its bytes, so a
commit inserting millions of rows (or a crafted object that expands to gigabytes) would not fit
in memory; here one row is decoded at a time. A row longer than :data:`ROW_MAX` characters is
refused as it is read: the writer never makes one (``changes.rowid_fixups`` keeps a snapshot
instead), so the text held at once stays bounded whatever the object's size.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Any, Protocol

from .errors import CorruptObjectError
from .objects import tag_value, untag_value

ROW_MAX = 8 << 20  # characters of one listed row's JSON
READ = 1 << 20
INT_RANGE = range(-(2**63), 2**63)


class Body(Protocol):
    """A verified object body stream (``storage.base.BodyReader``)."""

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


class RowidStream:
    """A rowids object's body read as it is used; ``tables()`` once, in order, each table's rows drained."""

    def __init__(self, oid: str, body: Body) -> None:
        self.oid = oid
        self._body = body
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._decoder = json.JSONDecoder()

    def close(self) -> None:
        self._body.close()

    def _corrupt(self, detail: str) -> CorruptObjectError:
        return CorruptObjectError(self.oid, detail)

    def _fill(self, want: int) -> bool:
        """Read up to max(READ, *want*) more bytes (a stream gives at most a chunk a read; a
        long entry is re-parsed once a fill, which ROW_MAX bounds); False at the end."""
        if self._eof:
            return False
        if self._pos:  # what was parsed is dropped
            self._buf, self._pos = self._buf[self._pos:], 0
        data = self._body.read(max(READ, want))
        try:
            self._buf += self._text.decode(data, final=not data)
        except UnicodeDecodeError:
            raise self._corrupt("rowids that aren't UTF-8") from None
        self._eof = not data
        return True

    def _expect(self, literal: str) -> None:
        while len(self._buf) - self._pos < len(literal) and self._fill(len(literal)):
            pass
        if not self._buf.startswith(literal, self._pos):
            raise self._corrupt(f"malformed rowids: expected {literal!r}")
        self._pos += len(literal)

    def _peek(self, *choices: str) -> str:
        """Which of the one-character *choices* comes next (consumed)."""
        while len(self._buf) <= self._pos and self._fill(1):
            pass
        c = self._buf[self._pos:self._pos + 1]
        if c not in choices:
            raise self._corrupt(f"malformed rowids: expected one of {''.join(choices)!r}")
        self._pos += 1
        return c

    def _value(self) -> Any:
        """The JSON string or array that starts here (self-delimiting: a cut never parses)."""
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                pending = len(self._buf) - self._pos
                if pending > ROW_MAX:
                    raise self._corrupt(f"a rowids entry longer than {ROW_MAX:,} characters") from None
                if not self._fill(pending):
                    raise self._corrupt("malformed rowids") from None
                continue
            if end - self._pos > ROW_MAX:
                raise self._corrupt(f"a rowids entry longer than {ROW_MAX:,} characters")
            self._pos = end
            return value

    def tables(self) -> Iterator[tuple[str, tuple[str, ...], Iterator[tuple[Any, ...]]]]:
        """(table, key columns, its rows as (rowid, key values...)), then the end of the body
        (where the stream checks its hash: a damaged object raises there at the latest)."""
        self._expect("{")
        if self._peek('"', "}") == '"':
            self._pos -= 1
            while True:
                name = self._value()
                self._expect(':{"key":')
                cols = self._value()
                if not isinstance(name, str) or not isinstance(cols, list) or not cols \
                        or not all(isinstance(c, str) for c in cols):
                    raise self._corrupt("malformed rowids: a table without its name or key")
                self._expect(',"rows":[')
                rows = self._rows(len(cols))
                yield name, tuple(cols), rows
                for _ in rows:  # what the caller left unread
                    pass
                self._expect("}")
                if self._peek(",", "}") == "}":
                    break
        while self._fill(READ):  # to the end: verifies the hash
            if self._buf[self._pos:].strip():
                raise self._corrupt("malformed rowids: data after the end")
            self._buf, self._pos = "", 0

    def _rows(self, ncols: int) -> Iterator[tuple[Any, ...]]:
        if self._peek("[", "]") == "]":
            return
        self._pos -= 1
        while True:
            row = self._value()
            if not isinstance(row, list) or len(row) != ncols + 1:
                raise self._corrupt("malformed rowids: a row that doesn't fit its key")
            try:
                values = tuple(untag_value(v) for v in row)
            except (KeyError, ValueError, TypeError):
                raise self._corrupt("malformed rowids: a value that can't be read") from None
            if type(values[0]) is not int or not all(
                    v is None or type(v) in (str, bytes, float) or (type(v) is int and v in INT_RANGE)
                    for v in values):
                raise self._corrupt("malformed rowids: a rowid or value of the wrong type or range")
            yield values
            if self._peek(",", "]") == "]":
                return


def row_fits(row: tuple[Any, ...]) -> bool:
    """Whether a listed row's JSON stays within ROW_MAX characters (the writer's side of the bound)."""
    # Cheap upper bound first (text escapes to at most 6 characters a character); exact only near it.
    if sum(6 * len(v) + 2 if isinstance(v, str) else 2 * len(v) + 11 if isinstance(v, bytes) else 42
           for v in row) <= ROW_MAX:
        return True
    return len(json.dumps([tag_value(v) for v in row], ensure_ascii=False, separators=(",", ":"))) <= ROW_MAX
