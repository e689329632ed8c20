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
from concurrent.futures import ThreadPoolExecutor

from ..errors import DamagedRefError, RefConflictError, RefPathConflictError, RemoteError
from ..formats import ZERO_ID, is_id
from ..storage.base import Head, ReflogEntry
from ..storage.refnames import (
    HEADS,
    KEYFRAMES,
    NAMESPACES,
    TAGS,
    check_ref_format,
    is_commit_ref,
    is_valid_ref,
    keyframe_ref,
    parse_head,
    parse_reflog,
    printable,
    reflog_line,
)
from .layout import HEAD
from .s3client import PreconditionFailed, S3Connection, WriteConflict, backoff_delay

LOGS = "logs/"
CONFLICT_ATTEMPTS = 8
#: Parallel GETs when many small keys are read (a listing of refs, a reflog).
READERS = 8
_ENTRY = re.compile(r"^\d{20}-(?:[0-9a-f]{8}|base)$")
BASE_ENTRY = "0" * 20 + "-base"


class S3RefStore:
    def __init__(self, conn: S3Connection) -> None:
        self.conn = conn

    def __repr__(self) -> str:
        return f"<S3RefStore {self.conn.url}>"

    def _where(self, key: str) -> str:
        return f"{self.conn.url}/{key}"

    # -- reading -----------------------------------------------------------------------------
    def _get(self, ref: str) -> tuple[str | None, str | None]:
        """(id, etag) of a ref key; (None, None) when absent; DamagedRefError when not an id."""
        got = self.conn.get(ref)
        if got is None:
            return None, None
        return self._parse_id(ref, got[0]), got[1]

    def _parse_id(self, ref: str, raw: bytes) -> str:
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DamagedRefError(ref, self._where(ref), "holds bytes that are not UTF-8") from None
        if not is_id(value):
            raise DamagedRefError(ref, self._where(ref), f"holds {printable(value, 40)!r}, not a commit id")
        return value

    def read(self, ref: str) -> str | None:
        check_ref_format(ref)
        if ref == HEAD:
            return self.head().commit
        return self._get(ref)[0]

    def lookup(self, ref: str) -> str | None:
        return self.read(ref) if is_commit_ref(ref) else None

    def _head_raw(self) -> tuple[str, str]:
        got = self.conn.get(HEAD)
        if got is None:
            raise DamagedRefError(HEAD, self._where(HEAD), "the key is missing")
        try:
            return got[0].decode("utf-8").strip(), got[1]
        except UnicodeDecodeError:
            raise DamagedRefError(HEAD, self._where(HEAD), "holds bytes that are not UTF-8") from None

    def head(self) -> Head:
        return parse_head(self._head_raw()[0], self._where(HEAD), self.read)

    def head_text(self) -> str | None:
        got = self.conn.get(HEAD)
        try:
            return got[0].decode("utf-8") if got else None
        except UnicodeDecodeError:
            return None

    def _names(self, prefix: str) -> list[str]:
        return [e.key for e in self.conn.list(prefix)]

    def _read_many(self, names: list[str]) -> list[bytes | None]:
        def one(name: str) -> bytes | None:
            got = self.conn.get(name)
            return got[0] if got else None
        if len(names) < 2:
            return [one(n) for n in names]
        with ThreadPoolExecutor(READERS) as pool:
            return list(pool.map(one, names))

    def list(self, prefix: str) -> dict[str, str]:
        """Short name -> id of every ref under *prefix*: one listing of that prefix (never of
        objects/) and the refs' GETs in parallel; a damaged ref is an error."""
        names = self._names(prefix)
        for full in names:
            if not is_valid_ref(full):
                raise DamagedRefError(printable(full), self._where(full), "is not a valid ref name")
        out: dict[str, str] = {}
        for full, raw in zip(names, self._read_many(names), strict=True):
            if raw is not None:  # deleted since the listing
                out[full[len(prefix):]] = self._parse_id(full, raw)
        return out

    def branches(self) -> dict[str, str]:
        return self.list(HEADS)

    def tags(self) -> dict[str, str]:
        return self.list(TAGS)

    def check(self) -> tuple[dict[str, str | None], list[DamagedRefError]]:
        values: dict[str, str | None] = {}
        problems: list[DamagedRefError] = []
        try:
            values[HEAD] = self.head().commit
        except DamagedRefError as e:
            problems.append(e)
        names = [n for prefix in NAMESPACES for n in self._names(prefix)]
        for full, raw in zip(names, self._read_many(names), strict=True):
            if not is_valid_ref(full):
                problems.append(DamagedRefError(printable(full), self._where(full), "is not a valid ref name"))
                continue
            try:
                values[full] = None if raw is None else self._parse_id(full, raw)
            except DamagedRefError as e:
                if not any(p.ref == e.ref for p in problems):
                    problems.append(e)
        return values, problems

    # -- writing -----------------------------------------------------------------------------
    def compare_and_swap(self, ref: str, expect: str | None, new: str | None, *,
                         message: str = "") -> bool:
        """Move *ref* from *expect* to *new* (None deletes) by a conditional write; False when it lost."""
        check_ref_format(ref)
        if new is not None and not is_id(new):
            raise ValueError(f"not a commit id: {new!r}")
        logged = not ref.startswith(KEYFRAMES)
        for attempt in range(CONFLICT_ATTEMPTS):
            if attempt:
                time.sleep(backoff_delay(attempt - 1, self.conn.backoff))
            if ref == HEAD:
                text, etag = self._head_raw()
                current: str | None = parse_head(text, self._where(HEAD), self.read).commit
            else:
                current, etag = self._get(ref)
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
                return False
            except WriteConflict:
                continue
            if logged:
                self._log_move(ref, expect, new, message, when)
            return True
        raise RemoteError(self.conn.url, f"{ref} kept being written concurrently (HTTP 409 "
                                         f"{CONFLICT_ATTEMPTS} times); try again")

    def _head_branch(self) -> str | None:
        """The branch HEAD is attached to (one GET: the branch itself is not read); None if detached."""
        with contextlib.suppress(DamagedRefError):
            return parse_head(self._head_raw()[0], self._where(HEAD), lambda ref: None).branch
        return None  # a damaged HEAD doesn't stop a push; its reflog just misses the line

    def _check_free(self, ref: str) -> None:
        """Refuse to create a ref that would be a folder of refs, or under one ('a' and 'a/b'),
        as the store directory must: S3 would take both, and no clone could hold them."""
        if ref == HEAD:
            return
        parts = ref.split("/")
        blocking = [f"{ref}/"] if next(iter(self.conn.list(f"{ref}/", limit=1)), None) else []
        blocking += ["/".join(parts[:i]) for i in range(3, len(parts))
                     if self.conn.head("/".join(parts[:i])) is not None]
        if blocking:
            raise RefPathConflictError(ref, blocking[0].rstrip("/"))

    def _log_move(self, ref: str, old: str | None, new: str | None, message: str, when: int) -> None:
        """The reflog lines of a move that happened (the ref's, and HEAD's when it is attached to
        the ref): written after the swap, so a failure here loses a line, never the move."""
        line = reflog_line(old, new, when / 1e9, message)
        with contextlib.suppress(RemoteError):
            branch = self._head_branch() if new is not None and ref.startswith(HEADS) else None
            if branch is None or HEADS + branch != ref:
                self._append(ref, line, when)
                return
            with ThreadPoolExecutor(2) as pool:  # two independent keys: one round trip, not two
                for f in [pool.submit(self._append, name, line, when) for name in (ref, HEAD)]:
                    f.result()

    def update(self, ref: str, new: str, *, expect: str | None, message: str) -> None:
        if not self.compare_and_swap(ref, expect, new, message=message):
            raise RefConflictError(ref)

    def delete(self, ref: str, *, message: str) -> None:
        while not self.compare_and_swap(ref, self.read(ref), None, message=message):
            pass  # moved between the read and the write: delete what it holds now

    def set_head(self, *, branch: str | None = None, commit: str | None = None, message: str) -> None:
        old = None
        with contextlib.suppress(DamagedRefError):
            old = self.head().commit
        if branch is not None:
            target = HEADS + branch
            new, text = self.read(target), f"ref: {target}\n"
        else:
            if commit is None or not is_id(commit):
                raise ValueError(f"not a commit id: {commit!r}")
            new, text = commit, f"{commit}\n"
        when = time.time_ns()
        self.conn.put(HEAD, text.encode())
        with contextlib.suppress(RemoteError):
            self._append(HEAD, reflog_line(old, new, when / 1e9, message), when)

    def check_writable(self, refs: list[str]) -> None:
        for ref in refs:
            check_ref_format(ref)

    # -- reflog ------------------------------------------------------------------------------
    def _append(self, ref: str, line: str, when: int) -> None:
        key = f"{LOGS}{ref}/{when:020d}-{secrets.token_hex(4)}"
        self.conn.put(key, (line + "\n").encode())

    def append_reflog(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        check_ref_format(ref)
        when = time.time_ns()
        self._append(ref, reflog_line(old, new, when / 1e9, message), when)

    def _entries(self, ref: str) -> list[str]:
        """The keys of *ref*'s reflog lines, oldest first (one level: a/b's lines are not a's)."""
        base = f"{LOGS}{ref}/"
        return [e.key for e in self.conn.list(base, delimiter="/") if _ENTRY.match(e.key[len(base):])]

    def reflog_lines(self, ref: str) -> list[str]:
        check_ref_format(ref)
        blobs = self._read_many(self._entries(ref))
        return [line for raw in blobs if raw is not None
                for line in raw.decode("utf-8", errors="surrogateescape").splitlines()]

    def reflog(self, ref: str = HEAD) -> list[ReflogEntry]:
        return parse_reflog("\n".join(self.reflog_lines(ref)))

    def has_reflog(self, ref: str) -> bool:
        check_ref_format(ref)
        return bool(self._entries(ref))

    def reflog_names(self) -> list[str]:
        names = set()
        for e in self.conn.list(LOGS):
            name, _, entry = e.key[len(LOGS):].rpartition("/")
            if _ENTRY.match(entry) and is_commit_ref(name):
                names.add(name)
        return sorted(names, key=lambda n: (n != HEAD, n))

    def rewrite_reflog(self, ref: str, lines: list[str]) -> None:
        check_ref_format(ref)
        old = self._entries(ref)
        base = f"{LOGS}{ref}/{BASE_ENTRY}"
        if lines:
            self.conn.put(base, "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
        for key in old:
            if key != base or not lines:
                self.conn.delete(key)

    def reflog_ids(self) -> set[str]:
        ids = {oid for name in self.reflog_names() for e in self.reflog(name) for oid in (e.old, e.new)}
        ids.discard(ZERO_ID)
        return ids

    # -- keyframe records ----------------------------------------------------------------------
    def keyframe(self, commit: str) -> str | None:
        got = self.conn.get(keyframe_ref(commit))
        value = got[0].decode("utf-8", errors="replace").strip() if got else ""
        return value if is_id(value) else None

    def set_keyframe(self, commit: str, snapshot: str) -> None:
        if not is_id(snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        self.conn.put(keyframe_ref(commit), (snapshot + "\n").encode())

    def delete_keyframe(self, commit: str) -> None:
        self.conn.delete(keyframe_ref(commit))

    def keyframes(self) -> dict[str, str]:
        names = [n for n in self._names(KEYFRAMES) if is_id(n[len(KEYFRAMES):])]
        return {n[len(KEYFRAMES):]: (raw or b"").decode("utf-8", errors="replace").strip()
                for n, raw in zip(names, self._read_many(names), strict=True)}

    def migrate_keyframes(self) -> int:
        return 0  # a remote never had the old keyframes/ layout
