"""Revision parsing: what a user types for a commit (``HEAD``, ``main``, ``v1``, ``3fa9c2``,
``main~2``, ``HEAD^``, ``merge^2``) turned into a commit id.

L2. Works over a ref reader and an object store given by the caller (``Repo.resolve``
passes its own), so a remote's refs or a bare store resolve the same way. The rules are
git's: HEAD (or ``@``); a tag, then a branch, then a full ``refs/...`` name; then a
full or unique short id (4 to 64 hex digits) of a commit; then any number of suffixes,
``~N`` (N first parents back) and ``^N`` (the Nth parent: ``^2`` is a merge's second,
*theirs*, parent; ``^`` is ``^1``; ``^0`` the commit itself).
"""

from __future__ import annotations

import re
from typing import Protocol

from .errors import AmbiguousRefError, DbversError, UnknownRefError
from .graph import CommitSource, commit_reader
from .storage.refnames import HEADS, REMOTES, TAGS

_REV_RE = re.compile(r"^(?P<base>.*?)(?P<suffix>(?:[~^]\d*)*)$")
_SHORT_ID_RE = re.compile(r"[0-9a-f]{4,64}")


class _Head(Protocol):
    @property
    def commit(self) -> str | None: ...


class RefReader(Protocol):
    """The refs a revision can name (a RefStore)."""

    def head(self) -> _Head: ...

    def lookup(self, ref: str) -> str | None: ...


class ObjectLookup(Protocol):
    """What finding a commit by (short) id needs of an object store."""

    def has(self, oid: str) -> bool: ...

    def with_prefix(self, prefix: str) -> list[str]: ...

    def object_type(self, oid: str) -> str: ...


def head_commit(refs: RefReader) -> str:
    """HEAD's commit; ``UnknownRefError`` when HEAD has none yet."""
    oid = refs.head().commit
    if oid is None:
        raise UnknownRefError("HEAD", "HEAD has no commit yet")
    return oid


def resolve(rev: str, refs: RefReader, objects: ObjectLookup, commits: CommitSource) -> str:
    """Turn HEAD, a branch, a tag, a full or unique short id, with ~N/^N suffixes, into an id.

    ``UnknownRefError`` for anything that names no commit (the message says what to run),
    ``AmbiguousRefError`` for a short id that several commits start with. The commit the
    answer names is not read: a missing one is the caller's error when it uses it.
    """
    m = _REV_RE.match(rev.strip())
    if not rev.strip() or not m:
        raise UnknownRefError(rev)
    read = commit_reader(commits)
    oid = resolve_base(m["base"] or "HEAD", rev, refs, objects)
    for op, num in re.findall(r"([~^])(\d*)", m["suffix"]):
        n = int(num) if num else 1
        if op == "~":
            for _ in range(n):
                parents = read(oid).parents
                if not parents:
                    raise UnknownRefError(rev, f"'{rev}' goes past the first commit")
                oid = parents[0]
        elif n:
            parents = read(oid).parents
            if len(parents) < n:
                raise UnknownRefError(rev, f"'{rev}': commit has no parent {n}")
            oid = parents[n - 1]
    return oid


def resolve_base(name: str, rev: str, refs: RefReader, objects: ObjectLookup) -> str:
    """The commit *name* (a revision without its suffixes) names; *rev* is what the user typed."""
    if name in ("HEAD", "@"):
        return head_commit(refs)
    for ref in (TAGS + name, HEADS + name, REMOTES + name, name if name.startswith("refs/") else None):
        if ref and (oid := refs.lookup(ref)):
            return oid
    lowered = name.lower()
    if _SHORT_ID_RE.fullmatch(lowered):
        if len(lowered) == 64 and objects.has(lowered):
            return lowered
        candidates = [c for c in objects.with_prefix(lowered) if is_commit(objects, c)]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise AmbiguousRefError(name, candidates)
    raise UnknownRefError(rev)


def is_commit(objects: ObjectLookup, oid: str) -> bool:
    """True when *oid* is a stored commit (an unreadable object is not one)."""
    try:
        return objects.object_type(oid) == "commit"
    except DbversError:
        return False
