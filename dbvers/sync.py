"""Push, fetch and pull: history between the local store and a remote (L3).

A remote is an object store and a ref store (``dbvers.remotes``); these are
transfers between two such pairs, in the order that keeps both sides valid when a
process dies at any instant:

* **push** finds what the remote lacks from the remote's refs and the local graph
  (:func:`dbvers.graph.only_in`, then one cheap existence check per candidate
  object — never a listing of the remote), uploads it in parallel, writes the
  keyframe records, and only then moves each remote ref by compare-and-swap. A
  ref that moved meanwhile, or a push that would drop the remote's commits, is
  rejected (``--force-with-lease`` replaces only what the tracking ref says was
  there). The local tracking refs follow.
* **fetch** walks the remote's history down to the first commits the local store
  holds, downloads the missing objects (each verified against its id as it is
  stored), stores the commits parents first and after everything they need — so
  a commit in the store always has its whole history — and then moves the
  remote-tracking refs ``refs/remotes/<remote>/<branch>``.
* **pull** is fetch, then a merge (a fast-forward when it can) of the upstream.

No lock is held while the network is in use: objects are immutable and every ref
moves by compare-and-swap, so a commit in another process goes on meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import config, graph, merge
from .errors import (
    CorruptObjectError,
    DamagedRefError,
    DbversError,
    FetchInterruptedError,
    MissingObjectError,
    NoUpstreamError,
    PushRejectedError,
    RefConflictError,
    RefPathConflictError,
    RemoteDamagedError,
    RemoteNotFoundError,
    UnknownRefError,
    UsageError,
)
from .objects import Commit
from .remotes.directory import DirectoryRemote
from .remotes.named import connect, default_remote, remote_info
from .remotes.s3 import S3Remote
from .storage.refnames import HEADS, REMOTES, TAGS, validate_name
from .transfer import WORKERS, NoProgress, Progress, closure, copy_parallel

if TYPE_CHECKING:
    from .merge import MergeResult
    from .repo import Repo

Remote = DirectoryRemote | S3Remote

NEW, FAST_FORWARD, FORCED, UP_TO_DATE, REJECTED, DELETED = (
    "new", "fast-forward", "forced", "up to date", "rejected", "deleted")


@dataclass(frozen=True)
class RefChange:
    """One ref a push or fetch looked at: *ref* is its full name where it moves."""

    ref: str
    old: str | None
    new: str | None
    status: str  # NEW, FAST_FORWARD, FORCED, UP_TO_DATE, REJECTED or DELETED
    reason: str = ""
    source: str = ""  # the ref it came from (the local branch of a push, the remote's of a fetch)

    def line(self) -> str:
        name = self.ref.removeprefix(HEADS).removeprefix(TAGS).removeprefix(REMOTES)
        src = self.source.removeprefix(HEADS).removeprefix(TAGS) or name
        arrow = f"{src} -> {name}"
        if self.status == NEW:
            kind = "tag" if self.ref.startswith(TAGS) else "branch"
            return f" * {f'[new {kind}]':<18}{arrow}"
        if self.status in (FAST_FORWARD, FORCED):
            sep = ".." if self.status == FAST_FORWARD else "..."
            mark = " " if self.status == FAST_FORWARD else "+"
            span = f"{(self.old or '')[:7]}{sep}{(self.new or '')[:7]}"
            return f" {mark} {span:<18}{arrow}" + ("  (forced update)" if self.status == FORCED else "")
        if self.status == DELETED:
            return f" - {'[deleted]':<18}{name}"
        if self.status == UP_TO_DATE:
            return f" = {'[up to date]':<18}{arrow}"
        return f" ! {'[rejected]':<18}{arrow} ({self.reason})"


@dataclass
class SyncResult:
    """What a push or fetch did: the refs it looked at, and the objects it copied."""

    action: str  # "push" or "fetch"
    remote: str
    url: str
    refs: list[RefChange] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)  # what went wrong here after the remote moved

    @property
    def rejected(self) -> list[RefChange]:
        return [r for r in self.refs if r.status == REJECTED]

    @property
    def changed(self) -> list[RefChange]:
        return [r for r in self.refs if r.status not in (UP_TO_DATE, REJECTED)]

    def __str__(self) -> str:
        head = f"{'To' if self.action == 'push' else 'From'} {self.url}"
        shown = [r.line() for r in self.refs if r.status != UP_TO_DATE or self.action == "push"]
        if not shown:
            return f"{head}\n   everything up to date"
        return "\n".join([head, *shown])

    def __repr__(self) -> str:
        return (f"<SyncResult {self.action} {self.remote}: {len(self.changed)} refs moved, "
                f"{len(self.rejected)} rejected, {self.objects} objects>")


@dataclass
class PullResult:
    fetch: SyncResult
    merge: MergeResult

    def __repr__(self) -> str:
        return f"<PullResult {self.fetch!r} {self.merge!r}>"


# -- push ------------------------------------------------------------------------------------------

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


def tracking_ref(remote: str, branch: str) -> str:
    return f"{REMOTES}{remote}/{branch}"


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
            u.status = FAST_FORWARD if _descends(repo, u.new, u.old) else FORCED
        return
    if u.old is None:
        u.status = NEW
    elif _descends(repo, u.new, u.old):
        u.status = FAST_FORWARD
    else:
        u.status, u.reason = REJECTED, ("the remote has commits you don't (non-fast-forward); "
                                        f"pull first ('dbvers pull {name}'), or fetch and merge")


def _pusher(repo: Repo) -> str:
    """Who a remote's reflog says moved its refs."""
    return repo.config.get("user", "name", fallback="") or "dbvers"


def _descends(repo: Repo, new: str, old: str) -> bool:
    return repo.objects.has(old) and graph.is_ancestor(repo.get_commit, old, new)


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
    # A first push creates the remote (after probing it). One this store has pushed to or
    # fetched from before is never created again: missing, it is an unmounted disk or a
    # moved bucket, and a new empty remote there would split the team's history.
    seen = bool(repo.refs.list(f"{REMOTES}{name}/"))
    try:
        rem = connect(info, create=not seen)
    except RemoteNotFoundError as e:
        if not seen:
            raise
        raise RemoteNotFoundError(e.url, f"is gone: remote '{name}' had branches when you last fetched or "
                                         "pushed; check the path, the mount or the bucket (to start a new "
                                         f"remote there, 'dbvers remote remove {name}' and add it again)") from None
    with blame_remote(rem.url):
        there = {HEADS + b: oid for b, oid in rem.refs.list(HEADS).items()}
        there.update({TAGS + t: oid for t, oid in rem.refs.list(TAGS).items()})
    rem.sweep()  # what earlier pushes killed midway left there
    for u in updates:
        u.old = there.get(u.dest)
        _classify(repo, name, u, force_with_lease)
    moving = [u for u in updates if u.status in (NEW, FAST_FORWARD, FORCED)]
    result = SyncResult("push", name, rem.url)
    if moving:
        result.objects, result.bytes = _send(repo, rem, [u.new for u in moving], set(there.values()), progress)
        who = _pusher(repo)
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
        # Only a new branch can be the first one a remote gets (2 round trips saved on every other push).
        _fix_remote_head(rem, [u.dest for u in moving if u.status == NEW and u.dest.startswith(HEADS)])
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
            _move_ref(repo, tracking_ref(name, branch), None, f"push {name} --delete")
        result.refs.append(RefChange(HEADS + branch, old, None, DELETED, source=HEADS + branch))
        return result
    change = RefChange(HEADS + branch, old, old, REJECTED, "it moved while deleting (someone pushed); fetch first",
                       HEADS + branch)
    result.refs.append(change)
    err = PushRejectedError(rem.url, [(change.ref, change.reason)])
    err.result = result
    raise err


def _send(repo: Repo, rem: Remote, tips: list[str], haves: set[str], progress: Progress | None) -> tuple[int, int]:
    """Upload what the remote lacks of *tips*' history, then its keyframe records.

    The order of the uploads doesn't matter: no remote ref points to them until the
    compare-and-swap after this returns.
    """
    commits = graph.only_in(repo.get_commit, tips, haves)
    # The commits just below the new ones are on the remote with all they need (a remote ref
    # points only to a complete history): their schemas and keyframes are not sent again.
    below = {p for c in commits for p in repo.get_commit(c).parents} - set(commits)
    wanted = closure(repo, commits) - closure(repo, below)
    sizes = {oid: repo.objects.stored_size(oid) for oid in wanted}
    lacking = _missing(rem, wanted, sizes)

    def upload(oid: str) -> int:
        with repo.objects.open_raw(oid) as raw:
            rem.objects.put_raw(oid, raw)
        return sizes[oid]

    sent, nbytes = copy_parallel(upload, lacking, progress=progress, label="pushing",
                                 nbytes=sum(sizes[o] for o in lacking), sizes=sizes)
    for c in commits:
        snap = repo.refs.keyframe(c)
        if snap and repo.get_commit(c).snapshot is None and repo.objects.has(snap):
            rem.refs.set_keyframe(c, snap)  # the snapshot went with the closure (or was there)
    return len(sent), nbytes


def _missing(rem: Remote, oids: set[str], sizes: dict[str, int]) -> set[str]:
    finder = getattr(rem.objects, "missing", None)
    if finder is not None:
        return set(finder(oids, sizes))  # S3: skips the HEAD of small objects (re-sent instead)
    return {o for o in oids if not rem.objects.has(o)}


def _fix_remote_head(rem: Remote, pushed: list[str]) -> None:
    """A remote whose HEAD names no branch it has points at the first branch pushed to it."""
    if not pushed:
        return
    head = rem.refs.head()
    if head.branch is not None and rem.refs.read(HEADS + head.branch) is None:
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
                _move_ref(repo, track, u.new, f"push {name}")
            except RefPathConflictError as e:
                warnings.append(f"pushed, but {track} can't be set here: {e.blocking} is in the way "
                                f"('dbvers fetch --prune {name}' drops branches the remote deleted)")
                continue  # no upstream to a tracking branch that isn't there
            if set_upstream and u.source.startswith(HEADS):
                src, dest = u.source.removeprefix(HEADS), u.dest.removeprefix(HEADS)
                config.edit_config(repo.store_dir, lambda cfg, s=src, d=dest: config.set_upstream(cfg, s, name, d))
        repo.reload_config()
    return warnings


def _move_ref(repo: Repo, ref: str, new: str | None, why: str) -> tuple[str | None, str | None]:
    """Set (or with *new* None, delete) a local ref whatever it held; returns (old, new)."""
    for _ in range(20):
        old = repo.refs.read(ref)
        if old == new:
            return old, new
        if repo.refs.compare_and_swap(ref, old, new, message=why):
            return old, new
    raise RefConflictError(ref)


# -- fetch -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def blame_remote(url: str) -> Iterator[None]:
    """Damage found in what is read from the remote at *url* is the remote's, said so (the
    errors' own advice, run fsck here, would point at the local store, which is fine)."""
    try:
        yield
    except DamagedRefError as e:
        raise RemoteDamagedError(url, f"its {e.ref} {e.detail}") from None
    except MissingObjectError as e:
        raise RemoteDamagedError(url, f"object {e.object_id[:12]}, which its history needs, is missing") from None
    except CorruptObjectError as e:
        raise RemoteDamagedError(url, f"object {e.object_id[:12]} is corrupt ({e.detail})") from None


def fetch(repo: Repo, remote: str | None = None, *, prune: bool = False,
          progress: Progress | None = None) -> SyncResult:
    """Download what the local store lacks of *remote*'s branches and tags, then move the
    remote-tracking refs (and create the tags the local store doesn't have)."""
    name = remote or default_remote(repo)
    rem = connect(remote_info(repo, name))
    result = SyncResult("fetch", name, rem.url)
    with blame_remote(rem.url):
        heads, tags = rem.refs.list(HEADS), rem.refs.list(TAGS)
    tips = set(heads.values()) | set(tags.values())
    walk_from, relied_on = tips, set[str]()
    for _ in range(3):
        # Only remote reads and the verified writes of what they brought happen in here, unlocked.
        with blame_remote(rem.url):
            objects, nbytes, boundary = _receive(repo, rem, walk_from, progress)
        result.objects, result.bytes = result.objects + objects, result.bytes + nbytes
        relied_on |= boundary
        with repo.locked():
            # A gc (under this lock) may have removed an old unreachable history the walk found
            # here and stopped at, a tip or a parent of what it brought; what gc keeps it keeps
            # whole. Checked where no gc can run, the refs then move in the same hold.
            gone = {c for c in relied_on if not _complete(repo, c)}
            if not gone:
                _move_fetched(repo, name, heads, tags, prune, result)
                return result
        walk_from, relied_on = gone, relied_on - gone  # fetched again, from the remote
    raise FetchInterruptedError(rem.url)


def _move_fetched(repo: Repo, name: str, heads: dict[str, str], tags: dict[str, str], prune: bool,
                  result: SyncResult) -> None:
    """The tracking refs (pruned first) and new tags of a fetch whose objects are all here."""
    why = f"fetch {name}"
    if prune:  # first: a pruned origin/a/b must not stand in the way of a new origin/a
        for b in sorted(set(repo.refs.list(f"{REMOTES}{name}/")) - set(heads)):
            old, _ = _move_ref(repo, tracking_ref(name, b), None, why)
            result.refs.append(RefChange(tracking_ref(name, b), old, None, DELETED))
    for b, oid in sorted(heads.items()):
        try:
            result.refs.append(_track(repo, tracking_ref(name, b), oid, why, HEADS + b))
        except RefPathConflictError as e:  # the others still move; this one says how to clear the way
            result.refs.append(RefChange(tracking_ref(name, b), repo.refs.read(tracking_ref(name, b)), oid,
                                         REJECTED, f"{e.blocking} is in the way; 'dbvers fetch --prune "
                                         f"{name}' drops branches the remote deleted", HEADS + b))
    for t, oid in sorted(tags.items()):
        local = repo.refs.read(TAGS + t)
        try:
            created = local is None and repo.refs.compare_and_swap(TAGS + t, None, oid, message=why)
        except RefPathConflictError as e:
            result.refs.append(RefChange(TAGS + t, None, oid, REJECTED, f"your {e.blocking} is in the way",
                                         TAGS + t))
            continue
        if created:
            result.refs.append(RefChange(TAGS + t, None, oid, NEW, source=TAGS + t))
        elif local not in (None, oid):
            result.refs.append(RefChange(TAGS + t, local, oid, REJECTED, "would clobber your tag", TAGS + t))


def _track(repo: Repo, ref: str, oid: str, why: str, source: str) -> RefChange:
    old, _ = _move_ref(repo, ref, oid, why)
    if old == oid:
        status = UP_TO_DATE
    elif old is None:
        status = NEW
    else:
        status = FAST_FORWARD if _descends(repo, oid, old) else FORCED
    return RefChange(ref, old, oid, status, source=source)


def _complete(repo: Repo, oid: str) -> bool:
    """The local store holds *oid* with what it needs (so, by the storing order, its whole history)."""
    if not repo.objects.has(oid):
        return False
    try:
        return all(repo.objects.has(o) for o, _ in repo.get_commit(oid).typed_references())
    except DbversError:  # an unreadable local commit is fetched again
        return False


def _remote_commits(repo: Repo, rem: Remote, tips: Iterable[str]) -> dict[str, tuple[Commit, bytes]]:
    """The remote's commits (parsed, and their bodies) that *tips* reach down to the first
    ones the local store holds, read a generation at a time in parallel (a round trip per
    generation, not per commit). Each read verifies the commit against its id."""
    found: dict[str, tuple[Commit, bytes]] = {}

    def read(oid: str) -> tuple[Commit, bytes]:
        body = rem.objects.get(oid, "commit")
        try:
            return Commit.from_bytes(body), body
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptObjectError(oid, f"not a commit: {str(e)[:80]}") from None

    frontier = {t for t in tips if not _complete(repo, t)}
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="dbvers-walk") as pool:
        while frontier:
            batch = sorted(frontier)
            found.update(zip(batch, pool.map(read, batch), strict=True))
            frontier = {p for oid in batch for p in found[oid][0].parents
                        if p not in found and not _complete(repo, p)}
    return found


class _ThenCommits:
    """The downloads' progress, counting the commits stored after them too (their bodies came
    with the walk), so the bar ends at the count the summary gives."""

    def __init__(self, inner: Progress, commits: int) -> None:
        self.inner, self.commits = inner, commits

    def start(self, label: str, objects: int, nbytes: int) -> None:
        self.inner.start(label, objects + self.commits, nbytes)

    def advance(self, nbytes: int) -> None:
        self.inner.advance(nbytes)

    def finish(self) -> None:
        pass  # the downloads are done; the commits follow (the caller finishes)


def _receive(repo: Repo, rem: Remote, tips: set[str], progress: Progress | None) -> tuple[int, int, set[str]]:
    """Store what the local store lacks of *tips*' history: objects first, then the commits,
    parents first, then their keyframe records. Returns (objects, stored bytes) received and
    the boundary: the commits already here that the walk stopped at (what it relied on)."""
    new = _remote_commits(repo, rem, tips)
    boundary = {t for t in tips if t not in new} | {p for c, _ in new.values() for p in c.parents if p not in new}
    if not new:
        return 0, 0, boundary
    commits = {oid: c for oid, (c, _) in new.items()}
    records = {c: s for c, s in rem.refs.keyframes(among=new).items() if s and commits[c].snapshot is None}
    wanted = {o for c in commits.values() for o, _ in c.typed_references()} | set(records.values())
    lacking = {o for o in wanted if not repo.objects.has(o)}

    def download(oid: str) -> int:
        with rem.objects.open_raw(oid) as raw:
            repo.objects.put_raw(oid, raw)  # verified against its id before it is published
        return repo.objects.stored_size(oid)

    to_store = [oid for oid in graph.parents_first(commits) if not repo.objects.has(oid)]
    shown = _ThenCommits(progress or NoProgress(), len(to_store))
    try:
        sent, nbytes = copy_parallel(download, lacking, progress=shown, label="fetching")
        for oid in to_store:
            if repo.objects.put_bytes("commit", new[oid][1]) != oid:  # pragma: no cover - get() verified it
                raise CorruptObjectError(oid, "re-encoded to another id")
            size = repo.objects.stored_size(oid)
            nbytes += size
            shown.advance(size)
    finally:
        shown.inner.finish()
    stored = len(to_store)
    for c, snap in records.items():
        if repo.objects.has(snap):
            repo.refs.set_keyframe(c, snap)
    return len(sent) + stored, nbytes, boundary


def fetch_all(repo: Repo, *, prune: bool = False, progress: Progress | None = None) -> list[SyncResult]:
    return [fetch(repo, name, prune=prune, progress=progress) for name in config.remote_names(repo.config)]


def upstream_state(repo: Repo) -> tuple[str | None, bool, int, int]:
    """(the current branch's upstream as ``origin/main``, whether its tracking branch is gone,
    ahead, behind), from the local tracking ref (as of the last fetch or push: status never
    touches the network)."""
    branch, head = repo.current_branch, repo.head.commit
    repo.reload_config()
    up = config.upstream(repo.config, branch) if branch else None
    if up is None or head is None:
        return None, False, 0, 0
    name = f"{up[0]}/{up[1]}"
    there = repo.refs.read(tracking_ref(*up))
    if there is None:
        return name, True, 0, 0
    try:
        ahead, behind = graph.ahead_behind(repo.get_commit, head, there)
    except DbversError:  # a tracking ref to a commit the store lacks: nothing to compare
        return name, False, 0, 0
    return name, False, ahead, behind


# -- pull ------------------------------------------------------------------------------------------

def pull(repo: Repo, remote: str | None = None, branch: str | None = None, *, message: str | None = None,
         progress: Progress | None = None) -> PullResult:
    """Fetch *remote*, then merge its *branch* (default: the current branch's upstream) into HEAD."""
    current = repo.current_branch
    if current is None:
        raise NoUpstreamError("pull", "HEAD is detached; check out a branch first")
    repo.reload_config()
    up = config.upstream(repo.config, current)
    name = remote or (up[0] if up else default_remote(repo))
    theirs = branch or (up[1] if up and up[0] == name else current)
    with repo.locked(write=False):  # refused before anything is fetched, in pull's own words
        merge.refuse_busy(repo, "pull")
    fetched = fetch(repo, name, progress=progress)
    ref = tracking_ref(name, theirs)
    for r in fetched.rejected:
        if r.ref == ref:  # merging what the tracking branch held before would be a stale pull
            raise NoUpstreamError("pull", f"the remote's branch '{theirs}' could not be fetched here ({r.reason})")
    if repo.refs.read(ref) is None:
        raise NoUpstreamError("pull", f"remote '{name}' has no branch '{theirs}'; "
                                      f"name one ('dbvers pull {name} BRANCH') or push it first")
    merged = repo.merge(ref, message=message or f"Merge branch '{theirs}' of {fetched.url} into {current}")
    return PullResult(fetched, merged)
