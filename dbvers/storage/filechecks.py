"""Checks of stored files, shared within one process for a short while.

L1. A push verifies every object it uploads. For the largest ones it starts that check early,
beside its first round trips (creating the remote, listing its refs), when the CPU would
otherwise wait on the network; the upload's own check then finds it done, or running and
waits for it, instead of decoding the same 35 MB a second time.

A check counts only for the same file (device, inode, size, mtime and ctime unchanged:
objects are replaced by rename, never rewritten in place), only in this process, and only
for ``REUSE_FOR`` seconds. Nothing else uses it: fsck and every other reader still read.
"""

from __future__ import annotations

import os
import threading
import time

from . import codec

REUSE_FOR = 60.0

_lock = threading.Lock()
_passed: dict[tuple[object, ...], tuple[str, str, float]] = {}  # file -> (id, type, when)
_running: dict[tuple[object, ...], threading.Event] = {}


def _key(path: str) -> tuple[object, ...]:
    st = os.stat(path)
    return path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def verify_file(oid: str, path: str) -> str:
    """``codec.verify`` of the stored object at *path*; its type. A check of the same file
    that passed here in the last ``REUSE_FOR`` seconds is reused, one running is waited for
    (and if it failed, the check is made again here, to raise its own error)."""
    key = _key(path)  # before the check: a file replaced meanwhile has another key
    while True:
        with _lock:
            got = _passed.get(key)
            if got is not None and got[0] == oid and time.monotonic() - got[2] <= REUSE_FOR:
                return got[1]
            running = _running.get(key)
            mine = running is None
            if running is None:
                running = _running[key] = threading.Event()
        if not mine:
            running.wait()
            continue
        try:
            obj_type = codec.verify(oid, lambda: codec.decoder_of_file(path))
            with _lock:
                now = time.monotonic()
                for old in [k for k, v in _passed.items() if now - v[2] > REUSE_FOR]:
                    del _passed[old]
                _passed[key] = (oid, obj_type, now)
            return obj_type
        finally:
            with _lock:
                _running.pop(key, None)
            running.set()
