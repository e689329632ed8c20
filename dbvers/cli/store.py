"""``dbvers restore``, ``backup``, ``snapshot``, ``fsck`` and ``gc`` (layer L5): the
store's upkeep and its copies. ``restore --from`` and ``backup --verify/--list`` work
without a repository (restoring onto a new machine, checking archives).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DbversError, UsageError
from ..formats import human_size
from ..frontend import check_at_least, console, warn
from .common import Command, add_format, emit, open_repo


def cmd_restore(args: argparse.Namespace) -> int:
    if args.from_file is not None:
        if args.force:
            raise UsageError("--force is for restoring HEAD; with --from, --yes replaces a changed database")
        return _restore_from_backup(args)
    if args.at or args.to or args.yes:
        raise UsageError("--at, --to and --yes go with --from FILE (restore from a backup archive)")
    repo = open_repo(args)
    oid = repo.restore(force=args.force)
    console().print(f"Working database restored to HEAD ({oid[:10]})")
    return 0


def _restore_from_backup(args: argparse.Namespace) -> int:
    """``restore --from FILE``: works without a repository (restoring onto a new machine)."""
    from ..backup import restore_archive

    to = args.to
    if to is None:
        try:
            to = str(open_repo(args).path)
        except DbversError:
            to = args.db  # None: ./<database name of the backup>
    res = restore_archive(args.from_file, to, args.at or "HEAD", yes=args.yes, store=args.store)
    for w in res.warnings:
        warn(w)
    where = f"branch {res.branch}" if res.branch else "detached HEAD"
    chain = f" (+{len(res.chain) - 1} earlier backups)" if len(res.chain) > 1 else ""
    store = "new store " if res.created_store else ""
    console().print(
        f"Restored {res.repo.path} from {res.archive.name}{chain} at {args.at or 'HEAD'} "
        f"({res.commit[:10]}, {where}); {store}{res.repo.store_dir}"
    )
    return 0


# -- backup ---------------------------------------------------------------------------


def _backup_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    from ..backup import default_dir

    return default_dir(open_repo(args))


def _check_backup_options(args: argparse.Namespace) -> None:
    modes = [m for m in ("list", "verify", "prune", "incremental") if getattr(args, m)]
    if len(modes) > 1:
        raise UsageError(f"choose one of --{' / --'.join(modes)}")
    if (args.keep is not None or args.max_age is not None) and (args.list or args.verify):
        raise UsageError("--keep and --max-age go with --prune or with a backup")
    # Checked before anything is written: a backup made and then refused for --keep 0 is confusing.
    check_at_least(args.keep, 1, "--keep", verb="needs")
    if args.max_age is not None and args.max_age < 0:
        raise UsageError("--max-age needs a number of days >= 0")


def cmd_backup(args: argparse.Namespace) -> int:
    _check_backup_options(args)
    if args.verify:
        return _backup_verify(args)
    if args.list:
        return _backup_list(args)
    if args.prune:
        return _backup_prune(args)
    from ..backup import backup

    con = console()
    info = backup(open_repo(args), args.dir, incremental=args.incremental, keep=args.keep,
                  max_age=args.max_age)
    if args.format:
        emit(args, info.to_json())
        return 0
    kind = info.kind if info.kind == "full" else f"incremental of {info.parent}"
    con.print(f"Backup {info.path} ({kind}): {info.commits} commits, {info.objects} objects, "
              f"{human_size(info.size)}")
    if info.note:
        con.print(f"note: {info.note}")
    if info.uncommitted:
        warn(f"uncommitted changes in {', '.join(info.uncommitted[:10])} are not in the "
             "backup (it holds commits); commit them and back up again")
    for p in info.pruned:
        con.print(f"removed old backup {p.name}")
    return 0


def _backup_verify(args: argparse.Namespace) -> int:
    from ..backup import verify

    con = console()
    results = verify(_backup_dir(args))
    if args.format:
        emit(args, [r.to_json() for r in results])
    elif not results:
        con.print("no backups to verify")
    for r in results if not args.format else []:
        if r.ok:
            con.print(f"ok      {r.path.name}  ({r.kind}; {r.commits} commits, {r.objects} objects, "
                      f"{r.snapshots} snapshots checked)")
        else:
            con.print(f"FAILED  {r.path.name}: {r.problem}", markup=False)
    return 0 if all(r.ok for r in results) else 1


def _backup_list(args: argparse.Namespace) -> int:
    from ..backup import list_backups

    con = console()
    infos = list_backups(_backup_dir(args))
    if args.format:
        emit(args, [i.to_json() for i in infos])
        return 0
    rows = [("backup", "created (UTC)", "kind", "size", "commits", "verified")]
    for i in infos:
        created = i.created_at[:19].replace("T", " ") if i.created_at else "?"
        kind = i.kind if i.kind != "incremental" else f"incremental of {i.parent}"
        rows.append((i.path.name, created, kind, human_size(i.size), str(i.commits) if not i.problem else "?",
                     i.verified or ("damaged" if i.problem else "not yet")))
    if not infos:
        con.print("no backups")
        return 0
    widths = [max(len(r[c]) for r in rows) for c in range(6)]
    for r in rows:
        cells = [r[c].rjust(widths[c]) if c in (3, 4) else r[c].ljust(widths[c]) for c in range(6)]
        print("  ".join(cells).rstrip())
    return 0


def _backup_prune(args: argparse.Namespace) -> int:
    from ..backup import prune, retention

    con = console()
    keep, max_age = args.keep, args.max_age
    if keep is None and max_age is None:
        if not args.dir:
            keep, max_age = retention(open_repo(args))
        if keep is None and max_age is None:
            raise UsageError("--prune needs --keep N and/or --max-age DAYS (or [backup] keep/max_age in the config)")
    removed = prune(_backup_dir(args), keep=keep, max_age=max_age)
    if args.format:
        emit(args, {"removed": [str(p) for p in removed]})
        return 0
    for p in removed:
        con.print(f"removed {p.name}")
    con.print(f"{len(removed)} backup{'s' if len(removed) != 1 else ''} removed")
    return 0


# -- upkeep ---------------------------------------------------------------------------


def cmd_snapshot(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    snap = repo.snapshot()
    console().print(f"Snapshot {snap[:10]} stored for {repo.head.commit[:10]}")
    return 0


def cmd_fsck(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    report = repo.fsck()
    if args.format:
        emit(args, {"ok": report.ok, "objects": report.objects, "commits": report.commits,
                    "snapshots": report.snapshots, "refs": report.refs, "problems": report.problems})
    else:
        from ..render.console import print_fsck

        print_fsck(console(), report)
    return 0 if report.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    from ..render.console import print_gc

    print_gc(console(), repo.gc(prune=args.prune))
    return 0


# -- arguments ------------------------------------------------------------------------


def _restore_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--force", action="store_true", help="required when there are changes to discard")
    sp.add_argument("--from", dest="from_file", metavar="FILE", help="restore from this backup archive")
    sp.add_argument("--at", metavar="REF", help="with --from: the branch, tag or commit to restore (default HEAD)")
    sp.add_argument("--to", metavar="PATH", help="with --from: the database to restore into")
    sp.add_argument("--yes", action="store_true",
                    help="with --from: replace an untracked or changed database, or one with another user_version")


def _backup_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("dir", nargs="?", metavar="DIR|FILE",
                    help="backup directory (default [backup] dir, or backups/ beside the database); "
                         "a file for --verify")
    sp.add_argument("--incremental", action="store_true", help="only what the previous backup in DIR lacks")
    sp.add_argument("--list", action="store_true", help="list the backups in DIR")
    sp.add_argument("--verify", action="store_true", help="check the archive FILE, or every archive in DIR")
    sp.add_argument("--prune", action="store_true", help="delete old backups (see --keep, --max-age)")
    sp.add_argument("--keep", type=int, metavar="N", help="retention: keep the N newest backups")
    sp.add_argument("--max-age", type=float, metavar="DAYS", help="retention: delete backups older than DAYS")
    add_format(sp)


def _gc_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--prune", metavar="WHEN",
                    help="remove unreachable objects older than WHEN: now, never, days (14, 2.weeks.ago) "
                         "or an ISO date (default [gc] prune_expire, 14 days)")


COMMANDS = [
    Command("restore", cmd_restore,
            "throw away uncommitted changes in the working database, or restore from a backup (--from)",
            _restore_arguments),
    Command("backup", cmd_backup, "write, list, verify or prune backup archives of the history",
            _backup_arguments),
    Command("snapshot", cmd_snapshot, "store a full snapshot (keyframe) of HEAD now"),
    Command("fsck", cmd_fsck, "verify every object, snapshot and ref", add_format),
    Command("gc", cmd_gc, "expire old reflog entries, then remove objects that no ref or reflog entry reaches",
            _gc_arguments),
]
