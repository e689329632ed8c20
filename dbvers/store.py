"""The content-addressed object store.

``objects/<2 hex>/<62 hex>`` holds zstd (pyarrow's codec) of the object's
canonical bytes (``objects.header`` + body). Writes go to a temp file that is
fsynced and renamed; every read recomputes the SHA-256 and refuses a mismatch.
A write of an id that already exists re-verifies the stored copy and replaces
it (atomically) when it is damaged, so nothing new is ever built on a bad object.
Large objects (snapshots) stream through files so memory stays flat.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CorruptObjectError, DbversError, MissingObjectError, StorageError
from .fsutil import publish, temp_path
from .objects import OBJECT_TYPES, header, object_id

CHUNK = 8 << 20
# zstd's own default level. pyarrow's compressed streams use level 1, which makes
# snapshots ~14 % larger (and backups larger than `tar czf`). Levels are set per
# frame, so objects are written as one frame per CHUNK; any zstd decoder (and
# pyarrow's input_stream) reads concatenated frames as one stream.
ZSTD_LEVEL = 3
_HEX = set("0123456789abcdef")


def _pa() -> Any:
    # Imported lazily: pyarrow's import costs ~150 ms and status/log don't need it.
    import pyarrow

    return pyarrow


def _write_compressed(dest: Path, chunks: Iterator[bytes]) -> None:
    codec = _pa().Codec("zstd", compression_level=ZSTD_LEVEL)
    with open(dest, "wb") as out:
        for chunk in chunks:
            if chunk:
                out.write(codec.compress(chunk, asbytes=True))


def _parse_header(buf: bytes, object_id_: str) -> tuple[str, int, int]:
    """Return (type, body length, header length) or raise CorruptObjectError."""
    nul = buf.find(b"\0", 0, 64)
    if nul < 0:
        raise CorruptObjectError(object_id_, "no object header")
    try:
        obj_type, size = buf[:nul].decode().split(" ")
        length = int(size)
    except ValueError:
        raise CorruptObjectError(object_id_, "malformed object header") from None
    if obj_type not in OBJECT_TYPES:
        raise CorruptObjectError(object_id_, f"unknown object type {obj_type!r}")
    return obj_type, length, nul + 1


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths -------------------------------------------------------------
    def path(self, oid: str) -> Path:
        return self.root / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file()

    def stored_size(self, oid: str) -> int:
        return self.path(oid).stat().st_size

    def iter_ids(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for d in sorted(self.root.iterdir()):
            if len(d.name) != 2 or not d.is_dir():
                continue
            for f in sorted(d.iterdir()):
                oid = d.name + f.name
                if len(oid) == 64 and set(oid) <= _HEX:
                    yield oid

    def with_prefix(self, prefix: str) -> list[str]:
        prefix = prefix.lower()
        if len(prefix) < 2 or not set(prefix) <= _HEX:
            return []
        d = self.root / prefix[:2]
        if not d.is_dir():
            return []
        rest = prefix[2:]
        return sorted(d.name + f.name for f in d.iterdir() if f.name.startswith(rest))

    # -- writing -----------------------------------------------------------
    def _reusable(self, oid: str) -> bool:
        """True when *oid* is already stored intact, so a write of it can be skipped.

        An existing file is re-verified rather than trusted: a commit that reuses
        an object (same schema, same snapshot) must not build on a damaged copy,
        and a write that has the right bytes in hand is the cheapest repair there
        is. Verifying decompresses and hashes (zstd decodes several times faster
        than it encodes), so it never costs more than the write it replaces.
        """
        if not self.path(oid).exists():
            return False
        try:
            self.verify(oid)
        except DbversError:
            return False
        return True

    def _publish(self, tmp: Path, oid: str) -> str:
        """Install *tmp* as object *oid*, replacing a damaged copy atomically (rename over it)."""
        target = self.path(oid)
        if self._reusable(oid):
            tmp.unlink()
            return oid
        target.parent.mkdir(exist_ok=True)
        publish(tmp, target)
        return oid

    def put_bytes(self, obj_type: str, body: bytes) -> str:
        oid = object_id(obj_type, body)
        if self._reusable(oid):
            return oid
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.root)
        try:
            head = header(obj_type, len(body))
            _write_compressed(tmp, iter([head + body[:CHUNK]] + [
                body[i:i + CHUNK] for i in range(CHUNK, len(body), CHUNK)]))
            target = self.path(oid)
            target.parent.mkdir(exist_ok=True)
            publish(tmp, target)
            return oid
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(str(self.root), e) from e

    def put_file(self, obj_type: str, src: Path) -> str:
        """Store the contents of *src*, streaming: hash and compress in one pass."""
        self.root.mkdir(parents=True, exist_ok=True)
        size = src.stat().st_size
        head = header(obj_type, size)
        h = hashlib.sha256(head)
        tmp = temp_path(self.root)
        seen = 0

        def chunks(f: Any) -> Iterator[bytes]:
            nonlocal seen
            first = True
            while (chunk := f.read(CHUNK)) or first:
                h.update(chunk)
                seen += len(chunk)
                yield head + chunk if first else chunk
                first = False

        try:
            with open(src, "rb") as f:
                _write_compressed(tmp, chunks(f))
            if seen != size:
                raise OSError(f"{src} changed size while being stored")
            return self._publish(tmp, h.hexdigest())
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(str(self.root), e) from e

    # -- reading -----------------------------------------------------------
    def _open(self, oid: str) -> Any:
        p = self.path(oid)
        if not p.is_file():
            raise MissingObjectError(oid)
        return _pa().input_stream(str(p), compression="zstd")

    def _stream(self, oid: str) -> Iterator[tuple[str, bytes]]:
        """Yield (type, chunk) pairs of the body, verifying length and hash at the end."""
        h = hashlib.sha256()
        try:
            with self._open(oid) as inp:
                first = inp.read(CHUNK)
                obj_type, length, hlen = _parse_header(first, oid)
                h.update(first)
                seen = len(first) - hlen
                if seen > length:
                    raise CorruptObjectError(oid, f"longer than the {length} bytes its header says")
                yield obj_type, first[hlen:]
                while chunk := inp.read(CHUNK):
                    h.update(chunk)
                    seen += len(chunk)
                    # Checked as it is produced: a zstd bomb stops at its declared length.
                    if seen > length:
                        raise CorruptObjectError(oid, f"longer than the {length} bytes its header says")
                    yield obj_type, chunk
        except (OSError, ValueError) as e:
            if isinstance(e, CorruptObjectError):
                raise
            # pyarrow raises OSError subclasses for bad zstd frames.
            raise CorruptObjectError(oid, f"unreadable: {str(e).splitlines()[0][:80]}") from None
        if seen != length:
            raise CorruptObjectError(oid, f"length {seen}, header says {length}")
        if h.hexdigest() != oid:
            raise CorruptObjectError(oid, "content does not match its id")

    def get(self, oid: str, expected_type: str | None = None) -> bytes:
        parts: list[bytes] = []
        obj_type = ""
        for obj_type, chunk in self._stream(oid):
            if expected_type and obj_type != expected_type:
                raise CorruptObjectError(oid, f"is a {obj_type}, expected a {expected_type}")
            parts.append(chunk)
        return b"".join(parts)

    def get_to_file(self, oid: str, dest: Path, expected_type: str | None = None) -> None:
        """Decompress the object's body into *dest*; *dest* is removed if verification fails."""
        try:
            with open(dest, "wb") as out:
                for obj_type, chunk in self._stream(oid):
                    if expected_type and obj_type != expected_type:
                        raise CorruptObjectError(oid, f"is a {obj_type}, expected a {expected_type}")
                    out.write(chunk)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise

    def body_size(self, oid: str) -> int:
        """The body length an object's header declares (reads a few bytes; reads never exceed it)."""
        try:
            with self._open(oid) as inp:
                return _parse_header(inp.read(64), oid)[1]
        except (OSError, ValueError) as e:
            if isinstance(e, CorruptObjectError):
                raise
            raise CorruptObjectError(oid, f"unreadable: {str(e).splitlines()[0][:80]}") from None

    def object_type(self, oid: str) -> str:
        with self._open(oid) as inp:
            return _parse_header(inp.read(64), oid)[0]

    def verify(self, oid: str) -> str:
        """Recompute the hash of one object; return its type."""
        obj_type = ""
        for obj_type, _ in self._stream(oid):  # noqa: B007 - the last type is the answer
            pass
        return obj_type

    def delete(self, oid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(oid))
