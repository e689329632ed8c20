"""The ``dbvers`` command: a thin layer over :class:`dbvers.Repo` (sqlite-utils' style), layer L5.

Exit codes: 0 success (also when the reader of stdout left early, ``dbvers log |
head``); 1 a check found something (``fsck`` problems, ``diff --exit-code``,
``backup --verify``); 2 a usage or user error, printed as one line, never a
traceback; 3 an internal error (a bug), also one line unless ``DBVERS_DEBUG=1``;
130 interrupted. :func:`main` is the one boundary: every exception becomes one of
these (through :func:`dbvers.frontend.user_error`).

This module owns the parser and the boundary; the commands live one group a module:
:mod:`.commits` (init status commit log show), :mod:`.refs` (branch checkout tag
reset reflog), :mod:`.merging` (merge conflicts resolve revert cherry-pick), :mod:`.store` (restore backup snapshot fsck gc), :mod:`.diffs`
(diff), :mod:`.sync` (remote push fetch pull clone); :mod:`.common` holds what they share. The magics call :func:`run` and
:func:`build_parser`, so ``%dbvers`` is this command line.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from .._version import __version__
from ..errors import DbversError, UsageError, debug_enabled
from ..frontend import error_line, say, silence_stdout, stdout_closed, user_error
from . import commits, diffs, merging, refs, store, sync
from .common import Command, Parser, add_location, output_file, usage_error

__all__ = ["build_parser", "commands", "main", "run"]

# The order ``dbvers --help`` lists the commands in (and ``commands()`` returns).
ORDER = ("init", "status", "commit", "log", "show", "branch", "checkout", "tag", "reset", "restore",
         "merge", "conflicts", "resolve", "revert", "cherry-pick",
         "remote", "push", "fetch", "pull", "clone",
         "backup", "snapshot", "diff", "fsck", "gc", "reflog", "help")


def cmd_help(args: argparse.Namespace) -> int:
    parser = build_parser()
    if not args.topic:
        parser.print_help()
        return 0
    if args.topic not in commands():
        raise UsageError(f"no command '{args.topic}'; 'dbvers help' lists them")
    parser.parse_args([args.topic, "--help"])  # prints the command's help, exits 0
    return 0  # pragma: no cover


def _help_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("topic", nargs="?", metavar="COMMAND")


HELP = Command("help", cmd_help, "show the commands, or one command's options", _help_arguments)


def _all_commands() -> dict[str, Command]:
    found = {c.name: c for group in (commits, refs, merging, store, diffs, sync) for c in group.COMMANDS}
    found[HELP.name] = HELP
    assert set(found) == set(ORDER), set(found) ^ set(ORDER)
    return found


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (the magics parse ``%dbvers`` with it too)."""
    p = Parser(prog="dbvers", description="git for SQLite databases")
    p.add_argument("--version", action="version", version=f"dbvers {__version__}")
    p.add_argument("--db", metavar="PATH", help="the tracked database (default: found from the current directory)")
    p.add_argument("--store", metavar="DIR", help="the store directory (default: .dbvers beside the database)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    found = _all_commands()
    for name in ORDER:
        c = found[name]
        sp = sub.add_parser(name, help=c.help, description=c.help)
        sp.set_defaults(func=c.run)
        add_location(sp)
        if c.arguments is not None:
            c.arguments(sp)
    return p


def commands() -> list[str]:
    """Every subcommand, in the order ``dbvers --help`` lists them."""
    return list(ORDER)


def run(argv: Sequence[str]) -> int:
    """Parse and run one command; raises DbversError for user errors (used by the magics too)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(list(argv))
    if extra:  # named after the command they were given to, not the whole program
        command = " ".join(filter(None, ["dbvers", getattr(args, "command", None),
                                         getattr(args, "remote_action", None)]))
        raise usage_error(command, f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    output = getattr(args, "output", None)
    if output:
        _refuse_output_over_database(args, output)
    if output and not getattr(args, "format", None):
        # -o FILE without --format: the text view goes to FILE (plain, as stdout is no terminal).
        with output_file(output) as f, contextlib.redirect_stdout(f):
            return int(args.func(args))
    return int(args.func(args))


def _refuse_output_over_database(args: argparse.Namespace, output: str) -> None:
    """``-o`` must never name the tracked database: writing it with open() would also drop SQLite's locks."""
    from ..opening import open_repo

    try:
        db = open_repo(args.db, store=args.store).path
    except DbversError:
        return  # no repository: no database to protect (the command itself will say so)
    target = Path(output).resolve()
    if target in {db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))}:
        raise UsageError(f"-o {output} is the tracked database (or one of its files); choose another file")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script, and the one boundary: whatever happens, one exit code and at most
    one line on stderr (a traceback only with ``DBVERS_DEBUG=1``)."""
    try:
        try:
            code = run(sys.argv[1:] if argv is None else argv)
        except SystemExit as e:  # argparse after --help / --version: the text is already printed
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        sys.stdout.flush()  # a reader that left early shows up here, still inside the handler
        return code
    except KeyboardInterrupt:
        say("dbvers: interrupted; nothing was changed past the last completed step")
        return 130
    except Exception as e:
        if stdout_closed(e):
            # The reader (`head`) chose to stop, nothing failed: exit 0, so that
            # `set -o pipefail` scripts keep working.
            silence_stdout()
            return 0
        if debug_enabled() and not isinstance(e, DbversError):
            raise
        err = user_error(e)
        say(f"dbvers: error: {error_line(err)}")
        return err.exit_code
