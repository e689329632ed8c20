"""The remote layout both backends share: key names and the format marker.

L3. A remote holds exactly what a store's history is: ``objects/<2 hex>/<62 hex>``
(the encoded bytes of the local store, so ids and bytes are identical), ``refs/...``
and ``HEAD`` (text, as in the store directory), reflogs under ``logs/``, and the
marker ``dbvers-remote.json`` saying which remote format it is. The marker is
written last when a remote is created: a remote without one is not (yet) a remote.
"""

from __future__ import annotations

import json

from .._version import __version__
from ..errors import RemoteFormatError

#: The marker's name, at the remote's root (the directory, or the S3 prefix).
MARKER = "dbvers-remote.json"
MARKER_MAX = 4096  # a marker is a line of JSON: anything longer is not one
#: The remote format this dbvers writes and the newest it reads.
FORMAT = 1
OBJECTS = "objects/"
HEAD = "HEAD"
#: What HEAD of a new remote says (an unborn branch, like ``git init --bare``).
DEFAULT_HEAD = "ref: refs/heads/main\n"


def object_key(oid: str) -> str:
    """``objects/ab/cdef...``: the store directory's fan-out, on every backend."""
    return f"{OBJECTS}{oid[:2]}/{oid[2:]}"


def marker_bytes() -> bytes:
    return (json.dumps({"dbvers_remote": FORMAT, "written_by": f"dbvers {__version__}"},
                       sort_keys=True) + "\n").encode()


def parse_marker(data: bytes, url: str) -> int:
    """The format a marker declares; RemoteFormatError when unreadable or newer than FORMAT."""
    try:
        found = json.loads(data.decode("utf-8"))["dbvers_remote"]
        if not isinstance(found, int) or isinstance(found, bool):
            raise ValueError(found)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RemoteFormatError(url, f"its {MARKER} is unreadable; repair it or push to a new remote") from None
    if found > FORMAT:
        raise RemoteFormatError(url, f"it has remote format {found} but this dbvers reads up to {FORMAT}; "
                                     "upgrade dbvers")
    return found
