"""Branches, tags, HEAD, the reflog and keyframe records in the store directory.

L1, a backend of ``base.RefStore``. Layout (git's): ``HEAD`` holds
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
import stat
import time
from pathlib import Path

from ..errors import DamagedRefError, RefConflictError, RefPathConflictError, StorageError
from ..formats import ZERO_ID, is_id
from ..fsutil import TMP_PREFIX, append_line, temp_path, write_atomic
from .base import Head, ReflogEntry
from .reflock import ref_lock
from .refnames import (
    HEADS,
    KEYFRAMES,
    NAMESPACES,
    TAGS,
    check_ref_format,
    is_commit_ref,
    is_valid_ref,
    keyframe_ref,
    parse_head,
    parse_reflog,
    printable,
    reflog_line,
)

LEGACY_KEYFRAMES = "keyframes"


class LocalRefStore:
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

    def _namespace_dir(self, ref: str) -> Path:
        """refs/heads, refs/tags, refs/remotes or refs/keyframes: the folder a ref's own folders are made under."""
        return self.root / "/".join(ref.split("/")[:2])

    # -- reading -----------------------------------------------------------
    def read(self, ref: str) -> str | None:
        """The id *ref* holds; None only when it does not exist (an unborn branch)."""
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
                if os.listdir(p):
                    return None  # a folder of refs (a/b for a): no ref by this name (creating it is refused)
                raise DamagedRefError(ref, str(p), "is a directory, not a file")
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DamagedRefError(ref, str(p), "is not a regular file")
            raw = os.read(fd, 4096)
        except OSError as e:
            raise DamagedRefError(ref, str(p), f"cannot be read ({e.strerror or e})") from None
        finally:
            os.close(fd)
        return self._parse_id(ref, p, raw)

    def lookup(self, ref: str) -> str | None:
        """``read`` for a name a user typed: a name that can't be a commit ref names no ref."""
        return self.read(ref) if is_commit_ref(ref) else None

    def head_text(self) -> str | None:
        """HEAD's contents as written (None when missing or unreadable): for comparisons only."""
        try:
            return self._file("HEAD").read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def _parse_id(self, ref: str, p: Path, raw: bytes) -> str:
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DamagedRefError(ref, str(p), "holds bytes that are not UTF-8") from None
        if not value:
            raise DamagedRefError(ref, str(p), "is empty")
        if not is_id(value):
            raise DamagedRefError(ref, str(p), f"holds {printable(value, 40)!r}, not a commit id")
        return value

    def head(self) -> Head:
        p = self._file("HEAD")
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise DamagedRefError("HEAD", str(p), "the file is missing") from None
        except IsADirectoryError:
            raise DamagedRefError("HEAD", str(p), "is a directory, not a file") from None
        except OSError as e:
            raise DamagedRefError("HEAD", str(p), f"cannot be read ({e.strerror or e})") from None
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DamagedRefError("HEAD", str(p), "holds bytes that are not UTF-8") from None
        return parse_head(text, str(p), self.read)

    def _names(self, prefix: str) -> list[str]:
        """Full names of the ref files under *prefix* (temp and lock files left out)."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        return [prefix + p.relative_to(base).as_posix() for p in sorted(base.rglob("*"))
                if not p.is_dir() and not p.name.startswith(TMP_PREFIX)]

    def list(self, prefix: str) -> dict[str, str]:
        """Short name -> id of every ref under *prefix*; a damaged one is an error
        (a listing that skipped it would let gc or a backup forget its history)."""
        out: dict[str, str] = {}
        for full in self._names(prefix):
            if not is_valid_ref(full):
                raise DamagedRefError(printable(full), str(self.root / full), "is not a valid ref name")
            value = self.read(full)
            if value is not None:
                out[full[len(prefix):]] = value
        return out

    def branches(self) -> dict[str, str]:
        return self.list(HEADS)

    def tags(self) -> dict[str, str]:
        return self.list(TAGS)

    def check(self) -> tuple[dict[str, str | None], list[DamagedRefError]]:
        """Every commit ref (HEAD first) and its value, and every ref that can't be read (for fsck)."""
        values: dict[str, str | None] = {}
        problems: list[DamagedRefError] = []
        try:
            values["HEAD"] = self.head().commit
        except DamagedRefError as e:
            problems.append(e)
        for prefix in NAMESPACES:
            for full in self._names(prefix):
                if not is_valid_ref(full):
                    problems.append(DamagedRefError(printable(full), str(self.root / full),
                                                    "is not a valid ref name"))
                    continue
                try:
                    values[full] = self.read(full)
                except DamagedRefError as e:
                    if not any(p.ref == e.ref for p in problems):  # HEAD's branch is reported once
                        problems.append(e)
        return values, problems

    # -- writing -----------------------------------------------------------
    def append_reflog(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        append_line(self._file(ref, log=True), reflog_line(old, new, time.time(), message))

    def _check_free(self, ref: str, path: Path, stop: Path) -> None:
        """Refuse before writing when *path* can't be a file: a folder is there, or a file is one of its folders."""
        if path.is_dir():
            raise RefPathConflictError(ref, str(path.relative_to(self.root)))
        parent = path.parent
        while parent != stop and stop in parent.parents:
            if parent.exists() and not parent.is_dir():
                raise RefPathConflictError(ref, str(parent.relative_to(self.root)))
            parent = parent.parent

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
            if ref != "HEAD":
                self._check_free(ref, path, self._namespace_dir(ref))
                self._check_free(ref, log, self.root / "logs" / "refs")
            try:
                if log.exists():  # a folder there fails here (EISDIR), not after the working copy
                    with open(log, "ab"):
                        pass
                else:
                    self._probe_dir(log.parent)
                self._probe_dir(path.parent)
            except OSError as e:
                raise StorageError(str(getattr(e, "filename", None) or log), e) from e

    def _probe_dir(self, directory: Path) -> None:
        """Create and remove a temp file in *directory*, or the nearest folder of it that exists."""
        while not directory.exists() and directory != self.root:
            directory = directory.parent
        temp_path(directory).unlink()

    def compare_and_swap(self, ref: str, expect: str | None, new: str | None, *,
                         message: str = "") -> bool:
        """Move *ref* from *expect* to *new* (None deletes) if it holds *expect*, under its lock file.

        The reflog lines are written first and the ref's rename (or unlink) is the
        last step, so any failure leaves the ref unmoved. Keyframe refs have no reflog.
        """
        path = self._file(ref)
        if new is not None and not is_id(new):
            raise ValueError(f"not a commit id: {new!r}")
        logged = not ref.startswith(KEYFRAMES)
        if ref != "HEAD" and new is not None:
            self._check_free(ref, path, self._namespace_dir(ref))
            if logged:
                self._check_free(ref, self._file(ref, log=True), self.root / "logs" / "refs")
        try:
            with ref_lock(path):
                if self.read(ref) != expect:
                    return False
                if logged:
                    self._log_move(ref, expect, new, message)
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

    def _log_move(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        if new is None:  # a deletion: the checked-out branch is never deleted, HEAD's log is left alone
            self.append_reflog(ref, old, None, message)
            return
        head = self.head()  # read before anything is written: a damaged HEAD stops the move here
        self.append_reflog(ref, old, new, message)
        if head.branch is not None and HEADS + head.branch == ref:
            self.append_reflog("HEAD", old, new, message)

    def update(self, ref: str, new: str, *, expect: str | None, message: str) -> None:
        """Compare-and-swap *ref* from *expect* to *new*; RefConflictError when it moved meanwhile."""
        if not self.compare_and_swap(ref, expect, new, message=message):
            raise RefConflictError(ref)

    def delete(self, ref: str, *, message: str) -> None:
        """Remove *ref* whatever it holds (its reflog gets the line, and stays)."""
        while not self.compare_and_swap(ref, self.read(ref), None, message=message):
            pass  # moved between the read and the lock: delete what it holds now

    def _prune_dirs(self, parent: Path, stop: Path) -> None:
        """Drop now-empty folders of a/b style names, never the namespace folder itself."""
        while parent != stop and stop in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def set_head(self, *, branch: str | None = None, commit: str | None = None, message: str) -> None:
        """Attach HEAD to *branch*, or detach it at *commit* (the reflog line first, HEAD last)."""
        path = self._file("HEAD")
        with ref_lock(path):
            old = None
            with contextlib.suppress(DamagedRefError):  # setting HEAD is how a damaged one is replaced
                old = self.head().commit
            if branch is not None:
                target = HEADS + branch
                new = self.read(target)  # validates the name
                text = f"ref: {target}\n"
            else:
                if commit is None or not is_id(commit):
                    raise ValueError(f"not a commit id: {commit!r}")
                new, text = commit, f"{commit}\n"
            self.append_reflog("HEAD", old, new, message)
            write_atomic(path, text.encode())

    # -- reflog ------------------------------------------------------------
    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]:
        p = self._file(ref, log=True)
        if not p.is_file():
            return []
        return parse_reflog(p.read_text(encoding="utf-8", errors="replace"))

    def has_reflog(self, ref: str) -> bool:
        return self._file(ref, log=True).is_file()

    def reflog_names(self) -> list[str]:
        """Full names of every reflog there is (HEAD first), a deleted branch's included."""
        logs = self.root / "logs"
        if not logs.is_dir():
            return []
        names = [p.relative_to(logs).as_posix() for p in sorted(logs.rglob("*")) if p.is_file()]
        # A file that can't be a reflog (a temp file, a stray) is not one.
        return sorted((n for n in names if is_commit_ref(n)), key=lambda n: (n != "HEAD", n))

    def reflog_lines(self, ref: str) -> list[str]:
        """The reflog of *ref* line by line, as written (torn lines too: the caller decides)."""
        p = self._file(ref, log=True)
        try:
            return p.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StorageError(str(p), e) from e

    def rewrite_reflog(self, ref: str, lines: list[str]) -> None:
        """Replace *ref*'s reflog with *lines* atomically (caller holds the repo lock); no
        lines removes the file and the empty folders of an a/b style name."""
        p = self._file(ref, log=True)
        try:
            if lines:
                write_atomic(p, "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
                return
            p.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(str(p), e) from e
        stop = self.root / "logs" / "refs"
        parent = p.parent
        while parent != stop and stop in parent.parents and parent.parent != stop:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def reflog_ids(self) -> set[str]:
        ids: set[str] = set()
        for name in self.reflog_names():
            for e in self.reflog(name):
                ids.update({e.old, e.new})
        ids.discard(ZERO_ID)
        return ids

    # -- keyframe records ----------------------------------------------------
    def _legacy_keyframe(self, commit: str) -> Path:
        return self.root / LEGACY_KEYFRAMES / commit

    def keyframe(self, commit: str) -> str | None:
        """The snapshot id recorded for *commit* (the ref, else an old store's keyframes/ file);
        None when there is none or it can't be read as an id (a record is optional derived data)."""
        value = self.keyframes_of([commit]).get(commit, "")
        return value if is_id(value) else None

    def keyframes_of(self, commits: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for commit in commits:
            for p in (self._file(keyframe_ref(commit)), self._legacy_keyframe(commit)):
                try:
                    out[commit] = p.read_bytes().decode("utf-8", errors="replace").strip()
                    break
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError:
                    out[commit] = ""  # unreadable: reported by fsck, ignored by reads
                    break
        return out

    def set_keyframe(self, commit: str, snapshot: str) -> None:
        """Record *snapshot* as *commit*'s keyframe (replacing any record, garbage included)."""
        if not is_id(snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        path = self._file(keyframe_ref(commit))
        with ref_lock(path):
            write_atomic(path, (snapshot + "\n").encode())
        with contextlib.suppress(OSError):
            self._legacy_keyframe(commit).unlink()

    def delete_keyframe(self, commit: str) -> None:
        path = self._file(keyframe_ref(commit))
        for p in (path, self._legacy_keyframe(commit)):
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                raise StorageError(str(p), e) from e

    def keyframes(self) -> dict[str, str]:
        """commit -> recorded text of every keyframe record, both layouts (temp files left out)."""
        commits = {full[len(KEYFRAMES):] for full in self._names(KEYFRAMES)}
        legacy = self.root / LEGACY_KEYFRAMES
        if legacy.is_dir():
            commits.update(p.name for p in legacy.iterdir() if not p.name.startswith(TMP_PREFIX))
        return self.keyframes_of(sorted(c for c in commits if is_id(c)))

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
