"""The one implementation of ``base.RefStore``'s bookkeeping, on a few primitives per backend.

L1 (imports L0 and ``storage.base``/``refnames``). Every ref store subclasses
:class:`RefStoreBase`: ``local_refs`` (the store directory, and a directory remote),
``memory``, and ``remotes.s3refs`` (L3; it may build on L1). A backend provides only
how it keeps bytes — read a ref's raw bytes, list the refs under a prefix,
compare-and-swap one ref, replace HEAD, append/read/rewrite a reflog, write a
keyframe record. What the bytes *mean* is here, once:

* name validation: every public method passes the full ref name through
  ``refnames.check_ref_format`` before a primitive sees it;
* parsing a ref's value (``<id>\\n``) and HEAD (``ref: refs/heads/<branch>`` or an id),
  so a ref that one backend calls damaged, every backend does, in the same words;
* which reflogs a move writes to (the ref's, and HEAD's while HEAD is attached to it;
  keyframe refs have none), the reflog line format and its parsing;
* lookup, listing, fsck's ``check``, ``update``/``delete`` on ``compare_and_swap``,
  ``set_head``, ``reflog_ids`` and keyframe records.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable
from typing import TypeAlias

from ..errors import DamagedRefError, RefConflictError
from ..formats import ZERO_ID, is_id
from .base import Head, ReflogEntry
from .refnames import (
    HEADS,
    KEYFRAMES,
    NAMESPACES,
    TAGS,
    check_ref_format,
    check_ref_prefix,
    is_commit_ref,
    is_valid_ref,
    keyframe_ref,
    parse_head,
    parse_reflog,
    printable,
    reflog_line,
)

#: One ref as read: its bytes, None when it does not exist, or why it can't be read
#: (returned in its place by ``_read_many``, so one damaged ref doesn't hide the others from fsck).
Raw: TypeAlias = bytes | DamagedRefError | None


class RefStoreBase(ABC):
    """``base.RefStore`` on the primitives below; a backend implements the abstract ones."""

    #: The detail of the DamagedRefError for a HEAD that does not exist.
    head_missing = "is missing"

    # -- the primitives: names reaching them are validated full names ------------------------------
    @abstractmethod
    def _where(self, ref: str) -> str:
        """Where *ref* is kept, for messages (a path, a URL)."""

    @abstractmethod
    def _read_raw(self, ref: str) -> bytes | None:
        """The bytes kept for *ref* (HEAD too); None when absent; DamagedRefError when unreadable."""

    def _read_many(self, refs: list[str]) -> list[Raw]:
        """``_read_raw`` of each, an error in its place (a backend with slow reads overrides it)."""
        out: list[Raw] = []
        for ref in refs:
            try:
                out.append(self._read_raw(ref))
            except DamagedRefError as e:
                out.append(e)
        return out

    @abstractmethod
    def _names(self, prefix: str) -> list[str]:
        """Full names of the refs kept under *prefix*, sorted (invalid ones too: callers report them)."""

    @abstractmethod
    def _swap(self, ref: str, expect: str | None, new: str | None, message: str) -> bool:
        """The atomic compare-and-swap (*new* already checked to be an id or None); logs with
        ``_log(self._move_logs(...), ...)``."""

    def _head_lock(self) -> contextlib.AbstractContextManager[object]:
        """Held while ``set_head`` reads the old HEAD and writes the new one (none by default)."""
        return contextlib.nullcontext()

    @abstractmethod
    def _replace_head(self, data: bytes, old: str | None, new: str | None, message: str) -> None:
        """Write HEAD's new bytes and its reflog line (each backend orders the two its safe way)."""

    @abstractmethod
    def _append_line(self, ref: str, line: str, when_ns: int) -> None:
        """Append one reflog line (*when_ns*: the time the line holds, for backends that key by it)."""

    @abstractmethod
    def _log_lines(self, ref: str) -> list[str]:
        """The reflog of *ref* line by line as written (surrogate-escaped); [] when there is none."""

    @abstractmethod
    def _has_log(self, ref: str) -> bool: ...

    @abstractmethod
    def _log_names(self) -> Iterable[str]:
        """The names reflogs are kept under (anything there: callers keep the commit refs)."""

    @abstractmethod
    def _rewrite_log(self, ref: str, lines: list[str]) -> None: ...

    @abstractmethod
    def _put_keyframe(self, ref: str, data: bytes) -> None: ...

    @abstractmethod
    def _remove_keyframe(self, ref: str) -> None:
        """Remove a keyframe record (no error if absent)."""

    def _legacy_keyframe(self, commit: str) -> bytes | None:
        """A record kept in an older layout (``keyframes/<commit>``); only the store directory has one."""
        return None

    def _legacy_keyframe_commits(self) -> Iterable[str]:
        return ()

    # -- shared helpers for the backends --------------------------------------------------------
    def _parse_id(self, ref: str, raw: bytes) -> str:
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DamagedRefError(ref, self._where(ref), "holds bytes that are not UTF-8") from None
        if not value:
            raise DamagedRefError(ref, self._where(ref), "is empty")
        if not is_id(value):
            raise DamagedRefError(ref, self._where(ref), f"holds {printable(value, 40)!r}, not a commit id")
        return value

    def _value(self, ref: str, raw: Raw) -> str | None:
        if isinstance(raw, DamagedRefError):
            raise raw
        return None if raw is None else self._parse_id(ref, raw)

    def _head_of(self, raw: bytes | None) -> str:
        """HEAD's stripped text from its bytes; DamagedRefError when missing or not UTF-8."""
        if raw is None:
            raise DamagedRefError("HEAD", self._where("HEAD"), self.head_missing)
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DamagedRefError("HEAD", self._where("HEAD"), "holds bytes that are not UTF-8") from None

    def _attached_branch(self) -> str | None:
        """The branch HEAD is attached to, reading HEAD alone (None: detached); a damaged HEAD raises."""
        return parse_head(self._head_of(self._read_raw("HEAD")), self._where("HEAD"), lambda ref: None).branch

    @staticmethod
    def _move_logs(ref: str, new: str | None, branch: str | None) -> tuple[str, ...]:
        """The reflogs a move of *ref* is logged in, HEAD attached to *branch*: its own, and HEAD's
        when *ref* is the checked-out branch (not for a deletion); none for a keyframe record."""
        if ref.startswith(KEYFRAMES):
            return ()
        if new is not None and branch is not None and HEADS + branch == ref:
            return (ref, "HEAD")
        return (ref,)

    def _log(self, refs: Iterable[str], old: str | None, new: str | None, message: str,
             when_ns: int | None = None) -> None:
        """One move's line appended to each reflog in *refs*."""
        when = time.time_ns() if when_ns is None else when_ns
        line = reflog_line(old, new, when / 1e9, message)
        for ref in refs:
            self._append_line(ref, line, when)

    def _bad_name(self, full: str) -> DamagedRefError:
        return DamagedRefError(printable(full), self._where(full), "is not a valid ref name")

    # -- reading -------------------------------------------------------------------------------
    def read(self, ref: str) -> str | None:
        """The id *ref* holds (HEAD: the commit it resolves to); None only when it does not exist."""
        check_ref_format(ref)
        if ref == "HEAD":
            return self.head().commit
        return self._value(ref, self._read_raw(ref))

    def lookup(self, ref: str) -> str | None:
        """``read`` for a name a user typed: a name that can't be a commit ref names no ref."""
        return self.read(ref) if is_commit_ref(ref) else None

    def head(self) -> Head:
        return parse_head(self._head_of(self._read_raw("HEAD")), self._where("HEAD"), self.read)

    def head_text(self) -> str | None:
        """HEAD as written (None when missing or unreadable): for comparisons only."""
        try:
            raw = self._read_raw("HEAD")
            return None if raw is None else raw.decode("utf-8")
        except (DamagedRefError, UnicodeDecodeError):
            return None

    def list(self, prefix: str) -> dict[str, str]:
        """Short name -> id of every ref under *prefix*; a damaged one is an error
        (a listing that skipped it would let gc or a backup forget its history)."""
        names = self._names(check_ref_prefix(prefix))
        for full in names:
            if not is_valid_ref(full):
                raise self._bad_name(full)
        out: dict[str, str] = {}
        for full, raw in zip(names, self._read_many(names), strict=True):
            value = self._value(full, raw)
            if value is not None:  # None: deleted since the listing
                out[full[len(prefix):]] = value
        return out

    def branches(self) -> dict[str, str]:
        return self.list(HEADS)

    def tags(self) -> dict[str, str]:
        return self.list(TAGS)

    def check(self) -> tuple[dict[str, str | None], list[DamagedRefError]]:
        """Every commit ref (HEAD first) and its value, and every ref that can't be read (for fsck)."""
        values: dict[str, str | None] = {}
        problems: list[DamagedRefError] = []
        try:
            values["HEAD"] = self.head().commit
        except DamagedRefError as e:
            problems.append(e)
        names = [n for prefix in NAMESPACES for n in self._names(prefix)]
        valid = [n for n in names if is_valid_ref(n)]
        raws = dict(zip(valid, self._read_many(valid), strict=True))
        for full in names:
            if full not in raws:
                problems.append(self._bad_name(full))
                continue
            try:
                values[full] = self._value(full, raws[full])
            except DamagedRefError as e:
                if not any(p.ref == e.ref for p in problems):  # HEAD's branch is reported once
                    problems.append(e)
        return values, problems

    # -- writing -------------------------------------------------------------------------------
    def compare_and_swap(self, ref: str, expect: str | None, new: str | None, *,
                         message: str = "") -> bool:
        """Move *ref* from *expect* to *new* (None deletes) if it holds *expect*; False when it
        held something else (nothing written). Atomic without any lock the caller holds."""
        check_ref_format(ref)
        if new is not None and not is_id(new):
            raise ValueError(f"not a commit id: {new!r}")
        return self._swap(ref, expect, new, message)

    def update(self, ref: str, new: str, *, expect: str | None, message: str) -> None:
        """Compare-and-swap *ref* from *expect* to *new*; RefConflictError when it moved meanwhile."""
        if not self.compare_and_swap(ref, expect, new, message=message):
            raise RefConflictError(ref)

    def delete(self, ref: str, *, message: str) -> None:
        """Remove *ref* whatever it holds (its reflog gets the line, and stays)."""
        while not self.compare_and_swap(ref, self.read(ref), None, message=message):
            pass  # moved between the read and the swap: delete what it holds now

    def set_head(self, *, branch: str | None = None, commit: str | None = None, message: str) -> None:
        """Attach HEAD to *branch* (symbolic), or detach it at *commit*."""
        with self._head_lock():
            old = None
            with contextlib.suppress(DamagedRefError):  # setting HEAD is how a damaged one is replaced
                old = self.head().commit
            if branch is not None:
                target = HEADS + branch
                new, text = self.read(target), f"ref: {target}\n"  # read validates the name
            else:
                if commit is None or not is_id(commit):
                    raise ValueError(f"not a commit id: {commit!r}")
                new, text = commit, f"{commit}\n"
            self._replace_head(text.encode(), old, new, message)

    def check_writable(self, refs: list[str]) -> None:
        """Prove, before an operation changes anything, that *refs* can be moved (here: valid names)."""
        for ref in refs:
            check_ref_format(ref)

    # -- reflog --------------------------------------------------------------------------------
    def append_reflog(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        check_ref_format(ref)
        self._log((ref,), old, new, message)

    def reflog_lines(self, ref: str) -> list[str]:
        """The reflog of *ref* line by line, as written (torn lines too: the caller decides)."""
        check_ref_format(ref)
        return self._log_lines(ref)

    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]:
        text = "\n".join(self.reflog_lines(ref))
        # Bytes that are not UTF-8 read as U+FFFD: a message never holds a surrogate a console can't print.
        return parse_reflog(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))

    def has_reflog(self, ref: str) -> bool:
        check_ref_format(ref)
        return self._has_log(ref)

    def reflog_names(self) -> list[str]:
        """Full names of every reflog there is (HEAD first), a deleted branch's included."""
        # Anything else kept there (a temp file, a stray) is not a reflog.
        return sorted({n for n in self._log_names() if is_commit_ref(n)}, key=lambda n: (n != "HEAD", n))

    def rewrite_reflog(self, ref: str, lines: list[str]) -> None:
        """Replace *ref*'s reflog with *lines* (expiry); no lines removes it."""
        check_ref_format(ref)
        self._rewrite_log(ref, lines)

    def reflog_ids(self) -> set[str]:
        ids = {oid for name in self.reflog_names() for e in self.reflog(name) for oid in (e.old, e.new)}
        ids.discard(ZERO_ID)
        return ids

    # -- keyframe records ----------------------------------------------------------------------
    def _keyframe_texts(self, commits: list[str]) -> dict[str, str]:
        """commit -> the record's stripped text ('' when unreadable: fsck reports it, reads ignore it)."""
        out: dict[str, str] = {}
        for commit, raw in zip(commits, self._read_many([keyframe_ref(c) for c in commits]), strict=True):
            if raw is None:
                raw = self._legacy_keyframe(commit)
            if raw is not None:
                out[commit] = "" if isinstance(raw, DamagedRefError) else raw.decode("utf-8", "replace").strip()
        return out

    def keyframe(self, commit: str) -> str | None:
        """The snapshot id recorded for *commit*; None when there is none or it is not an id
        (a record is optional derived data)."""
        value = self._keyframe_texts([commit]).get(commit, "")
        return value if is_id(value) else None

    def set_keyframe(self, commit: str, snapshot: str) -> None:
        """Record *snapshot* as *commit*'s keyframe (replacing any record, garbage included)."""
        if not is_id(snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        self._put_keyframe(keyframe_ref(commit), (snapshot + "\n").encode())

    def delete_keyframe(self, commit: str) -> None:
        self._remove_keyframe(keyframe_ref(commit))

    def keyframes(self, among: Collection[str] | Callable[[str], bool] | None = None) -> dict[str, str]:
        """commit -> recorded text of every keyframe record (temp files left out), or of those
        of the commits *among* only (ids, or a test of one): the names are listed, only those
        records are read (on a remote, a read is a request: a fetch of one commit reads at most one)."""
        commits = {full[len(KEYFRAMES):] for full in self._names(KEYFRAMES)}
        commits.update(self._legacy_keyframe_commits())
        if callable(among):
            commits = {c for c in commits if among(c)}
        elif among is not None:
            commits &= set(among)
        return self._keyframe_texts(sorted(c for c in commits if is_id(c)))

    def migrate_keyframes(self) -> int:
        """Turn records of an older layout into keyframe refs; how many moved (none by default)."""
        return 0
