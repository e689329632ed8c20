"""The commit graph: every walk over commits' parent links, in one place.

L2. Works over a *commit reader*: a callable ``oid -> Commit`` (``Repo.get_commit``, which
caches) or anything with ``get(oid, "commit") -> bytes`` (an object store, an archive's).
Nothing here knows refs, files or states; callers bring the tips.

Two ways of meeting a commit that can't be read:

* the ordered walks (:func:`ancestors`, :func:`first_parents`, :func:`merge_base`,
  :func:`is_ancestor`) raise what the reader raises (``MissingObjectError``,
  ``CorruptObjectError``: one line naming the commit and saying to run fsck) when they
  reach it, and only then: a walk stopped early never reads past where it stopped;
* the reachability walk (:func:`walk`) never raises for damage: it collects one
  problem line per unreadable commit, and :func:`reachable` turns them into
  ``HistoryDamagedError`` — an answer computed around a hole would call the history
  behind it unreachable.

Every walk is iterative (a heap or a stack, never recursion), so a 100k-commit history
is no deeper for Python than a one-commit one. Merge commits list their parents ours
first; the walks follow them all except :func:`first_parents`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .errors import CorruptObjectError, DbversError, HistoryDamagedError, MissingObjectError
from .formats import parse_timestamp
from .objects import Commit

CommitReader = Callable[[str], Commit]


class CommitBytes(Protocol):
    """An object store, as far as reading commits goes."""

    def get(self, oid: str, expected_type: str | None = ...) -> bytes: ...


CommitSource = CommitReader | CommitBytes


def commit_reader(source: CommitSource) -> CommitReader:
    """*source* as a callable ``oid -> Commit``; a store's commit that doesn't parse is corrupt."""
    if callable(source):
        return source
    store = source

    def read(oid: str) -> Commit:
        data = store.get(oid, "commit")
        try:
            return Commit.from_bytes(data)
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptObjectError(oid, f"not a commit: {str(e)[:80]}") from None

    return read


def newest_first_key(c: Commit, oid: str) -> tuple[float, str]:
    """The order of every ordered walk: newest timestamp first, ties by smaller id.

    A timestamp that doesn't parse sorts as the oldest (epoch 0), as ``log`` always did.
    """
    return (-_seconds(c.timestamp), oid)


def _seconds(ts: str) -> float:
    # fromisoformat is ~50x faster than strptime; it takes only the exact shape dbvers
    # writes (anything else goes through parse_timestamp, so odd stamps order as before).
    if len(ts) == 27 and ts[10] == "T" and ts[-1] == "Z":
        try:
            return datetime.fromisoformat(ts).timestamp()
        except ValueError:
            pass
    try:
        return parse_timestamp(ts).timestamp()
    except (ValueError, TypeError):
        return 0.0


# -- ordered walks ---------------------------------------------------------------------
def ancestors(source: CommitSource, tips: str | Iterable[str]) -> Iterator[tuple[str, Commit]]:
    """*tips* and every commit they reach, as ``(id, commit)``, newest first (ties by id).

    Git's default log order: the next commit is the newest of those whose child was
    already given, so a parent comes after all of its children when the clocks agree
    (with a skewed clock, after the child that named it first). Each commit comes once,
    also when several merge parents reach it. Lazy: stopping early (``log -n``) reads
    no commit past the last one given.
    """
    read = commit_reader(source)
    heap: list[tuple[tuple[float, str], Commit]] = []
    seen: set[str] = set()
    for tip in [tips] if isinstance(tips, str) else tips:
        if tip not in seen:
            seen.add(tip)
            c = read(tip)
            heap.append((newest_first_key(c, tip), c))
    heapq.heapify(heap)
    while heap:
        (_, oid), c = heapq.heappop(heap)
        yield oid, c
        for p in c.parents:
            if p not in seen:
                seen.add(p)
                pc = read(p)
                heapq.heappush(heap, (newest_first_key(pc, p), pc))


def first_parents(source: CommitSource, start: str) -> Iterator[tuple[str, Commit]]:
    """*start*, its first parent, that one's first parent, ... down to a root, as ``(id, commit)``.

    The line a branch was on (ours, at every merge): what materialization replays
    and what a row's history and ``X~N`` follow.
    """
    read = commit_reader(source)
    oid: str | None = start
    while oid is not None:
        c = read(oid)
        yield oid, c
        oid = c.parents[0] if c.parents else None


# -- merge bases -----------------------------------------------------------------------
_A, _B, _STALE = 1, 2, 4


def _paint(read: CommitReader, a: str, b: str, *, stop_at_a: bool = False) -> tuple[list[str], dict[str, int]]:
    """Git's paint_down_to_common: walk down from *a* and *b* newest first, marking what each
    reaches; a commit both reach is a candidate, and everything below it is stale.

    Returns the candidates not (yet) known to be stale, and the marks. Every best common
    ancestor is among the candidates whatever the clocks say: no commit on a path from a
    tip to a best base is ever below a common ancestor, so the walk, which runs while any
    commit in its queue is not stale, reaches each of them with both marks. The timestamps
    only decide how soon it ends. A candidate may still sit below another one (clock skew,
    criss-cross): :func:`merge_base` filters those out. With *stop_at_a*, returns as soon
    as *b*'s walk reaches *a* (``is_ancestor``).
    """
    marks: dict[str, int] = {a: _A}
    marks[b] = marks.get(b, 0) | _B
    commits: dict[str, Commit] = {a: read(a), b: read(b)}
    heap = [(newest_first_key(commits[o], o), o) for o in {a, b}]
    heapq.heapify(heap)
    queued = {a, b}
    active = len(queued)  # queued commits that are not stale: the walk ends when none is left
    candidates: list[str] = []
    while active:
        _, oid = heapq.heappop(heap)
        queued.discard(oid)
        flags = marks[oid]
        if not flags & _STALE:
            active -= 1
        if flags & (_A | _B) == _A | _B and not flags & _STALE:
            candidates.append(oid)
            flags |= _STALE  # its parents are one generation further from the tips
        c = commits[oid]
        for p in c.parents:
            old = marks.get(p, 0)
            new = old | flags
            if new == old:
                continue
            marks[p] = new
            if stop_at_a and p == a and new & _B:
                return candidates, marks
            if p in queued:
                if new & _STALE and not old & _STALE:
                    active -= 1
                continue
            if p not in commits:
                commits[p] = read(p)
            heapq.heappush(heap, (newest_first_key(commits[p], p), p))
            queued.add(p)
            if not new & _STALE:
                active += 1
    return [o for o in candidates if not marks[o] & _STALE], marks


def merge_base(source: CommitSource, a: str, b: str) -> list[str]:
    """Every best common ancestor of *a* and *b* (none is an ancestor of another), newest
    first, ties by id: one for ordinary histories, two or more after criss-cross merges,
    none for unrelated histories. ``merge_base(x, x) == [x]``; when one is an ancestor of
    the other, it is the answer. Symmetric in *a* and *b*.
    """
    read = commit_reader(source)
    if a == b:
        read(a)  # a missing commit is an error, not its own base
        return [a]
    candidates, _ = _paint(read, a, b)
    if len(candidates) > 1:
        # An exact check, not bounded by timestamps: drop every candidate that another one
        # reaches. It walks what lies below the candidates, so it runs only in this rare case.
        below = ancestor_ids(read, [p for o in candidates for p in read(o).parents])
        candidates = [o for o in candidates if o not in below]
    return sorted(candidates, key=lambda o: newest_first_key(read(o), o))


def merge_base_one(source: CommitSource, a: str, b: str) -> str | None:
    """One best common ancestor of *a* and *b*, chosen deterministically: the newest by
    timestamp, ties by the smaller id — the first of :func:`merge_base`, as git's
    ``merge-base`` without ``--all`` prints the first (newest) of its set. Independent of
    the order of *a* and *b*, so merging X into Y and Y into X use the same base. None
    for unrelated histories.
    """
    bases = merge_base(source, a, b)
    return bases[0] if bases else None


def is_ancestor(source: CommitSource, a: str, b: str) -> bool:
    """True when *a* is *b* or reachable from it (a merge may fast-forward from *a* to *b*).

    Walks newest first from both and stops when *b*'s walk reaches *a*, or when both have
    gone below every common ancestor: ``log a..b``'s worth of commits, not the whole history.
    """
    read = commit_reader(source)
    if a == b:
        read(a)
        return True
    _, marks = _paint(read, a, b, stop_at_a=True)
    return bool(marks.get(a, 0) & _B)


def ahead_behind(source: CommitSource, a: str, b: str) -> tuple[int, int]:
    """How many commits *a* has that *b* doesn't, and *b* has that *a* doesn't (``status``'s
    "ahead 2, behind 1" of a branch and its upstream).

    Counted by the merge-base walk, so it reads ``log a...b``'s worth of commits, not the
    whole history: what only one side's walk reached before both went below every common
    ancestor. Exact when commit times agree with the history (each commit after its
    parents); a clock that went back can make a count too high, as git's counts could
    before generation numbers. It is a display: nothing decides on it.
    """
    read = commit_reader(source)
    if a == b:
        return 0, 0
    _, marks = _paint(read, a, b)
    ahead = sum(1 for f in marks.values() if f & (_A | _B | _STALE) == _A)
    behind = sum(1 for f in marks.values() if f & (_A | _B | _STALE) == _B)
    return ahead, behind


def only_in(source: CommitSource, wants: Iterable[str], haves: Iterable[str]) -> list[str]:
    """The commits *wants* reach that *haves* don't, newest first: what a push must send.

    Git's have/want negotiation, done locally: one newest-first walk marks what each
    side reaches and ends as soon as every commit still queued is reachable from a
    *have*, so it reads the new part of the history plus a little below it, not the
    whole history. A *have* that can't be read is ignored (someone else's commit).
    With skewed clocks it may return a commit the haves do reach (never the reverse):
    the caller asks the destination about those objects anyway.
    """
    read = commit_reader(source)
    marks: dict[str, int] = {}
    commits: dict[str, Commit] = {}
    for oid, flag in [*((h, _B) for h in haves), *((w, _A) for w in wants)]:
        if oid not in commits:
            try:
                commits[oid] = read(oid)
            except MissingObjectError:
                if flag == _B:
                    continue
                raise
        marks[oid] = marks.get(oid, 0) | flag
    heap = [(newest_first_key(commits[o], o), o) for o in marks]
    heapq.heapify(heap)
    queued = set(marks)
    wanted = sum(1 for f in marks.values() if not f & _B)  # queued commits not yet known to be had
    out: list[str] = []
    while heap and wanted:
        _, oid = heapq.heappop(heap)
        queued.discard(oid)
        flags = marks[oid]
        if not flags & _B:
            wanted -= 1
            out.append(oid)
        for p in commits[oid].parents:
            old = marks.get(p)
            new = (old or 0) | flags
            if old == new:
                continue
            marks[p] = new
            if old is None:
                commits[p] = read(p)
                heapq.heappush(heap, (newest_first_key(commits[p], p), p))
                queued.add(p)
                wanted += 0 if new & _B else 1
            elif p in queued and not old & _B and new & _B:
                wanted -= 1  # still queued: now known to be had
    return out


def parents_first(commits: Mapping[str, Commit]) -> list[str]:
    """The ids of *commits* ordered so that each comes after every parent among them
    (the order to store fetched commits in: a stored commit's ancestors are all stored)."""
    order: list[str] = []
    done: set[str] = set()
    for start in sorted(commits):
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            oid, expanded = stack.pop()
            if oid in done:
                continue
            if expanded:
                done.add(oid)
                order.append(oid)
                continue
            stack.append((oid, True))
            stack.extend((p, False) for p in commits[oid].parents if p in commits and p not in done)
    return order


# -- reachability ----------------------------------------------------------------------
@dataclass
class Reach:
    """What a reachability walk found: readable commits in visit order, and the ids it
    could not read with one problem line each."""

    commits: dict[str, Commit] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        return list(self.damaged.values())

    @property
    def seen(self) -> set[str]:
        """Every id reached, readable or not (what an unreachable commit's ancestry protects)."""
        return set(self.commits) | set(self.damaged)


def _short(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:120]


def walk(source: CommitSource, roots: Mapping[str, str] | Iterable[str], *,
         missing_from: str = "the store") -> Reach:
    """Every commit *roots* reach (never raises for damage).

    *roots*: commit ids, or a mapping id -> where it was named ("refs/heads/main",
    "logs/HEAD line 3"), which the problem lines quote. Unlike a walk that skips what
    it can't read, a missing or corrupt commit is a problem here: its parents (and what
    they reach) are unknown, so nobody may conclude that anything is unreachable. Each
    problem reads ``commit <id> (reached from <where>) is missing from <missing_from>``
    or ``... is unreadable (<why>)``.
    """
    read = commit_reader(source)
    named = roots if isinstance(roots, Mapping) else {oid: "a starting commit" for oid in roots}
    out = Reach()
    seen: set[str] = set()
    stack = sorted(named.items(), reverse=True)  # smallest id first: a stable order of problems
    while stack:
        oid, why = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        try:
            c = read(oid)
        except MissingObjectError:
            out.damaged[oid] = f"commit {oid[:12]} (reached from {why}) is missing from {missing_from}"
            continue
        except (DbversError, ValueError, KeyError, TypeError) as e:
            out.damaged[oid] = f"commit {oid[:12]} (reached from {why}) is unreadable ({_short(e)})"
            continue
        out.commits[oid] = c
        stack.extend((p, f"commit {oid[:12]}") for p in c.parents)
    return out


def reachable(source: CommitSource, tips: Mapping[str, str] | Iterable[str], *,
              action: str = "the operation") -> set[str]:
    """Every commit *tips* reach; ``HistoryDamagedError`` naming *action* when any on the
    way can't be read (see :func:`walk`)."""
    reach = walk(source, tips)
    if reach.damaged:
        raise HistoryDamagedError(action, reach.problems)
    return set(reach.commits)


def ancestor_ids(source: CommitSource, tips: Iterable[str]) -> set[str]:
    """*tips* and every commit they reach, raising the reader's error at the first one it
    can't read (for a history already checked whole, or where damage is an error)."""
    read = commit_reader(source)
    seen: set[str] = set()
    stack = list(tips)
    while stack:
        oid = stack.pop()
        if oid not in seen:
            seen.add(oid)
            stack.extend(read(oid).parents)
    return seen
