"""An S3 (or S3-compatible: MinIO, R2, Ceph) bucket and prefix as a remote: ``s3://bucket/prefix``.

L3. The layout (``layout``) is the directory remote's: ``objects/ab/cdef...`` holds
the local store's encoded bytes unchanged, ``HEAD`` and ``refs/...`` small text
keys, ``dbvers-remote.json`` the marker; reflog lines are one key each
(``s3refs``), since S3 has no append. :class:`S3ObjectStore` is a
``storage.base.ObjectStore``: every read verifies the id (``storage.codec``),
``put_raw`` verifies the bytes before uploading them with boto3's managed transfer
(multipart, parallel: the same path as ``upload_file``), and a write of an id that
is already there simply uploads again (the same bytes: idempotent, and it
repairs a damaged copy without downloading it first).

:class:`S3Remote` ties a connection (``s3client``), the object store and the ref
store (``s3refs.S3RefStore``) together; it does nothing on the network until
``check`` (open: the marker must be there) or ``check(create=True)`` (a first
push: an empty prefix becomes a remote once the endpoint has proved, by
``probe``, that it honours conditional writes).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO

from ..errors import (
    ConditionalWritesUnsupportedError,
    MissingObjectError,
    RemoteError,
    RemoteNotFoundError,
    StorageError,
)
from ..formats import is_id
from ..objects import header, object_id
from ..storage import codec, filechecks
from .layout import (
    DEFAULT_HEAD,
    HEAD,
    MARKER,
    MARKER_MAX,
    OBJECTS,
    marker_bytes,
    object_key,
    parse_marker,
)
from .packs import PACK_MAX, pack_key
from .s3client import PreconditionFailed, S3Connection
from .s3refs import S3RefStore

#: Objects up to this size are read in one GET (and sent in one PUT) in memory; larger ones stream.
SMALL = 8 << 20
#: A push checks whether the remote has an object only above this size (see ``missing``).
CHECK_ABOVE = 1 << 20
PROBE = "probe/"


def _verify_bytes(oid: str, raw: bytes, body_to: BinaryIO | None = None) -> None:
    codec.verify(oid, lambda: codec.decoder_of_bytes(raw), body_to)


def _verify_stream(oid: str, f: IO[bytes], body_to: BinaryIO | None = None) -> None:
    """Verify the encoded object from *f*'s position to its end, then seek back there."""
    start = f.tell()
    codec.verify(oid, lambda: codec.decoder_of_stream(codec.Tee(f)), body_to)  # type: ignore[arg-type]
    f.seek(start)


def _path_of(f: IO[bytes]) -> str | None:
    """The path *f* was opened from, when that path is still *f*'s file (same inode)."""
    name = getattr(f, "name", None)
    try:
        return name if isinstance(name, str) and _same_file(name, f) else None
    except (OSError, AttributeError, ValueError):  # io.UnsupportedOperation is both of the last two
        return None


def _same_file(path: str, f: IO[bytes]) -> bool:
    a, b = os.stat(path), os.fstat(f.fileno())
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _verify_same_file(oid: str, path: str, f: IO[bytes], body_to: BinaryIO | None = None) -> None:
    """Verify the object at *path*, which must be the file *f* is (checked before and after).

    Read by pyarrow's own file reader, so the check runs outside the GIL beside boto3's
    threads (a Python-level reader would queue on the GIL for every block it reads).
    """
    if body_to is None:
        filechecks.verify_file(oid, path)  # the check a push started early, when it did
    else:
        codec.verify(oid, lambda: codec.decoder_of_file(path), body_to)
    if not _same_file(path, f):  # replaced meanwhile (a repair): what was checked is not what is sent
        raise _Replaced(path)


class _Replaced(Exception):
    """The path of the file being uploaded now names another file."""


class _Gated:
    """*f* as boto3 reads it for an upload: the read that reaches *end* first waits for
    *verified* (and raises its error), so the upload's last part, and with it the
    completion of the upload, comes only after the object has verified."""

    def __init__(self, f: IO[bytes], end: int, verified: Future[None]) -> None:
        self._f, self._end, self._verified = f, end, verified

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if not data or self._f.tell() >= self._end:
            self._verified.result()
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


def _rereadable(stream: BinaryIO | IO[bytes]) -> IO[bytes] | None:
    """*stream* when it can be read twice (verified, then sent): a local file, a buffer."""
    try:
        return stream if stream.seekable() else None
    except (OSError, AttributeError, ValueError):
        return None


class S3ObjectStore:
    """Content-addressed objects under ``<prefix>/objects/``."""

    def __init__(self, conn: S3Connection) -> None:
        self.conn = conn

    def __repr__(self) -> str:
        return f"<S3ObjectStore {self.conn.url}>"

    # -- reading ---------------------------------------------------------------------------
    def _head(self, oid: str) -> dict[str, Any]:
        info = self.conn.head(object_key(oid)) if is_id(oid) else None
        if info is None:
            raise MissingObjectError(oid)
        return info

    def has(self, oid: str) -> bool:
        return is_id(oid) and self.conn.head(object_key(oid)) is not None

    def missing(self, oids: set[str], sizes: Mapping[str, int] | None = None) -> set[str]:
        """Of *oids*, those that may not be on the remote: one HEAD each, in parallel (never a listing).

        For a push: the transfer finds candidates from the remote's refs and the local
        graph, then asks this about the few it can't rule out. With their *sizes*
        (stored bytes), objects up to ``CHECK_ABOVE`` are not asked about: a HEAD is a
        round trip, as dear as uploading one again (the same bytes: harmless), so they
        are returned as missing and only larger ones are checked.
        """
        blind = {o for o in oids if sizes is not None and sizes.get(o, CHECK_ABOVE + 1) <= CHECK_ABOVE}
        ids = sorted(set(oids) - blind)
        if not ids:
            return blind
        with ThreadPoolExecutor(min(16, len(ids))) as pool:
            return blind | {oid for oid, there in zip(ids, pool.map(self.has, ids), strict=True) if not there}

    def _raw_bytes(self, oid: str) -> bytes | None:
        """The encoded object, when it is at most ``SMALL`` bytes (None when larger)."""
        got = self.conn.get(object_key(oid), limit=SMALL) if is_id(oid) else None
        if got is None:
            raise MissingObjectError(oid)
        return got[0] if len(got[0]) <= SMALL else None

    @contextlib.contextmanager
    def _downloaded(self, oid: str) -> Iterator[Path]:
        """The encoded object in a private temp file (a managed, parallel download)."""
        with tempfile.TemporaryDirectory(prefix="dbvers-s3-") as d:
            path = Path(d) / "object"
            with open(path, "w+b") as out:
                if not is_id(oid) or not self.conn.download_fileobj(object_key(oid), out):
                    raise MissingObjectError(oid)
            yield path

    def get(self, oid: str, expected_type: str | None = None) -> bytes:
        raw = self._raw_bytes(oid)
        if raw is None:
            # Too large to read whole: its header first (a commit over its type's bound is
            # refused before anything more is downloaded), then the body streamed from a spool.
            self._header(oid)
            return self.open_body(oid, expected_type).read()
        return codec.body_of(oid, raw, expected_type)

    def open_body(self, oid: str, expected_type: str | None = None) -> codec.VerifiedReader:
        """A verified stream of the body, decoded from an anonymous temp file (memory stays flat)."""
        spool = tempfile.TemporaryFile(prefix="dbvers-s3-")  # noqa: SIM115 - closed by the stream
        try:
            if not is_id(oid) or not self.conn.download_fileobj(object_key(oid), spool):
                raise MissingObjectError(oid)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise

        def pieces() -> Iterator[bytes]:
            with spool:
                yield from codec.typed(oid, codec.stream(oid, lambda: codec.decoder_of_stream(spool),
                                                         codec.READ_CHUNK), expected_type)
        return codec.VerifiedReader(pieces())

    def get_to_file(self, oid: str, dest: Path, expected_type: str | None = None) -> None:
        try:
            with self._downloaded(oid) as src, open(dest, "wb") as out:
                pieces = codec.stream(oid, lambda: codec.decoder_of_file(str(src)))
                for piece in codec.typed(oid, pieces, expected_type):
                    out.write(piece)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise

    def open_raw(self, oid: str) -> BinaryIO:
        body = self.conn.open(object_key(oid)) if is_id(oid) else None
        if body is None:
            raise MissingObjectError(oid)
        return body  # type: ignore[return-value]  # a ResumingBody: read/close/with

    def body_size(self, oid: str) -> int:
        return self._header(oid)[1]

    def object_type(self, oid: str) -> str:
        return self._header(oid)[0]

    def _header(self, oid: str) -> tuple[str, int]:
        head = self.conn.get_range(object_key(oid), 4096) if is_id(oid) else None
        if head is None:
            raise MissingObjectError(oid)
        return codec.read_header(oid, lambda: codec.decoder_of_bytes(head))

    def verify(self, oid: str) -> str:
        if self.stored_size(oid) <= SMALL and (raw := self._raw_bytes(oid)) is not None:
            return codec.verify(oid, lambda: codec.decoder_of_bytes(raw))
        with self._downloaded(oid) as path:
            return codec.verify(oid, lambda: codec.decoder_of_file(str(path)))

    def stored_size(self, oid: str) -> int:
        return int(self._head(oid)["ContentLength"])

    def mtime(self, oid: str) -> float:
        return float(self._head(oid)["LastModified"].timestamp())

    def iter_ids(self) -> Iterator[str]:
        """Every id on the remote: a full listing, for fsck and gc only (push never lists)."""
        for entry in self.conn.list(OBJECTS):
            oid = entry.key[len(OBJECTS):].replace("/", "", 1)
            if entry.key[len(OBJECTS) + 2:len(OBJECTS) + 3] == "/" and is_id(oid):
                yield oid

    def with_prefix(self, prefix: str) -> list[str]:
        prefix = prefix.lower()
        if len(prefix) < 2 or not set(prefix) <= codec.HEX:
            return []
        rel = f"{OBJECTS}{prefix[:2]}/{prefix[2:]}"
        return sorted(oid for e in self.conn.list(rel)
                      if is_id(oid := e.key[len(OBJECTS):].replace("/", "", 1)))

    # -- writing ---------------------------------------------------------------------------
    def put_raw(self, oid: str, stream: BinaryIO | IO[bytes], body_to: BinaryIO | None = None) -> str:
        """Verify the encoded bytes from *stream* against *oid*, then upload exactly those bytes.

        Up to ``SMALL``: read into memory, verified, one PUT. Larger: a seekable
        stream (the local object file a push hands over) is verified where it is and
        uploaded from the same open file with boto3's managed transfer (multipart,
        parallel: ``upload_file``'s path, without a copy); any other stream is spooled
        to a temp file first. Nothing unverified is ever sent.
        """
        if not is_id(oid):
            raise ValueError(f"not an object id: {oid!r}")
        head = stream.read(SMALL + 1)
        if len(head) <= SMALL:
            _verify_bytes(oid, head, body_to)
            self.conn.put(object_key(oid), head)
            return oid
        local = _rereadable(stream)
        if local is not None:
            self._upload_verified(oid, local, local.tell() - len(head), body_to)
            return oid
        with tempfile.TemporaryFile(prefix="dbvers-s3-") as spool:
            try:
                spool.write(head)
                shutil.copyfileobj(stream, spool, codec.CHUNK)
            except OSError as e:
                raise StorageError("a temp file", e) from e
            self._upload_verified(oid, spool, 0, body_to)  # type: ignore[arg-type]
        return oid

    def _upload_verified(self, oid: str, f: IO[bytes], start: int, body_to: BinaryIO | None) -> None:
        """Upload *f* from *start* as *oid*, completing the upload only once the bytes verify.

        A local file is verified from its path (the same inode as *f*, checked before
        and after) while boto3 sends *f*'s parts: the multipart upload is completed
        after the last part, which is handed over only once the verification has
        passed (else the read raises and boto3 aborts the upload: a corrupt object
        never appears). A buffer, or a file without a usable path, is verified first,
        then sent.
        """
        key = object_key(oid)
        path = _path_of(f) if start == 0 else None
        if path is None:
            f.seek(start)
            _verify_stream(oid, f, body_to)
            self.conn.upload_fileobj(f, start, key)
            return
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="dbvers-verify") as pool:
                verified = pool.submit(_verify_same_file, oid, path, f, body_to)
                self.conn.upload_fileobj(_Gated(f, os.fstat(f.fileno()).st_size, verified), start, key)  # type: ignore[arg-type]
            verified.result()  # passed before the last part was sent (the gate waited for it)
        except _Replaced:  # the upload was aborted: check and send the open file, one after the other
            if body_to is not None:
                body_to.seek(0)
                body_to.truncate()
            f.seek(start)
            _verify_stream(oid, f, body_to)
            self.conn.upload_fileobj(f, start, key)


    def put_bytes(self, obj_type: str, body: bytes) -> str:
        oid = object_id(obj_type, body)
        raw = b"".join(codec.encode(codec.body_chunks(obj_type, body)))
        if len(raw) <= SMALL:
            self.conn.put(object_key(oid), raw)
            return oid
        return self.put_raw(oid, io.BytesIO(raw))

    def put_file(self, obj_type: str, src: Path) -> str:
        size = src.stat().st_size
        head = header(obj_type, size)
        h = hashlib.sha256(head)

        def chunks(f: Any) -> Iterator[bytes]:
            first = True
            while (chunk := f.read(codec.CHUNK)) or first:
                h.update(chunk)
                yield head + chunk if first else chunk
                first = False

        with tempfile.TemporaryDirectory(prefix="dbvers-s3-") as d:
            path = Path(d) / "object"
            try:
                with open(src, "rb") as f, open(path, "wb") as out:
                    for frame in codec.encode(chunks(f)):
                        out.write(frame)
            except OSError as e:
                raise StorageError(str(path), e) from e
            oid = h.hexdigest()
            self.conn.upload_file(path, object_key(oid))
        return oid

    def delete(self, oid: str) -> None:
        if is_id(oid):
            self.conn.delete(object_key(oid))


class S3Remote:
    """A remote at ``s3://bucket/prefix``. Constructing one sends nothing; ``check`` opens it."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None, **connection: Any) -> None:
        self.conn = S3Connection(bucket, prefix, endpoint_url=endpoint_url, region=region,
                                 profile=profile, **connection)
        self.objects = S3ObjectStore(self.conn)
        self.refs = S3RefStore(self.conn)

    @property
    def url(self) -> str:
        return self.conn.url

    def __repr__(self) -> str:
        return f"<S3Remote {self.url}>"

    def exists(self) -> bool:
        return self.conn.head(MARKER) is not None

    def sweep(self) -> int:
        """Nothing to remove: an S3 PUT appears whole or not at all (the parts of a killed
        multipart upload are the bucket's lifecycle rule's, AbortIncompleteMultipartUpload)."""
        return 0

    def read_pack(self, tip: str) -> bytes | None:
        """The pack push wrote for *tip* (``remotes.packs``); None when there is none to use."""
        got = self.conn.get(pack_key(tip), PACK_MAX)
        return got[0] if got is not None and len(got[0]) <= PACK_MAX else None

    def write_pack(self, tip: str, data: bytes) -> None:
        """Write *tip*'s pack, unless one is there (any pack of a tip is as good as another)."""
        with contextlib.suppress(PreconditionFailed):
            self.conn.put(pack_key(tip), data, if_none_match=True)

    def check(self, *, create: bool = False) -> S3Remote:
        """Open the remote (its marker must be there, of a format this dbvers reads).

        With *create* (a first push): an empty prefix becomes a remote, after ``probe``
        has shown that the endpoint honours conditional writes; a prefix holding
        other keys is refused.
        """
        got = self.conn.get(MARKER, MARKER_MAX)
        if got is not None:
            parse_marker(got[0], self.url)
            return self
        if not create:
            raise RemoteNotFoundError(self.url, f"is not a dbvers remote (no {MARKER}); "
                                                "check the URL, or push to it to create one")
        foreign = [e.key for e in self.conn.list("", limit=20)
                   if not e.key.startswith((HEAD, OBJECTS, "refs/", "logs/", PROBE))]
        if foreign:
            raise RemoteNotFoundError(self.url, f"is not empty and not a dbvers remote (it holds "
                                                f"{foreign[0]!r}); use an empty prefix")
        self.probe()
        with contextlib.suppress(PreconditionFailed):  # another creator got there first: fine
            self.conn.put(HEAD, DEFAULT_HEAD.encode(), if_none_match=True)
        try:
            self.conn.put(MARKER, marker_bytes(), if_none_match=True)  # last: the remote exists from here
        except PreconditionFailed:
            return self.check()
        return self

    def probe(self) -> None:
        """Refuse an endpoint that ignores conditional writes (refs would lose races silently).

        Writes a probe key with ``If-None-Match: *`` twice (the second must be refused),
        and once with an ``If-Match`` that can't match (refused too), then removes it.
        """
        key = f"{PROBE}{secrets.token_hex(8)}"
        tries: dict[str, dict[str, Any]] = {"If-None-Match": {"if_none_match": True},
                                            "If-Match": {"if_match": '"00000000000000000000000000000000"'}}

        def refused(which: str) -> bool:
            try:
                self.conn.put(key, b"probe again\n", **tries[which])
            except PreconditionFailed:
                return True
            return False
        try:
            self.conn.put(key, b"probe\n", if_none_match=True)
            with ThreadPoolExecutor(2, thread_name_prefix="dbvers-probe") as pool:  # one round trip for both
                ignored = [which for which, ok in zip(tries, pool.map(refused, tries), strict=True) if not ok]
        finally:
            with contextlib.suppress(RemoteError):
                self.conn.delete(key)
        if ignored:
            raise ConditionalWritesUnsupportedError(self.url, ignored[0])
