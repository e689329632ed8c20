"""Packs: what one push brought for one tip, in one remote key, so a fetch reads it in one request.

L3. A remote holds every object loose (``objects/...``); that stays the truth, and a
remote without packs (one an older dbvers pushed to) is read as before. Without packs a
fetch pays a request per commit, one generation at a time, and one per patch: on S3 each
is a round trip and some milliseconds of CPU on both ends (a clone of 21 commits made 70
requests; on a 20 ms link its walk alone took 0.42 s). So push also writes, after its refs
have moved, ``packs/<tip commit>``: the stored bytes (exactly the loose objects' bytes) of
the commits the push brought for that tip and of the small objects they need, and a fetch
reads the pack of each tip (and of each commit a pack's history stops at, the tip of an
earlier push) instead of walking commit by commit.

A pack is a cache, never trusted: every object in it is verified against its id like a
download, only the objects of commits the walk reaches are used, and a pack that is
missing, too large or damaged (from the damage on) is simply not used.

The format: ``MAGIC``, then per object a line ``<64 hex id> <stored length>\\n`` and that
many bytes. Objects over ``OBJECT_MAX`` stored bytes (snapshots, big patches) are not
packed: one request is nothing beside moving them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..formats import is_id

PACKS = "packs/"
MAGIC = b"dbvers-pack 1\n"
#: The most a pack may hold, and a packed object: what a reader holds in memory at once.
PACK_MAX = 16 << 20
OBJECT_MAX = 1 << 20
_LINE_MAX = 64 + 1 + 20 + 1


def pack_key(tip: str) -> str:
    return f"{PACKS}{tip}"


def build(objects: Iterable[tuple[str, bytes]]) -> bytes:
    """A pack of (id, stored bytes), in order, leaving out what would pass ``OBJECT_MAX``
    or make the pack larger than ``PACK_MAX`` (those stay only loose)."""
    out, size = [MAGIC], len(MAGIC)
    for oid, raw in objects:
        entry = f"{oid} {len(raw)}\n".encode()
        if len(raw) > OBJECT_MAX or size + len(entry) + len(raw) > PACK_MAX:
            continue
        out += [entry, raw]
        size += len(entry) + len(raw)
    return b"".join(out)


def parse(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(id, stored bytes) of a pack, unverified, up to the first thing that isn't an entry."""
    if not data.startswith(MAGIC):
        return
    view, pos = memoryview(data), len(MAGIC)
    while pos < len(data):
        end = data.find(b"\n", pos, pos + _LINE_MAX)
        if end < 0:
            return
        try:
            oid, size = data[pos:end].decode("ascii").split(" ")
            length = int(size)
        except (UnicodeDecodeError, ValueError):
            return
        if not is_id(oid) or not 0 < length <= OBJECT_MAX or end + 1 + length > len(data):
            return
        pos = end + 1 + length
        yield oid, bytes(view[end + 1:pos])
