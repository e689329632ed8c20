"""Branches, tags, HEAD, the reflog and keyframe records in the store directory.

L1, a ``refbase.RefStoreBase`` backend (what refs mean is there; how the store
directory keeps them is here). Layout (git's): ``HEAD`` holds
``ref: refs/heads/<branch>`` or a commit id (detached); ``refs/heads/<name>``,
``refs/tags/<name>`` and ``refs/remotes/<remote>/<name>`` hold a commit id;
``refs/keyframes/<commit>`` holds the snapshot id made for that commit;
``logs/<ref>`` is the reflog, one line per move: ``<old id> <new id> <unix time>
<message>``. Every write is atomic, and a ref moves by compare-and-swap under its
own lock file (``reflock``), so it is safe whatever locks the caller holds.

Every path made from a ref name, for reading, writing, deleting a ref or its
reflog, comes from :meth:`LocalRefStore._file`, which validates the *full* name with
``check_ref_format`` and checks that the path stays inside the store. A ref that
does not exist is an unborn branch; a ref (or HEAD) that exists but can't be read
as an id is a :class:`DamagedRefError`, never "unborn".

A move writes its reflog line(s) first and the ref file last: a failure before
the rename leaves the ref where it was (a reflog line for a move that never
happened only keeps a commit alive for gc; nothing reads it as the ref's value).
Reflogs are appended to by moves and rewritten (atomically) only by expiry. A
deleted ref's reflog stays, so it can be recovered, until its entries expire.

Stores made before keyframe records were refs keep them in ``keyframes/<commit>``:
they are read as records too (the ref wins), and ``migrate_keyframes`` turns them
into refs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import DamagedRefError, RefPathConflictError, StorageError
from ..formats import is_id
from ..fsutil import TMP_PREFIX, append_line, temp_path, write_atomic
from .refbase import RefStoreBase
from .reflock import ref_lock
from .refnames import HEADS, KEYFRAMES, check_ref_format, keyframe_ref

LEGACY_KEYFRAMES = "keyframes"


class LocalRefStore(RefStoreBase):
    head_missing = "the file is missing"

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"<LocalRefStore {self.root}>"

    # -- the one resolver ----------------------------------------------------
    def _file(self, ref: str, *, log: bool = False) -> Path:
        """The file of *ref* (or of its reflog): the only place a ref name becomes a path."""
        check_ref_format(ref)
        base = self.root / "logs" if log else self.root
        path = base / ref
        # A valid name can't climb out with '..', but a symlinked folder in the store could.
        root = os.path.realpath(self.root)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise DamagedRefError(ref, str(path), "its path leads outside the store")
        return path

    def _namespace_dir(self, ref: str, base: Path | None = None) -> Path:
        """refs/heads, refs/tags, refs/remotes or refs/keyframes (under *base*, the store by default):
        the folder a ref's own folders are made under."""
        return (base or self.root) / "/".join(ref.split("/")[:2])

    def _where(self, ref: str) -> str:
        return str(self.root / ref)

    # -- reading -----------------------------------------------------------
    def _read_raw(self, ref: str) -> bytes | None:
        p = self._file(ref)
        try:
            # O_NONBLOCK: a FIFO put where a ref belongs must not hang the command.
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise DamagedRefError(ref, str(p), f"cannot be read ({e.strerror or e})") from None
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                if ref != "HEAD" and os.listdir(p):
                    return None  # a folder of refs (a/b for a): no ref by this name (creating it is refused)
                raise DamagedRefError(ref, str(p), "is a directory, not a file")
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DamagedRefError(ref, str(p), "is not a regular file")
            return os.read(fd, 4096)
        except OSError as e:
            raise DamagedRefError(ref, str(p), f"cannot be read ({e.strerror or e})") from None
        finally:
            os.close(fd)

    def _names(self, prefix: str) -> list[str]:
        """Full names of the ref files under *prefix* (temp and lock files left out)."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        return [prefix + p.relative_to(base).as_posix() for p in sorted(base.rglob("*"))
                if not p.is_dir() and not p.name.startswith(TMP_PREFIX)]

    # -- writing -----------------------------------------------------------
    def _check_free(self, ref: str, path: Path, stop: Path) -> None:
        """Refuse before writing when *path* can't be a file: a folder is there, or a file is one of its folders."""
        if path.is_dir():  # named by a ref (or reflog) under it: that is what is in the way
            under = sorted(p for p in path.rglob("*") if not p.is_dir() and not p.name.startswith(TMP_PREFIX))
            raise RefPathConflictError(ref, str((under[0] if under else path).relative_to(self.root)))
        parent = path.parent
        while parent != stop and stop in parent.parents:
            if parent.exists() and not parent.is_dir():
                raise RefPathConflictError(ref, str(parent.relative_to(self.root)))
            parent = parent.parent

    def _dead_logs_in_way(self, ref: str) -> list[Path]:
        """The kept reflogs of deleted refs where *ref*'s reflog must go: a folder of them
        (``logs/refs/heads/a/`` for a new ``a``), or one of them standing as a folder of it
        (``logs/refs/heads/a`` for a new ``a/b``). A deleted ref's reflog is kept for its
        recovery, not to block names: a new ref there replaces it, as git drops it at once.
        Empty when nothing is in the way, or when a live ref's reflog is (a real conflict)."""
        logs, stop = self.root / "logs", self.root / "logs" / "refs"
        log = self._file(ref, log=True)
        found = [log] if log.is_dir() else []
        parent = log.parent
        while parent != stop and stop in parent.parents:
            if parent.exists() and not parent.is_dir():
                found.append(parent)
            parent = parent.parent
        for p in found:
            files = [p] if not p.is_dir() else [f for f in p.rglob("*") if not f.is_dir()
                                                 and not f.name.startswith(TMP_PREFIX)]
            # A folder with no reflog in it was made by someone else: not ours to remove.
            if not files or any(self._file(f.relative_to(logs).as_posix()).is_file() for f in files):
                return []
        return found

    def _drop_dead_logs(self, ref: str) -> None:
        """Remove what ``_dead_logs_in_way`` finds (under *ref*'s lock, once its swap is sure to be
        tried: a lost compare-and-swap leaves the deleted ref's reflog as it was)."""
        for p in self._dead_logs_in_way(ref):
            try:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            except OSError as e:
                raise StorageError(str(p), e) from e

    def check_writable(self, refs: list[str]) -> None:
        """Prove, before an operation changes anything, that *refs* can be moved: each ref's
        folder takes a new file and each reflog can be appended to. Nothing is left behind."""
        head = None
        with contextlib.suppress(DamagedRefError):
            head = self.head()
        if head is not None and head.branch is not None and HEADS + head.branch in refs:
            refs = [*refs, "HEAD"]  # moving the checked-out branch appends to HEAD's reflog too
        for ref in refs:
            path, log = self._file(ref), self._file(ref, log=True)
            dead = ref != "HEAD" and bool(self._dead_logs_in_way(ref))  # replaced by the move
            if ref != "HEAD":
                self._check_free(ref, path, self._namespace_dir(ref))
                if not dead:
                    self._check_free(ref, log, self.root / "logs" / "refs")
            try:
                if dead:
                    self._probe_dir(log.parent)
                elif log.exists():  # a folder there fails here (EISDIR), not after the working copy
                    with open(log, "ab"):
                        pass
                else:
                    self._probe_dir(log.parent)
                self._probe_dir(path.parent)
            except OSError as e:
                raise StorageError(str(getattr(e, "filename", None) or log), e) from e

    def _probe_dir(self, directory: Path) -> None:
        """Create and remove a temp file in *directory*, or the nearest folder of it that exists."""
        while not directory.is_dir() and directory != self.root:  # (a dead reflog may stand there)
            directory = directory.parent
        temp_path(directory).unlink()

    def _swap(self, ref: str, expect: str | None, new: str | None, message: str) -> bool:
        """The swap under *ref*'s lock file. The reflog lines are written first and the ref's
        rename (or unlink) is the last step, so any failure leaves the ref unmoved."""
        path = self._file(ref)
        logged = not ref.startswith(KEYFRAMES)
        dead = ref != "HEAD" and new is not None and logged and bool(self._dead_logs_in_way(ref))
        if ref != "HEAD" and new is not None:
            self._check_free(ref, path, self._namespace_dir(ref))
            if logged and not dead:
                self._check_free(ref, self._file(ref, log=True), self.root / "logs" / "refs")
        try:
            with ref_lock(path):
                if self.read(ref) != expect:
                    return False
                if dead:
                    self._drop_dead_logs(ref)
                    self._check_free(ref, self._file(ref, log=True), self.root / "logs" / "refs")
                # HEAD is read before anything is written: a damaged one stops the move here.
                branch = self._attached_branch() if logged and new is not None else None
                self._log(self._move_logs(ref, new, branch), expect, new, message)
                if new is not None:
                    write_atomic(path, (new + "\n").encode())
                    return True
                try:
                    path.unlink(missing_ok=True)
                except OSError as e:
                    raise StorageError(str(path), e) from e
                return True
        finally:
            if new is None or not path.exists():
                self._prune_dirs(path.parent, self._namespace_dir(ref))

    def _prune_dirs(self, parent: Path, stop: Path) -> None:
        """Drop now-empty folders of a/b style names, never the namespace folder itself."""
        while parent != stop and stop in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def _head_lock(self) -> contextlib.AbstractContextManager[object]:
        return ref_lock(self._file("HEAD"))

    def _replace_head(self, data: bytes, old: str | None, new: str | None, message: str) -> None:
        self._log(("HEAD",), old, new, message)  # the reflog line first, HEAD last
        write_atomic(self._file("HEAD"), data)

    # -- reflog ------------------------------------------------------------
    def _append_line(self, ref: str, line: str, when_ns: int) -> None:
        append_line(self._file(ref, log=True), line)

    def _has_log(self, ref: str) -> bool:
        return self._file(ref, log=True).is_file()

    def _log_lines(self, ref: str) -> list[str]:
        p = self._file(ref, log=True)
        if not p.is_file():
            return []  # none, or the folder of a/b style names' logs
        try:
            return p.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StorageError(str(p), e) from e

    def _log_names(self) -> Iterable[str]:
        logs = self.root / "logs"
        if not logs.is_dir():
            return []
        return [p.relative_to(logs).as_posix() for p in logs.rglob("*") if p.is_file()]

    def _rewrite_log(self, ref: str, lines: list[str]) -> None:
        """Atomically (the caller holds the repo lock); no lines removes the file and the
        empty folders of an a/b style name."""
        p = self._file(ref, log=True)
        try:
            if lines:
                write_atomic(p, "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
                return
            p.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(str(p), e) from e
        self._prune_dirs(p.parent, self._namespace_dir(ref, self.root / "logs"))

    # -- keyframe records ----------------------------------------------------
    def _legacy_path(self, commit: str) -> Path:
        return self.root / LEGACY_KEYFRAMES / commit

    def _legacy_keyframe(self, commit: str) -> bytes | None:
        try:
            return self._legacy_path(commit).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            return b""  # unreadable: reported by fsck, ignored by reads

    def _legacy_keyframe_commits(self) -> Iterable[str]:
        legacy = self.root / LEGACY_KEYFRAMES
        if not legacy.is_dir():
            return []
        return [p.name for p in legacy.iterdir() if not p.name.startswith(TMP_PREFIX)]

    def _put_keyframe(self, ref: str, data: bytes) -> None:
        path = self._file(ref)
        with ref_lock(path):
            write_atomic(path, data)
        with contextlib.suppress(OSError):
            self._legacy_path(ref[len(KEYFRAMES):]).unlink()

    def _remove_keyframe(self, ref: str) -> None:
        for p in (self._file(ref), self._legacy_path(ref[len(KEYFRAMES):])):
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                raise StorageError(str(p), e) from e

    def migrate_keyframes(self) -> int:
        """Turn an old store's ``keyframes/<commit>`` files into refs; returns how many moved.

        A record that is not an id stays where it is (fsck names it); nothing is lost
        if this is interrupted: a record is read from either place.
        """
        legacy = self.root / LEGACY_KEYFRAMES
        if not legacy.is_dir():
            return 0
        moved = 0
        for p in sorted(legacy.iterdir()):
            if not is_id(p.name):
                continue
            try:
                value = p.read_bytes().decode("utf-8", errors="replace").strip()
            except OSError:
                continue
            if is_id(value):
                if self.read(keyframe_ref(p.name)) is None:
                    self.set_keyframe(p.name, value)
                with contextlib.suppress(OSError):
                    p.unlink()
                moved += 1
        with contextlib.suppress(OSError):
            legacy.rmdir()  # only when empty
        return moved
