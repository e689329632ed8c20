"""The ``dbvers`` command: a thin layer over :class:`dbvers.Repo` (sqlite-utils' style).

Exit codes: 0 success (also when the reader of stdout left early, ``dbvers log |
head``); 1 a check found something (``fsck`` problems, ``diff --exit-code``,
``backup --verify``); 2 a usage or user error, printed as one line, never a
traceback; 3 an internal error (a bug), also one line unless ``DBVERS_DEBUG=1``;
130 interrupted. :func:`main` is the one boundary: every exception becomes one of
these (foreign ones through :func:`dbvers.boundary.translate`). pandas and pyarrow
are not imported on the paths of ``status`` and ``commit``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .boundary import translate
from .errors import DbversError, InternalError, UsageError, debug_enabled

FORMATS = ("json", "csv", "parquet")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the notebook magics can share it."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def _console(args: argparse.Namespace) -> Any:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich's default exits 1 here; a closed stdout is handled once, in main().
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "stdout was closed")

    return _Console(highlight=False, soft_wrap=True)


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
        with output_file(path) as f:
            f.write(text)
    else:
        sys.stdout.write(text)


@contextlib.contextmanager
def output_file(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """``-o FILE``: a temp file beside FILE, renamed onto it only when the command succeeds,
    so a failed command leaves FILE as it was."""
    from .fsutil import TMP_PREFIX

    target = Path(path)
    if target.is_dir():
        raise UsageError(f"-o {path}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise UsageError(f"-o {path}: directory {target.parent} does not exist")
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


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

    if args.db is not None and Path(args.db).resolve() != Path(args.database).resolve():
        raise UsageError(f"init takes the database as DB; --db {args.db} names another file "
                         f"than {args.database}: drop --db")
    repo = init_repo(args.database, store=args.store, message=args.message, create=args.create)
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
    if repo.journal_problem:
        print(f"dbvers: warning: {repo.journal_problem}", file=sys.stderr)
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

    try:
        changes = repo.show(c.id)[1]
    except DbversError as e:
        # The commit is made (its ref moved): a damaged older object only costs the summary.
        print(f"dbvers: warning: committed, but its schema changes can't be shown: {e}", file=sys.stderr)
        changes = []
    print_commit_result(_console(args), repo.head.branch, c, changes)
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    repo = _open(args)
    if args.n is not None and args.n < 0:
        raise UsageError("-n takes a number >= 0")
    if args.oneline and args.format:
        raise UsageError("--oneline is a text view; drop --format, or drop --oneline")
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


def _check_ref_options(args: argparse.Namespace, kind: str) -> None:
    """branch/tag: list, create or delete; an option that the chosen action ignores is refused."""
    if args.delete:
        extra = [f"'{x}'" for x in (args.name, args.ref) if x] + (["-f"] if args.force else [])
        if extra:
            raise UsageError(f"{kind} -d NAME deletes one {kind}; {' and '.join(extra)} would be ignored: drop them")
    elif not args.name and args.force:
        raise UsageError(f"-f moves an existing {kind}: {kind} -f NAME [REF]")
    if args.format and (args.delete or args.name):
        raise UsageError(f"--format lists {'branches' if kind == 'branch' else 'tags'}; creating or deleting one prints a line (drop --format)")


def cmd_branch(args: argparse.Namespace) -> int:
    _check_ref_options(args, "branch")
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
    _check_ref_options(args, "tag")
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
    if not args.hard and not args.soft:
        raise UsageError("say --hard (move the branch and the working database) or --soft (the branch only)")
    if args.soft and args.force:
        raise UsageError("--force goes with --hard; --soft leaves the working database alone")
    repo = _open(args)
    oid = repo.reset(args.ref, hard=args.hard, force=args.force)
    from .render.console import print_head_moved

    print_head_moved(_console(args), repo.get_commit(oid))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    if args.from_file is not None:
        if args.force:
            raise UsageError("--force is for restoring HEAD; with --from, --yes replaces a changed database")
        return _restore_from_backup(args)
    if args.at or args.to or args.yes:
        raise UsageError("--at, --to and --yes go with --from FILE (restore from a backup archive)")
    repo = _open(args)
    oid = repo.restore(force=args.force)
    _console(args).print(f"Working database restored to HEAD ({oid[:10]})")
    return 0


def _restore_from_backup(args: argparse.Namespace) -> int:
    """``restore --from FILE``: works without a repository (restoring onto a new machine)."""
    from .backup import restore_archive
    from .repo import open_repo

    to = args.to
    if to is None:
        try:
            to = str(open_repo(args.db, store=args.store).path)
        except DbversError:
            to = args.db  # None: ./<database name of the backup>
    res = restore_archive(args.from_file, to, args.at or "HEAD", yes=args.yes, store=args.store)
    for w in res.warnings:
        print(f"dbvers: warning: {w}", file=sys.stderr)
    where = f"branch {res.branch}" if res.branch else "detached HEAD"
    chain = f" (+{len(res.chain) - 1} earlier backups)" if len(res.chain) > 1 else ""
    store = "new store " if res.created_store else ""
    _console(args).print(
        f"Restored {res.repo.path} from {res.archive.name}{chain} at {args.at or 'HEAD'} "
        f"({res.commit[:10]}, {where}); {store}{res.repo.store_dir}"
    )
    return 0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _backup_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    from .backup import default_dir

    return default_dir(_open(args))


def cmd_backup(args: argparse.Namespace) -> int:
    from . import backup as bk

    modes = [m for m in ("list", "verify", "prune", "incremental") if getattr(args, m)]
    if len(modes) > 1:
        raise UsageError(f"choose one of --{' / --'.join(modes)}")
    if (args.keep is not None or args.max_age is not None) and (args.list or args.verify):
        raise UsageError("--keep and --max-age go with --prune or with a backup")
    # Checked before anything is written: a backup made and then refused for --keep 0 is confusing.
    if args.keep is not None and args.keep < 1:
        raise UsageError("--keep needs a number >= 1")
    if args.max_age is not None and args.max_age < 0:
        raise UsageError("--max-age needs a number of days >= 0")
    con = _console(args)
    if args.verify:
        results = bk.verify(_backup_dir(args))
        if args.format:
            _emit(args, [r.to_json() for r in results])
        elif not results:
            con.print("no backups to verify")
        for r in results if not args.format else []:
            if r.ok:
                con.print(f"ok      {r.path.name}  ({r.kind}; {r.commits} commits, {r.objects} objects, "
                          f"{r.snapshots} snapshots checked)")
            else:
                con.print(f"FAILED  {r.path.name}: {r.problem}", markup=False)
        return 0 if all(r.ok for r in results) else 1
    if args.list:
        infos = bk.list_backups(_backup_dir(args))
        if args.format:
            _emit(args, [i.to_json() for i in infos])
            return 0
        rows = [("backup", "created (UTC)", "kind", "size", "commits", "verified")]
        for i in infos:
            created = i.created_at[:19].replace("T", " ") if i.created_at else "?"
            kind = i.kind if i.kind != "incremental" else f"incremental of {i.parent}"
            rows.append((i.path.name, created, kind, _human(i.size), str(i.commits) if not i.problem else "?",
                         i.verified or ("damaged" if i.problem else "not yet")))
        if not infos:
            con.print("no backups")
            return 0
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        for r in rows:
            cells = [r[c].rjust(widths[c]) if c in (3, 4) else r[c].ljust(widths[c]) for c in range(6)]
            print("  ".join(cells).rstrip())
        return 0
    if args.prune:
        keep, max_age = args.keep, args.max_age
        if keep is None and max_age is None:
            if not args.dir:
                from .backup import retention

                keep, max_age = retention(_open(args))
            if keep is None and max_age is None:
                raise UsageError("--prune needs --keep N and/or --max-age DAYS (or [backup] keep/max_age in the config)")
        removed = bk.prune(_backup_dir(args), keep=keep, max_age=max_age)
        if args.format:
            _emit(args, {"removed": [str(p) for p in removed]})
            return 0
        for p in removed:
            con.print(f"removed {p.name}")
        con.print(f"{len(removed)} backup{'s' if len(removed) != 1 else ''} removed")
        return 0
    repo = _open(args)
    info = bk.backup(repo, args.dir, incremental=args.incremental, keep=args.keep, max_age=args.max_age)
    if args.format:
        _emit(args, info.to_json())
        return 0
    kind = info.kind if info.kind == "full" else f"incremental of {info.parent}"
    con.print(f"Backup {info.path} ({kind}): {info.commits} commits, {info.objects} objects, "
              f"{_human(info.size)}")
    if info.note:
        con.print(f"note: {info.note}")
    if info.uncommitted:
        print(f"dbvers: warning: uncommitted changes in {', '.join(info.uncommitted[:10])} are not in the "
              "backup (it holds commits); commit them and back up again", file=sys.stderr)
    for p in info.pruned:
        con.print(f"removed old backup {p.name}")
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
    if args.stat and args.format:
        raise UsageError("--stat prints a summary; drop --format, or drop --stat")
    if args.stat and (args.skinny or args.limit is not None):
        raise UsageError("--stat counts every changed row; --skinny and --limit shape rows it doesn't show: drop them")
    with repo.diff(a, b) as d:
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
        if args.format:
            from .render import diffexport

            any_rows = diffexport.export(
                d, tables, args.format, args.output, where=args.where, limit=args.limit,
                skinny=args.skinny, whole=not args.table and not args.where,
            )
        else:
            from .render.diffview import extra_lines, print_stat, stream_diff, summary_line

            if args.stat:
                n_tables, totals = print_stat(d, tables, where=args.where)
            else:
                n_tables, totals = stream_diff(d, tables, where=args.where, limit=args.limit,
                                               skinny=args.skinny)
            if not args.table:
                for line in extra_lines(d):
                    print(line)
            print(summary_line(n_tables, totals))
            # schema changes count for the tables shown (indexes, views, triggers: whole diffs only)
            any_rows = bool(totals.total) or any(
                s.name in tables if s.type == "table" else not args.table for s in d.schema_changes)
        if not args.table and not args.where:
            # What has no rows to show still differs: virtual tables' contents, header pragmas.
            any_rows = any_rows or bool(d.virtual_changes or d.pragma_changes)
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

    print_gc(_console(args), repo.gc(prune=args.prune))
    return 0


def cmd_reflog(args: argparse.Namespace) -> int:
    """``reflog [show [REF]]``: where a ref has been, newest first (git's ``reflog show``)."""
    from .render.console import print_reflog

    repo = _open(args)
    ref = getattr(args, "ref", None) or "HEAD"
    print_reflog(_console(args), repo.reflog_ref(ref), repo.reflog(ref))
    return 0


def cmd_reflog_expire(args: argparse.Namespace) -> int:
    """``reflog expire [--expire=WHEN] [--expire-unreachable=WHEN] [--dry-run] (--all | REF...)``."""
    if args.all == bool(args.refs):
        raise UsageError("'dbvers reflog expire' takes --all or the refs whose reflogs to expire"
                         + (", not both" if args.all else ""))
    from .render.console import print_reflog_expire

    repo = _open(args)
    report = repo.reflog_expire(expire=args.expire, expire_unreachable=args.expire_unreachable,
                                refs=None if args.all else args.refs, dry_run=args.dry_run)
    print_reflog_expire(_console(args), report)
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
    sp.add_argument("--create", action="store_true", help="DB doesn't exist yet: make a new empty database")

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

    sp = add("restore", cmd_restore,
             "throw away uncommitted changes in the working database, or restore from a backup (--from)")
    sp.add_argument("-f", "--force", action="store_true", help="required when there are changes to discard")
    sp.add_argument("--from", dest="from_file", metavar="FILE", help="restore from this backup archive")
    sp.add_argument("--at", metavar="REF", help="with --from: the branch, tag or commit to restore (default HEAD)")
    sp.add_argument("--to", metavar="PATH", help="with --from: the database to restore into")
    sp.add_argument("--yes", action="store_true",
                    help="with --from: replace an untracked or changed database, or one with another user_version")

    sp = add("backup", cmd_backup, "write, list, verify or prune backup archives of the history")
    sp.add_argument("dir", nargs="?", metavar="DIR|FILE",
                    help="backup directory (default [backup] dir, or backups/ beside the database); "
                         "a file for --verify")
    sp.add_argument("--incremental", action="store_true", help="only what the previous backup in DIR lacks")
    sp.add_argument("--list", action="store_true", help="list the backups in DIR")
    sp.add_argument("--verify", action="store_true", help="check the archive FILE, or every archive in DIR")
    sp.add_argument("--prune", action="store_true", help="delete old backups (see --keep, --max-age)")
    sp.add_argument("--keep", type=int, metavar="N", help="retention: keep the N newest backups")
    sp.add_argument("--max-age", type=float, metavar="DAYS", help="retention: delete backups older than DAYS")
    _add_format(sp)

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
    sp = add("gc", cmd_gc, "expire old reflog entries, then remove objects that no ref or reflog entry reaches")
    sp.add_argument("--prune", metavar="WHEN",
                    help="remove unreachable objects older than WHEN: now, never, days (14, 2.weeks.ago) "
                         "or an ISO date (default [gc] prune_expire, 14 days)")
    sp = add("reflog", cmd_reflog, "where HEAD or a ref has been (reflog show), or expire old entries "
                                   "(reflog expire)")
    actions = sp.add_subparsers(dest="reflog_action", metavar="ACTION", parser_class=_Parser)

    def action(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        ap = actions.add_parser(name, help=help_, description=help_)
        ap.set_defaults(func=fn)
        ap.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        ap.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return ap

    ap = action("show", cmd_reflog, "REF's reflog, newest first (the default action)")
    ap.add_argument("ref", nargs="?", default="HEAD", metavar="REF",
                    help="HEAD (default), a branch (a deleted one too), a tag or a full ref name")
    ap = action("expire", cmd_reflog_expire, "drop reflog entries older than their expiry time")
    ap.add_argument("refs", nargs="*", metavar="REF", help="the refs whose reflogs to expire")
    ap.add_argument("--all", action="store_true", help="every reflog, deleted branches' too")
    ap.add_argument("--expire", metavar="WHEN",
                    help="drop entries older than WHEN: now, never, days (90, 90.days) or an ISO date "
                         "(default [gc] reflog_expire, 90 days)")
    ap.add_argument("--expire-unreachable", metavar="WHEN",
                    help="drop entries the ref's tip doesn't reach older than WHEN "
                         "(default [gc] reflog_expire_unreachable, 30 days)")
    ap.add_argument("-n", "--dry-run", action="store_true", help="list what would go, change nothing")

    sp = add("help", cmd_help, "show the commands, or one command's options")
    sp.add_argument("topic", nargs="?", metavar="COMMAND")
    return p


def commands() -> list[str]:
    """Every subcommand, in the order ``dbvers --help`` lists them."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def cmd_help(args: argparse.Namespace) -> int:
    parser = build_parser()
    if not args.topic:
        parser.print_help()
        return 0
    if args.topic not in commands():
        raise UsageError(f"no command '{args.topic}'; 'dbvers help' lists them")
    parser.parse_args([args.topic, "--help"])  # prints the command's help, exits 0
    return 0  # pragma: no cover


def run(argv: Sequence[str]) -> int:
    """Parse and run one command; raises DbversError for user errors (used by the magics too)."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
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
    from .repo import open_repo

    try:
        db = open_repo(args.db, store=args.store).path
    except DbversError:
        return  # no repository: no database to protect (the command itself will say so)
    target = Path(output).resolve()
    if target in {db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))}:
        raise UsageError(f"-o {output} is the tracked database (or one of its files); choose another file")


def user_error(exc: BaseException) -> DbversError:
    """The one error mapping shared by the CLI and the magics: what *exc* means to a user.

    A ``DbversError`` is itself; a foreign exception with a known meaning (disk
    full, a damaged SQLite file, a refused file operation, ...) is translated; any
    other exception is an :class:`InternalError` (a bug), reported in one line.
    """
    return translate(exc) or InternalError(exc)


def _stdout_closed(exc: BaseException | None) -> bool:
    """Did *exc* (or what caused it) come from writing to a stdout whose reader left?"""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _quiet_exit_after_broken_pipe() -> int:
    """The Python docs' recipe: point stdout at /dev/null so the interpreter's final flush
    succeeds (no "Exception ignored ... BrokenPipeError" on stderr). Exit 0: the reader
    (`head`) chose to stop, nothing failed; so `set -o pipefail` scripts keep working."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr)
        sys.stderr.flush()


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
        _say("dbvers: interrupted; nothing was changed past the last completed step")
        return 130
    except Exception as e:
        if _stdout_closed(e):
            return _quiet_exit_after_broken_pipe()
        if debug_enabled() and not isinstance(e, DbversError):
            raise
        err = user_error(e)
        _say(f"dbvers: error: {err}")
        return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
