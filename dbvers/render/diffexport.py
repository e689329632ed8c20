"""Machine output of a diff: json, csv, parquet, or SQL that turns A into B.

Everything but parquet streams row by row, so memory stays at one row per
table whatever the size of the diff.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ..diff import Diff
from ..errors import UsageError


def _json_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$blob": base64.b64encode(v).decode()}
    if isinstance(v, float) and not math.isfinite(v):
        return {"$real": repr(v)}
    return v


def _csv_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return "x'" + v.hex() + "'"
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


@contextlib.contextmanager
def _text_out(path: str | None) -> Iterator[TextIO]:
    if path:
        with open(path, "w", encoding="utf-8", newline="") as f:
            yield f
    else:
        yield sys.stdout


def export(diff: Diff, tables: list[str], fmt: str, path: str | None, *, where: str | None = None,
           limit: int | None = None, skinny: bool = False, whole: bool = True) -> bool:
    """Write the diff of *tables*; return whether any row or schema change was written.

    *whole* says the tables are the entire diff, so SQL output includes the DDL.
    """
    wrote = bool(diff.schema_changes) and not where
    if fmt == "sql":
        if where or limit is not None or skinny:
            raise UsageError("--format sql writes the whole change; drop --where/--limit/--skinny")
        with _text_out(path) as out:
            out.write("BEGIN;\n")
            for stmt in diff.to_sql(None if whole else tables):
                out.write(stmt + "\n")
                wrote = True
            out.write("COMMIT;\n")
        return wrote
    if fmt == "parquet":
        if not path:
            raise UsageError("--format parquet needs -o FILE (a directory when several tables changed)")
        import pyarrow.parquet as pq

        target = Path(path)
        if len(tables) > 1:
            target.mkdir(parents=True, exist_ok=True)
        for t in tables:
            tbl = diff.to_arrow(t, where=where, limit=limit, skinny=skinny)
            wrote = wrote or tbl.num_rows > 0
            pq.write_table(tbl, target / f"{t}.parquet" if len(tables) > 1 else target)
        return wrote
    with _text_out(path) as out:
        if fmt == "json":
            out.write("{")
            for i, t in enumerate(tables):
                cols = diff.output_columns(t, skinny=skinny, where=where)
                out.write(("," if i else "") + "\n" + json.dumps(t, ensure_ascii=False) + ": [")
                for j, row in enumerate(diff.iter_rows(t, where=where, limit=limit, skinny=skinny)):
                    rec = {c: _json_value(v) for c, v in zip(cols, row, strict=True)}
                    out.write(("," if j else "") + "\n  " + json.dumps(rec, ensure_ascii=False))
                    wrote = True
                out.write("\n]")
            out.write("\n}\n")
        elif fmt == "csv":
            w = csv.writer(out, lineterminator="\n")
            for i, t in enumerate(tables):
                cols = diff.output_columns(t, skinny=skinny, where=where)
                if i:
                    out.write("\n")
                w.writerow(["table", *cols])
                for row in diff.iter_rows(t, where=where, limit=limit, skinny=skinny):
                    w.writerow([t, *(_csv_value(v) for v in row)])
                    wrote = True
        else:
            raise UsageError(f"unknown format {fmt!r}")
    return wrote
