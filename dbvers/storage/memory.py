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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import DbversError, MissingObjectError
from ..formats import is_id
from ..objects import header, object_id
from . import codec
from .refbase import RefStoreBase
from .refnames import KEYFRAMES


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

    def put_raw(self, oid: str, stream: BinaryIO, body_to: BinaryIO | None = None) -> str:
        if not is_id(oid):
            raise ValueError(f"not an object id: {oid!r}")
        if self._reusable(oid):
            return oid
        raw = stream.read()
        codec.verify(oid, lambda: codec.decoder_of_bytes(raw), body_to)
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


class MemoryRefStore(RefStoreBase):
    """Refs and reflogs kept as the bytes the store directory would hold (``<id>\\n``, UTF-8 lines)."""

    def __init__(self, head: str = "ref: refs/heads/main") -> None:
        self._refs: dict[str, bytes] = {}
        self._head: bytes | None = (head + "\n").encode()
        self._logs: dict[str, list[bytes]] = {}
        self._lock = threading.RLock()

    def _where(self, ref: str) -> str:
        return ref

    def _read_raw(self, ref: str) -> bytes | None:
        return self._head if ref == "HEAD" else self._refs.get(ref)

    def _names(self, prefix: str) -> list[str]:
        return sorted(name for name in self._refs if name.startswith(prefix))

    def _swap(self, ref: str, expect: str | None, new: str | None, message: str) -> bool:
        with self._lock:
            if self.read(ref) != expect:
                return False
            branch = self._attached_branch() if new is not None and not ref.startswith(KEYFRAMES) else None
            self._log(self._move_logs(ref, new, branch), expect, new, message)
            data = None if new is None else (new + "\n").encode()
            if ref == "HEAD":
                self._head = data
            elif data is None:
                self._refs.pop(ref, None)
            else:
                self._refs[ref] = data
            return True

    def _head_lock(self) -> contextlib.AbstractContextManager[object]:
        return self._lock

    def _replace_head(self, data: bytes, old: str | None, new: str | None, message: str) -> None:
        self._log(("HEAD",), old, new, message)
        self._head = data

    def _append_line(self, ref: str, line: str, when_ns: int) -> None:
        data = line.encode("utf-8")  # what the store directory writes (and refuses)
        with self._lock:
            self._logs.setdefault(ref, []).append(data)

    def _has_log(self, ref: str) -> bool:
        return ref in self._logs

    def _log_lines(self, ref: str) -> list[str]:
        return [line.decode("utf-8", "surrogateescape") for line in self._logs.get(ref, [])]

    def _log_names(self) -> Iterable[str]:
        return list(self._logs)

    def _rewrite_log(self, ref: str, lines: list[str]) -> None:
        with self._lock:
            if lines:
                self._logs[ref] = [line.encode("utf-8", "surrogateescape") for line in lines]
            else:
                self._logs.pop(ref, None)

    def _put_keyframe(self, ref: str, data: bytes) -> None:
        with self._lock:
            self._refs[ref] = data

    def _remove_keyframe(self, ref: str) -> None:
        with self._lock:
            self._refs.pop(ref, None)
