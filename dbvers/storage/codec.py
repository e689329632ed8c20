"""The object encoding every backend stores: zstd frames of ``objects.header`` + body.

L1. Encoding streams (one frame per ``CHUNK``); decoding streams too, and checks
the header's declared length as bytes come out (a zstd bomb stops there; a commit or
schema declaring more than ``objects.BODY_MAX`` is refused from its header) and the
SHA-256 against the id at the end. Backends hand this module a file path or a
readable binary stream of the encoded bytes.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from ..errors import CorruptObjectError, UsageError
from ..objects import BODY_MAX, OBJECT_TYPES, header

CHUNK = 8 << 20
# Streamed bodies (patches replayed by SQLite) are decoded this much at a time.
READ_CHUNK = 1 << 20
# zstd's own default level. pyarrow's compressed streams use level 1, which makes
# snapshots ~14 % larger (and backups larger than `tar czf`). Levels are set per
# frame, so objects are written as one frame per CHUNK; any zstd decoder (and
# pyarrow's input_stream) reads concatenated frames as one stream.
ZSTD_LEVEL = 3
HEX = frozenset("0123456789abcdef")


def pa() -> Any:
    # Imported lazily: pyarrow's import costs ~150 ms and status/log don't need it.
    import pyarrow

    return pyarrow


def encode(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """zstd frames of *chunks* (the header already at the front of the first)."""
    codec = pa().Codec("zstd", compression_level=ZSTD_LEVEL)
    for chunk in chunks:
        if chunk:
            yield codec.compress(chunk, asbytes=True)


def body_chunks(obj_type: str, body: bytes) -> list[bytes]:
    """Header + *body* cut into CHUNK pieces (views: nothing is copied).

    A commit or schema over its ``BODY_MAX`` is refused: no reader would accept it.
    """
    if len(body) > (limit := BODY_MAX.get(obj_type, len(body))):
        raise UsageError(f"this commit's {obj_type} would be {len(body):,} bytes, over the {limit:,} a store "
                         f"accepts; {_SHRINK[obj_type]}")
    view = memoryview(body)
    return [header(obj_type, len(body)) + bytes(view[:CHUNK])] + [
        view[i:i + CHUNK] for i in range(CHUNK, len(body), CHUNK)]  # type: ignore[misc]


_SHRINK = {"commit": "use a shorter message and meta",
           "schema": "a database with a schema this large can't be versioned by dbvers"}


def parse_header(buf: bytes, object_id_: str) -> tuple[str, int, int]:
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
    if length > (limit := BODY_MAX.get(obj_type, length)):  # refused before the body is decoded
        raise CorruptObjectError(object_id_, f"a {obj_type} of {length:,} bytes, over the {limit:,} one can be")
    return obj_type, length, nul + 1


Opener = Callable[[], Any]  # returns a pyarrow input stream of the decoded bytes


def decoder_of_file(path: str) -> Any:
    return pa().input_stream(path, compression="zstd")


#: How much of a Python stream the decoder asks for at a time. Each read takes the GIL back:
#: in small pieces, a download being verified queues behind every other thread's Python
#: (a clone's snapshot took twice as long beside its own walk and small downloads).
STREAM_READ = 4 << 20


def decoder_of_stream(stream: BinaryIO) -> Any:
    raw = pa().BufferedInputStream(pa().PythonFile(stream, mode="r"), STREAM_READ)
    return pa().CompressedInputStream(raw, "zstd")


class Tee:
    """*src* lent to a decoder (``decoder_of_stream``): what is read is also written to *out*
    when given (a copy checked while it is made), and the decoder's ``close`` (pyarrow's
    closes the stream it reads) leaves *src* open."""

    def __init__(self, src: Any, out: Any = None) -> None:
        self._src, self._out = src, out
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._src.read(n)
        if self._out is not None:
            self._out.write(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def decoder_of_bytes(data: bytes) -> Any:
    return pa().CompressedInputStream(pa().BufferReader(data), "zstd")


def _unreadable(oid: str, e: Exception) -> CorruptObjectError:
    # pyarrow raises OSError subclasses (and ValueError) for bad zstd frames.
    return CorruptObjectError(oid, f"unreadable: {str(e).splitlines()[0][:80] if str(e) else type(e).__name__}")


#: Bodies this long are hashed (and copied to a ``verify``'s *body_to*) in a thread of their own.
HASH_BEHIND_MIN = 2 * CHUNK


class _CopyFailed(Exception):
    """Writing the copy of a body failed: *error* is the copy's, not the object's (a full disk
    is not a corrupt object)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _HashHere:
    """SHA-256 of a body, and the copy *out* gets of it, in the caller's thread."""

    def __init__(self, out: BinaryIO | None) -> None:
        self._h, self._out = hashlib.sha256(), out

    def update(self, piece: bytes, header: int = 0) -> None:
        """Hash *piece*; copy it but for its first *header* bytes (the object's header)."""
        self._h.update(piece)
        if self._out is not None:
            try:
                self._out.write(piece[header:])
            except BaseException as e:
                raise _CopyFailed(e) from None

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def close(self) -> None:
        pass


class _HashBehind:
    """``_HashHere``'s work done in a thread of its own while the caller decodes the next
    piece: a clone's 80 MB snapshot is checked in the time of its zstd decode, not of decode +
    hash + write one after the other. Holds at most two pieces queued."""

    def __init__(self, out: BinaryIO | None) -> None:
        self._here = _HashHere(out)
        self._error: _CopyFailed | None = None
        self._queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="dbvers-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._here.update(*item)
                except _CopyFailed as e:  # raised again in the caller's thread
                    self._error = e

    def update(self, piece: bytes, header: int = 0) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((piece, header))

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self._here.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def stream(oid: str, open_decoder: Opener, chunk: int = CHUNK, copy_to: BinaryIO | None = None
           ) -> Iterator[tuple[str, bytes]]:
    """Yield (type, chunk) pairs of the body, verifying length and hash at the end. *copy_to*
    gets the body too (a big one's in another thread, beside its hash: all of it, in order,
    once this ends)."""
    hasher: _HashBehind | _HashHere | None = None
    try:
        with open_decoder() as inp:
            first = inp.read(64)  # the header alone first: an over-long commit stops here
            obj_type, length, hlen = parse_header(first, oid)
            hasher = _HashBehind(copy_to) if length >= HASH_BEHIND_MIN else _HashHere(copy_to)
            hasher.update(first, hlen)
            seen = len(first) - hlen
            if seen > length:
                raise CorruptObjectError(oid, f"longer than the {length} bytes its header says")
            yield obj_type, first[hlen:]
            while piece := inp.read(chunk):
                hasher.update(piece)
                seen += len(piece)
                # Checked as it is produced: a zstd bomb stops at its declared length.
                if seen > length:
                    raise CorruptObjectError(oid, f"longer than the {length} bytes its header says")
                yield obj_type, piece
        digest = hasher.hexdigest()
    except CorruptObjectError:
        raise
    except _CopyFailed as e:
        raise e.error from None
    except (OSError, ValueError) as e:
        raise _unreadable(oid, e) from None
    finally:
        if hasher is not None:
            hasher.close()
    if seen != length:
        raise CorruptObjectError(oid, f"length {seen}, header says {length}")
    if digest != oid:
        raise CorruptObjectError(oid, "content does not match its id")


def verify(oid: str, open_decoder: Opener, body_to: BinaryIO | None = None) -> str:
    """Check the whole object (length and hash); its type. *body_to*, when given, also gets the
    decoded body as it is checked, so a caller that needs the body (a clone's snapshot) decodes
    it once; what it got is the object's body only if this returns."""
    obj_type = ""
    for obj_type, _ in stream(oid, open_decoder, copy_to=body_to):  # noqa: B007 - the last type is the type
        pass
    return obj_type


def body_of(oid: str, raw: bytes, expected_type: str | None = None) -> bytes:
    """The verified body of the stored bytes *raw* of *oid* (a small object, whole in memory)."""
    return b"".join(typed(oid, stream(oid, lambda: decoder_of_bytes(raw)), expected_type))


def read_header(oid: str, open_decoder: Opener) -> tuple[str, int]:
    """(type, declared body length) from the first bytes only."""
    try:
        with open_decoder() as inp:
            obj_type, length, _ = parse_header(inp.read(64), oid)
            return obj_type, length
    except CorruptObjectError:
        raise
    except (OSError, ValueError) as e:
        raise _unreadable(oid, e) from None


def typed(oid: str, pieces: Iterator[tuple[str, bytes]], expected_type: str | None) -> Iterator[bytes]:
    """The body chunks of *pieces*, refusing an object of another type than *expected_type*."""
    for obj_type, piece in pieces:
        if expected_type and obj_type != expected_type:
            raise CorruptObjectError(oid, f"is a {obj_type}, expected a {expected_type}")
        yield piece


class VerifiedReader:
    """A file-like ``read(n)`` over a verified chunk stream (see ``BodyReader``).

    Holds one decoded chunk at a time. A damaged object raises from ``read``; the
    error of a stream that was already drained is raised again by later reads.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")
        self._done = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            out = [bytes(self._buf), *self._chunks]
            self._buf, self._done = memoryview(b""), True
            return b"".join(out)
        while not self._buf and not self._done:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                self._done = True
        out, self._buf = bytes(self._buf[:n]), self._buf[n:]
        return out

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._done = True

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
