"""The object store on disk: ``objects/<2 hex>/<62 hex>`` in the store directory.

L1, a backend of ``base.ObjectStore``. Each file holds the encoded object (``codec``:
zstd frames of header + body). Writes go to a temp file that is fsynced and renamed;
every read recomputes the SHA-256 and refuses a mismatch. A write of an id that
already exists re-verifies the stored copy and replaces it (atomically) when it is
damaged, so nothing new is ever built on a bad object. Large objects (snapshots,
patches) stream through files and readers so memory stays flat.

``path`` is this backend's own business (tests damage objects through it); code
outside ``dbvers/storage`` uses the protocol's methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import CorruptObjectError, DbversError, MissingObjectError, StorageError
from ..formats import is_id
from ..fsutil import WriteBehind, fsync_path, publish, temp_path
from ..objects import header, object_id
from . import codec, filechecks
from .codec import CHUNK, HEX

#: fsyncs at once in ``sync``: a file system commits the ones that wait together in one go.
SYNC_WORKERS = 8


class LocalObjectStore:
    def __init__(self, root: Path, *, scratch: bool = False) -> None:
        """*scratch*: a store being built that nothing uses until it is put in place (a clone's):
        objects are renamed in without an fsync each, and ``sync`` makes them all durable at
        once before that (one fsync per object and per directory is most of a small one's cost)."""
        self.root = root
        self._unsynced: list[Path] | None = [] if scratch else None

    def __repr__(self) -> str:
        return f"<LocalObjectStore {self.root}>"

    # -- paths -------------------------------------------------------------
    def path(self, oid: str) -> Path:
        return self.root / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file()

    def stored_size(self, oid: str) -> int:
        return self.path(oid).stat().st_size

    def mtime(self, oid: str) -> float:
        return os.stat(self.path(oid)).st_mtime

    def iter_ids(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for d in sorted(self.root.iterdir()):
            if len(d.name) != 2 or not d.is_dir():
                continue
            for f in sorted(d.iterdir()):
                oid = d.name + f.name
                if len(oid) == 64 and set(oid) <= HEX:
                    yield oid

    def with_prefix(self, prefix: str) -> list[str]:
        prefix = prefix.lower()
        if len(prefix) < 2 or not set(prefix) <= HEX:
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
        self._rename_in(tmp, target)
        return oid

    def _rename_in(self, tmp: Path, target: Path) -> None:
        if self._unsynced is None:
            publish(tmp, target)
        else:
            os.replace(tmp, target)
            self._unsynced.append(target)

    def sync(self) -> None:
        """fsync what a scratch store published (the files, then their directories), many at once."""
        if not self._unsynced:
            return
        files, self._unsynced = self._unsynced, []
        dirs = sorted({p.parent for p in files} | {self.root})
        with ThreadPoolExecutor(SYNC_WORKERS, thread_name_prefix="dbvers-sync") as pool:
            try:
                list(pool.map(fsync_path, [*files, *dirs]))
            except OSError as e:
                raise StorageError(str(self.root), e) from e

    def _write_temp(self, frames: Iterator[bytes]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.root)
        try:
            with open(tmp, "wb") as out:
                for frame in frames:
                    out.write(frame)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return tmp

    def put_bytes(self, obj_type: str, body: bytes) -> str:
        oid = object_id(obj_type, body)
        if self._reusable(oid):
            return oid
        try:
            tmp = self._write_temp(codec.encode(codec.body_chunks(obj_type, body)))
            try:
                target = self.path(oid)
                target.parent.mkdir(exist_ok=True)
                self._rename_in(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            return oid
        except OSError as e:
            raise StorageError(str(self.root), e) from e

    def put_file(self, obj_type: str, src: Path) -> str:
        """Store the contents of *src*, streaming: hash and compress in one pass."""
        size = src.stat().st_size
        head = header(obj_type, size)
        h = hashlib.sha256(head)
        seen = 0

        def chunks(f: Any) -> Iterator[bytes]:
            nonlocal seen
            first = True
            while (chunk := f.read(CHUNK)) or first:
                h.update(chunk)
                seen += len(chunk)
                yield head + chunk if first else chunk
                first = False

        tmp: Path | None = None
        try:
            with open(src, "rb") as f:
                tmp = self._write_temp(codec.encode(chunks(f)))
            if seen != size:
                raise OSError(f"{src} changed size while being stored")
            return self._publish(tmp, h.hexdigest())
        except OSError as e:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise StorageError(str(self.root), e) from e

    def put_raw(self, oid: str, stream: BinaryIO, body_to: BinaryIO | None = None) -> str:
        """Store encoded bytes from *stream* as *oid*: copied to a temp file and verified in one pass, renamed."""
        if not is_id(oid):
            raise ValueError(f"not an object id: {oid!r}")
        if self._reusable(oid):
            return oid
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(self.root)
        except OSError as e:
            raise StorageError(str(self.root), e) from e
        try:
            with open(tmp, "wb") as out, WriteBehind(out) as behind:
                # Verified as it is copied (one pass: a download and its check overlap).
                tee = codec.Tee(stream, behind)
                codec.verify(oid, lambda: codec.decoder_of_stream(tee), body_to)  # type: ignore[arg-type]
                if stream.read(1):
                    raise CorruptObjectError(oid, "bytes after its end")
            return self._publish(tmp, oid)
        except OSError as e:
            raise StorageError(str(self.root), e) from e
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # -- reading -----------------------------------------------------------
    def _decoder(self, oid: str) -> codec.Opener:
        p = self.path(oid)
        if not p.is_file():
            raise MissingObjectError(oid)
        return lambda: codec.decoder_of_file(str(p))

    def _stream(self, oid: str, chunk: int = CHUNK) -> Iterator[tuple[str, bytes]]:
        return codec.stream(oid, self._decoder(oid), chunk)

    def open_raw(self, oid: str) -> BinaryIO:
        try:
            return open(self.path(oid), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise MissingObjectError(oid) from None
        except OSError as e:
            raise StorageError(str(self.path(oid)), e) from e

    def get(self, oid: str, expected_type: str | None = None) -> bytes:
        return b"".join(codec.typed(oid, self._stream(oid), expected_type))

    def open_body(self, oid: str, expected_type: str | None = None) -> codec.VerifiedReader:
        return codec.VerifiedReader(codec.typed(oid, self._stream(oid, codec.READ_CHUNK), expected_type))

    def get_to_file(self, oid: str, dest: Path, expected_type: str | None = None) -> None:
        """Decompress the object's body into *dest*; *dest* is removed if verification fails."""
        try:
            with open(dest, "wb") as out:
                for piece in codec.typed(oid, self._stream(oid), expected_type):
                    out.write(piece)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise

    def body_size(self, oid: str) -> int:
        """The body length an object's header declares (reads a few bytes; reads never exceed it)."""
        return codec.read_header(oid, self._decoder(oid))[1]

    def object_type(self, oid: str) -> str:
        return codec.read_header(oid, self._decoder(oid))[0]

    def verify(self, oid: str) -> str:
        """Recompute the hash of one object; return its type."""
        obj_type = ""
        for obj_type, _ in self._stream(oid):  # noqa: B007 - the last type is the answer
            pass
        return obj_type

    def check_ahead(self, oid: str) -> None:
        """Verify *oid* now for an upload soon (``filechecks``: the upload's check reuses it)."""
        filechecks.verify_file(oid, str(self.path(oid)))

    def delete(self, oid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(oid))

