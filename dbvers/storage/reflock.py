"""Per-ref lock files: what makes a local ref's compare-and-swap safe without the repository lock.

L1. dulwich's ``set_if_equals`` scheme: a writer creates the ref's lock file with
``O_CREAT | O_EXCL`` (only one can), reads and compares the ref, writes the new
value by rename, and removes the lock. The lock file is a temp name
(``.tmp-reflock-<hash of the file name>`` beside the ref), which no listing takes
for a ref, and holds its owner mark (``fsutil.owner_tag``), so a lock left by a
killed process is recognised and broken instead of blocking the ref forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import RepositoryBusyError, StorageError
from ..fsutil import TMP_PREFIX, owner_tag, temp_owner_alive

#: How long a writer waits for another writer's lock (a lock is held for one small write).
WAIT = 10.0
#: A lock whose owner can't be judged (another host) is taken as stale after this long.
UNOWNED_STALE_AFTER = 60.0


def lock_path(target: Path) -> Path:
    digest = hashlib.sha256(target.name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return target.parent / f"{TMP_PREFIX}reflock-{digest}"


def _holder(text: str) -> int | None:
    with contextlib.suppress(ValueError, IndexError):
        return int(text.split(".")[1])
    return None


def _is_stale(lock: Path, text: str) -> bool:
    alive = temp_owner_alive(text)
    if alive is None:
        try:
            return time.time() - lock.stat().st_mtime > UNOWNED_STALE_AFTER
        except FileNotFoundError:
            return False
    return not alive


def _break(lock: Path, seen: str) -> None:
    """Remove the stale lock whose contents were *seen*, and only that one.

    Renaming takes whatever lock is there at that instant; if another waiter broke
    the stale lock first and a live writer has created a new one since, the new one
    is put back (``link`` fails if yet another writer got in: that writer holds it).
    """
    grabbed = lock.with_name(f"{lock.name}.broken-{secrets.token_hex(4)}")
    try:
        os.rename(lock, grabbed)
    except FileNotFoundError:
        return
    try:
        if grabbed.read_text(errors="replace") != seen:
            with contextlib.suppress(OSError):
                os.link(grabbed, lock)
    finally:
        with contextlib.suppress(OSError):
            grabbed.unlink()


@contextlib.contextmanager
def ref_lock(target: Path, wait: float | None = None) -> Iterator[None]:
    """Hold *target*'s lock file for the duration of the block (waiting up to *wait*, default WAIT)."""
    wait = WAIT if wait is None else wait
    lock = lock_path(target)
    mark = f"{owner_tag()}-{secrets.token_hex(8)}\n"  # unique per acquisition: _break tells locks apart
    start = time.monotonic()
    delay = 0.001
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            continue  # an empty a/b folder was pruned between mkdir and open: make it again
        except FileExistsError:
            try:
                seen = lock.read_text(errors="replace")
            except FileNotFoundError:
                continue  # released meanwhile
            except OSError as e:
                raise StorageError(str(lock), e) from e
            if _is_stale(lock, seen):  # an empty one too, once old: its writer died before the mark
                _break(lock, seen)
                continue
            waited = time.monotonic() - start
            if waited > wait:
                raise RepositoryBusyError(str(lock), waited, _holder(seen)) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            continue
        except OSError as e:
            raise StorageError(str(lock), e) from e
        try:
            os.write(fd, mark.encode())
        finally:
            os.close(fd)
        break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text(errors="replace") == mark:
                lock.unlink()
