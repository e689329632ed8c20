"""In-memory backends of ``base.ObjectStore`` and ``base.RefStore``.

L1. The same contract as the store directory (``tests/test_storage_contract.py``
runs one suite on both): objects are kept encoded (so raw transfer moves the same
bytes a disk store would), every read verifies, refs move by compare-and-swap under
a lock, HEAD is symbolic or detached, moves are logged. For tests and scratch
repositories; nothing here survives the process.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import DamagedRefError, DbversError, MissingObjectError, RefConflictError
from ..formats import ZERO_ID, is_id
from ..objects import header, object_id
from . import codec
from .base import Head, ReflogEntry
from .refnames import (
    HEADS,
    KEYFRAMES,
    NAMESPACES,
    TAGS,
    check_ref_format,
    is_commit_ref,
    keyframe_ref,
    parse_head,
    parse_reflog,
    reflog_line,
)


class MemoryObjectStore:
    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        """*data*: id -> encoded bytes, kept (not copied): a caller may share it, or damage it in a test."""
        self._data: dict[str, bytes] = {} if data is None else data
        self._mtimes: dict[str, float] = {}
        self._lock = threading.Lock()

    def _raw(self, oid: str) -> bytes:
        try:
            return self._data[oid]
        except KeyError:
            raise MissingObjectError(oid) from None

    def _stream(self, oid: str, chunk: int = codec.CHUNK) -> Iterator[tuple[str, bytes]]:
        raw = self._raw(oid)
        return codec.stream(oid, lambda: codec.decoder_of_bytes(raw), chunk)

    def _store(self, oid: str, raw: bytes) -> str:
        with self._lock:
            self._data[oid] = raw
            self._mtimes[oid] = time.time()
        return oid

    def _reusable(self, oid: str) -> bool:
        if oid not in self._data:
            return False
        try:
            self.verify(oid)
        except DbversError:  # damaged: the write replaces it
            return False
        return True

    def has(self, oid: str) -> bool:
        return oid in self._data

    def get(self, oid: str, expected_type: str | None = None) -> bytes:
        return b"".join(codec.typed(oid, self._stream(oid), expected_type))

    def open_body(self, oid: str, expected_type: str | None = None) -> codec.VerifiedReader:
        return codec.VerifiedReader(codec.typed(oid, self._stream(oid, codec.READ_CHUNK), expected_type))

    def get_to_file(self, oid: str, dest: Path, expected_type: str | None = None) -> None:
        try:
            with open(dest, "wb") as out:
                for piece in codec.typed(oid, self._stream(oid), expected_type):
                    out.write(piece)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def put_bytes(self, obj_type: str, body: bytes) -> str:
        oid = object_id(obj_type, body)
        if self._reusable(oid):
            return oid
        return self._store(oid, b"".join(codec.encode(codec.body_chunks(obj_type, body))))

    def put_file(self, obj_type: str, src: Path) -> str:
        size = src.stat().st_size
        with open(src, "rb") as f:
            body = f.read(size + 1)
        if len(body) != size:
            raise OSError(f"{src} changed size while being stored")
        header(obj_type, size)  # refuses an unknown type like the disk store
        return self.put_bytes(obj_type, body)

    def open_raw(self, oid: str) -> BinaryIO:
        return io.BytesIO(self._raw(oid))

    def put_raw(self, oid: str, stream: BinaryIO) -> str:
        if not is_id(oid):
            raise ValueError(f"not an object id: {oid!r}")
        if self._reusable(oid):
            return oid
        raw = stream.read()
        for _ in codec.stream(oid, lambda: codec.decoder_of_bytes(raw)):
            pass
        return self._store(oid, raw)

    def iter_ids(self) -> Iterator[str]:
        yield from sorted(self._data)

    def with_prefix(self, prefix: str) -> list[str]:
        prefix = prefix.lower()
        if len(prefix) < 2 or not set(prefix) <= codec.HEX:
            return []
        return sorted(oid for oid in self._data if oid.startswith(prefix))

    def delete(self, oid: str) -> None:
        with self._lock:
            self._data.pop(oid, None)
            self._mtimes.pop(oid, None)

    def stored_size(self, oid: str) -> int:
        return len(self._raw(oid))

    def body_size(self, oid: str) -> int:
        raw = self._raw(oid)
        return codec.read_header(oid, lambda: codec.decoder_of_bytes(raw))[1]

    def object_type(self, oid: str) -> str:
        raw = self._raw(oid)
        return codec.read_header(oid, lambda: codec.decoder_of_bytes(raw))[0]

    def verify(self, oid: str) -> str:
        obj_type = ""
        for obj_type, _ in self._stream(oid):  # noqa: B007 - the last type is the answer
            pass
        return obj_type

    def mtime(self, oid: str) -> float:
        self._raw(oid)
        return self._mtimes[oid]


class MemoryRefStore:
    def __init__(self, head: str = "ref: refs/heads/main") -> None:
        self._refs: dict[str, str] = {}
        self._head = head
        self._logs: dict[str, list[str]] = {}
        self._lock = threading.RLock()

    # -- reading
    def read(self, ref: str) -> str | None:
        check_ref_format(ref)
        if ref == "HEAD":
            return self.head().commit
        return self._refs.get(ref)

    def lookup(self, ref: str) -> str | None:
        return self.read(ref) if is_commit_ref(ref) else None

    def head(self) -> Head:
        return parse_head(self._head.strip(), "HEAD", self.read)

    def head_text(self) -> str | None:
        return self._head + "\n"

    def list(self, prefix: str) -> dict[str, str]:
        return {name[len(prefix):]: v for name, v in sorted(self._refs.items()) if name.startswith(prefix)}

    def branches(self) -> dict[str, str]:
        return self.list(HEADS)

    def tags(self) -> dict[str, str]:
        return self.list(TAGS)

    def check(self) -> tuple[dict[str, str | None], list[DamagedRefError]]:
        values: dict[str, str | None] = {}
        problems: list[DamagedRefError] = []
        try:
            values["HEAD"] = self.head().commit
        except DamagedRefError as e:
            problems.append(e)
        values.update({n: v for n, v in sorted(self._refs.items()) if n.startswith(NAMESPACES)})
        return values, problems

    # -- writing
    def compare_and_swap(self, ref: str, expect: str | None, new: str | None, *,
                         message: str = "") -> bool:
        check_ref_format(ref)
        if new is not None and not is_id(new):
            raise ValueError(f"not a commit id: {new!r}")
        with self._lock:
            if self.read(ref) != expect:
                return False
            if not ref.startswith(KEYFRAMES):
                head = self.head() if new is not None else None
                self.append_reflog(ref, expect, new, message)
                if head is not None and head.branch is not None and HEADS + head.branch == ref:
                    self.append_reflog("HEAD", expect, new, message)
            if ref == "HEAD":
                self._head = new or ""
            elif new is None:
                self._refs.pop(ref, None)
            else:
                self._refs[ref] = new
            return True

    def update(self, ref: str, new: str, *, expect: str | None, message: str) -> None:
        if not self.compare_and_swap(ref, expect, new, message=message):
            raise RefConflictError(ref)

    def delete(self, ref: str, *, message: str) -> None:
        with self._lock:
            self.compare_and_swap(ref, self.read(ref), None, message=message)

    def set_head(self, *, branch: str | None = None, commit: str | None = None, message: str) -> None:
        with self._lock:
            old = None
            with contextlib.suppress(DamagedRefError):
                old = self.head().commit
            if branch is not None:
                target = HEADS + branch
                new, text = self.read(target), f"ref: {target}"
            else:
                if commit is None or not is_id(commit):
                    raise ValueError(f"not a commit id: {commit!r}")
                new, text = commit, commit
            self.append_reflog("HEAD", old, new, message)
            self._head = text

    def check_writable(self, refs: list[str]) -> None:
        for ref in refs:
            check_ref_format(ref)

    # -- reflog
    def append_reflog(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        check_ref_format(ref)
        with self._lock:
            self._logs.setdefault(ref, []).append(reflog_line(old, new, time.time(), message))

    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]:
        return parse_reflog("\n".join(self.reflog_lines(ref)))

    def has_reflog(self, ref: str) -> bool:
        check_ref_format(ref)
        return ref in self._logs

    def reflog_names(self) -> list[str]:
        return sorted(self._logs, key=lambda n: (n != "HEAD", n))

    def reflog_lines(self, ref: str) -> list[str]:
        check_ref_format(ref)
        return list(self._logs.get(ref, []))

    def rewrite_reflog(self, ref: str, lines: list[str]) -> None:
        check_ref_format(ref)
        with self._lock:
            if lines:
                self._logs[ref] = list(lines)
            else:
                self._logs.pop(ref, None)

    def reflog_ids(self) -> set[str]:
        ids = {oid for name in self._logs for e in self.reflog(name) for oid in (e.old, e.new)}
        ids.discard(ZERO_ID)
        return ids

    # -- keyframe records
    def keyframe(self, commit: str) -> str | None:
        return self._refs.get(keyframe_ref(commit))

    def set_keyframe(self, commit: str, snapshot: str) -> None:
        if not is_id(snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        with self._lock:
            self._refs[keyframe_ref(commit)] = snapshot

    def delete_keyframe(self, commit: str) -> None:
        with self._lock:
            self._refs.pop(keyframe_ref(commit), None)

    def migrate_keyframes(self) -> int:
        return 0  # never had the old keyframes/ layout

    def keyframes(self) -> dict[str, str]:
        return {name[len(KEYFRAMES):]: v for name, v in sorted(self._refs.items()) if name.startswith(KEYFRAMES)}
