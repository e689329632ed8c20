"""A plain directory as a remote: a NAS, an NFS mount, a USB disk.

L3 (imports L1 storage and L0). The layout is the store directory's own, so ids
and bytes are identical and nothing is re-encoded: ``objects/ab/cdef...``,
``HEAD``, ``refs/...``, ``logs/...`` (the reflog of pushes), plus the format
marker ``dbvers-remote.json`` that makes the directory self-describing (a clone
needs only the path). The backends are ``storage.local``'s, unchanged: that is
the point of the layout, and why this module is small and not a second copy.

Ref compare-and-swap is ``storage.reflock``'s: the writer creates the ref's lock
file with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFSv3+, where
``flock`` is not to be trusted), compares, writes the new value to a temp file and
``os.replace``-s it over the ref, then removes the lock. A lock whose owner is gone
is broken: on this machine when its process is dead, and a lock written by another
machine once it is older than ``reflock.UNOWNED_STALE_AFTER`` seconds (a lock is
held for one small write, so an old one is a dead writer's).

Why not L1: the backends *are* L1 (``storage.local``); what this module adds is
what makes a folder a remote (the marker, creating one on first push, refusing a
folder of other files), which only the transfer layer needs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from ..errors import (
    ConditionalWritesUnsupportedError,
    RemoteFormatError,
    RemoteNotFoundError,
    StorageError,
)
from ..fsutil import (
    TMP_PREFIX,
    NotRegularFileError,
    read_small_file,
    remove_stale_temps,
    write_atomic,
)
from ..storage.local import LocalObjectStore
from ..storage.local_refs import LocalRefStore
from .layout import DEFAULT_HEAD, HEAD, MARKER, MARKER_MAX, marker_bytes, parse_marker
from .packs import PACK_MAX, pack_key

#: What an interrupted creation can have left before the marker (then creating resumes).
SKELETON = frozenset({HEAD, "objects", "refs", "logs"})


class DirectoryRemote:
    """A remote in a directory. Constructing one touches nothing; ``check`` opens (or creates) it."""

    kind = "directory"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()
        self.objects = LocalObjectStore(self.root / "objects")
        self.refs = LocalRefStore(self.root)

    @property
    def url(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"<DirectoryRemote {self.root}>"

    def exists(self) -> bool:
        """True when the directory holds a remote marker (of any format)."""
        return (self.root / MARKER).is_file()

    def check(self, *, create: bool = False) -> DirectoryRemote:
        """Open the remote: its marker must be there and of a format this dbvers reads.

        With *create* (a first push), a missing or empty directory (or one a killed
        creation left) becomes a new remote; a directory of other files is refused.
        """
        marker = self.root / MARKER
        try:
            parse_marker(read_small_file(marker, MARKER_MAX), self.url)
            return self
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            raise RemoteNotFoundError(self.url, "is a file, not a directory; give a directory path") from None
        except (NotRegularFileError, IsADirectoryError):
            raise RemoteFormatError(self.url, f"its {MARKER} is not a regular file; repair it (it is written "
                                              "by the first push) or use another directory") from None
        except OSError as e:
            raise StorageError(str(marker), e) from e
        if not create:
            raise RemoteNotFoundError(self.url, f"is not a dbvers remote (no {MARKER}); "
                                                "check the path, or push to it to create one")
        self._create()
        return self

    def _create(self) -> None:
        if self.root.is_file():
            raise RemoteNotFoundError(self.url, "is a file, not a directory; give a directory path")
        if self.root.is_dir():
            foreign = [p.name for p in self.root.iterdir()
                       if p.name not in SKELETON and not p.name.startswith(TMP_PREFIX)]
            if foreign:
                raise RemoteNotFoundError(self.url, f"is not empty and not a dbvers remote (it holds "
                                                    f"{sorted(foreign)[0]!r}); use an empty or new directory")
        try:
            for sub in ("objects", "refs/heads", "refs/tags"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            if not (self.root / HEAD).exists():
                write_atomic(self.root / HEAD, DEFAULT_HEAD.encode())
            self.probe()
            write_atomic(self.root / MARKER, marker_bytes())  # last: the remote exists from here on
        except OSError as e:
            raise StorageError(self.url, e) from e

    def sweep(self) -> int:
        """Remove what killed pushes left: temp files of uploads whose process is gone (by the
        one rule for every dbvers temp: a dead owner on this host, or a day old when it was
        another host's, since a NAS is shared); how many went."""
        return sum(remove_stale_temps(d) for d in (self.root, self.root / "objects", self.root / "packs"))

    def read_pack(self, tip: str) -> bytes | None:
        """The pack push wrote for *tip* (``remotes.packs``); None when there is none to use."""
        try:
            data = read_small_file(self.root / pack_key(tip), PACK_MAX + 1)
        except OSError:  # missing, not a file, unreadable: a pack is only ever a shortcut
            return None
        return data if len(data) <= PACK_MAX else None

    def write_pack(self, tip: str, data: bytes) -> None:
        """Write *tip*'s pack, unless one is there (any pack of a tip is as good as another)."""
        path = self.root / pack_key(tip)
        if not path.exists():
            write_atomic(path, data)

    def probe(self) -> None:
        """Prove that ``O_EXCL`` creation is exclusive here (the ref locks rest on it)."""
        probe = self.root / f"{TMP_PREFIX}probe-{secrets.token_hex(6)}"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            try:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                return
            raise ConditionalWritesUnsupportedError(self.url, "O_EXCL file creation")
        except OSError as e:
            raise StorageError(str(probe), e) from e
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
