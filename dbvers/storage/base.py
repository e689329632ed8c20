"""The storage contract: what every object store and ref store backend provides.

L1. Backends: ``local`` (the store directory), ``memory`` (process memory); the
remotes add a plain directory and S3. ``tests/test_storage_contract.py`` runs one
suite per protocol against every backend.

Objects are immutable and content-addressed (the id is the SHA-256 of the
canonical bytes, ``objects.header`` + body); a backend keeps them *encoded* (zstd
frames), and every read verifies length and hash, so a damaged object is a
``CorruptObjectError``, never wrong bytes. ``open_raw``/``put_raw`` move the encoded
bytes as they are (a remote copies without re-encoding); ``put_raw`` verifies the
id before publishing.

Refs move only by compare-and-swap (``compare_and_swap``), which is safe without
any lock the caller holds; the reflog records every move of HEAD, a branch, tag or
remote branch. Keyframe records are refs ``refs/keyframes/<commit>`` holding a
snapshot id (no reflog: they are derived data, not history).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True)
class Head:
    branch: str | None  # short branch name when attached
    commit: str | None  # None only on an unborn branch

    @property
    def detached(self) -> bool:
        return self.branch is None


@dataclass(frozen=True)
class ReflogEntry:
    old: str
    new: str
    time: float
    message: str


class BodyReader(Protocol):
    """An object's body as a stream, verified as it is read: ``read`` raises
    ``CorruptObjectError`` (at the latest when the end is reached) if the object is damaged."""

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class ObjectStore(Protocol):
    """Content-addressed, immutable objects."""

    def has(self, oid: str) -> bool: ...

    def get(self, oid: str, expected_type: str | None = None) -> bytes:
        """The verified body (whole: for small objects; large ones stream with ``open_body``)."""

    def open_body(self, oid: str, expected_type: str | None = None) -> BodyReader:
        """The body as a verified stream (patches replay from it without being held in memory)."""

    def get_to_file(self, oid: str, dest: Path, expected_type: str | None = None) -> None:
        """Decompress the body into *dest*; *dest* is removed if verification fails."""

    def put_bytes(self, obj_type: str, body: bytes) -> str: ...

    def put_file(self, obj_type: str, src: Path) -> str:
        """Store the contents of *src*, streaming; returns the id."""

    def open_raw(self, oid: str) -> BinaryIO:
        """The encoded bytes as stored (MissingObjectError when absent), for transfer."""

    def put_raw(self, oid: str, stream: BinaryIO, body_to: BinaryIO | None = None) -> str:
        """Store encoded bytes read from *stream* as *oid*, after verifying they are that object.

        *body_to*, when given, also gets the decoded body as it is verified (a clone's
        snapshot is decoded once, not again to be loaded). It holds the body only if this
        returns, and only when the object was stored now: one already here is not read.
        """

    def iter_ids(self) -> Iterator[str]: ...

    def with_prefix(self, prefix: str) -> list[str]:
        """Ids starting with *prefix* (at least 2 hex digits), sorted."""

    def delete(self, oid: str) -> None:
        """Remove an object (no error if absent): gc only."""

    def stored_size(self, oid: str) -> int:
        """Encoded size in bytes."""

    def body_size(self, oid: str) -> int:
        """The body length the object's header declares (a cheap read)."""

    def object_type(self, oid: str) -> str: ...

    def verify(self, oid: str) -> str:
        """Recompute one object's hash; returns its type."""

    def mtime(self, oid: str) -> float:
        """When the object was stored (unix time): gc's prune age."""


@runtime_checkable
class RefStore(Protocol):
    """HEAD, branches, tags, remote branches, their reflogs, and keyframe records."""

    # -- reading
    def read(self, ref: str) -> str | None:
        """The id *ref* holds; None only when it does not exist."""

    def lookup(self, ref: str) -> str | None:
        """``read`` for a name a user typed: a name that can't be a commit ref names none."""

    def head(self) -> Head: ...

    def head_text(self) -> str | None:
        """HEAD as written (None when missing or unreadable): for comparisons only."""

    def list(self, prefix: str) -> dict[str, str]:
        """Short name -> id of every ref under *prefix* (a damaged one is an error)."""

    def branches(self) -> dict[str, str]: ...

    def tags(self) -> dict[str, str]: ...

    def check(self) -> tuple[dict[str, str | None], list]:
        """Every commit ref (HEAD first) and its value, and the DamagedRefErrors found (fsck)."""

    # -- writing
    def compare_and_swap(self, ref: str, expect: str | None, new: str | None, *,
                         message: str = "") -> bool:
        """Move *ref* from *expect* to *new* if it holds *expect* (None: absent / delete).

        Atomic against every other writer of the same store, without any lock the
        caller holds. False (nothing written) when *ref* held something else.
        """

    def update(self, ref: str, new: str, *, expect: str | None, message: str) -> None:
        """``compare_and_swap`` that raises RefConflictError when it loses."""

    def delete(self, ref: str, *, message: str) -> None: ...

    def set_head(self, *, branch: str | None = None, commit: str | None = None, message: str) -> None:
        """Attach HEAD to *branch* (symbolic), or detach it at *commit*."""

    def check_writable(self, refs: list[str]) -> None:
        """Prove, before an operation changes anything, that *refs* can be moved."""

    # -- reflog
    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]: ...

    def append_reflog(self, ref: str, old: str | None, new: str | None, message: str) -> None: ...

    def has_reflog(self, ref: str) -> bool: ...

    def reflog_names(self) -> list[str]:
        """Every ref with a reflog (HEAD first), deleted branches' included."""

    def reflog_lines(self, ref: str) -> list[str]:
        """The reflog of *ref* line by line, as written (torn lines too)."""

    def rewrite_reflog(self, ref: str, lines: list[str]) -> None:
        """Replace *ref*'s reflog (expiry); no lines removes it."""

    def reflog_ids(self) -> set[str]: ...

    # -- keyframe records (refs/keyframes/<commit> -> snapshot id)
    def keyframe(self, commit: str) -> str | None:
        """The snapshot id recorded for *commit*; None when absent or not an id."""

    def set_keyframe(self, commit: str, snapshot: str) -> None: ...

    def delete_keyframe(self, commit: str) -> None: ...

    def keyframes(self, among: Collection[str] | Callable[[str], bool] | None = None) -> dict[str, str]:
        """commit -> recorded value (stripped text; '' when unreadable) of every record (or of
        the commits *among* only, ids or a test of one: listed but not read otherwise)."""

    def migrate_keyframes(self) -> int:
        """Turn records kept in an older layout into keyframe refs (gc runs it); how many moved."""
