"""Transfer: move history from one store to another, the way git's pack protocol does.

L3. The one engine that backups and remotes share (DESIGN.md section 5):

1. **what to send**: the objects a set of commits needs (:func:`closure`: each commit,
   its schema and patch, its snapshot and its keyframe's snapshot);
2. **what the destination lacks** (:func:`lacking`): computed from the destination's
   refs and the *local* commit graph (everything a destination ref reaches is there:
   a destination's refs only ever point to complete histories), then narrowed by
   whatever the destination can answer cheaply (:meth:`Destination.missing`); a
   large destination's objects are never listed;
3. **copy** (:func:`copy_objects`): the stored bytes as they are (same ids, nothing
   re-encoded), each object checked against its id first, then :meth:`Destination.flush`
   makes them durable;
4. **move the refs** (:func:`update_refs`) by compare-and-swap, last: the ref move is
   the commit point, so a transfer killed at any instant leaves refs that point only
   to complete histories, and a rerun sends only what is still lacking.

:func:`transfer` runs the four steps. A backend plugs in by implementing
:class:`ObjectSource` (to be read from) and/or :class:`Destination` (to be written
to): :class:`LocalSource` and :class:`LocalDestination` here wrap the local
``storage.local`` stores; the backup archive is
:class:`dbvers.remotes.archive_dir.ArchiveDestination` (and its extracted chain an
``ObjectSource``); a directory or S3 remote implements the same two protocols
(``put_raw`` = upload, ``compare_and_swap`` = a conditional write).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, Protocol

from . import graph
from .errors import RefConflictError
from .objects import Commit
from .storage.base import ObjectStore, RefStore
from .storage.refnames import HEADS, REMOTES, TAGS

CHUNK = 1 << 20


# -- what moves ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RawObject:
    """One object as stored (compressed bytes, verified against *oid* by whoever reads it)."""

    oid: str
    size: int  # stored bytes
    opener: Callable[[], IO[bytes]]

    def chunks(self) -> Iterator[bytes]:
        with self.opener() as f:
            while chunk := f.read(CHUNK):
                yield chunk


@dataclass(frozen=True)
class RefUpdate:
    """Move *name* from *expect* (None: it must not exist) to *new*."""

    name: str
    expect: str | None
    new: str


@dataclass
class TransferResult:
    wanted: set[str] = field(default_factory=set)  # every object the commits need
    sent: list[str] = field(default_factory=list)  # what the destination lacked, copied
    sent_bytes: int = 0
    rejected: list[RefUpdate] = field(default_factory=list)  # someone else moved them first


# -- the protocols a backend implements ------------------------------------------------------


class CommitGraph(Protocol):
    """The local history, as far as a transfer reads it (``Repo`` is one)."""

    def get_commit(self, oid: str) -> Commit: ...

    def snapshot_of(self, oid: str) -> str | None: ...


class ObjectSource(Protocol):
    """Where objects come from."""

    def raw(self, oid: str) -> RawObject: ...

    def verify(self, oid: str) -> str:
        """Recompute *oid*'s hash (raise ``CorruptObjectError``); return its type."""
        ...


class Destination(Protocol):
    """Where objects and refs go. Refs move only by compare-and-swap, after ``flush``."""

    def refs(self) -> dict[str, str]:
        """Full ref name -> commit id, of every ref the destination holds."""
        ...

    def missing(self, oids: set[str]) -> set[str]:
        """Of *oids*, those it may lack: it drops only what it knows it has, cheaply."""
        ...

    def put_raw(self, obj: RawObject) -> None: ...

    def flush(self) -> None:
        """Make every ``put_raw`` so far durable (before any ref moves)."""
        ...

    def compare_and_swap(self, name: str, expect: str | None, new: str) -> bool:
        """Move ref *name* from *expect* to *new*; False when it no longer holds *expect*."""
        ...


class Progress(Protocol):
    """What a transfer reports as it goes (a rich bar in a terminal, a widget in a notebook)."""

    def start(self, label: str, objects: int, nbytes: int) -> None:
        """A copy of *objects* objects (*nbytes* stored bytes; 0 when unknown) begins."""
        ...

    def advance(self, nbytes: int) -> None:
        """One object of *nbytes* stored bytes is copied."""
        ...

    def finish(self) -> None: ...


class NoProgress:
    """Reports nothing (piped output, tests, the Python API unless asked)."""

    def start(self, label: str, objects: int, nbytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


#: Objects copied at once to or from a remote: enough to hide a round trip, few enough for
#: a small endpoint (each large object is itself a parallel multipart transfer).
WORKERS = 8


def copy_parallel(copy_one: Callable[[str], int], oids: Iterable[str], *, progress: Progress | None = None,
                  label: str = "objects", nbytes: int = 0, workers: int = WORKERS,
                  sizes: Mapping[str, int] | None = None) -> tuple[list[str], int]:
    """Run *copy_one* (copy one object, verified; return its stored bytes) over *oids*, up to
    *workers* at a time; with their *sizes* known, the largest start first (a snapshot's
    transfer is the long pole: started last, the small ones couldn't hide it).

    The first failure cancels what hasn't started and is raised once the running
    copies end; what was copied stays (objects are immutable, a rerun skips them).
    Returns (ids, stored bytes) copied.
    """
    ids = sorted(oids)
    if sizes is not None:
        ids.sort(key=lambda oid: -sizes.get(oid, 0))  # stable: equal sizes stay in id order
    progress = progress or NoProgress()
    progress.start(label, len(ids), nbytes)

    def one(oid: str) -> int:
        size = copy_one(oid)
        progress.advance(size)
        return size

    try:
        if len(ids) <= 1 or workers <= 1:
            sizes = [one(oid) for oid in ids]
        else:
            with ThreadPoolExecutor(min(workers, len(ids)), thread_name_prefix="dbvers-copy") as pool:
                futures = [pool.submit(one, oid) for oid in ids]
                for f in wait(futures, return_when=FIRST_EXCEPTION).not_done:
                    f.cancel()
            failed = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
            if failed:
                raise failed[0]
            sizes = [f.result() for f in futures]
    finally:
        progress.finish()
    return ids, sum(sizes)


# -- the engine ---------------------------------------------------------------------------------


def closure(graph: CommitGraph, commits: Iterable[str]) -> set[str]:
    """*commits* and every object they need: schema, patch, snapshot, keyframe snapshot.

    Raises what reading a commit raises (a transfer never sends a history with a hole).
    """
    out: set[str] = set()
    for oid in commits:
        out.add(oid)
        out.update(graph.get_commit(oid).referenced_objects())
        snap = graph.snapshot_of(oid)
        if snap:
            out.add(snap)
    return out


def lacking(graph: CommitGraph, wanted: set[str], dest: Destination) -> set[str]:
    """The objects of *wanted* that *dest* lacks, from its refs and the local graph.

    A destination ref whose commit the local store doesn't have (someone else pushed
    it) tells nothing here: its history is walked only as far as it is local.
    """
    tips = {oid: ref for ref, oid in sorted(dest.refs().items())}
    return dest.missing(wanted - closure(graph, _local_ancestry(graph, tips)))


def _local_ancestry(commits: CommitGraph, tips: dict[str, str]) -> set[str]:
    """The commits *tips* reach, as far as the local store can read them (never raises)."""
    if not tips:
        return set()
    return set(graph.walk(commits.get_commit, tips).commits)


def copy_objects(source: ObjectSource, dest: Destination, oids: Iterable[str], *,
                 verify: bool = True) -> tuple[list[str], int]:
    """Copy *oids* as stored, each checked against its id first; return (ids, bytes) copied."""
    sent: list[str] = []
    total = 0
    for oid in sorted(oids):
        if verify:
            source.verify(oid)
        obj = source.raw(oid)
        dest.put_raw(obj)
        sent.append(oid)
        total += obj.size
    dest.flush()
    return sent, total


def update_refs(dest: Destination, updates: Iterable[RefUpdate]) -> list[RefUpdate]:
    """Compare-and-swap each ref; return the updates refused (the ref had moved)."""
    return [u for u in updates if not dest.compare_and_swap(u.name, u.expect, u.new)]


def transfer(graph: CommitGraph, source: ObjectSource, dest: Destination, commits: Iterable[str],
             updates: Iterable[RefUpdate], *, verify: bool = True) -> TransferResult:
    """Send what *dest* lacks of *commits*' history, then move its refs (the commit point)."""
    result = TransferResult(wanted=closure(graph, commits))
    send = lacking(graph, result.wanted, dest)
    result.sent, result.sent_bytes = copy_objects(source, dest, send, verify=verify)
    result.rejected = update_refs(dest, updates)
    return result


# -- the local store as a source and a destination -----------------------------------------------


def all_refs(refs: RefStore) -> dict[str, str]:
    """Every branch, tag and remote-tracking ref, by full name."""
    out: dict[str, str] = {}
    for prefix in (HEADS, TAGS, REMOTES):
        out.update({prefix + name: oid for name, oid in refs.list(prefix).items()})
    return out


class LocalSource:
    """An object store as an :class:`ObjectSource` (read through ``open_raw``, never moved)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def raw(self, oid: str) -> RawObject:
        objects = self.objects
        return RawObject(oid, objects.stored_size(oid), lambda: objects.open_raw(oid))

    def verify(self, oid: str) -> str:
        return self.objects.verify(oid)


class LocalDestination:
    """A local store as a :class:`Destination`; the caller holds the repository lock.

    *message* is the reflog line of every ref it moves. Objects go in through the
    store's ``put_raw`` (checked against their id, published durably one by one).
    """

    def __init__(self, objects: ObjectStore, refs: RefStore, message: str) -> None:
        self.objects = objects
        self.ref_store = refs
        self.message = message

    def refs(self) -> dict[str, str]:
        return all_refs(self.ref_store)

    def missing(self, oids: set[str]) -> set[str]:
        return {oid for oid in oids if not self.objects.has(oid)}

    def put_raw(self, obj: RawObject) -> None:
        if self.objects.has(obj.oid):
            return
        with obj.opener() as raw:
            self.objects.put_raw(obj.oid, raw)

    def flush(self) -> None:
        pass  # put_raw publishes each object durably

    def compare_and_swap(self, name: str, expect: str | None, new: str) -> bool:
        try:
            self.ref_store.update(name, new, expect=expect, message=self.message)
        except RefConflictError:
            return False
        return True
