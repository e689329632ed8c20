"""HEAD, branches, tags, reflogs and keyframe records in S3: a ``storage.base.RefStore``.

L3. A ref is a small text key holding ``<id>\\n`` (``refs/heads/main``, ...) and
HEAD holds ``ref: refs/heads/<branch>`` or an id, as in the store directory.

**Compare-and-swap** uses S3 conditional writes, with no lock anywhere: read the
ref and its ETag; if it does not hold *expect*, lose; otherwise write *new* with
``If-Match: <etag>`` (``If-None-Match: *`` when creating) or delete with
``If-Match``. HTTP 412 means another writer moved the ref between the read and
the write: the swap lost (False, nothing written). HTTP 409 means a concurrent
conditional write to the same key was in flight: read again and retry, with
backoff, up to ``CONFLICT_ATTEMPTS`` times.

**Reflog**: S3 has no append, so each line is its own key,
``logs/<ref>/<time in ns, 20 digits>-<random>``, written by the winner right after
its swap. The time is taken after the read the swap compared against, so of two
successive moves the later one's key sorts later (on one clock; across machines
within their clock skew). A lost swap writes no line; a writer killed between
its swap and its line leaves the move unlogged (the ref itself is right).
Rewriting a reflog (expiry) writes the kept lines as one ``...-base`` key that
sorts first, then removes the old keys.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ..errors import DamagedRefError, RefPathConflictError, RemoteError
from ..storage.refbase import Raw, RefStoreBase
from ..storage.refnames import HEADS, parse_head, reflog_line
from .layout import HEAD
from .s3client import PreconditionFailed, S3Connection, WriteConflict, backoff_delay

LOGS = "logs/"
#: The most a ref (or HEAD, or a keyframe record: a line) and a reflog key may hold.
REF_KEY_MAX = 4096
LOG_KEY_MAX = 64 << 20
CONFLICT_ATTEMPTS = 8
#: Parallel GETs when many small keys are read (a listing of refs, a reflog).
READERS = 8
_ENTRY = re.compile(r"^\d{20}-(?:[0-9a-f]{8}|base)$")
BASE_ENTRY = "0" * 20 + "-base"


class S3RefStore(RefStoreBase):
    """A ``refbase.RefStoreBase`` backend: the keys, conditional writes and reflog keys of S3."""

    head_missing = "the key is missing"

    def __init__(self, conn: S3Connection) -> None:
        self.conn = conn

    def __repr__(self) -> str:
        return f"<S3RefStore {self.conn.url}>"

    def _where(self, ref: str) -> str:
        return f"{self.conn.url}/{ref}"

    # -- reading -----------------------------------------------------------------------------
    def _read_raw(self, ref: str) -> bytes | None:
        limit = LOG_KEY_MAX if ref.startswith(LOGS) else REF_KEY_MAX
        got = self.conn.get(ref, limit)
        if got is not None and len(got[0]) > limit:
            raise DamagedRefError(ref, self._where(ref), f"holds more than the {limit:,} bytes it may")
        return got[0] if got else None

    def _read_many(self, refs: list[str]) -> list[Raw]:
        """In parallel; an unreadable one (a key too long) is an error in its place, as in the base."""
        def one(ref: str) -> Raw:
            try:
                return self._read_raw(ref)
            except DamagedRefError as e:
                return e

        if len(refs) < 2:
            return [one(n) for n in refs]
        with ThreadPoolExecutor(READERS) as pool:
            return list(pool.map(one, refs))

    def _names(self, prefix: str) -> list[str]:
        """One listing of *prefix* (never of objects/)."""
        return [e.key for e in self.conn.list(prefix)]

    # -- writing -----------------------------------------------------------------------------
    def _swap(self, ref: str, expect: str | None, new: str | None, message: str) -> bool:
        """A conditional write (or delete) against the ETag read; False when it lost."""
        for attempt in range(CONFLICT_ATTEMPTS):
            if attempt:
                time.sleep(backoff_delay(attempt - 1, self.conn.backoff))
            # Creating: If-None-Match is the comparison (a ref there makes the PUT fail), so a
            # new branch costs no read first (one round trip less on every first push of one).
            got = None if expect is None and new is not None and ref != HEAD else self.conn.get(ref, REF_KEY_MAX)
            raw, etag = (got[0], got[1]) if got else (None, None)
            if ref == HEAD:
                current = parse_head(self._head_of(raw), self._where(HEAD), self.read).commit
            else:
                current = None if raw is None else self._parse_id(ref, raw)
            if current != expect:
                return False
            when = time.time_ns()  # after the read: a later move's line sorts after this one's
            try:
                if new is None:
                    self.conn.delete(ref, if_match=etag)
                elif etag is None:
                    self._check_free(ref)
                    self.conn.put(ref, (new + "\n").encode(), if_none_match=True)
                else:
                    self.conn.put(ref, (new + "\n").encode(), if_match=etag)
            except PreconditionFailed:
                # Also what our own write meets when its answer was lost and the request retried:
                # the ref then holds what we wrote. Holding exactly that is the swap's outcome.
                if ref == HEAD or not self._holds(ref, new):
                    return False
            except WriteConflict:
                continue
            self._log_move(ref, expect, new, message, when)
            return True
        raise RemoteError(self.conn.url, f"{ref} kept being written concurrently (HTTP 409 "
                                         f"{CONFLICT_ATTEMPTS} times); try again")

    def _holds(self, ref: str, value: str | None) -> bool:
        got = self.conn.get(ref, REF_KEY_MAX)
        if got is None:
            return value is None
        try:
            return self._parse_id(ref, got[0]) == value
        except DamagedRefError:
            return False

    def _check_free(self, ref: str) -> None:
        """Refuse to create a ref that would be a folder of refs, or under one ('a' and 'a/b'),
        as the store directory must: S3 would take both, and no clone could hold them."""
        if ref == HEAD:
            return
        parts = ref.split("/")
        under = next(iter(self.conn.list(f"{ref}/", limit=1)), None)  # a ref of which this is a folder
        blocking = [under.key] if under is not None else []
        blocking += ["/".join(parts[:i]) for i in range(3, len(parts))
                     if self.conn.head("/".join(parts[:i])) is not None]
        if blocking:
            raise RefPathConflictError(ref, blocking[0])

    def _log_move(self, ref: str, old: str | None, new: str | None, message: str, when: int) -> None:
        """The reflog lines of a move that happened (the ref's, and HEAD's when it is attached to
        the ref): written after the swap, so a failure here loses a line, never the move."""
        line = reflog_line(old, new, when / 1e9, message)
        with contextlib.suppress(RemoteError):
            branch = None
            if new is not None and ref.startswith(HEADS):  # one GET of HEAD: the branch is not read
                with contextlib.suppress(DamagedRefError):  # a damaged HEAD doesn't stop a push
                    branch = self._attached_branch()
            logs = self._move_logs(ref, new, branch)
            if len(logs) < 2:
                for name in logs:
                    self._append_line(name, line, when)
                return
            with ThreadPoolExecutor(2) as pool:  # two independent keys: one round trip, not two
                for f in [pool.submit(self._append_line, name, line, when) for name in logs]:
                    f.result()

    def _replace_head(self, data: bytes, old: str | None, new: str | None, message: str) -> None:
        when = time.time_ns()
        self.conn.put(HEAD, data)
        with contextlib.suppress(RemoteError):
            self._log((HEAD,), old, new, message, when)

    # -- reflog ------------------------------------------------------------------------------
    def _append_line(self, ref: str, line: str, when_ns: int) -> None:
        key = f"{LOGS}{ref}/{when_ns:020d}-{secrets.token_hex(4)}"
        self.conn.put(key, (line + "\n").encode())

    def _entries(self, ref: str) -> list[str]:
        """The keys of *ref*'s reflog lines, oldest first (one level: a/b's lines are not a's)."""
        base = f"{LOGS}{ref}/"
        return [e.key for e in self.conn.list(base, delimiter="/") if _ENTRY.match(e.key[len(base):])]

    def _log_lines(self, ref: str) -> list[str]:
        blobs = self._read_many(self._entries(ref))
        return [line for raw in blobs if isinstance(raw, bytes)
                for line in raw.decode("utf-8", errors="surrogateescape").splitlines()]

    def _has_log(self, ref: str) -> bool:
        return bool(self._entries(ref))

    def _log_names(self) -> Iterable[str]:
        for e in self.conn.list(LOGS):
            name, _, entry = e.key[len(LOGS):].rpartition("/")
            if _ENTRY.match(entry):
                yield name

    def _rewrite_log(self, ref: str, lines: list[str]) -> None:
        """The kept lines as one ``...-base`` key that sorts first, then the old keys removed."""
        old = self._entries(ref)
        base = f"{LOGS}{ref}/{BASE_ENTRY}"
        if lines:
            self.conn.put(base, "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
        for key in old:
            if key != base or not lines:
                self.conn.delete(key)

    # -- keyframe records ----------------------------------------------------------------------
    def _put_keyframe(self, ref: str, data: bytes) -> None:
        self.conn.put(ref, data)

    def _remove_keyframe(self, ref: str) -> None:
        self.conn.delete(ref)
