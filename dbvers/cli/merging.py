"""``dbvers merge``, ``conflicts``, ``resolve``, ``revert`` and ``cherry-pick`` (layer L5):
bringing branches together, and settling what clashed.

Exit codes as git's: 0 done, 1 stopped with conflicts (the working database holds
the merge with ours in the conflicting rows), 2 a refusal that changed nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from ..errors import UsageError
from ..frontend import console
from .common import Command, open_repo, output_file, write_text

CONFLICT_FORMATS = ("table", "json", "csv", "parquet")


def say_result(repo: Any, res: Any, kind: str) -> int:
    con = console()
    if res.up_to_date:
        con.print("Already up to date.")
        return 0
    if res.note:
        con.print(f"note: {res.note}")
    if res.fast_forward:
        con.print(f"Fast-forward to {res.commit.short_id} {res.commit.summary}")
        return 0
    if res.conflicts:
        total = sum(res.conflicts.values())
        for table, n in sorted(res.conflicts.items()):
            con.print(f"CONFLICT: {n:,} row{'s' if n != 1 else ''} in {table}", markup=False, highlight=False)
        con.print(f"{kind} stopped with {total:,} conflicting rows: see 'dbvers conflicts', settle them with "
                  f"'dbvers resolve --ours|--theirs', then 'dbvers {kind} --continue' "
                  f"(or 'dbvers {kind} --abort')", markup=False, highlight=False)
        return 1
    if res.commit is None:
        con.print(f"{kind} applied without conflicts and not committed (--no-commit); "
                  f"'dbvers {kind} --continue' commits it", markup=False, highlight=False)
        return 0
    con.print(f"[{res.commit.short_id}] {res.commit.summary}", markup=False, highlight=False)
    return 0


def _continue_or_abort(repo: Any, args: argparse.Namespace, kind: str) -> int | None:
    """``--continue`` / ``--abort`` of *kind*; None when neither was asked for."""
    if not (args.continue_ or args.abort):
        if not args.rev:
            raise UsageError(f"dbvers {kind}: give a revision, or --continue / --abort")
        return None
    if args.rev:
        raise UsageError(f"dbvers {kind}: --continue and --abort take no revision")
    if args.continue_ and args.abort:
        raise UsageError(f"dbvers {kind}: --continue or --abort, not both")
    op = repo.operation()
    if op is not None and op.kind != kind:
        raise UsageError(f"a {op.kind} is in progress, not a {kind}: use 'dbvers {op.kind} "
                         f"{'--continue' if args.continue_ else '--abort'}'")
    con = console()
    if args.abort:
        repo.merge_abort()
        con.print(f"{kind} aborted: the working database holds HEAD's state again")
        return 0
    c = repo.merge_continue(message=getattr(args, "message", None))
    con.print(f"[{c.short_id}] {c.summary}", markup=False, highlight=False)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    done = _continue_or_abort(repo, args, "merge")
    if done is not None:
        return done
    res = repo.merge(args.rev, message=args.message, ff=not args.no_ff, commit=not args.no_commit)
    return say_result(repo, res, "merge")


def cmd_revert(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    done = _continue_or_abort(repo, args, "revert")
    if done is not None:
        return done
    return say_result(repo, repo.revert(args.rev, mainline=args.mainline, commit=not args.no_commit), "revert")


def cmd_cherry_pick(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    done = _continue_or_abort(repo, args, "cherry-pick")
    if done is not None:
        return done
    res = repo.cherry_pick(args.rev, mainline=args.mainline, commit=not args.no_commit)
    return say_result(repo, res, "cherry-pick")


def cmd_conflicts(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    if repo.operation() is None and args.table is None:
        # Nothing in progress is not an error here (git's "no conflicts" habit), but the
        # machine formats still give their empty document.
        frames: dict[str, Any] = {}
    else:
        frames = repo.conflicts(args.table)
    fmt = args.format or "table"
    if fmt == "table":
        from ..render.conflictview import print_conflicts

        if args.output and args.format:  # without --format, run() already sends stdout to FILE
            with output_file(args.output) as f, contextlib.redirect_stdout(f):
                print_conflicts(console(), frames)
        else:
            print_conflicts(console(), frames)
        return 0
    if fmt in ("csv", "parquet") and len(frames) > 1:
        raise UsageError(f"--format {fmt} writes one table: pick it with -t TABLE "
                         f"({', '.join(sorted(frames))} have conflicts)")
    if fmt == "json":
        from ..render.conflictview import cell_value
        from ..render.diffexport import json_value

        data = {t: [{k: json_value(cell_value(v)) for k, v in rec.items()} for rec in df.to_dict("records")]
                for t, df in frames.items()}
        write_text(args.output, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return 0
    df = next(iter(frames.values())) if frames else None
    if fmt == "csv":
        text = df.to_csv(index=False) if df is not None else ""
        write_text(args.output, text)
        return 0
    if not args.output:
        raise UsageError("--format parquet needs -o FILE")
    if df is None:
        raise UsageError("no conflicts to write")
    with output_file(args.output) as f:
        f.close()  # the temp name is what parquet writes; output_file renames it on success
        df.to_parquet(f.name, index=False)
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    if args.ours == args.theirs:
        raise UsageError("dbvers resolve: give --ours or --theirs")
    side = "ours" if args.ours else "theirs"
    n = repo.resolve_conflicts(side, args.tables or None, where=args.where)
    left = repo.conflict_counts()
    con = console()
    con.print(f"resolved {n:,} row{'s' if n != 1 else ''} with {side}; "
              + (f"{sum(left.values()):,} conflicts left" if left else
                 f"no conflicts left: 'dbvers {repo.operation().kind} --continue' commits"),
              markup=False, highlight=False)
    return 0


# -- arguments ------------------------------------------------------------------------


def _sequence_arguments(sp: argparse.ArgumentParser, *, mainline: bool) -> None:
    sp.add_argument("rev", nargs="?", metavar="REV")
    sp.add_argument("--no-commit", action="store_true", help="apply the changes but don't commit them")
    sp.add_argument("--continue", dest="continue_", action="store_true", help="commit once conflicts are resolved")
    sp.add_argument("--abort", action="store_true", help="put HEAD's state back and stop")
    if mainline:
        sp.add_argument("-m", "--mainline", type=int, metavar="N",
                        help="for a merge commit: the parent (1 or 2) whose side is kept")


def _merge_arguments(sp: argparse.ArgumentParser) -> None:
    _sequence_arguments(sp, mainline=False)
    sp.add_argument("-m", "--message", help="the merge commit's message")
    sp.add_argument("--no-ff", action="store_true", help="make a merge commit even when a fast-forward would do")


def _conflicts_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-t", "--table", metavar="TABLE", help="only this table's conflicts")
    sp.add_argument("--format", choices=CONFLICT_FORMATS, help="table (default), or machine output")
    sp.add_argument("-o", "--output", metavar="FILE", help="write machine output to FILE")


def _resolve_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("tables", nargs="*", metavar="TABLE", help="only these tables (default: all)")
    sp.add_argument("--ours", action="store_true", help="keep the working database's rows (ours, or your SQL fix)")
    sp.add_argument("--theirs", action="store_true", help="write theirs' rows into the working database")
    sp.add_argument("--where", metavar="EXPR",
                    help="only conflicts matching this SQL condition on 'dbvers conflicts' columns")


COMMANDS = [
    Command("merge", cmd_merge, "join another branch's changes into the current one", _merge_arguments),
    Command("conflicts", cmd_conflicts, "the rows a merge, revert or cherry-pick could not settle",
            _conflicts_arguments),
    Command("resolve", cmd_resolve, "settle conflicts with ours' or theirs' rows", _resolve_arguments),
    Command("revert", cmd_revert, "a new commit undoing REV's changes",
            lambda sp: _sequence_arguments(sp, mainline=True)),
    Command("cherry-pick", cmd_cherry_pick, "a new commit applying REV's changes",
            lambda sp: _sequence_arguments(sp, mainline=True)),
]
