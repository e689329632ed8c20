"""Machine output of a diff: json, csv, parquet, or SQL that turns A into B.

Everything but parquet streams row by row, so memory stays at one row per
table whatever the size of the diff.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ..diff import Diff
from ..errors import UsageError
from ..fsutil import publish, temp_path
from ..values import encode_text, is_raw_text, quote, sql_literal


def json_value(v: Any) -> Any:
    """A SQLite value as JSON: BLOBs, non-finite REALs and text that isn't UTF-8 tagged."""
    if isinstance(v, bytes):
        return {"$blob": base64.b64encode(v).decode()}
    if isinstance(v, float) and not math.isfinite(v):
        return {"$real": repr(v)}
    if is_raw_text(v):  # text that isn't UTF-8 (JSON strings must be): its bytes
        return {"$text_bytes": base64.b64encode(encode_text(v)).decode()}
    return v


def _parquet_safe(tbl: Any) -> Any:
    """Parquet has no union type: a column of mixed SQLite types becomes a struct with
    the union's fields (integer, real, text, blob, and text_bytes for text that isn't
    UTF-8) and the one field of each value's kind set."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(tbl.schema):
        if not pa.types.is_union(field.type):
            continue
        col = tbl.column(i)
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        codes = pa.array(arr.type_codes)
        offsets = pa.array(arr.offsets)
        children = []
        for k in range(arr.type.num_fields):
            at = pc.if_else(pc.equal(codes, k), offsets, pa.nulls(len(arr), pa.int32()))
            children.append(arr.field(k).take(at))
        mask = children[0].is_null()
        for c in children[1:]:
            mask = pc.and_(mask, c.is_null())
        names = [arr.type.field(k).name for k in range(arr.type.num_fields)]
        tbl = tbl.set_column(i, field.name, pa.StructArray.from_arrays(children, names=names, mask=mask))
    return tbl


# A table name becomes a file name by percent-encoding every byte outside this set
# (so no separator, no "..", no control character, nothing a shell or another OS
# minds); urllib.parse.unquote turns it back. A leading "." is encoded too, so no
# name is hidden or special. Names that would only differ in case get their capitals
# encoded (case-insensitive file systems); one over the file-name limit is cut and
# given a hash, and every parquet file also names its table in its metadata.
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_MAX_NAME = 200


def table_file_name(table: str, others: Iterable[str] = (), suffix: str = "") -> str:
    """A safe, unique, reversible file name for *table* among the tables *others*."""
    fold = {t.casefold() for t in others if t != table}
    capitals = table.casefold() in fold

    def enc(ch: str) -> str:
        if ch in _SAFE and not (capitals and ch.isupper()):
            return ch
        return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))

    name = "".join(enc(c) for c in table)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) + len(suffix) > _MAX_NAME:
        digest = hashlib.sha256(table.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        name = name[: _MAX_NAME - len(suffix) - 17] + "~" + digest
    return (name or "%00") + suffix


@contextlib.contextmanager
def _text_out(path: str | None) -> Iterator[TextIO]:
    """The output, writing text that isn't UTF-8 as its own bytes (``values``): stdout,
    or *path* written through a temp file beside it, so a failed export leaves the old
    file (or none), never a partial one."""
    if path:
        target = Path(path)
        tmp = temp_path(target.parent if str(target.parent) else Path("."), target.suffix)
        try:
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
                yield f
            publish(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        before = out.errors
        if before != "surrogateescape":
            out.reconfigure(errors="surrogateescape")
        try:
            yield out
        finally:
            if before != "surrogateescape":
                out.reconfigure(errors=before)
    else:  # a notebook's stream holds only Unicode: such bytes are shown replaced
        yield _Replacing(out)


class _Replacing:
    """A text stream that writes a lone surrogate as U+FFFD instead of failing."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        if is_raw_text(text):
            text = encode_text(text).decode("utf-8", "replace")
        return self._out.write(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._out, name)


def export(diff: Diff, tables: list[str], fmt: str, path: str | None, *, where: str | None = None,
           limit: int | None = None, skinny: bool = False, whole: bool = True) -> bool:
    """Write the diff of *tables*; return whether any row or schema change was written.

    *whole* says the tables are the entire diff, so SQL output includes the DDL.
    json and csv stream: a table appears when its first changed row does (or
    when its schema changed), so nothing is counted before writing.
    """
    wrote = not where and any(  # schema changes of these tables (the rest: whole diffs only)
        s.name in tables if s.type == "table" else whole for s in diff.schema_changes)
    schema_tables = {s.name for s in diff.schema_changes if s.type == "table"}
    rows: dict[str, Any] = {"where": where, "limit": limit, "skinny": skinny}
    if fmt == "sql":
        if where or limit is not None or skinny:
            raise UsageError("--format sql writes the whole change; drop --where/--limit/--skinny")
        return _export_sql(diff, None if whole else tables, path) or wrote
    if fmt == "parquet":
        if not path:
            raise UsageError("--format parquet needs -o FILE (a directory when several tables changed)")
        return _export_parquet(diff, tables, Path(path), rows) or wrote
    if fmt not in ("json", "csv"):
        raise UsageError(f"unknown format {fmt!r}")
    with _text_out(path) as out:
        writer = _export_json if fmt == "json" else _export_csv
        return writer(diff, tables, schema_tables, out, rows) or wrote


def _export_sql(diff: Diff, tables: list[str] | None, path: str | None) -> bool:
    wrote = False
    with _text_out(path) as out:
        out.write("BEGIN;\n")
        for stmt in diff.to_sql(tables):
            out.write(stmt + "\n")
            wrote = True
        out.write("COMMIT;\n")
    return wrote


def _export_parquet(diff: Diff, tables: list[str], target: Path, rows: dict[str, Any]) -> bool:
    import pyarrow.parquet as pq

    wrote = False
    many = len(tables) > 1
    if many:
        target.mkdir(parents=True, exist_ok=True)
    # Every file is written under a temp name first and renamed only when all are
    # written, so a failure leaves none of this export behind.
    written: list[tuple[Path, Path]] = []
    try:
        for t in tables:
            tbl = _parquet_safe(diff.to_arrow(t, **rows))
            tbl = tbl.replace_schema_metadata({**(tbl.schema.metadata or {}),
                                               b"dbvers.table": t.encode("utf-8", "surrogateescape")})
            wrote = wrote or tbl.num_rows > 0
            dest = target / table_file_name(t, tables, ".parquet") if many else target
            tmp = temp_path(dest.parent, ".parquet")
            written.append((tmp, dest))
            pq.write_table(tbl, tmp)
        for tmp, dest in written:
            publish(tmp, dest)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
    return wrote


def _export_json(diff: Diff, tables: list[str], schema_tables: set[str], out: TextIO,
                 rows: dict[str, Any]) -> bool:
    wrote = False
    out.write("{")
    first = True
    for t in tables:
        cols = diff.output_columns(t, **rows)
        started = False

        def start(t: str = t) -> None:
            nonlocal first
            out.write(("" if first else ",") + "\n" + json.dumps(t, ensure_ascii=False) + ": [")
            first = False

        for j, row in enumerate(diff.iter_rows(t, **rows)):
            if not started:
                start()
                started = True
            rec = {c: json_value(v) for c, v in zip(cols, row, strict=True)}
            out.write(("," if j else "") + "\n  " + json.dumps(rec, ensure_ascii=False))
            wrote = True
        if not started and t in schema_tables:
            start()
            started = True
        if started:
            out.write("\n]")
    out.write("\n}\n")
    return wrote


def _export_csv(diff: Diff, tables: list[str], schema_tables: set[str], out: TextIO,
                rows: dict[str, Any]) -> bool:
    wrote = False
    w = csv.writer(out, lineterminator="\n")
    first = True
    for t in tables:
        cols = diff.output_columns(t, **rows)
        started = False
        # SQLite writes BLOBs as x'..' text; the csv module writes the rest as
        # _csv_value would (floats by repr, NULL as an empty field), all in C.
        exprs = [sql_literal(t)] + [
            f"CASE WHEN typeof({q}) = 'blob' THEN 'x''' || lower(hex({q})) || '''' ELSE {q} END"
            for q in map(quote, cols)
        ]
        _, cur = diff.query(t, where=rows["where"], limit=rows["limit"], columns=cols, exprs=exprs)
        for row in cur:  # the first row only: the rest go to writerows
            if not first:
                out.write("\n")
            w.writerow(["table", *cols])
            w.writerow(row)
            w.writerows(cur)
            started, first, wrote = True, False, True
            break
        if not started and t in schema_tables:
            if not first:
                out.write("\n")
            w.writerow(["table", *cols])
            first = False
    return wrote
