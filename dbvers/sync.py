"""Fetch and pull, and what push (:mod:`dbvers.push`) shares with them: history between the
local store and a remote (L3).

A remote is an object store and a ref store (``dbvers.remotes``); these are
transfers between two such pairs, in the order that keeps both sides valid when a
process dies at any instant:

* **push** (:mod:`dbvers.push`) uploads what the remote lacks, then moves each
  remote ref by compare-and-swap; the local tracking refs follow.
* **fetch** walks the remote's history down to the first commits the local store
  holds, downloads the missing objects (each verified against its id as it is
  stored), stores the commits parents first and after everything they need — so
  a commit in the store always has its whole history — and then moves the
  remote-tracking refs ``refs/remotes/<remote>/<branch>``.
* **pull** is fetch, then a merge (a fast-forward when it can) of the upstream.

No lock is held while the network is in use: objects are immutable and every ref
moves by compare-and-swap, so a commit in another process goes on meanwhile. A fetch
moves its refs under the lock, after checking there that what it relied on is still
whole (a gc runs under the same lock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
from .formats import is_id
from .objects import Commit
from .remotes.directory import DirectoryRemote
from .remotes.named import connect, default_remote, remote_info
from .remotes.s3 import S3Remote
from .storage.refnames import HEADS, REMOTES, TAGS
from .transfer import WORKERS, NoProgress, Progress, copy_parallel

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
          unpack_for: Callable[[dict[str, str]], str | None] | None = None) -> SyncResult:
    """Download what the local store lacks of *remote*'s branches and tags, then move the
    remote-tracking refs (and create the tags the local store doesn't have).

    *unpack_for* (a clone's): given the remote's branches, the commit about to be checked
    out; the snapshot its state starts from is decoded once, as it is fetched, and kept for
    that rebuild (``States.unpacking``) rather than decoded again from the store.
    """
    name = remote or default_remote(repo)
    rem = connect(remote_info(repo, name))
    result = SyncResult("fetch", name, rem.url)
    with blame_remote(rem.url):
        heads, tags = rem.refs.list(HEADS), rem.refs.list(TAGS)
    tips = set(heads.values()) | set(tags.values())
    unpack_tip = unpack_for(heads) if unpack_for is not None else None
    walk_from, relied_on = tips, set[str]()
    for _ in range(3):
        # Only remote reads and the verified writes of what they brought happen in here, unlocked.
        with blame_remote(rem.url):
            objects, nbytes, boundary = _receive(repo, rem, walk_from, progress, unpack_tip)
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


def _receive(repo: Repo, rem: Remote, tips: set[str], progress: Progress | None,
             unpack_tip: str | None = None) -> tuple[int, int, set[str]]:
    """Store what the local store lacks of *tips*' history: objects first, then the commits,
    parents first, then their keyframe records. Returns (objects, stored bytes) received and
    the boundary: the commits already here that the walk stopped at (what it relied on).
    The snapshot *unpack_tip*'s state starts from, if it comes now, is also decoded to a file."""
    with ThreadPoolExecutor(EARLY_WORKERS, thread_name_prefix="dbvers-early") as early_pool:
        # The snapshots are at the bottom of the history, where the walk gets last: their
        # downloads start from the keyframe records while the walk goes down the commits.
        listed = early_pool.submit(_start_early, repo, rem, early_pool, unpack_tip)
        new = _remote_commits(repo, rem, tips)
        remote_records, early = listed.result()
        boundary = {t for t in tips if t not in new} | {p for c, _ in new.values() for p in c.parents if p not in new}
        if not new:
            return 0, 0, boundary
        commits = {oid: c for oid, (c, _) in new.items()}
        records = {c: s for c, s in remote_records.items() if c in commits and commits[c].snapshot is None}
        wanted = {o for c in commits.values() for o, _ in c.typed_references()} | set(records.values())
        early = {s: f for s, f in early.items() if s in wanted}  # others (a record of a lost history): gc's
        lacking = {o for o in wanted if not repo.objects.has(o)} - set(early)
        unpack = _keyframe_of(unpack_tip, commits, records)
        to_store = [oid for oid in graph.parents_first(commits) if not repo.objects.has(oid)]
        shown = _ThenCommits(progress or NoProgress(), len(early) + len(to_store))
        try:
            sent, nbytes = copy_parallel(lambda o: _download(repo, rem, o, o == unpack), lacking,
                                         progress=shown, label="fetching")
            for snap, started in early.items():
                try:
                    size = started.result()
                except Exception:  # fetched again, here: its error, if it has one still, is the fetch's
                    size = _download(repo, rem, snap, False)
                nbytes += size
                shown.advance(size)
            for oid in to_store:
                if repo.objects.put_bytes("commit", new[oid][1]) != oid:  # pragma: no cover - get() verified it
                    raise CorruptObjectError(oid, "re-encoded to another id")
                size = repo.objects.stored_size(oid)
                nbytes += size
                shown.advance(size)
        finally:
            shown.inner.finish()
    for c, snap in records.items():
        if repo.objects.has(snap):
            repo.refs.set_keyframe(c, snap)
    return len(sent) + len(early) + len(to_store), nbytes, boundary


#: Snapshot downloads started from the keyframe records, beside the walk (each is itself
#: a long transfer; the walk's round trips need little).
EARLY_WORKERS = 2


def _start_early(repo: Repo, rem: Remote, pool: ThreadPoolExecutor,
                 unpack_tip: str | None) -> tuple[dict[str, str], dict[str, Future[int]]]:
    """The remote's keyframe records of commits not here (commit -> snapshot), and the
    downloads, started in *pool*, of the snapshots they name that aren't here either.

    The snapshot decoded for *unpack_tip* as it comes is its own record's, or the only one
    coming: which keyframe a tip starts from is known only once the walk is done.
    """
    records = {c: s for c, s in rem.refs.keyframes(among=lambda c: not repo.objects.has(c)).items() if is_id(s)}
    snaps = sorted({s for s in records.values() if not repo.objects.has(s)})
    unpack = records.get(unpack_tip or "") or (snaps[0] if unpack_tip and len(snaps) == 1 else None)
    return records, {s: pool.submit(_download, repo, rem, s, s == unpack) for s in snaps}


def _download(repo: Repo, rem: Remote, oid: str, unpack: bool) -> int:
    """Copy one object from the remote, verified against its id before it is published (and,
    if *unpack*, a snapshot's body decoded to a file as it is: ``States.unpacking``)."""
    with rem.objects.open_raw(oid) as raw:
        if unpack:
            with repo.states.unpacking(oid) as body:
                repo.objects.put_raw(oid, raw, body_to=body)
        else:
            repo.objects.put_raw(oid, raw)
    return repo.objects.stored_size(oid)


def _keyframe_of(tip: str | None, commits: dict[str, Commit], records: dict[str, str]) -> str | None:
    """The snapshot *tip*'s state is rebuilt from (as ``States.materialize`` finds it: the
    first commit on the first-parent chain with a snapshot or a keyframe record), when that
    commit is among the new *commits*; else None."""
    cur = tip
    while cur is not None and (c := commits.get(cur)) is not None:
        if snap := c.snapshot or records.get(cur):
            return snap
        cur = c.parents[0] if c.parents else None
    return None


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
