"""The terminal view of a diff: one section per table, streamed row by row.

Added rows are green (``+``), removed red (``-``), modified yellow (``~``) with
the key and the changed cells, each as ``old → new`` (old red, new green). Lines
are cut to the terminal width. Without a terminal (or with ``NO_COLOR`` set),
plain text is written straight to the stream: no colour codes, and fast enough
for millions of rows.

Nothing is counted before the first row is printed: a table's section starts
with its first changed row, so ``dbvers diff | head`` prints at once and ends
the process as soon as ``head`` has its lines.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from typing import Any, ClassVar, TextIO

from ..diff import Diff
from ..objects import TableCounts
from .text import safe_text

ARROW = "→"
KINDS = {"added": 0, "modified": 1, "removed": 2}


def fmt_value(v: Any, width: int = 40) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        text = "x'" + v[:32].hex() + ("…" if len(v) > 32 else "") + "'"
    elif isinstance(v, str):
        text = "'" + safe_text(v) + "'"
    elif isinstance(v, float):
        text = repr(v)
    else:
        text = str(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def _differs(a: Any, b: Any) -> bool:
    return a != b or type(a) is not type(b)


Segment = tuple[str, str]  # (colour kind or "", text)


class DiffPrinter:
    """Writes a diff as text lines; colour (ANSI) only when *colour* is set."""

    COLOURS: ClassVar[dict[str, str]] = {
        "+": "\x1b[32m", "-": "\x1b[31m", "~": "\x1b[33m", "h": "\x1b[1m", "d": "\x1b[2m",
    }
    RESET = "\x1b[0m"

    def __init__(self, out: TextIO | None = None, colour: bool | None = None,
                 width: int | None = None) -> None:
        self.out = out or sys.stdout
        tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.colour = (tty and not os.environ.get("NO_COLOR")) if colour is None else colour
        self.width = width or (shutil.get_terminal_size((120, 24)).columns if tty else 0)

    def _paint(self, kind: str, text: str) -> str:
        return f"{self.COLOURS[kind]}{text}{self.RESET}" if self.colour and kind else text

    def line(self, kind: str, text: str) -> None:
        self.segments([(kind, text)])

    def segments(self, parts: list[Segment]) -> None:
        """One line made of differently coloured parts, cut to the width as a whole.

        Every part goes through ``safe_text`` here, so no table name, column name, label
        or value can put a control character on the terminal (values come escaped from
        ``fmt_value`` already; escaping is idempotent).
        """
        if not self.colour and not self.width:
            self.out.write("".join(safe_text(t) for _, t in parts) + "\n")
            return
        room = self.width or sys.maxsize
        out = []
        for kind, raw in parts:
            text = safe_text(raw)
            if len(text) >= room:
                out.append(self._paint(kind, text[: room - 1] + "…"))
                break
            out.append(self._paint(kind, text))
            room -= len(text)
        self.out.write("".join(out) + "\n")

    def header(self, title: str, counts: TableCounts | None, schema: Iterable[str]) -> None:
        stat = f"  +{counts.inserts} ~{counts.updates} -{counts.deletes}" if counts else ""
        self.line("h", f"── {title}{stat}")
        for s in schema:
            self.line("~", f"   schema: {s}")

    def row(self, names: list[str], key: tuple[str, ...], row: tuple[Any, ...],
            skinny: bool = False) -> None:
        kind = row[0]
        old, new = row[1::2], row[2::2]
        if kind == "added":
            cells = [f"{c}={fmt_value(v)}" for c, v in zip(names, new, strict=True)
                     if not skinny or c in key or v is not None]
            self.line("+", "+ " + "  ".join(cells))
        elif kind == "removed":
            cells = [f"{c}={fmt_value(v)}" for c, v in zip(names, old, strict=True)
                     if not skinny or c in key or v is not None]
            self.line("-", "- " + "  ".join(cells))
        else:
            parts: list[Segment] = [("~", "~ " + "  ".join(
                f"{c}={fmt_value(o)}" for c, o in zip(names, old, strict=True) if c in key))]
            for c, o, v in zip(names, old, new, strict=True):
                if c not in key and _differs(o, v):
                    parts += [("~", f"  {c}: "), ("-", fmt_value(o)), ("~", f" {ARROW} "), ("+", fmt_value(v))]
            self.segments(parts)

    def rows(self, columns: list[str], key: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> int:
        names = [safe_text(c[5:]) for c in columns[1::2]]  # from_<col> -> col, shown
        n = 0
        for row in rows:
            self.row(names, key, row)
            n += 1
        return n


def _schema_by_table(diff: Diff) -> dict[str, list[str]]:
    """Schema changes by table ("" for indexes, views and triggers)."""
    out: dict[str, list[str]] = {}
    for s in diff.schema_changes:
        out.setdefault(s.name if s.type == "table" and s.name in diff.specs else "", []).append(str(s))
    return out


def stream_diff(diff: Diff, tables: list[str], *, where: str | None = None, limit: int | None = None,
                skinny: bool = False, out: TextIO | None = None,
                colour: bool | None = None) -> tuple[int, TableCounts]:
    """Print the diff of *tables* as it is computed; return (tables shown, totals).

    A table with neither changed rows nor a schema change prints nothing. With
    *limit*, the rest of a table's rows are counted in SQL, not fetched.
    *skinny* leaves out NULL cells of added and removed rows (modified rows
    always show only the key and the changed cells).
    """
    p = DiffPrinter(out, colour)
    p.line("h", f"diff {diff.a_label}..{diff.b_label}")
    schema = _schema_by_table(diff)
    for s in schema.get("", []):
        p.line("~", f"schema: {s}")
    totals = [0, 0, 0]
    shown_tables = 0
    for table in tables:
        spec = diff.spec(table)
        columns = diff.output_columns(table, where=where)
        names = [safe_text(c[5:]) for c in columns[1::2]]  # shown beside escaped values
        counts = [0, 0, 0]
        headed = False

        def head(table: str = table, key_changed: bool = spec.key_changed) -> None:
            p.header(table, None, schema.get(table, []))
            if key_changed:
                p.line("d", "   primary key changed: every row is shown removed, then added")

        n = 0
        for row in diff.iter_rows(table, where=where, limit=limit):
            if not headed:
                head()
                headed = True
            p.row(names, spec.key, row, skinny)
            counts[KINDS[row[0]]] += 1
            n += 1
        if limit is not None and n >= limit:
            c = diff.count_kinds(table, where)
            counts = [c.inserts, c.updates, c.deletes]
            if c.total > n:
                if not headed:
                    head()
                    headed = True
                p.line("d", f"   … and {c.total - n} more changed row(s) (--limit {limit})")
        if not headed and table in schema:
            head()
            headed = True
        shown_tables += headed
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
    return shown_tables, TableCounts(*totals)


def print_diff(diff: Diff, tables: list[str], *, where: str | None = None, limit: int | None = None,
               skinny: bool = False, out: TextIO | None = None, colour: bool | None = None) -> TableCounts:
    """Stream the whole diff; return the totals (for the summary line)."""
    return stream_diff(diff, tables, where=where, limit=limit, skinny=skinny, out=out, colour=colour)[1]


def extra_lines(diff: Diff) -> list[str]:
    """Lines for what differs without rows to show: virtual tables and header pragmas."""
    lines = [f"── {v}: contents changed (virtual table; its rows live in shadow tables)"
             for v in diff.virtual_changes]
    lines += [f"PRAGMA {k}: {a} → {b}" for k, (a, b) in diff.pragma_changes.items()]
    return lines


def summary_line(n_tables: int, totals: TableCounts) -> str:
    return (f"{n_tables} table(s) changed, {totals.inserts} row(s) added, "
            f"{totals.updates} modified, {totals.deletes} removed")


def print_stat(diff: Diff, tables: list[str], *, where: str | None = None,
               out: TextIO | None = None, colour: bool | None = None) -> tuple[int, TableCounts]:
    """git's ``--stat``: one line per table with its counts and schema changes; returns
    (tables shown, totals). With *where*, only tables with a matching row are shown."""
    p = DiffPrinter(out, colour)
    schema = _schema_by_table(diff)
    if where:
        counted = {t: diff.count_kinds(t, where) for t in tables}
        tables = [t for t in tables if counted[t].total]
    else:
        counted = {t: diff.counts().get(t, TableCounts()) for t in tables}
        tables = [t for t in tables if counted[t].total or t in schema]
    width = max((len(safe_text(t)) for t in tables), default=5)
    tot = [0, 0, 0]
    for t in tables:
        c = counted[t]
        tot = [tot[0] + c.inserts, tot[1] + c.updates, tot[2] + c.deletes]
        extra = f"  ({'; '.join(schema[t])})" if t in schema else ""
        p.segments([("", f" {safe_text(t).ljust(width)} | "), ("+", f"+{c.inserts}"), ("", " "),
                    ("~", f"~{c.updates}"), ("", " "), ("-", f"-{c.deletes}"), ("", extra)])
    for s in schema.get("", []):
        p.line("", f" {s}")
    return len(tables), TableCounts(*tot)
