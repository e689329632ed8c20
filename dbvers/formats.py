"""Encodings shared by every layer: object ids, the zero id, and the UTC timestamp format.

L0: imports nothing from dbvers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

#: The store directory beside a tracked database (``--store`` picks another place).
STORE_NAME = ".dbvers"
#: An object id: the lowercase hex SHA-256 of an object's canonical bytes.
ID_RE = re.compile(r"[0-9a-f]{64}")
#: git's "no commit" id, written in reflogs for a ref that was created or deleted.
ZERO_ID = "0" * 64
#: Commit and reflog timestamps: UTC with microseconds, as git-like tools print them.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def is_id(value: str) -> bool:
    """True for a full object id (64 lowercase hex digits)."""
    return ID_RE.fullmatch(value) is not None


def now_timestamp() -> str:
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(ts: str) -> datetime:
    """A stored timestamp as an aware UTC datetime; ValueError if it isn't one."""
    return datetime.strptime(ts, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def human_size(n: int) -> str:
    """Bytes as a person reads them: ``642 B``, ``2.0 KB``, ``38.2 MB`` (powers of 1000)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"
