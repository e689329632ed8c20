"""The terminal view of a diff: one section per table, streamed row by row.

Added rows are green (``+``), removed red (``-``), modified yellow (``~``) with
only the key and the changed cells, each as ``old → new``. Lines are cut to the
terminal width. Without a terminal, plain text is written straight to the
stream (no colour codes, and fast enough for millions of rows).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from typing import Any, ClassVar, TextIO

from ..diff import Diff
from ..objects import TableCounts

ARROW = "→"


def fmt_value(v: Any, width: int = 40) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        text = "x'" + v[:32].hex() + ("…" if len(v) > 32 else "") + "'"
    elif isinstance(v, str):
        text = "'" + v.replace("\n", "\\n") + "'"
    elif isinstance(v, float):
        text = repr(v)
    else:
        text = str(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def _differs(a: Any, b: Any) -> bool:
    return a != b or type(a) is not type(b)


class DiffPrinter:
    """Writes a diff as text lines; colour (ANSI) only when *colour* is set."""

    COLOURS: ClassVar[dict[str, str]] = {"+": "\x1b[32m", "-": "\x1b[31m", "~": "\x1b[33m", "h": "\x1b[1m", "d": "\x1b[2m"}
    RESET = "\x1b[0m"

    def __init__(self, out: TextIO | None = None, colour: bool | None = None,
                 width: int | None = None) -> None:
        self.out = out or sys.stdout
        tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.colour = tty if colour is None else colour
        self.width = width or (shutil.get_terminal_size((120, 24)).columns if tty else 0)

    def _paint(self, kind: str, text: str) -> str:
        return f"{self.COLOURS[kind]}{text}{self.RESET}" if self.colour else text

    def line(self, kind: str, text: str) -> None:
        if self.width and len(text) > self.width:
            text = text[: self.width - 1] + "…"
        self.out.write((self._paint(kind, text) if kind else text) + "\n")

    def header(self, title: str, counts: TableCounts | None, schema: Iterable[str]) -> None:
        stat = f"  +{counts.inserts} ~{counts.updates} -{counts.deletes}" if counts else ""
        self.line("h", f"── {title}{stat}")
        for s in schema:
            self.line("~", f"   schema: {s}")

    def rows(self, columns: list[str], key: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> int:
        names = [c[5:] for c in columns[1::2]]  # from_<col> -> col
        n = 0
        for row in rows:
            kind = row[0]
            old, new = row[1::2], row[2::2]
            if kind == "added":
                cells = [f"{c}={fmt_value(v)}" for c, v in zip(names, new, strict=True)]
                self.line("+", "+ " + "  ".join(cells))
            elif kind == "removed":
                cells = [f"{c}={fmt_value(v)}" for c, v in zip(names, old, strict=True)]
                self.line("-", "- " + "  ".join(cells))
            else:
                cells = [f"{c}={fmt_value(o)}" for c, o in zip(names, old, strict=True) if c in key]
                cells += [
                    f"{c}: {fmt_value(o)} {ARROW} {fmt_value(v)}"
                    for c, o, v in zip(names, old, new, strict=True)
                    if c not in key and _differs(o, v)
                ]
                self.line("~", "~ " + "  ".join(cells))
            n += 1
        return n


def print_diff(diff: Diff, tables: list[str], *, where: str | None = None, limit: int | None = None,
               skinny: bool = False, out: TextIO | None = None, colour: bool | None = None) -> TableCounts:
    """Stream the whole diff; return the totals (for the summary line)."""
    p = DiffPrinter(out, colour)
    p.line("h", f"diff {diff.a_label}..{diff.b_label}")
    schema = {}
    for s in diff.schema_changes:
        if s.type == "table":
            schema.setdefault(s.name, []).append(str(s))
        else:
            schema.setdefault("", []).append(str(s))
    for s in schema.get("", []):
        p.line("~", f"schema: {s}")
    totals = [0, 0, 0]
    for table in tables:
        spec = diff.spec(table)
        counts = diff.count_kinds(table, where) if where else diff.counts().get(table, TableCounts())
        totals = [totals[0] + counts.inserts, totals[1] + counts.updates, totals[2] + counts.deletes]
        p.header(table, counts, schema.get(table, []))
        if spec.key_changed:
            p.line("d", "   primary key changed: rows are compared as whole rows (all removed, then all added)")
        columns = diff.output_columns(table, skinny=skinny, where=where)
        shown = p.rows(columns, spec.key, diff.iter_rows(table, where=where, limit=limit, skinny=skinny))
        if limit is not None and counts.total > shown:
            p.line("d", f"   … and {counts.total - shown} more changed row(s) (--limit {limit})")
    return TableCounts(*totals)


def summary_line(n_tables: int, totals: TableCounts) -> str:
    return (f"{n_tables} table(s) changed, {totals.inserts} row(s) added, "
            f"{totals.updates} modified, {totals.deletes} removed")


def print_stat(diff: Diff, tables: list[str], *, where: str | None = None,
               out: TextIO | None = None, colour: bool | None = None) -> TableCounts:
    p = DiffPrinter(out, colour)
    schema: dict[str, list[str]] = {}
    for s in diff.schema_changes:
        schema.setdefault(s.name if s.type == "table" else "", []).append(str(s))
    width = max((len(t) for t in tables), default=5)
    tot = [0, 0, 0]
    for t in tables:
        c = diff.count_kinds(t, where) if where else diff.counts().get(t, TableCounts())
        tot = [tot[0] + c.inserts, tot[1] + c.updates, tot[2] + c.deletes]
        extra = f"  ({'; '.join(schema[t])})" if t in schema else ""
        p.line("", f" {t.ljust(width)} | +{c.inserts} ~{c.updates} -{c.deletes}{extra}")
    for s in schema.get("", []):
        p.line("", f" {s}")
    return TableCounts(*tot)
