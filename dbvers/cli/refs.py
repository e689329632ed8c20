"""``dbvers branch``, ``checkout``, ``tag``, ``reset`` and ``reflog`` (layer L5):
moving and listing refs, git's habits (``branch`` alone lists, ``checkout -b NEW``,
``reset --hard``, ``reflog show|expire``).
"""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..frontend import console
from .common import Command, Handler, Parser, add_format, add_location, emit, open_repo


def _list_refs(args: argparse.Namespace, refs: dict[str, str], current: str | None) -> int:
    if args.format:
        emit(args, [{"name": k, "commit": v, "current": k == current} for k, v in sorted(refs.items())])
        return 0
    from ..render.console import print_refs

    print_refs(console(), refs, current)
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
    repo = open_repo(args)
    con = console()
    if args.all and args.remotes:
        raise UsageError("-a lists every branch, -r only the remote-tracking ones: give one of them")
    if args.delete:
        if args.all:
            raise UsageError("branch -d deletes one branch; -a only lists (-r -d deletes a remote-tracking one)")
        oid = repo.delete_branch(args.delete, remote=args.remotes)
        what = "remote-tracking branch" if args.remotes else "branch"
        con.print(f"Deleted {what} {args.delete} (was {oid[:10]})")
        return 0
    if not args.name:
        remote = {f"remotes/{k}" if args.all else k: v for k, v in repo.refs.list("refs/remotes/").items()}
        local = {} if args.remotes else repo.branches()
        shown = {**local, **remote} if args.all or args.remotes else local
        return _list_refs(args, shown, repo.head.branch)
    if args.all or args.remotes:
        raise UsageError("branch -a/-r lists branches; creating one takes no -a/-r")
    oid = repo.branch(args.name, args.ref or "HEAD", force=args.force)
    con.print(f"Created branch {args.name} at {oid[:10]}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    _check_ref_options(args, "tag")
    repo = open_repo(args)
    con = console()
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
    repo = open_repo(args)
    con = console()
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
    repo = open_repo(args)
    oid = repo.reset(args.ref, hard=args.hard, force=args.force)
    from ..render.console import print_head_moved

    print_head_moved(console(), repo.get_commit(oid))
    return 0


def cmd_reflog(args: argparse.Namespace) -> int:
    """``reflog [show [REF]]``: where a ref has been, newest first (git's ``reflog show``)."""
    from ..render.console import print_reflog

    repo = open_repo(args)
    ref = getattr(args, "ref", None) or "HEAD"
    print_reflog(console(), repo.reflog_ref(ref), repo.reflog(ref))
    return 0


def cmd_reflog_expire(args: argparse.Namespace) -> int:
    """``reflog expire [--expire=WHEN] [--expire-unreachable=WHEN] [--dry-run] (--all | REF...)``."""
    if args.all == bool(args.refs):
        raise UsageError("'dbvers reflog expire' takes --all or the refs whose reflogs to expire"
                         + (", not both" if args.all else ""))
    from ..render.console import print_reflog_expire

    repo = open_repo(args)
    report = repo.reflog_expire(expire=args.expire, expire_unreachable=args.expire_unreachable,
                                refs=None if args.all else args.refs, dry_run=args.dry_run)
    print_reflog_expire(console(), report)
    return 0


# -- arguments ------------------------------------------------------------------------


def _branch_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name", nargs="?", metavar="NAME")
    sp.add_argument("ref", nargs="?", metavar="REF", help="where the new branch starts (default HEAD)")
    sp.add_argument("-d", "-D", "--delete", metavar="NAME", help="delete a branch (its reflog keeps it recoverable)")
    sp.add_argument("-f", "--force", action="store_true", help="move an existing branch")
    sp.add_argument("-a", "--all", action="store_true", help="list remote-tracking branches too (remotes/origin/main)")
    sp.add_argument("-r", "--remotes", action="store_true",
                    help="list only remote-tracking branches (origin/main); with -d, delete one")
    add_format(sp)


def _checkout_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("ref", nargs="?", metavar="REF")
    sp.add_argument("-b", dest="new_branch", metavar="NEW", help="create branch NEW at REF (default HEAD) and switch to it")
    sp.add_argument("-f", "--force", action="store_true", help="discard uncommitted changes")


def _tag_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name", nargs="?", metavar="NAME")
    sp.add_argument("ref", nargs="?", metavar="REF")
    sp.add_argument("-d", "--delete", metavar="NAME")
    sp.add_argument("-f", "--force", action="store_true", help="move an existing tag")
    add_format(sp)


def _reset_arguments(sp: argparse.ArgumentParser) -> None:
    mode = sp.add_mutually_exclusive_group()
    mode.add_argument("--hard", action="store_true")
    mode.add_argument("--soft", action="store_true")
    sp.add_argument("ref", nargs="?", default="HEAD", metavar="REF")
    sp.add_argument("-f", "--force", action="store_true", help="discard uncommitted changes")


def _reflog_arguments(sp: argparse.ArgumentParser) -> None:
    actions = sp.add_subparsers(dest="reflog_action", metavar="ACTION", parser_class=Parser)

    def action(name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
        ap = actions.add_parser(name, help=help_, description=help_)
        ap.set_defaults(func=fn)
        add_location(ap)
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


COMMANDS = [
    Command("branch", cmd_branch, "list, create or delete branches", _branch_arguments),
    Command("checkout", cmd_checkout, "switch to a branch, tag or commit (detached HEAD like git)",
            _checkout_arguments),
    Command("tag", cmd_tag, "list, create or delete tags", _tag_arguments),
    Command("reset", cmd_reset, "move the current branch to REF (--hard: the working database too)",
            _reset_arguments),
    Command("reflog", cmd_reflog, "where HEAD or a ref has been (reflog show), or expire old entries "
                                  "(reflog expire)", _reflog_arguments),
]
