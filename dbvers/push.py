"""Push: sending a history to a remote (L3).

It finds what the remote lacks from the remote's refs and the local graph
(:func:`dbvers.graph.only_in`, then one cheap existence check per candidate object —
never a listing of the remote), uploads it in parallel, and only then moves each
remote ref by compare-and-swap; the keyframe records of what moved follow. A ref that moved meanwhile,
or a push that would drop the remote's commits, is rejected (``--force-with-lease``
replaces only what the tracking ref says was there). The local tracking refs follow.
``push --delete`` is one compare-and-swap to nothing. The results and what fetch
shares with push (tracking refs, moving a local ref) are :mod:`dbvers.sync`'s.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import config, graph
from .errors import (
    DbversError,
    NoUpstreamError,
    PushRejectedError,
    RefPathConflictError,
    RemoteNotFoundError,
    UnknownRefError,
    UsageError,
)
from .remotes import packs
from .remotes.named import RemoteInfo, connect, default_remote, remote_info
from .remotes.s3 import SMALL as S3_WHOLE
from .storage.base import Head
from .storage.refnames import HEADS, REMOTES, TAGS, validate_name
from .sync import (
    DELETED,
    FAST_FORWARD,
    FORCED,
    NEW,
    REJECTED,
    UP_TO_DATE,
    RefChange,
    Remote,
    SyncResult,
    blame_remote,
    branches_and_tags,
    descends,
    move_ref,
    tracking_ref,
)
from .transfer import Progress, closure, copy_parallel

if TYPE_CHECKING:
    from .repo import Repo


@dataclass
class _Update:
    source: str  # local full ref
    dest: str  # remote full ref
    new: str
    old: str | None = None
    expect: str | None = None
    status: str = ""
    reason: str = ""

    def change(self) -> RefChange:
        return RefChange(self.dest, self.old, self.new, self.status, self.reason, self.source)


def _push_targets(repo: Repo, name: str, branch: str | None, all_branches: bool,
                  tags: bool) -> list[_Update]:
    """Which local refs go to which remote refs (git's defaults: the current branch to its upstream)."""
    heads, local_tags = repo.refs.branches(), repo.refs.tags()
    out: list[_Update] = []
    if all_branches:
        out += [_Update(HEADS + b, HEADS + b, oid) for b, oid in heads.items()]
    if tags:
        out += [_Update(TAGS + t, TAGS + t, oid) for t, oid in local_tags.items()]
    if branch is None and (all_branches or tags):
        return out
    if branch is None:
        branch = repo.current_branch
        if branch is None:
            raise NoUpstreamError("push", "HEAD is detached; name the branch to push "
                                          f"('dbvers push {name} BRANCH')")
    if branch in heads:
        up = config.upstream(repo.config, branch)
        dest = up[1] if up and up[0] == name else branch
        out.append(_Update(HEADS + branch, HEADS + dest, heads[branch]))
    elif branch in local_tags:
        out.append(_Update(TAGS + branch, TAGS + branch, local_tags[branch]))
    else:
        raise UnknownRefError(branch, f"no branch or tag named '{branch}' to push; see 'dbvers branch'")
    return out


def _classify(repo: Repo, name: str, u: _Update, force_with_lease: bool) -> None:
    """Decide what pushing *u* does to the remote ref (its ``old`` already read)."""
    if u.old == u.new:
        u.status = UP_TO_DATE
        return
    u.expect = u.old
    if u.old is not None and u.dest.startswith(TAGS):  # tags are created, never moved (lease or not)
        u.status, u.reason = REJECTED, ("the tag already exists on the remote; fetch it, or push "
                                        "this commit under another tag name")
        return
    if force_with_lease:
        lease = repo.refs.read(tracking_ref(name, u.dest.removeprefix(HEADS))) if u.dest.startswith(HEADS) else u.old
        if lease != u.old:
            u.status, u.reason = REJECTED, "stale info: it moved since you last fetched; fetch first"
        elif u.old is None:
            u.status = NEW
        else:
            u.status = FAST_FORWARD if descends(repo, u.new, u.old) else FORCED
        return
    if u.old is None:
        u.status = NEW
    elif descends(repo, u.new, u.old):
        u.status = FAST_FORWARD
    else:
        u.status, u.reason = REJECTED, ("the remote has commits you don't (non-fast-forward); "
                                        f"pull first ('dbvers pull {name}'), or fetch and merge")


def _pusher(repo: Repo) -> str:
    """Who a remote's reflog says moved its refs."""
    return repo.config.get("user", "name", fallback="") or "dbvers"


def push(repo: Repo, remote: str | None = None, branch: str | None = None, *, all_branches: bool = False,
         tags: bool = False, force_with_lease: bool = False, set_upstream: bool = False,
         progress: Progress | None = None) -> SyncResult:
    """Send the local *branch* (default: the current one; ``all_branches``, ``tags``) to *remote*.

    Raises :class:`PushRejectedError` when any ref was refused (the others are
    pushed); the remote ref moves only after every object it needs is there.
    """
    repo.reload_config()
    name = remote or default_remote(repo)
    info = remote_info(repo, name)
    updates = _push_targets(repo, name, branch, all_branches, tags)
    if set_upstream and not any(u.source.startswith(HEADS) for u in updates):
        raise UsageError("-u makes a branch track the remote's, and this push sends no branch "
                         "(only tags): drop -u, or name the BRANCH")
    tracked = repo.refs.list(f"{REMOTES}{name}/")
    ahead = ThreadPoolExecutor(1, thread_name_prefix="dbvers-check-ahead")
    try:
        _check_ahead(repo, info.url, ahead, [u.new for u in updates], set(tracked.values()))
        return _push(repo, name, _open_for_push(info, name, seen=bool(tracked)), updates, force_with_lease,
                     set_upstream, progress)
    finally:
        ahead.shutdown(wait=False, cancel_futures=True)


def _open_for_push(info: RemoteInfo, name: str, *, seen: bool) -> Remote:
    """The remote, opened. A first push creates it (after probing it). One this store has
    pushed to or fetched from before is never created again: missing, it is an unmounted disk
    or a moved bucket, and a new empty remote there would split the team's history."""
    try:
        return connect(info, create=not seen)
    except RemoteNotFoundError as e:
        if not seen:
            raise
        raise RemoteNotFoundError(e.url, f"is gone: remote '{name}' had branches when you last fetched or "
                                         "pushed; check the path, the mount or the bucket (to start a new "
                                         f"remote there, 'dbvers remote remove {name}' and add it again)") from None


def _push(repo: Repo, name: str, rem: Remote, updates: list[_Update], force_with_lease: bool, set_upstream: bool,
          progress: Progress | None) -> SyncResult:
    """``push`` once the remote is open: classify each update, send, move refs, follow locally."""
    with blame_remote(rem.url):
        branches, remote_tags = branches_and_tags(rem)
    there = {HEADS + b: oid for b, oid in branches.items()} | {TAGS + t: oid for t, oid in remote_tags.items()}
    rem.sweep()  # what earlier pushes killed midway left there
    for u in updates:
        u.old = there.get(u.dest)
        _classify(repo, name, u, force_with_lease)
    moving = [u for u in updates if u.status in (NEW, FAST_FORWARD, FORCED)]
    result = SyncResult("push", name, rem.url)
    if moving:
        haves = set(there.values())
        with ThreadPoolExecutor(2, thread_name_prefix="dbvers-push-prep") as pool:  # beside the upload
            shortcuts = pool.submit(_shortcuts_of, repo, [u.new for u in moving], haves)
            head = pool.submit(rem.refs.head) if any(u.status == NEW and u.dest.startswith(HEADS) for u in moving) else None
            result.objects, result.bytes = _send(repo, rem, [u.new for u in moving], haves, progress)
            _move_refs(rem, name, moving, _pusher(repo))
            _after_refs_moved(rem, moving, shortcuts.result(), head, set(there))
    result.warnings = _after_push(repo, name, updates, set_upstream)
    result.refs = [u.change() for u in updates]
    if result.rejected:
        err = PushRejectedError(rem.url, [(r.ref, r.reason) for r in result.rejected])
        err.result = result  # what was pushed besides
        raise err
    return result


def delete_remote_branch(repo: Repo, remote: str | None, branch: str) -> SyncResult:
    """Delete *branch* on *remote* (``push --delete``), by compare-and-swap against what it held,
    then its remote-tracking branch here. The remote's default branch (its HEAD: what a clone
    checks out) is refused; objects stay (they are immutable; nothing on a remote is collected)."""
    repo.reload_config()
    name = remote or default_remote(repo)
    rem = connect(remote_info(repo, name))  # never creates a remote
    validate_name(branch)
    with blame_remote(rem.url):
        old = rem.refs.read(HEADS + branch)
        default = rem.refs.head().branch
    if old is None:
        raise UnknownRefError(branch, f"remote '{name}' has no branch '{branch}' to delete; "
                                      f"'dbvers fetch {name}' and 'dbvers branch -r' list what it has")
    if branch == default:
        raise UsageError(f"'{branch}' is the default branch of remote '{name}' (the one a clone checks "
                         "out); it is not deleted")
    result = SyncResult("push", name, rem.url)
    who = _pusher(repo)
    if rem.refs.compare_and_swap(HEADS + branch, old, None, message=f"push --delete by {who}"):
        with repo.locked():
            move_ref(repo, tracking_ref(name, branch), None, f"push {name} --delete")
        result.refs.append(RefChange(HEADS + branch, old, None, DELETED, source=HEADS + branch))
        return result
    change = RefChange(HEADS + branch, old, old, REJECTED, "it moved while deleting (someone pushed); fetch first",
                       HEADS + branch)
    result.refs.append(change)
    err = PushRejectedError(rem.url, [(change.ref, change.reason)])
    err.result = result
    raise err


def _send(repo: Repo, rem: Remote, tips: list[str], haves: set[str], progress: Progress | None) -> tuple[int, int]:
    """Upload what the remote lacks of *tips*' history (its keyframe records follow the refs).

    The order of the uploads doesn't matter: no remote ref points to them until the
    compare-and-swap after this returns.
    """
    wanted = _new_objects(repo, graph.only_in(repo.get_commit, tips, haves))
    sizes = {oid: repo.objects.stored_size(oid) for oid in wanted}
    lacking = _missing(rem, wanted, sizes)

    def upload(oid: str) -> int:
        with repo.objects.open_raw(oid) as raw:
            rem.objects.put_raw(oid, raw)
        return sizes[oid]

    sent, nbytes = copy_parallel(upload, lacking, progress=progress, label="pushing",
                                 nbytes=sum(sizes[o] for o in lacking), sizes=sizes)
    return len(sent), nbytes


def _new_objects(repo: Repo, commits: list[str]) -> set[str]:
    """*commits* and what they need that the commits just below them don't: those are on the
    remote with all they need (a remote ref points only to a complete history), so their
    schemas and keyframes are not sent again."""
    below = {p for c in commits for p in repo.get_commit(c).parents} - set(commits)
    return closure(repo, commits) - closure(repo, below)


def _check_ahead(repo: Repo, url: str, pool: ThreadPoolExecutor, tips: list[str], haves: set[str]) -> None:
    """Start verifying, in *pool*, the large objects a push to an S3 remote will most likely
    send (what *tips* have beyond *haves*, the remote-tracking refs), while the push's first
    requests wait on the network: their upload's check then finds it done (``filechecks``)."""
    check = getattr(repo.objects, "check_ahead", None)
    if check is None or not url.startswith("s3://"):
        return

    def run() -> None:
        new = _new_objects(repo, graph.only_in(repo.get_commit, tips, haves))
        for size, oid in sorted(((repo.objects.stored_size(o), o) for o in new), reverse=True):
            if size <= S3_WHOLE:
                return
            with contextlib.suppress(DbversError):  # a damaged one is for its upload to report
                check(oid)
    pool.submit(run)


def _move_refs(rem: Remote, name: str, moving: list[_Update], who: str) -> None:
    """Each remote ref by compare-and-swap, once everything it needs is there; a loser is rejected."""
    for u in moving:
        try:
            moved = rem.refs.compare_and_swap(u.dest, u.expect, u.new, message=f"push by {who}")
        except RefPathConflictError as e:
            fix = (f"delete it there ('dbvers push {name} --delete {e.blocking.removeprefix(HEADS)}') or "
                   if e.blocking.startswith(HEADS) else "")
            u.status, u.reason = REJECTED, f"the remote's {e.blocking} is in the way; {fix}push under another name"
            continue
        if not moved:
            u.status, u.reason = REJECTED, "it moved while pushing (someone else pushed); fetch first"


@dataclass
class _Shortcuts:
    """What lets a fetch skip requests, by the tip that brought it: keyframe records (commit ->
    snapshot) for every snapshot, the ones commits carry too (a clone lists them to start those
    downloads beside its walk), and the tip's pack (``remotes.packs``)."""

    records: dict[str, dict[str, str]]
    packs: dict[str, bytes]


def _shortcuts_of(repo: Repo, tips: list[str], haves: set[str]) -> _Shortcuts:
    """The shortcuts of *tips*, made locally while the objects upload (written once refs moved)."""
    records, packs_ = {}, {}
    for tip in dict.fromkeys(tips):
        commits = graph.only_in(repo.get_commit, [tip], haves)
        records[tip] = {c: snap for c in commits
                        if (snap := repo.get_commit(c).snapshot or repo.refs.keyframe(c)) and repo.objects.has(snap)}
        if pack := _pack_of(repo, tip, commits):
            packs_[tip] = pack
    return _Shortcuts(records, packs_)


def _after_refs_moved(rem: Remote, moving: list[_Update], shortcuts: _Shortcuts, head: Future[Head] | None,
                      there: set[str]) -> None:
    """Write the shortcuts of the tips that landed (a rejected push leaves none for a history no
    branch holds; they are optional, so a kill before this costs a fetch only requests), and
    point the remote's HEAD at a branch it has."""
    landed = [u.new for u in moving if u.status != REJECTED]
    records = {c: s for t in landed for c, s in shortcuts.records[t].items()}
    items = [("record", c) for c in records] + [("pack", t) for t in dict.fromkeys(landed) if t in shortcuts.packs]

    def write(item: tuple[str, str]) -> int:
        kind, oid = item
        if kind == "record":
            rem.refs.set_keyframe(oid, records[oid])
        else:
            rem.write_pack(oid, shortcuts.packs[oid])
        return 0
    copy_parallel(write, items)
    new_branches = [u.dest for u in moving if u.status == NEW and u.dest.startswith(HEADS)]
    if head is not None and new_branches:
        _fix_remote_head(rem, head.result(), new_branches, there)


def _pack_of(repo: Repo, tip: str, commits: list[str]) -> bytes | None:
    """*tip*'s pack: *commits* (what this push brought for it), then the small objects they need
    that the remote's commits below them don't (as ``_send`` chose them); None when empty."""
    if not commits:
        return None
    needed = sorted(_new_objects(repo, commits) - set(commits))
    small = [o for o in [*commits, *needed] if repo.objects.stored_size(o) <= packs.OBJECT_MAX]

    def raw(oid: str) -> bytes:
        with repo.objects.open_raw(oid) as f:
            return f.read(packs.OBJECT_MAX + 1)
    return packs.build((o, raw(o)) for o in small)


def _missing(rem: Remote, oids: set[str], sizes: dict[str, int]) -> set[str]:
    finder = getattr(rem.objects, "missing", None)
    if finder is not None:
        return set(finder(oids, sizes))  # S3: skips the HEAD of small objects (re-sent instead)
    return {o for o in oids if not rem.objects.has(o)}


def _fix_remote_head(rem: Remote, head: Head, pushed: list[str], there: set[str]) -> None:
    """A remote whose HEAD (as read during the upload) names no branch it has (of those listed
    before the push, and the ones it just made) points at the first branch pushed to it."""
    if head.branch is not None and HEADS + head.branch not in there and HEADS + head.branch not in pushed:
        rem.refs.set_head(branch=pushed[0].removeprefix(HEADS), message="push: the default branch")


def _after_push(repo: Repo, name: str, updates: list[_Update], set_upstream: bool) -> list[str]:
    """Tracking refs follow what was pushed; ``-u`` makes the pushed branches track it. What
    can't be done here (a local ref in the way) is a warning: the remote has moved already."""
    warnings: list[str] = []
    with repo.locked():
        for u in updates:
            if not u.dest.startswith(HEADS) or u.status == REJECTED:
                continue
            track = tracking_ref(name, u.dest.removeprefix(HEADS))
            try:
                move_ref(repo, track, u.new, f"push {name}")
            except RefPathConflictError as e:
                warnings.append(f"pushed, but {track} can't be set here: {e.blocking} is in the way "
                                f"('dbvers fetch --prune {name}' drops branches the remote deleted)")
                continue  # no upstream to a tracking branch that isn't there
            if set_upstream and u.source.startswith(HEADS):
                src, dest = u.source.removeprefix(HEADS), u.dest.removeprefix(HEADS)
                config.edit_config(repo.store_dir, lambda cfg, s=src, d=dest: config.set_upstream(cfg, s, name, d))
        repo.reload_config()
    return warnings
