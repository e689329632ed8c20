"""``dbvers init``, ``status``, ``commit``, ``log`` and ``show`` (layer L5): making
commits and reading them back. pandas and pyarrow are not imported on the paths of
``status`` and ``commit``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DbversError, UsageError
from ..frontend import check_at_least, console, warn
from .common import FORMATS, Command, add_format, commit_json, decorations, emit, open_repo


def cmd_init(args: argparse.Namespace) -> int:
    from ..opening import init_repo
    from ..render.console import print_commit_result

    if args.db is not None and Path(args.db).resolve() != Path(args.database).resolve():
        raise UsageError(f"init takes the database as DB; --db {args.db} names another file "
                         f"than {args.database}: drop --db")
    repo = init_repo(args.database, store=args.store, message=args.message, create=args.create)
    head = repo.head
    c = repo.get_commit(head.commit)
    con = console()
    con.print(f"Initialized dbvers repository in {repo.store_dir} tracking {repo.path.name}")
    print_commit_result(con, head.branch, c, [])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    st = repo.status()
    if repo.journal_problem:
        warn(repo.journal_problem)
    if args.format:
        emit(args, st.to_json())
        return 0
    from ..render.console import print_status

    print_status(console(), st)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    message = "\n\n".join(args.message) if args.message else None
    if not message:
        raise UsageError("a commit needs a message: dbvers commit -m MESSAGE")
    c = repo.commit(message, allow_empty=args.allow_empty)
    if args.format:
        emit(args, commit_json(c))
        return 0
    from ..render.console import print_commit_result

    try:
        changes = repo.show(c.id)[1]
    except DbversError as e:
        # The commit is made (its ref moved): a damaged older object only costs the summary.
        warn(f"committed, but its schema changes can't be shown: {e}")
        changes = []
    print_commit_result(console(), repo.head.branch, c, changes)
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    check_at_least(args.n, 0, "-n")
    if args.oneline and args.format:
        raise UsageError("--oneline is a text view; drop --format, or drop --oneline")
    commits = repo.log(args.ref, n=args.n)
    if args.format:
        emit(args, [commit_json(c) for c in commits])
        return 0
    from ..render.console import print_log

    if args.graph and args.format:
        raise UsageError("--graph is a text view; drop --format, or drop --graph")
    print_log(console(), commits, decorations(repo), oneline=args.oneline, graph=args.graph)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    c, changes = repo.show(args.ref)
    if args.format:
        data = commit_json(c)
        data["schema_changes"] = [str(s) for s in changes]
        emit(args, data)
        return 0
    from ..render.console import print_show

    print_show(console(), c, changes, decorations(repo).get(c.id, []))
    return 0


# -- arguments ------------------------------------------------------------------------


def _init_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("database", metavar="DB")
    sp.add_argument("-m", "--message", default="Initial commit")
    sp.add_argument("--create", action="store_true", help="DB doesn't exist yet: make a new empty database")


def _commit_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-m", "--message", action="append", help="commit message (repeat for paragraphs)")
    sp.add_argument("--allow-empty", action="store_true", help="commit even if nothing changed")
    add_format(sp)


def _log_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("ref", nargs="?", default="HEAD", metavar="REF")
    sp.add_argument("--oneline", action="store_true", help="'<short id> <message>' per line")
    sp.add_argument("--graph", action="store_true", help="one line a commit, with the lines of history drawn")
    sp.add_argument("-n", "--max-count", dest="n", type=int, metavar="N", help="show at most N commits")
    add_format(sp, FORMATS)


def _show_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("ref", nargs="?", default="HEAD", metavar="REF")
    add_format(sp)


COMMANDS = [
    Command("init", cmd_init, "start versioning a SQLite database (makes the first commit)", _init_arguments),
    Command("status", cmd_status, "rows added/modified/removed and schema changes since HEAD", add_format),
    Command("commit", cmd_commit, "record the working database as a new commit", _commit_arguments),
    Command("log", cmd_log, "history, newest first", _log_arguments),
    Command("show", cmd_show, "one commit: metadata, per-table counts, schema changes", _show_arguments),
]
