"""What a fetch brings into the local store (L3).

:func:`receive` walks the remote's commits down from the tips to the first ones the local
store holds, downloads the objects they need, then stores the commits, parents first, then
their keyframe records: a commit in the store has its whole history (:func:`complete`),
so a fetch killed at any instant leaves a store that a rerun completes.

Snapshots are at the bottom of a history, where the walk gets last. A clone (*checkout_tip*:
everything is coming) starts their downloads at once from the remote's keyframe records
(push writes one for every snapshot), beside the walk, and decodes the one its checkout
starts from once, as it is fetched, into the file the state is then rebuilt in
(``States.unpacking``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from . import graph
from .errors import CorruptObjectError, DbversError
from .formats import is_id
from .objects import Commit
from .remotes import packs
from .storage import codec
from .transfer import WORKERS, NoProgress, Progress, copy_parallel

if TYPE_CHECKING:
    from .remotes import Remote
    from .repo import Repo

#: Snapshot downloads started from the keyframe records, beside the walk.
EARLY_WORKERS = 2


@dataclass
class Received:
    objects: int = 0  # objects stored (commits included)
    nbytes: int = 0  # their stored bytes
    boundary: frozenset[str] = frozenset()  # commits already here the walk stopped at (relied on)


def complete(repo: Repo, oid: str) -> bool:
    """The local store holds *oid* with what it needs (so, by the storing order, its whole history)."""
    if not repo.objects.has(oid):
        return False
    try:
        return all(repo.objects.has(o) for o, _ in repo.get_commit(oid).typed_references())
    except DbversError:  # an unreadable local commit is fetched again
        return False


@dataclass
class Walked:
    """What the walk found: the new commits (parsed, with their verified bodies), and the
    stored bytes of the other objects the remote's packs held for them (checked when stored)."""

    commits: dict[str, tuple[Commit, bytes]] = field(default_factory=dict)
    packed: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Pack:
    commits: dict[str, tuple[Commit, bytes]]
    others: dict[str, bytes]
    size: int


#: The most pack bytes one walk reads (and holds until their objects are stored); past it, the
#: rest of the history is walked commit by commit, as on a remote without packs.
WALK_PACK_BUDGET = 256 << 20


def remote_commits(repo: Repo, rem: Remote, tips: Iterable[str]) -> Walked:
    """The remote's commits that *tips* reach down to the first ones the local store holds,
    read a generation at a time in parallel (a round trip per generation, not per commit).

    A tip's pack (``remotes.packs``) brings its push's commits in one request; the walk tries
    the pack of each tip and of each commit a pack's history stops at (an earlier push's
    tip), and reads the others one by one. Every commit is verified against its id."""
    walked, offered = Walked(), dict[str, tuple[Commit, bytes]]()
    budget = WALK_PACK_BUDGET

    def read(oid: str, pack: bool) -> tuple[tuple[Commit, bytes], _Pack | None]:
        got = _read_pack(rem, oid) if pack else None
        return (got.commits[oid] if got is not None and oid in got.commits else _read_commit(rem, oid)), got

    frontier = {t for t in tips if not complete(repo, t)}
    try_pack = set(frontier)
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="dbvers-walk") as pool:
        while frontier:
            took = {o: offered[o] for o in frontier if o in offered}
            from_pack = set(took)
            batch = [(o, o in try_pack and budget > 0) for o in sorted(frontier - set(took))]
            for (oid, _), (pair, pack) in zip(batch, pool.map(lambda a: read(*a), batch), strict=True):
                took[oid] = pair
                if pack is not None and oid in pack.commits:
                    offered.update(pack.commits)
                    walked.packed.update(pack.others)
                    from_pack.add(oid)
                    budget -= pack.size
            walked.commits.update(took)
            frontier = {p for oid, (c, _) in took.items() for p in c.parents
                        if p not in walked.commits and not complete(repo, p)}
            try_pack = {p for oid in from_pack for p in took[oid][0].parents} & (frontier - set(offered))
    needed = {o for c, _ in walked.commits.values() for o, _ in c.typed_references()}
    walked.packed = {o: raw for o, raw in walked.packed.items() if o in needed}
    return walked


def _read_commit(rem: Remote, oid: str) -> tuple[Commit, bytes]:
    return _parsed(oid, rem.objects.get(oid, "commit"))


def _parsed(oid: str, body: bytes) -> tuple[Commit, bytes]:
    try:
        return Commit.from_bytes(body), body
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptObjectError(oid, f"not a commit: {str(e)[:80]}") from None


def _read_pack(rem: Remote, tip: str) -> _Pack | None:
    """*tip*'s pack, its commits verified and parsed; None when there is none to use. An entry
    that fails its check is left out (a pack is a shortcut: what it lacks is read loose)."""
    try:
        data = rem.read_pack(tip)
    except DbversError:
        return None
    if data is None:
        return None
    pack = _Pack({}, {}, len(data))
    for oid, raw in packs.parse(data):
        try:
            obj_type, _ = codec.read_header(oid, lambda raw=raw: codec.decoder_of_bytes(raw))
            if obj_type != "commit":
                pack.others[oid] = raw
                continue
            pack.commits[oid] = _parsed(oid, codec.body_of(oid, raw, "commit"))
        except CorruptObjectError:
            continue
    return pack


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


class _Choice:
    """The snapshot a clone's checkout starts from, once the walk has found it. Until then
    every early snapshot download is decoded to a file as it comes (at most EARLY_WORKERS at
    once); then only that one goes on being written (the others' files are dropped)."""

    def __init__(self) -> None:
        self.known, self.snapshot = False, ""

    def wants(self, snap: str) -> bool:
        return not self.known or snap == self.snapshot

    def decide(self, snap: str | None) -> None:
        self.snapshot, self.known = snap or "", True


class _Sink:
    """A decoded body's file, written only while *keep* says so (``_Choice.wants``)."""

    def __init__(self, out: BinaryIO, keep: Callable[[], bool]) -> None:
        self._out, self._keep, self._kept = out, keep, True

    def write(self, data: bytes) -> int:
        self._kept = self._kept and self._keep()
        return self._out.write(data) if self._kept else len(data)  # dropped: too short to be used


@dataclass
class _Early:
    """The snapshot downloads started from the remote's keyframe records, beside the walk."""

    records: dict[str, str]  # commit -> snapshot, of the remote's records of commits not here
    started: dict[str, Future[int]]


class Prefetch:
    """A clone's snapshot downloads, started from the remote's keyframe records at once (before
    even its refs are listed: everything is coming), decoded to files until the walk says which
    one the checkout starts from (``_Choice``). A context: leaving it on an error cancels what
    is queued (a Ctrl-C waits for no queued download; at most EARLY_WORKERS running finish)."""

    def __init__(self, repo: Repo, rem: Remote) -> None:
        self.choice = _Choice()
        self._pool = ThreadPoolExecutor(EARLY_WORKERS, thread_name_prefix="dbvers-early")
        self._listed = self._pool.submit(_start_early, repo, rem, self._pool, self.choice)

    def early(self) -> _Early:
        return self._listed.result()

    def cancel(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.cancel()
        self._pool.shutdown()


def receive(repo: Repo, rem: Remote, tips: set[str], progress: Progress | None,
            checkout_tip: str | None = None, prefetch: Prefetch | None = None) -> Received:
    """Store what the local store lacks of *tips*' history (see the module's docstring).

    With *checkout_tip* (a clone's: everything is coming), snapshot downloads start from the
    remote's keyframe records beside the walk (*prefetch*'s, when the caller started them
    earlier still); a fetch into a store that has history reads only the records of the
    commits the walk found (no listing storm on every fetch)."""
    with contextlib.ExitStack() as stack:
        if prefetch is None and checkout_tip:
            prefetch = stack.enter_context(Prefetch(repo, rem))
        try:
            walked = remote_commits(repo, rem, tips)
            new = walked.commits
            early = prefetch.early() if prefetch else _Early(_records(rem, new) if new else {}, {})
            boundary = frozenset({t for t in tips if t not in new} |
                                 {p for c, _ in new.values() for p in c.parents if p not in new})
            if not new:
                return Received(boundary=boundary)
            commits = {oid: c for oid, (c, _) in new.items()}
            records = {c: s for c, s in early.records.items() if c in commits and commits[c].snapshot is None}
            wanted = {o for c in commits.values() for o, _ in c.typed_references()} | set(records.values())
            unpack = _keyframe_of(checkout_tip, commits, records)
            if prefetch:
                prefetch.choice.decide(unpack)
            for s, f in early.started.items():
                if s not in wanted:
                    f.cancel()  # a lost history's (what one brought is unreachable: gc's)
            started = {s: f for s, f in early.started.items() if s in wanted}
            lacking = {o for o in wanted if not repo.objects.has(o)} - set(started)
            got = _download_all(repo, rem, walked, lacking, started, unpack, progress)
        except BaseException:
            if prefetch:
                prefetch.cancel()
            raise
    for c, snap in records.items():
        if repo.objects.has(snap):
            repo.refs.set_keyframe(c, snap)
    return Received(got[0], got[1], boundary)


def _records(rem: Remote, among: Collection[str] | Callable[[str], bool]) -> dict[str, str]:
    """The remote's keyframe records of the commits *among* that name an id (commit -> snapshot)."""
    return {c: s for c, s in rem.refs.keyframes(among=among).items() if is_id(s)}


def _download_all(repo: Repo, rem: Remote, walked: Walked, lacking: set[str], started: dict[str, Future[int]],
                  unpack: str | None, progress: Progress | None) -> tuple[int, int]:
    """The objects (the ones already started too; the packed ones from their packs), then the
    commits, parents first; (objects, bytes)."""
    new = walked.commits
    to_store = [oid for oid in graph.parents_first({o: c for o, (c, _) in new.items()})
                if not repo.objects.has(oid)]
    shown = _ThenCommits(progress or NoProgress(), len(started) + len(to_store))
    try:
        sent, nbytes = copy_parallel(lambda o: _download(repo, rem, o, o == unpack, walked.packed), lacking,
                                     progress=shown, label="fetching")
        for snap, f in started.items():
            try:
                size = f.result()
            except Exception:  # fetched again, here: its error, if it has one still, is the fetch's
                size = _download(repo, rem, snap, snap == unpack)
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
    return len(sent) + len(started) + len(to_store), nbytes


def _start_early(repo: Repo, rem: Remote, pool: ThreadPoolExecutor, choice: _Choice) -> _Early:
    """The remote's keyframe records of commits not here, and the downloads, started in *pool*,
    of the snapshots they name that aren't here either (decoded as *choice* says)."""
    records = _records(rem, lambda c: not repo.objects.has(c))
    snaps = sorted({s for s in records.values() if not repo.objects.has(s)})
    return _Early(records, {s: pool.submit(_download, repo, rem, s, choice) for s in snaps})


def _download(repo: Repo, rem: Remote, oid: str, unpack: bool | _Choice,
              packed: Mapping[str, bytes] | None = None) -> int:
    """Copy one object from the remote (from a pack when one held it and it passes its check),
    verified against its id before it is published (and, if *unpack* says so, a snapshot's
    body decoded to a file as it is: ``States.unpacking``)."""
    if packed and oid in packed:
        with contextlib.suppress(CorruptObjectError):  # then read loose: a pack is only a shortcut
            _store(repo, oid, io.BytesIO(packed[oid]), unpack)
            return repo.objects.stored_size(oid)
    with rem.objects.open_raw(oid) as raw:
        _store(repo, oid, raw, unpack)
    return repo.objects.stored_size(oid)


def _store(repo: Repo, oid: str, raw: BinaryIO, unpack: bool | _Choice) -> None:
    if unpack is True or (isinstance(unpack, _Choice) and unpack.wants(oid)):
        with repo.states.unpacking(oid) as body:
            sink = _Sink(body, lambda: unpack.wants(oid)) if isinstance(unpack, _Choice) else body
            repo.objects.put_raw(oid, raw, body_to=sink)  # type: ignore[arg-type]
    else:
        repo.objects.put_raw(oid, raw)


def _keyframe_of(tip: str | None, commits: dict[str, Commit], records: dict[str, str]) -> str | None:
    """The snapshot *tip*'s state is rebuilt from (as ``States.materialize`` finds it: the
    first commit on the first-parent chain with a snapshot or a keyframe record), when that
    commit is among the new *commits*; else None."""
    chain = _chain(tip, commits, records) if tip else []
    return (commits[chain[-1]].snapshot or records[chain[-1]]) if chain else None


def _chain(tip: str, commits: dict[str, Commit], records: dict[str, str]) -> list[str]:
    """*tip*'s first-parent chain among *commits*, tip first, down to its keyframe (the first
    with a snapshot or a record); [] when the keyframe is not among them."""
    out: list[str] = []
    cur: str | None = tip
    while cur is not None and (c := commits.get(cur)) is not None:
        out.append(cur)
        if c.snapshot or records.get(cur):
            return out
        cur = c.parents[0] if c.parents else None
    return []
