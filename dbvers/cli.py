"""The ``dbvers`` command: a thin layer over :class:`dbvers.Repo` (sqlite-utils' style).

Exit codes: 0 success; 1 a check found something (``fsck`` problems, later
``diff --exit-code``); 2 a usage or user error, printed as one line, never a
traceback. pandas and pyarrow are not imported on the paths of ``status`` and
``commit``.
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import DbversError, StorageError, UsageError

FORMATS = ("json", "csv", "parquet")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the notebook magics can share it."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def _console(args: argparse.Namespace) -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _open(args: argparse.Namespace) -> Any:
    from .repo import open_repo

    return open_repo(args.db, store=args.store)


# -- machine output -----------------------------------------------------------


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    """Write *rows* as json/csv/parquet to stdout or ``-o FILE``."""
    fmt = args.format
    out_path = getattr(args, "output", None)
    if fmt == "json":
        text = json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
        _write_text(out_path, text)
        return
    table = rows if isinstance(rows, list) else [rows]
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(table[0].keys()) if table else []
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in table:
            w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                        for k, v in r.items()})
        _write_text(out_path, buf.getvalue())
        return
    if fmt == "parquet":
        if not out_path:
            raise UsageError("--format parquet needs -o FILE")
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = [{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()}
                for r in table]
        pq.write_table(pa.Table.from_pylist(flat), out_path)


def _write_text(path: str | None, text: str) -> None:
    if path:
        Path(path).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _commit_json(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "short_id": c.short_id,
        "parents": list(c.parents),
        "message": c.message,
        "author": c.author,
        "timestamp": c.timestamp,
        "counts": {t: v.to_json() for t, v in sorted(c.counts.items())},
        "snapshot": c.snapshot,
        "patch": c.patch,
    }


def _decorations(repo: Any) -> dict[str, list[str]]:
    deco: dict[str, list[str]] = {}
    head = repo.head
    for name, oid in repo.branches().items():
        label = f"HEAD -> {name}" if name == head.branch else name
        deco.setdefault(oid, []).insert(0 if name == head.branch else len(deco.get(oid, [])), label)
    if head.branch is None and head.commit:
        deco.setdefault(head.commit, []).insert(0, "HEAD")
    for name, oid in repo.tags().items():
        deco.setdefault(oid, []).append(f"tag: {name}")
    return deco


# -- commands -------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from .repo import init_repo

    repo = init_repo(args.database, store=args.store, message=args.message)
    head = repo.head
    c = repo.get_commit(head.commit)
    con = _console(args)
    con.print(f"Initialized dbvers repository in {repo.store_dir} tracking {repo.path.name}")
    from .render.console import print_commit_result

    print_commit_result(con, head.branch, c, [])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    repo = _open(args)
    st = repo.status()
    if args.format:
        _emit(args, st.to_json())
        return 0
    from .render.console import print_status

    print_status(_console(args), st)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    repo = _open(args)
    message = "\n\n".join(args.message) if args.message else None
    if not message:
        raise UsageError("a commit needs a message: dbvers commit -m MESSAGE")
    c = repo.commit(message, allow_empty=args.allow_empty)
    if args.format:
        _emit(args, _commit_json(c))
        return 0
    from .render.console import print_commit_result

    print_commit_result(_console(args), repo.head.branch, c, repo.show(c.id)[1])
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    repo = _open(args)
    if args.n is not None and args.n < 0:
        raise UsageError("-n takes a number >= 0")
    commits = repo.log(args.ref, n=args.n)
    if args.format:
        _emit(args, [_commit_json(c) for c in commits])
        return 0
    from .render.console import print_log

    print_log(_console(args), commits, _decorations(repo), oneline=args.oneline)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    repo = _open(args)
    c, changes = repo.show(args.ref)
    if args.format:
        data = _commit_json(c)
        data["schema_changes"] = [str(s) for s in changes]
        _emit(args, data)
        return 0
    from .render.console import print_show

    print_show(_console(args), c, changes, _decorations(repo).get(c.id, []))
    return 0


def _list_refs(args: argparse.Namespace, refs: dict[str, str], current: str | None) -> int:
    if args.format:
        _emit(args, [{"name": k, "commit": v, "current": k == current} for k, v in sorted(refs.items())])
        return 0
    from .render.console import print_refs

    print_refs(_console(args), refs, current)
    return 0


def cmd_branch(args: argparse.Namespace) -> int:
    repo = _open(args)
    con = _console(args)
    if args.delete:
        oid = repo.delete_branch(args.delete)
        con.print(f"Deleted branch {args.delete} (was {oid[:10]})")
        return 0
    if not args.name:
        return _list_refs(args, repo.branches(), repo.head.branch)
    oid = repo.branch(args.name, args.ref or "HEAD", force=args.force)
    con.print(f"Created branch {args.name} at {oid[:10]}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    repo = _open(args)
    con = _console(args)
    if args.delete:
        oid = repo.delete_tag(args.delete)
        con.print(f"Deleted tag {args.delete} (was {oid[:10]})")
        return 0
    if not args.name:
        return _list_refs(args, repo.tags(), None)
    oid = repo.tag(args.name, args.ref or "HEAD", force=args.force)
    con.print(f"Tagged {oid[:10]} as {args.name}")
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    repo = _open(args)
    con = _console(args)
    if args.new_branch:
        ref = args.ref or "HEAD"
        oid = repo.checkout(ref, force=args.force, create_branch=args.new_branch)
        con.print(f"Switched to a new branch '{args.new_branch}' at {oid[:10]}")
        return 0
    if not args.ref:
        raise UsageError("checkout needs a REF (branch, tag or commit), or -b NEW")
    oid = repo.checkout(args.ref, force=args.force)
    head = repo.head
    if head.branch:
        con.print(f"Switched to branch '{head.branch}' ({oid[:10]})")
    else:
        con.print(f"HEAD is now at {oid[:10]} (detached; 'dbvers checkout -b NAME' to keep work here)")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    repo = _open(args)
    if not args.hard and not args.soft:
        raise UsageError("say --hard (move the branch and the working database) or --soft (the branch only)")
    oid = repo.reset(args.ref, hard=args.hard, force=args.force)
    c = repo.get_commit(oid)
    _console(args).print(f"HEAD is now at {c.short_id} {c.summary}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    repo = _open(args)
    oid = repo.restore(force=args.force)
    _console(args).print(f"Working database restored to HEAD ({oid[:10]})")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    repo = _open(args)
    snap = repo.snapshot()
    _console(args).print(f"Snapshot {snap[:10]} stored for {repo.head.commit[:10]}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    repo = _open(args)
    refs = list(args.refs or [])
    if len(refs) > 2:
        raise UsageError("diff takes at most two refs: dbvers diff [A [B]]")
    a = refs[0] if refs else "HEAD"
    b = refs[1] if len(refs) == 2 else None
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit takes a number >= 0")
    with repo.diff(a, b) as d:
        tables = args.table or d.tables
        for t in tables:
            d.spec(t)  # unknown table: one-line error before any output
        if args.table:
            tables = [t for t in tables if t in d.tables]
        if args.where:
            # A filter names one table's columns; apply it where it makes sense.
            valid = [t for t in tables if d.where_applies(t, args.where)]
            if tables and not valid:
                d.count_kinds(tables[0], args.where)  # raises the one-line SQL error
            tables = valid
        if args.format:
            from .render import diffexport

            if args.stat:
                raise UsageError("--stat prints a summary; drop --format, or drop --stat")
            any_rows = diffexport.export(
                d, tables, args.format, args.output, where=args.where, limit=args.limit,
                skinny=args.skinny, whole=not args.table and not args.where,
            )
        else:
            from .render.diffview import print_diff, print_stat, summary_line

            if args.stat:
                totals = print_stat(d, tables, where=args.where)
            else:
                totals = print_diff(d, tables, where=args.where, limit=args.limit, skinny=args.skinny)
            schema_tables = {s.name for s in d.schema_changes if s.type == "table"}
            print(summary_line(len([t for t in tables if t in d.counts() or t in schema_tables]), totals))
            any_rows = bool(totals.total) or bool(d.schema_changes)
    return 1 if args.exit_code and any_rows else 0


def cmd_fsck(args: argparse.Namespace) -> int:
    repo = _open(args)
    report = repo.fsck()
    if args.format:
        _emit(args, {"ok": report.ok, "objects": report.objects, "commits": report.commits,
                     "snapshots": report.snapshots, "refs": report.refs, "problems": report.problems})
    else:
        from .render.console import print_fsck

        print_fsck(_console(args), report)
    return 0 if report.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    repo = _open(args)
    from .render.console import print_gc

    print_gc(_console(args), repo.gc())
    return 0


# -- the parser -----------------------------------------------------------------


def _add_format(p: argparse.ArgumentParser, formats: Sequence[str] = ("json",)) -> None:
    p.add_argument("--format", choices=formats, help="machine-readable output")
    p.add_argument("-o", "--output", metavar="FILE", help="write machine output to FILE")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="dbvers", description="git for SQLite databases")
    p.add_argument("--version", action="version", version=f"dbvers {__version__}")
    p.add_argument("--db", metavar="PATH", help="the tracked database (default: found from the current directory)")
    p.add_argument("--store", metavar="DIR", help="the store directory (default: .dbvers beside the database)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=fn)
        # --db/--store are accepted after the command too (`dbvers init other.db --store DIR`,
        # as the "already tracks" hint suggests); SUPPRESS keeps a global value when absent.
        sp.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sp

    sp = add("init", cmd_init, "start versioning a SQLite database (makes the first commit)")
    sp.add_argument("database", metavar="DB")
    sp.add_argument("-m", "--message", default="Initial commit")

    sp = add("status", cmd_status, "rows added/modified/removed and schema changes since HEAD")
    _add_format(sp)

    sp = add("commit", cmd_commit, "record the working database as a new commit")
    sp.add_argument("-m", "--message", action="append", help="commit message (repeat for paragraphs)")
    sp.add_argument("--allow-empty", action="store_true", help="commit even if nothing changed")
    _add_format(sp)

    sp = add("log", cmd_log, "history, newest first")
    sp.add_argument("ref", nargs="?", default="HEAD", metavar="REF")
    sp.add_argument("--oneline", action="store_true", help="'<short id> <message>' per line")
    sp.add_argument("-n", "--max-count", dest="n", type=int, metavar="N", help="show at most N commits")
    _add_format(sp, FORMATS)

    sp = add("show", cmd_show, "one commit: metadata, per-table counts, schema changes")
    sp.add_argument("ref", nargs="?", default="HEAD", metavar="REF")
    _add_format(sp)

    sp = add("branch", cmd_branch, "list, create or delete branches")
    sp.add_argument("name", nargs="?", metavar="NAME")
    sp.add_argument("ref", nargs="?", metavar="REF", help="where the new branch starts (default HEAD)")
    sp.add_argument("-d", "-D", "--delete", metavar="NAME", help="delete a branch (its reflog keeps it recoverable)")
    sp.add_argument("-f", "--force", action="store_true", help="move an existing branch")
    _add_format(sp)

    sp = add("checkout", cmd_checkout, "switch to a branch, tag or commit (detached HEAD like git)")
    sp.add_argument("ref", nargs="?", metavar="REF")
    sp.add_argument("-b", dest="new_branch", metavar="NEW", help="create branch NEW at REF (default HEAD) and switch to it")
    sp.add_argument("-f", "--force", action="store_true", help="discard uncommitted changes")

    sp = add("tag", cmd_tag, "list, create or delete tags")
    sp.add_argument("name", nargs="?", metavar="NAME")
    sp.add_argument("ref", nargs="?", metavar="REF")
    sp.add_argument("-d", "--delete", metavar="NAME")
    sp.add_argument("-f", "--force", action="store_true", help="move an existing tag")
    _add_format(sp)

    sp = add("reset", cmd_reset, "move the current branch to REF (--hard: the working database too)")
    mode = sp.add_mutually_exclusive_group()
    mode.add_argument("--hard", action="store_true")
    mode.add_argument("--soft", action="store_true")
    sp.add_argument("ref", nargs="?", default="HEAD", metavar="REF")
    sp.add_argument("-f", "--force", action="store_true", help="discard uncommitted changes")

    sp = add("restore", cmd_restore, "throw away uncommitted changes in the working database")
    sp.add_argument("-f", "--force", action="store_true", help="required when there are changes to discard")

    add("snapshot", cmd_snapshot, "store a full snapshot (keyframe) of HEAD now")
    sp = add("diff", cmd_diff, "rows and schema that differ between two states (default HEAD..working)")
    sp.add_argument("refs", nargs="*", metavar="REF", help="A [B]: one ref compares it with the working database")
    sp.add_argument("--table", "-t", action="append", metavar="T", help="only this table (repeatable)")
    sp.add_argument("--stat", action="store_true", help="per table: added / modified / removed, and schema changes")
    sp.add_argument("--skinny", action="store_true", help="only key columns and columns that changed")
    sp.add_argument("--where", metavar="EXPR", help="SQL filter over diff_type, from_<col>, to_<col>")
    sp.add_argument("--limit", type=int, metavar="N", help="at most N changed rows per table")
    sp.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")
    _add_format(sp, (*FORMATS, "sql"))

    sp = add("fsck", cmd_fsck, "verify every object, snapshot and ref")
    _add_format(sp)
    add("gc", cmd_gc, "remove objects that no ref or reflog entry reaches")
    return p


def run(argv: Sequence[str]) -> int:
    """Parse and run one command; raises DbversError for user errors (used by the magics too)."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args.func(args))


def _os_error_message(e: OSError) -> str | None:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG):
        return str(StorageError(e.filename or "a file", e))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except DbversError as e:
        print(f"dbvers: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("dbvers: interrupted; nothing was changed past the last completed step", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `dbvers log | head`: the reader left; not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:
        msg = _os_error_message(e)
        if msg is None:
            raise
        print(f"dbvers: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:
        import apsw

        if isinstance(e, apsw.FullError):
            print("dbvers: error: disk is full; free space and try again (nothing was changed)", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
