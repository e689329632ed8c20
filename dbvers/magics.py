"""IPython magics: ``%load_ext dbvers`` gives ``%dbvers``, ``%dbcommit``, ``%dbdiff``,
``%dblog`` and ``%dbcheckout``.

``%dbvers ARGS`` runs the command line's own parser and commands
(:func:`dbvers.cli.run`), so arguments, output and one-line error messages are
the CLI's. Every user error becomes IPython's ``UsageError``: one line, no
traceback. In a Jupyter kernel ``%dbdiff`` and ``%dblog`` show widgets
(:mod:`dbvers.render.widgets`); in terminal IPython they print the CLI's text.

Auto-commit (``%dbcommit --auto``) compares :func:`dbvers.sqlio.fingerprint` of
the working database before and after each cell (a ``stat`` and a 4-byte read
of SQLite's file change counter), so a cell that did not touch the database
costs microseconds; only a changed fingerprint leads to a real commit.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import sqlio
from .cli import build_parser, run
from .errors import DbversError, NothingToCommitError, debug_enabled
from .frontend import check_at_least, console, diff_refs, error_line, user_error, widget_progress

MAX_MESSAGE = 4000
PAGE_SIZE = 50


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn every error into an IPython ``UsageError`` carrying the CLI's one-line message.

    The mapping is the CLI's (:func:`dbvers.frontend.user_error`): foreign exceptions
    with a known meaning are translated, anything else is one "internal error"
    line; ``DBVERS_DEBUG=1`` lets those through with their traceback.
    """
    try:
        yield
    except DbversError as e:
        raise UsageError(error_line(e)) from None
    except SystemExit as e:  # argparse after --help / --version: the text is already printed
        if e.code not in (0, None):
            raise UsageError(f"dbvers exited with status {e.code}") from None
    except Exception as e:
        if debug_enabled():
            raise
        raise UsageError(error_line(user_error(e))) from None


def split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError(f"cannot parse the arguments: {e}") from None


def parse(magic: Any, line: str) -> Any:
    """A magic's arguments, split like a shell does (quotes removed); bad ones raise UsageError."""
    return magic.parser.parse_args(split(line))


def trim_message(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand in a dbvers argv (skipping global options and their values)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--db", "--store"):
            i += 2
        elif a.startswith("-"):
            i += 1
        else:
            return a
    return None


class AutoCommit:
    """``post_run_cell``: commit the working database when a cell changed it."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self.path = repo.path
        self.before = sqlio.fingerprint(self.path)
        self.failed_cells: list[int | None] = []

    def pre_run_cell(self, info: Any) -> None:
        self.before = sqlio.fingerprint(self.path)

    def post_run_cell(self, result: Any) -> None:
        after = sqlio.fingerprint(self.path)
        if after == self.before:
            return  # the cheap path: the file and its change counter are untouched
        try:
            self._commit(result)
        except DbversError as e:
            print(f"dbvers: auto-commit skipped: {e}", file=sys.stderr)
        except Exception as e:  # a hook must never break the user's session
            print(f"dbvers: auto-commit failed: {user_error(e)}", file=sys.stderr)
        finally:
            self.before = sqlio.fingerprint(self.path)

    def _commit(self, result: Any) -> None:
        n = getattr(result, "execution_count", None)
        cell = f"cell [{n}]" if n is not None else "the cell"
        name = self.path.name
        if not getattr(result, "success", True):
            self.failed_cells.append(n)
            print(f"dbvers: {cell} failed after writing to {name}; its changes were NOT committed. "
                  "Commit them with %dbcommit -m MESSAGE, or discard them with "
                  "%dbvers restore --force.", file=sys.stderr)
            return
        info = getattr(result, "info", None)
        message = trim_message(getattr(info, "raw_cell", None)) or f"notebook {cell}"
        meta: dict[str, Any] = {"execution_count": n, "auto": True}
        if self.failed_cells:
            meta["includes_failed_cells"] = list(self.failed_cells)
        try:
            c = self.repo.commit(message, meta=meta)
        except NothingToCommitError:
            self.failed_cells.clear()  # the database is back at HEAD: nothing pending
            return
        from .render.html import counts_label
        from .render.text import safe_text

        counts = "; ".join(f"{safe_text(t)} {counts_label(v)}" for t, v in sorted(c.counts.items())) or "schema only"
        where = self.repo.head.branch or "detached HEAD"
        note = ""
        if self.failed_cells:
            cells = ", ".join(f"[{x}]" for x in self.failed_cells)
            note = f" (this includes the uncommitted writes of failed cell(s) {cells})"
            self.failed_cells.clear()
        print(f"dbvers: auto-committed {c.short_id} on {where}: {counts}{note}")


@magics_class
class DbversMagics(Magics):
    """The dbvers magics. One instance per shell holds the session's repository."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self.db: Path | None = None  # set by `%dbvers use` (or `%dbvers init`)
        self.store: Path | None = None
        self.auto: AutoCommit | None = None
        self.use_widgets: bool | None = None  # None: widgets in a Jupyter kernel, text otherwise
        self.last_view: Any = None
        self._cell: str | None = None

    # -- plumbing --------------------------------------------------------------
    def _pre_run_cell(self, info: Any) -> None:
        self._cell = getattr(info, "raw_cell", None)

    def _post_run_cell(self, result: Any) -> None:
        self._cell = None

    def widgets(self) -> bool:
        if self.use_widgets is not None:
            return self.use_widgets
        return getattr(self.shell, "kernel", None) is not None

    def repo(self) -> Any:
        """The session's repository: the one `%dbvers use` set, else found from the current directory."""
        from .opening import open_repo

        with user_errors():
            if self.store is not None:
                return open_repo(self.db, store=self.store)
            return open_repo()

    def _adopt(self, repo: Any) -> None:
        self.db, self.store = repo.path, repo.store_dir
        if self.auto is not None:
            self.auto.__init__(repo)  # auto-commit follows the session's repository

    def _cli_argv(self, argv: list[str]) -> list[str]:
        if self.store is None or _command(argv) == "init":
            return argv
        if any(a in ("--db", "--store") or a.startswith(("--db=", "--store=")) for a in argv):
            return argv
        return ["--db", str(self.db), "--store", str(self.store), *argv]

    def _run_cli(self, argv: list[str]) -> int:
        with user_errors(), widget_progress(self.widgets()):
            return run(self._cli_argv(argv))
        return 0  # pragma: no cover - reached after --help

    # -- %dbvers ---------------------------------------------------------------
    @line_magic
    def dbvers(self, line: str) -> None:
        """Run a dbvers command: ``%dbvers ARGS`` is the command line ``dbvers ARGS``.

        Same parser, output and one-line error messages as the CLI; errors are
        IPython UsageErrors (no traceback). ``%dbvers --help`` lists the commands,
        ``%dbvers COMMAND --help`` explains one.

        One command is the notebook's own: ``%dbvers use PATH`` makes the
        repository of PATH (a tracked database, or a directory at or below the
        one holding it) the session's repository, for every magic; without PATH
        it tells which repository is in use. ``%dbvers init DB`` also makes the
        new repository the session's.

        Examples::

            %dbvers init flights.db
            %dbvers use ../data/flights.db
            %dbvers status
            %dbvers log --oneline -n 5
            %dbvers checkout -b experiment
            %dbvers diff main experiment --stat
        """
        argv = split(line)
        if argv[:1] == ["use"]:
            self._use(argv[1:])
            return
        self._run_cli(argv)
        if _command(argv) == "init" and not any(a in ("--help", "-h") for a in argv):
            from .opening import open_repo

            with user_errors():
                ns = build_parser().parse_args(argv)
                self._adopt(open_repo(ns.database, store=getattr(ns, "store", None)))

    def _use(self, args: list[str]) -> None:
        from .opening import open_repo

        if len(args) > 1:
            raise UsageError("use takes one PATH: %dbvers use PATH")
        if not args:
            repo = self.repo()
            how = "set with %dbvers use" if self.store is not None else "found from the current directory"
            print(f"Using {repo.path} (history in {repo.store_dir}; {how})")
            return
        path = Path(args[0]).expanduser()
        with user_errors():
            if path.is_dir() and (path / "config").is_file() and (path / "objects").is_dir():
                repo = open_repo(store=path)  # a store directory itself
            else:
                repo = open_repo(path)
        self._adopt(repo)
        print(f"Using {repo.path} (history in {repo.store_dir})")

    # -- %dbcommit -------------------------------------------------------------
    @magic_arguments()
    @argument("-m", "--message", action="append", metavar="MSG",
              help="commit message (repeat for paragraphs); default: the code of this cell")
    @argument("--allow-empty", action="store_true", help="commit even if nothing changed")
    @argument("--auto", nargs="?", const="on", choices=("on", "off"), metavar="on|off",
              help="from now on, commit after every cell that changes the database, with the "
                   "cell's code as the message (--auto off stops)")
    @line_magic
    def dbcommit(self, line: str) -> Any:
        """Commit the working database; print the short id and per-table counts; return the Commit.

        ``%dbcommit -m "add January flights"`` records the working database as a
        new commit on the current branch (like ``dbvers commit``). Without ``-m``
        the message is this cell's code (the other lines of the cell), or
        "notebook cell [N]". The cell's execution count is kept in the commit's
        ``meta``. Returns the :class:`dbvers.Commit`, so ``c = %dbcommit -m x``
        works.

        ``%dbcommit --auto`` turns on auto-commit: after each cell that changed
        the working database, it is committed with the cell's code as the
        message and ``{"execution_count": N, "auto": true}`` in ``meta``. A
        cell that did not change the database costs a file ``stat`` (well under
        a millisecond). A cell that raised after writing is not committed: you
        are told, and the next auto-commit says that it includes those writes.
        ``%dbcommit --auto off`` turns it off.

        Examples::

            %dbcommit -m "load January flights"
            c = %dbcommit -m "drop cancelled flights"
            %dbcommit --auto
            %dbcommit --auto off
        """
        args = parse(self.dbcommit, line)
        if args.auto is not None:
            if args.message or args.allow_empty:
                raise UsageError("--auto takes no -m or --allow-empty: auto-commit messages are the cells' code")
            self._set_auto(args.auto == "on")
            return None
        repo = self.repo()
        n = self._execution_count()
        if args.message:
            message = "\n\n".join(args.message)
        else:
            message = self._cell_message() or f"notebook cell [{n}]"
        with user_errors():
            c = repo.commit(message, allow_empty=args.allow_empty,
                            meta={"execution_count": n} if n is not None else None)
            from .render.console import print_commit_result

            print_commit_result(console(), repo.head.branch, c, repo.show(c.id)[1])
        if self.auto is not None:
            self.auto.before = sqlio.fingerprint(self.auto.path)
            self.auto.failed_cells.clear()
        return c

    def _execution_count(self) -> int | None:
        """The running cell's number (IPython 9 counts up before a cell runs, 8 after)."""
        hm = getattr(self.shell, "history_manager", None)
        if self._cell is not None and hm is not None and hm.input_hist_raw:
            return len(hm.input_hist_raw) - 1
        return getattr(self.shell, "execution_count", None)

    def _cell_message(self) -> str:
        lines = [ln for ln in (self._cell or "").splitlines() if not ln.lstrip().startswith("%dbcommit")]
        return trim_message("\n".join(lines))

    def _set_auto(self, on: bool) -> None:
        events = self.shell.events
        if self.auto is not None:
            with contextlib.suppress(ValueError):
                events.unregister("pre_run_cell", self.auto.pre_run_cell)
            with contextlib.suppress(ValueError):
                events.unregister("post_run_cell", self.auto.post_run_cell)
            self.auto = None
        if not on:
            print("dbvers: auto-commit is off")
            return
        repo = self.repo()
        self.auto = AutoCommit(repo)
        events.register("pre_run_cell", self.auto.pre_run_cell)
        events.register("post_run_cell", self.auto.post_run_cell)
        print(f"dbvers: auto-commit is on for {repo.path.name}: every cell that changes it is "
              "committed with the cell's code as the message (%dbcommit --auto off stops)")

    # -- %dbdiff ---------------------------------------------------------------
    @magic_arguments()
    @argument("refs", nargs="*", metavar="REF",
              help="A [B]: no ref compares HEAD with the working database, one ref compares it "
                   "with the working database, two compare A with B")
    @argument("-t", "--table", action="append", metavar="T", help="only this table (repeatable)")
    @argument("--where", metavar="EXPR", help="SQL filter over diff_type, from_<col>, to_<col>")
    @argument("--skinny", action="store_true", help="only key columns and columns that changed")
    @argument("--page-size", type=int, default=PAGE_SIZE, metavar="N",
              help=f"changed rows per page (default {PAGE_SIZE})")
    @argument("--text", action="store_true", help="print the terminal text form instead of the widget")
    @line_magic
    def dbdiff(self, line: str) -> None:
        """Show what changed, as a widget: ``%dbdiff [A [B]]``.

        A summary header (per table: rows added / modified / removed, and schema
        changes), then one tab per changed table with its rows coloured: added
        green, removed red, modified yellow with each changed cell as
        ``old → new``. Rows come a page at a time (only that page is read and
        sent to the browser), so a diff of a million rows opens at once. Each
        tab has a filter box (an SQL expression over ``diff_type``,
        ``from_<col>`` and ``to_<col>``, as ``dbvers diff --where``), a
        "skinny" toggle (key and changed columns only) and a button that puts
        the shown table into a pandas DataFrame variable.

        Without the widget JavaScript the same content shows as static HTML; in
        terminal IPython (or with ``--text``) it prints ``dbvers diff``'s text,
        each table cut to its first page.

        Examples::

            %dbdiff                       # HEAD vs the working database
            %dbdiff v1                    # tag v1 vs the working database
            %dbdiff main experiment       # two commits
            %dbdiff --where "to_dep_delay > 60" -t flights
        """
        args = parse(self.dbdiff, line)
        with user_errors():
            a, b = diff_refs(args.refs)
            check_at_least(args.page_size, 1, "--page-size")
        if args.text or not self.widgets():
            argv = ["diff", *args.refs, "--limit", str(args.page_size)]
            for t in args.table or []:
                argv += ["--table", t]
            if args.where:
                argv += ["--where", args.where]
            if args.skinny:
                argv.append("--skinny")
            self._run_cli(argv)
            return
        repo = self.repo()
        with user_errors():
            d = repo.diff(a, b)
            try:
                tables = None
                if args.table:
                    for t in args.table:
                        d.spec(t)  # unknown table: the CLI's one-line error
                    tables = list(dict.fromkeys(args.table))
                if args.where:
                    candidates = tables if tables is not None else list(d.specs)
                    if candidates and not any(d.where_applies(t, args.where) for t in candidates):
                        d.count_kinds(candidates[0], args.where)  # raises the one-line SQL error
                from .render.widgets import DiffView

                view = DiffView(d, page_size=args.page_size, where=args.where, skinny=args.skinny,
                                tables=tables, namespace=self.shell.user_ns)
            except BaseException:
                d.close()
                raise
        self.last_view = view
        self.show_view(view)

    def show_view(self, obj: Any) -> None:
        """Show a widget view in the notebook (replaceable: a test collects them instead)."""
        from IPython.display import display

        display(obj)

    # -- %dblog ----------------------------------------------------------------
    @magic_arguments()
    @argument("ref", nargs="?", default="HEAD", metavar="REF", help="where the history starts (default HEAD)")
    @argument("-n", "--max-count", dest="n", type=int, metavar="N", help="show at most N commits")
    @argument("--text", action="store_true", help="print `dbvers log` instead of the widget")
    @line_magic
    def dblog(self, line: str) -> None:
        """Show the history as a widget: ``%dblog [REF] [-n N]``.

        Commits newest first, each with its branch and tag labels and per-table
        counts. Selecting one shows its details and its diff (against its first
        parent) in the diff view; the "check out" button makes it current (its
        branch when it is a branch tip), and is refused with the usual message
        when the working database has uncommitted changes.

        The widget lists at most 200 commits unless ``-n`` says otherwise. In
        terminal IPython (or with ``--text``) it prints ``dbvers log``.

        Examples::

            %dblog
            %dblog experiment -n 20
        """
        args = parse(self.dblog, line)
        with user_errors():
            check_at_least(args.n, 0, "-n")
        if args.text or not self.widgets():
            argv = ["log", args.ref] + (["-n", str(args.n)] if args.n is not None else [])
            self._run_cli(argv)
            return
        repo = self.repo()
        from .render.widgets import LogView

        with user_errors():
            view = LogView(repo, args.ref, n=args.n if args.n is not None else 200,
                           namespace=self.shell.user_ns)
        self.last_view = view
        self.show_view(view)

    # -- %dbcheckout -----------------------------------------------------------
    @magic_arguments()
    @argument("ref", nargs="?", metavar="REF", help="branch, tag or commit")
    @argument("-b", dest="new_branch", metavar="NEW", help="create branch NEW at REF (default HEAD) and switch to it")
    @argument("-f", "--force", action="store_true", help="discard uncommitted changes")
    @line_magic
    def dbcheckout(self, line: str) -> None:
        """Switch the working database to a branch, tag or commit: ``dbvers checkout``.

        The database file is rewritten in one transaction to hold that state.
        Uncommitted changes are kept safe: the checkout is refused (commit them,
        or pass ``-f`` to discard them). A branch attaches HEAD; a tag or commit
        detaches it, like git.

        Examples::

            %dbcheckout experiment
            %dbcheckout -b experiment     # new branch at HEAD
            %dbcheckout v1
            %dbcheckout main -f           # throw away uncommitted changes
        """
        args = parse(self.dbcheckout, line)
        argv = ["checkout"]
        if args.ref:
            argv.append(args.ref)
        if args.new_branch:
            argv += ["-b", args.new_branch]
        if args.force:
            argv.append("--force")
        self._run_cli(argv)


    # -- %dbmerge ---------------------------------------------------------------
    @magic_arguments()
    @argument("rev", nargs="?", metavar="REV", help="the branch, tag or commit to merge into the current branch")
    @argument("-m", "--message", metavar="MSG", help="the merge commit's message")
    @argument("--no-ff", action="store_true", help="a merge commit even when a fast-forward would do")
    @argument("--no-commit", action="store_true", help="merge, but don't commit")
    @argument("--text", action="store_true", help="print `dbvers conflicts` instead of the widget")
    @line_magic
    def dbmerge(self, line: str) -> None:
        """Merge a branch into the current one: ``dbvers merge`` and, when rows conflict, the
        conflicts widget (a tab per table; base, ours and theirs side by side; "take ours" /
        "take theirs" per row and per table; Continue and Abort). Without REV it shows the
        conflicts of the merge (revert, cherry-pick) in progress.

        Examples::

            %dbmerge experiment
            %dbmerge experiment --no-ff -m "bring the experiment in"
            %dbmerge            # the conflicts left
        """
        args = parse(self.dbmerge, line)
        if args.rev:
            argv = ["merge", args.rev] + (["-m", args.message] if args.message else [])
            argv += ["--no-ff"] * args.no_ff + ["--no-commit"] * args.no_commit
            self._run_cli(argv)
        repo = self.repo()
        if repo.operation() is None:
            return
        if args.text or not self.widgets():
            self._run_cli(["conflicts"])
            return
        from .render.conflictview import ConflictsView

        with user_errors():
            view = ConflictsView(repo)
        self.last_view = view
        self.show_view(view)


def load_ipython_extension(ipython: Any) -> None:
    magics = DbversMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics._pre_run_cell)
    ipython.events.register("post_run_cell", magics._post_run_cell)


def unload_ipython_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.registry.get("DbversMagics")
    if magics is None:
        return
    if magics.auto is not None:
        magics._set_auto(False)
    for event, fn in (("pre_run_cell", magics._pre_run_cell), ("post_run_cell", magics._post_run_cell)):
        with contextlib.suppress(ValueError):
            ipython.events.unregister(event, fn)
