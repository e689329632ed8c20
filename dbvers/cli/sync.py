"""``dbvers remote``, ``push``, ``fetch``, ``pull`` and ``clone`` (layer L5): sharing a history.

git's habits: ``remote`` alone lists the remotes (``-v`` with their URLs), REMOTE
defaults to the branch's upstream or ``origin``, BRANCH to the current one. A
progress bar (bytes, objects, rate) shows on a terminal, nothing when piped. A
rejected push prints what it did and exits 2 with one line saying to pull.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import FetchRejectedError, PushRejectedError, UsageError
from ..formats import human_size
from ..frontend import console, progress_bar, warn
from .common import Command, Handler, Parser, add_location, open_repo
from .merging import say_result


def _print_result(res: Any) -> None:
    con = console()
    con.print(str(res), markup=False, highlight=False)
    if res.objects:
        con.print(f"{res.objects} objects, {human_size(res.bytes)}", markup=False, highlight=False)
    for w in res.warnings:
        warn(w)


# -- remote -------------------------------------------------------------------------------------

def _no_verbose(args: argparse.Namespace) -> None:
    if args.verbose:
        raise UsageError(f"-v lists the remotes with their URLs; 'remote {args.remote_action}' takes no -v")


def cmd_remote(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    con = console()
    for info in repo.remotes():
        if args.verbose:
            opts = "".join(f" --{k.replace('_', '-')} {v}" for k, v in sorted(info.options.items()))
            con.print(f"{info.name}\t{info.url}{opts}", markup=False, highlight=False)
        else:
            con.print(info.name, markup=False, highlight=False)
    return 0


def cmd_remote_add(args: argparse.Namespace) -> int:
    _no_verbose(args)
    info = open_repo(args).remote_add(args.name, args.url, endpoint_url=args.endpoint_url,
                                      region=args.region, profile=args.profile)
    console().print(f"Added remote {info.name} ({info.url})", markup=False, highlight=False)
    return 0


def cmd_remote_remove(args: argparse.Namespace) -> int:
    _no_verbose(args)
    info = open_repo(args).remote_remove(args.name)
    console().print(f"Removed remote {info.name} ({info.url})", markup=False, highlight=False)
    return 0


def cmd_remote_rename(args: argparse.Namespace) -> int:
    _no_verbose(args)
    info = open_repo(args).remote_rename(args.old, args.new)
    console().print(f"Renamed remote {args.old} to {info.name}", markup=False, highlight=False)
    return 0


# -- push, fetch, pull, clone -------------------------------------------------------------------

def cmd_push(args: argparse.Namespace) -> int:
    if args.all and args.branch:
        raise UsageError("push --all sends every branch: drop BRANCH, or drop --all")
    repo = open_repo(args)
    names = {r.name for r in repo.remotes()}
    if args.delete in names and args.remote is not None and args.remote not in names and args.branch is None:
        args.delete, args.remote = args.remote, args.delete  # git's order: push -d REMOTE BRANCH
    if args.delete is not None and args.branch is not None:
        raise UsageError("push --delete BRANCH names the branch to delete: drop the other BRANCH")
    try:
        res = repo.push(args.remote, args.delete or args.branch, all=args.all, tags=args.tags,
                        force_with_lease=args.force_with_lease, set_upstream=args.set_upstream,
                        delete=args.delete is not None, progress=progress_bar())
    except PushRejectedError as e:
        if e.result is not None:
            _print_result(e.result)
        raise
    _print_result(res)
    if args.set_upstream:
        for r in res.refs:
            if r.source.startswith("refs/heads/"):
                console().print(f"branch '{r.source[11:]}' set up to track '{res.remote}/{r.ref[11:]}'",
                                markup=False, highlight=False)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    if args.all:
        if args.remote:
            raise UsageError("fetch --all fetches every remote: drop REMOTE, or drop --all")
        results = repo.fetch_all(prune=args.prune, progress=progress_bar())
    else:
        results = [repo.fetch(args.remote, prune=args.prune, progress=progress_bar())]
    for res in results:
        _print_result(res)
    for res in results:  # the rest moved; a ref that didn't is not a success (git exits 1 too)
        if res.rejected:
            raise FetchRejectedError(res.url, [(r.ref, r.reason) for r in res.rejected])
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    res = repo.pull(args.remote, args.branch, message=args.message, progress=progress_bar())
    if res.fetch.changed or res.fetch.objects:
        _print_result(res.fetch)
    return say_result(repo, res.merge, "merge")


def cmd_clone(args: argparse.Namespace) -> int:
    from ..clone import clone

    if args.db is not None:
        raise UsageError("clone makes a new database: name it as DB_PATH ('dbvers clone URL DB_PATH'), not --db")

    repo = clone(args.url, args.db_path, endpoint_url=args.endpoint_url, region=args.region,
                 profile=args.profile, branch=args.branch, store=args.store, progress=progress_bar())
    head = repo.head
    console().print(f"Cloned {args.url} into {repo.path} (branch {head.branch}, {(head.commit or '')[:10]})",
                    markup=False, highlight=False)
    return 0


# -- arguments ----------------------------------------------------------------------------------

def _s3_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--endpoint-url", metavar="URL", help="an S3-compatible endpoint (MinIO, R2, Ceph)")
    sp.add_argument("--region", metavar="R", help="the bucket's region")
    sp.add_argument("--profile", metavar="P", help="the AWS profile whose credentials to use")


def _remote_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-v", "--verbose", action="store_true", help="show each remote's URL and options")
    actions = sp.add_subparsers(dest="remote_action", metavar="[ACTION]", parser_class=Parser)

    def action(name: str, fn: Handler, help_: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        ap = actions.add_parser(name, help=help_, description=help_, aliases=list(aliases))
        ap.set_defaults(func=fn)
        add_location(ap)
        return ap

    ap = action("add", cmd_remote_add, "add a remote: s3://bucket/prefix, a directory or file:///path")
    ap.add_argument("name", metavar="NAME")
    ap.add_argument("url", metavar="URL")
    _s3_options(ap)
    ap = action("remove", cmd_remote_remove, "forget a remote and its remote-tracking branches", ("rm",))
    ap.add_argument("name", metavar="NAME")
    ap = action("rename", cmd_remote_rename, "rename a remote and its remote-tracking branches")
    ap.add_argument("old", metavar="OLD")
    ap.add_argument("new", metavar="NEW")


def _push_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("remote", nargs="?", metavar="REMOTE", help="default: the branch's upstream, or origin")
    sp.add_argument("branch", nargs="?", metavar="BRANCH", help="a branch or a tag (default: the current branch)")
    sp.add_argument("--all", action="store_true", help="push every branch")
    sp.add_argument("--tags", action="store_true", help="push every tag")
    sp.add_argument("-d", "--delete", metavar="BRANCH",
                    help="delete BRANCH on the remote (and its remote-tracking branch here)")
    sp.add_argument("--force-with-lease", action="store_true",
                    help="replace the remote branch, but only if it is where your last fetch or push saw it")
    sp.add_argument("-u", "--set-upstream", action="store_true",
                    help="make the branch track the remote's (status shows ahead/behind, pull needs no names)")


def _fetch_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("remote", nargs="?", metavar="REMOTE", help="default: the branch's upstream, or origin")
    sp.add_argument("--all", action="store_true", help="fetch every remote")
    sp.add_argument("--prune", action="store_true", help="drop remote-tracking branches the remote deleted")


def _pull_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("remote", nargs="?", metavar="REMOTE", help="default: the branch's upstream, or origin")
    sp.add_argument("branch", nargs="?", metavar="BRANCH", help="default: the branch's upstream branch")
    sp.add_argument("-m", "--message", metavar="MSG", help="the merge commit's message")


def _clone_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("url", metavar="URL", help="s3://bucket/prefix, a directory or file:///path")
    sp.add_argument("db_path", nargs="?", metavar="DB_PATH",
                    help="the new database file (default: named after the URL, in this directory)")
    sp.add_argument("-b", "--branch", metavar="B", help="check out B (default: the remote's HEAD branch)")
    _s3_options(sp)


COMMANDS = [
    Command("remote", cmd_remote, "list remotes (-v: with URLs), or add, remove or rename one", _remote_arguments),
    Command("push", cmd_push, "send a branch's commits to a remote (fast-forward only, unless "
                              "--force-with-lease)", _push_arguments),
    Command("fetch", cmd_fetch, "download a remote's new commits into remote-tracking branches", _fetch_arguments),
    Command("pull", cmd_pull, "fetch, then merge the upstream into the current branch", _pull_arguments),
    Command("clone", cmd_clone, "make a new database and store from a remote", _clone_arguments),
]
