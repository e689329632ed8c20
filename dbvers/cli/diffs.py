"""``dbvers diff`` (layer L5): rows and schema that differ between two states, as
streamed text (:mod:`dbvers.render.diffview`) or machine output
(:mod:`dbvers.render.diffexport`); ``--exit-code`` makes a difference exit 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from ..frontend import check_at_least, diff_refs
from .common import FORMATS, Command, add_format, open_repo


def _check_diff_options(args: argparse.Namespace) -> None:
    check_at_least(args.limit, 0, "--limit")
    if args.stat and args.format:
        raise UsageError("--stat prints a summary; drop --format, or drop --stat")
    if args.stat and (args.skinny or args.limit is not None):
        raise UsageError("--stat counts every changed row; --skinny and --limit shape rows it doesn't show: drop them")


def _tables(args: argparse.Namespace, d: Any) -> list[str]:
    """The tables to show, in order; an unknown ``--table`` or a ``--where`` that fits none is an error."""
    for t in args.table or []:
        d.spec(t)  # unknown table: one-line error before any output
    if args.table:
        tables = list(dict.fromkeys(args.table))
    elif args.stat or args.format == "parquet":
        tables = [t for t in d.tables if t in d.specs]  # counted first: a file per changed table
    else:
        tables = list(d.specs)  # streamed: unchanged tables print nothing, nothing counted first
    if args.where:
        # A filter names one table's columns; apply it where it makes sense.
        valid = [t for t in tables if d.where_applies(t, args.where)]
        if tables and not valid:
            d.count_kinds(tables[0], args.where)  # raises the one-line SQL error
        tables = valid
    return tables


def _print_text(args: argparse.Namespace, d: Any, tables: list[str]) -> bool:
    """The text view; whether it showed a difference."""
    from ..render.diffview import extra_lines, print_stat, stream_diff, summary_line

    if args.stat:
        n_tables, totals = print_stat(d, tables, where=args.where)
    else:
        n_tables, totals = stream_diff(d, tables, where=args.where, limit=args.limit, skinny=args.skinny)
    if not args.table:
        for line in extra_lines(d):
            print(line)
    print(summary_line(n_tables, totals))
    # schema changes count for the tables shown (indexes, views, triggers: whole diffs only)
    return bool(totals.total) or any(
        s.name in tables if s.type == "table" else not args.table for s in d.schema_changes)


def cmd_diff(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    a, b = diff_refs(args.refs)
    _check_diff_options(args)
    with repo.diff(a, b) as d:
        tables = _tables(args, d)
        if args.format:
            from ..render import diffexport

            any_rows = diffexport.export(
                d, tables, args.format, args.output, where=args.where, limit=args.limit,
                skinny=args.skinny, whole=not args.table and not args.where,
            )
        else:
            any_rows = _print_text(args, d, tables)
        if not args.table and not args.where:
            # What has no rows to show still differs: virtual tables' contents, header pragmas.
            any_rows = any_rows or bool(d.virtual_changes or d.pragma_changes)
    return 1 if args.exit_code and any_rows else 0


def _diff_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("refs", nargs="*", metavar="REF", help="A [B]: one ref compares it with the working database")
    sp.add_argument("--table", "-t", action="append", metavar="T", help="only this table (repeatable)")
    sp.add_argument("--stat", action="store_true", help="per table: added / modified / removed, and schema changes")
    sp.add_argument("--skinny", action="store_true", help="only key columns and columns that changed")
    sp.add_argument("--where", metavar="EXPR", help="SQL filter over diff_type, from_<col>, to_<col>")
    sp.add_argument("--limit", type=int, metavar="N", help="at most N changed rows per table")
    sp.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")
    add_format(sp, (*FORMATS, "sql"))


COMMANDS = [
    Command("diff", cmd_diff, "rows and schema that differ between two states (default HEAD..working)",
            _diff_arguments),
]
