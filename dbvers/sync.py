"""Fetch and pull, and what push (:mod:`dbvers.push`) shares with them: history between the
local store and a remote (L3).

A remote is an object store and a ref store (``dbvers.remotes``); these are
transfers between two such pairs, in the order that keeps both sides valid when a
process dies at any instant:

* **push** (:mod:`dbvers.push`) uploads what the remote lacks, then moves each
  remote ref by compare-and-swap; the local tracking refs follow.
* **fetch** brings what the local store lacks (:mod:`dbvers.receive`: the walk down
  the remote's history, the downloads, each verified against its id as it is stored,
  then the commits, parents first and after everything they need — so a commit in
  the store always has its whole history) and then moves the remote-tracking refs
  ``refs/remotes/<remote>/<branch>``.
* **pull** is fetch, then a merge (a fast-forward when it can) of the upstream.

No lock is held while the network is in use: objects are immutable and every ref
moves by compare-and-swap, so a commit in another process goes on meanwhile. A fetch
moves its refs under the lock, after checking there that what it relied on is still
whole (a gc runs under the same lock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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
    RefConflictError,
    RefPathConflictError,
    RemoteDamagedError,
)
from .receive import Prefetch, complete, receive
from .remotes.directory import DirectoryRemote
from .remotes.named import connect, default_remote, remote_info
from .remotes.s3 import S3Remote
from .storage.refnames import HEADS, REMOTES, TAGS
from .transfer import Progress

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


# -- what push and fetch share ---------------------------------------------------------------------

def tracking_ref(remote: str, branch: str) -> str:
    return f"{REMOTES}{remote}/{branch}"


def descends(repo: Repo, new: str, old: str) -> bool:
    return repo.objects.has(old) and graph.is_ancestor(repo.get_commit, old, new)


def move_ref(repo: Repo, ref: str, new: str | None, why: str) -> tuple[str | None, str | None]:
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


def fetch(repo: Repo, remote: str | None = None, *, prune: bool = False, progress: Progress | None = None,
          checkout: Callable[[dict[str, str]], str | None] | None = None,
          backend: Remote | None = None) -> SyncResult:
    """Download what the local store lacks of *remote*'s branches and tags, then move the
    remote-tracking refs (and create the tags the local store doesn't have).

    *checkout* (a clone's): given the remote's branches, the commit about to be checked out;
    the snapshot its state starts from is decoded once, as it is fetched, and kept for that
    rebuild (``States.unpacking``) rather than decoded again from the store. *backend*: the
    remote, already opened (a clone's: its marker is not read twice).
    """
    name = remote or default_remote(repo)
    rem = backend if backend is not None else connect(remote_info(repo, name))
    with Prefetch(repo, rem) if checkout is not None else contextlib.nullcontext() as prefetch:
        return _fetch(repo, rem, SyncResult("fetch", name, rem.url), prune, progress, checkout, prefetch)


def _fetch(repo: Repo, rem: Remote, result: SyncResult, prune: bool, progress: Progress | None,
           checkout: Callable[[dict[str, str]], str | None] | None, prefetch: Prefetch | None) -> SyncResult:
    with blame_remote(rem.url):
        heads, tags = branches_and_tags(rem)
    tips = set(heads.values()) | set(tags.values())
    checkout_tip = checkout(heads) if checkout is not None else None
    walk_from, relied_on = tips, set[str]()
    name = result.remote
    for _ in range(3):
        # Only remote reads and the verified writes of what they brought happen in here, unlocked.
        with blame_remote(rem.url):
            got = receive(repo, rem, walk_from, progress, checkout_tip, prefetch)
            prefetch = None  # a retry (after a gc) fetches what it needs as any fetch does
        result.objects, result.bytes = result.objects + got.objects, result.bytes + got.nbytes
        relied_on |= got.boundary
        with repo.locked():
            # A gc (under this lock) may have removed an old unreachable history the walk found
            # here and stopped at, a tip or a parent of what it brought; what gc keeps it keeps
            # whole. Checked where no gc can run, the refs then move in the same hold.
            gone = {c for c in relied_on if not complete(repo, c)}
            if not gone:
                _move_fetched(repo, name, heads, tags, prune, result)
                return result
        walk_from, relied_on = gone, relied_on - gone  # fetched again, from the remote
    raise FetchInterruptedError(rem.url)


def branches_and_tags(rem: Remote) -> tuple[dict[str, str], dict[str, str]]:
    """The remote's branches and tags (name -> commit), both listed at once: one round trip."""
    with ThreadPoolExecutor(2, thread_name_prefix="dbvers-refs") as pool:
        tags = pool.submit(rem.refs.list, TAGS)
        return rem.refs.list(HEADS), tags.result()


def _move_fetched(repo: Repo, name: str, heads: dict[str, str], tags: dict[str, str], prune: bool,
                  result: SyncResult) -> None:
    """The tracking refs (pruned first) and new tags of a fetch whose objects are all here."""
    why = f"fetch {name}"
    if prune:  # first: a pruned origin/a/b must not stand in the way of a new origin/a
        for b in sorted(set(repo.refs.list(f"{REMOTES}{name}/")) - set(heads)):
            old, _ = move_ref(repo, tracking_ref(name, b), None, why)
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
    old, _ = move_ref(repo, ref, oid, why)
    if old == oid:
        status = UP_TO_DATE
    elif old is None:
        status = NEW
    else:
        status = FAST_FORWARD if descends(repo, oid, old) else FORCED
    return RefChange(ref, old, oid, status, source=source)


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
