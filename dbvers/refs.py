"""Branches, tags, HEAD and the reflog.

Layout (git's): ``HEAD`` holds ``ref: refs/heads/<branch>`` or a commit id
(detached); ``refs/heads/<name>`` and ``refs/tags/<name>`` hold a commit id;
``logs/<ref>`` is the reflog, one line per move:
``<old id> <new id> <unix time> <message>``. Every write is atomic; moving a ref
is a compare-and-swap under the repository lock, and is the commit point of
every operation.

Every path made from a ref name, for reading, writing, deleting a ref or its
reflog, comes from :meth:`RefStore._file`, which validates the *full* name with
:func:`check_ref_format` and checks that the path stays inside the store. A ref
that does not exist is an unborn branch; a ref (or HEAD) that exists but can't
be read as a commit id is a :class:`DamagedRefError`, never "unborn".

A move writes its reflog line(s) first and the ref file last: a failure before
the rename leaves the ref where it was (a reflog line for a move that never
happened only keeps a commit alive for gc; nothing reads it as the ref's value).

Reflogs are appended to by moves and rewritten (atomically, under the lock) only
by expiry (:meth:`RefStore.rewrite_reflog`, driven by ``maintenance.reflog_expire``).
A deleted ref's reflog stays, so it can be recovered, until its entries expire.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import (
    DamagedRefError,
    InvalidRefNameError,
    RefConflictError,
    RefPathConflictError,
    StorageError,
)
from .fsutil import TMP_PREFIX, append_line, temp_path, write_atomic

ZERO_ID = "0" * 64
HEADS = "refs/heads/"
TAGS = "refs/tags/"
REMOTES = "refs/remotes/"
NAMESPACES = (HEADS, TAGS, REMOTES)
_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# File systems refuse longer components (ENAMETOOLONG); a whole name is kept well under PATH_MAX.
MAX_COMPONENT_BYTES = 255
MAX_NAME_BYTES = 1024


def validate_name(name: str) -> str:
    """Check a branch or tag name the way ``git check-ref-format`` does."""
    why = None
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        encoded = None
    if not name:
        why = "empty"
    elif encoded is None:
        why = "not valid UTF-8"
    elif name.startswith("-"):
        why = "cannot start with '-'"
    elif ".." in name:
        why = "cannot contain '..'"
    elif _BAD_CHARS.search(name):
        why = "cannot contain spaces, control characters or any of ~^:?*[\\"
    elif name.startswith("/") or name.endswith("/") or "//" in name:
        why = "bad '/' placement"
    elif any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        why = "a component cannot start with '.' or end with '.lock'"
    elif name.endswith(".") or name == "@" or "@{" in name:
        why = "reserved form"
    elif name == "HEAD":
        why = "HEAD is reserved"
    elif _ID_RE.match(name):
        why = "looks like a commit id"
    elif len(encoded) > MAX_NAME_BYTES:
        why = f"longer than {MAX_NAME_BYTES} bytes"
    elif any(len(part.encode("utf-8")) > MAX_COMPONENT_BYTES for part in name.split("/")):
        why = f"a component between '/' is longer than {MAX_COMPONENT_BYTES} bytes"
    if why:
        raise InvalidRefNameError(name, why)
    return name


def check_ref_format(ref: str) -> str:
    """Check a *full* ref name: ``HEAD``, or ``refs/heads|tags|remotes/`` and a valid name.

    The one validator every path made from a ref name passes through.
    """
    if ref == "HEAD":
        return ref
    for ns in NAMESPACES:
        if ref.startswith(ns):
            validate_name(ref[len(ns):])
            if ns == REMOTES and "/" not in ref[len(ns):]:
                raise InvalidRefNameError(ref, "a remote ref is refs/remotes/<remote>/<branch>")
            return ref
    raise InvalidRefNameError(ref, "a ref is HEAD or under refs/heads/, refs/tags/ or refs/remotes/")


def is_valid_ref(ref: str) -> bool:
    try:
        check_ref_format(ref)
    except InvalidRefNameError:
        return False
    return True


def _printable(text: str, limit: int = 80) -> str:
    """*text* fit for a one-line message: control characters and stray surrogates escaped, long text cut."""
    out = text.encode("utf-8", "backslashreplace").decode("utf-8")
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in out)
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass(frozen=True)
class Head:
    branch: str | None  # short branch name when attached
    commit: str | None  # None only on an unborn branch

    @property
    def detached(self) -> bool:
        return self.branch is None


@dataclass(frozen=True)
class ReflogEntry:
    old: str
    new: str
    time: float
    message: str


class RefStore:
    def __init__(self, root: Path) -> None:
        self.root = root

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
        """refs/heads, refs/tags or refs/remotes: the folder a ref's own folders are made under."""
        return self.root / "/".join(ref.split("/")[:2])

    # -- reading -----------------------------------------------------------
    def read(self, ref: str) -> str | None:
        """The commit id *ref* holds; None only when it does not exist (an unborn branch)."""
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
        """``read`` for a name a user typed: a name that can't be a ref names no ref."""
        return self.read(ref) if is_valid_ref(ref) else None

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
        if not _ID_RE.match(value):
            raise DamagedRefError(ref, str(p), f"holds {_printable(value, 40)!r}, not a commit id")
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
        if text.startswith("ref:"):
            target = text[4:].strip()
            # HEAD attaches only to a branch: anything else would make the next commit move it.
            if not target.startswith(HEADS) or not is_valid_ref(target):
                raise DamagedRefError("HEAD", str(p), f"points to {_printable(target, 60)!r}, not a branch")
            return Head(target[len(HEADS):], self.read(target))
        if _ID_RE.match(text):
            return Head(None, text)
        raise DamagedRefError("HEAD", str(p), f"holds {_printable(text, 40)!r}, neither 'ref: refs/heads/<branch>' "
                                              "nor a commit id")

    def _names(self, prefix: str) -> list[str]:
        """Full names of the ref files under *prefix* (temp files of killed writers left out)."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        return [prefix + p.relative_to(base).as_posix() for p in sorted(base.rglob("*"))
                if not p.is_dir() and not p.name.startswith(TMP_PREFIX)]

    def list(self, prefix: str) -> dict[str, str]:
        """Short name -> commit id of every ref under *prefix*; a damaged one is an error
        (a listing that skipped it would let gc or a backup forget its history)."""
        out: dict[str, str] = {}
        for full in self._names(prefix):
            if not is_valid_ref(full):
                raise DamagedRefError(_printable(full), str(self.root / full), "is not a valid ref name")
            value = self.read(full)
            if value is not None:
                out[full[len(prefix):]] = value
        return out

    def branches(self) -> dict[str, str]:
        return self.list(HEADS)

    def tags(self) -> dict[str, str]:
        return self.list(TAGS)

    def check(self) -> tuple[dict[str, str | None], list[DamagedRefError]]:
        """Every ref (HEAD first) and its value, and every ref that can't be read (for fsck)."""
        values: dict[str, str | None] = {}
        problems: list[DamagedRefError] = []
        try:
            values["HEAD"] = self.head().commit
        except DamagedRefError as e:
            problems.append(e)
        for prefix in NAMESPACES:
            for full in self._names(prefix):
                if not is_valid_ref(full):
                    problems.append(DamagedRefError(_printable(full), str(self.root / full),
                                                    "is not a valid ref name"))
                    continue
                try:
                    values[full] = self.read(full)
                except DamagedRefError as e:
                    if not any(p.ref == e.ref for p in problems):  # HEAD's branch is reported once
                        problems.append(e)
        return values, problems

    # -- writing -----------------------------------------------------------
    def _log(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        line = f"{old or ZERO_ID} {new or ZERO_ID} {time.time():.3f} {message.splitlines()[0] if message else ''}"
        append_line(self._file(ref, log=True), line)

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

    def update(self, ref: str, new: str, *, expect: str | None, message: str) -> None:
        """Compare-and-swap *ref* from *expect* to *new* (caller holds the repo lock).

        The reflog lines are written first and the ref's rename is the last step, so
        any failure leaves the ref unmoved.
        """
        path = self._file(ref)
        if not _ID_RE.match(new):
            raise ValueError(f"not a commit id: {new!r}")
        current = self.read(ref)
        if current != expect:
            raise RefConflictError(ref)
        if ref != "HEAD":
            self._check_free(ref, path, self._namespace_dir(ref))
            self._check_free(ref, self._file(ref, log=True), self.root / "logs" / "refs")
        head = self.head()  # read before anything is written: a damaged HEAD stops the move here
        self._log(ref, current, new, message)
        if head.branch is not None and HEADS + head.branch == ref:
            self._log("HEAD", current, new, message)
        write_atomic(path, (new + "\n").encode())

    def delete(self, ref: str, *, message: str) -> None:
        p = self._file(ref)
        current = self.read(ref)
        self._log(ref, current, None, message)
        try:
            p.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(str(p), e) from e
        # Drop now-empty folders of a/b style names, never the namespace folder itself.
        stop = self._namespace_dir(ref)
        parent = p.parent
        while parent != stop and stop in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def set_head(self, *, branch: str | None = None, commit: str | None = None, message: str) -> None:
        """Attach HEAD to *branch*, or detach it at *commit* (the reflog line first, HEAD last)."""
        old = None
        with contextlib.suppress(DamagedRefError):  # setting HEAD is how a damaged one is replaced
            old = self.head().commit
        if branch is not None:
            target = HEADS + branch
            new = self.read(target)  # validates the name
            text = f"ref: {target}\n"
        else:
            if commit is None or not _ID_RE.match(commit):
                raise ValueError(f"not a commit id: {commit!r}")
            new, text = commit, f"{commit}\n"
        self._log("HEAD", old, new, message)
        write_atomic(self._file("HEAD"), text.encode())

    # -- reflog ------------------------------------------------------------
    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]:
        p = self._file(ref, log=True)
        out: list[ReflogEntry] = []
        if not p.is_file():
            return out
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split(" ", 3)
            if len(parts) < 3 or not (_ID_RE.match(parts[0]) and _ID_RE.match(parts[1])):
                continue  # a torn line from a killed writer
            try:
                t = float(parts[2])
            except ValueError:
                continue
            out.append(ReflogEntry(parts[0], parts[1], t, parts[3] if len(parts) > 3 else ""))
        return out

    def has_reflog(self, ref: str) -> bool:
        return self._file(ref, log=True).is_file()

    def reflog_names(self) -> list[str]:
        """Full names of every reflog there is (HEAD first), a deleted branch's included."""
        logs = self.root / "logs"
        if not logs.is_dir():
            return []
        names = [p.relative_to(logs).as_posix() for p in sorted(logs.rglob("*")) if p.is_file()]
        # A file that can't be a reflog (a temp file, a stray) is not one.
        return sorted((n for n in names if is_valid_ref(n)), key=lambda n: (n != "HEAD", n))

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
        logs = self.root / "logs"
        if not logs.is_dir():
            return ids
        for p in logs.rglob("*"):
            name = p.relative_to(logs).as_posix()
            # A file that can't be a reflog (a temp file, a stray) is not read as one.
            if p.is_file() and is_valid_ref(name):
                for e in self.reflog(name):
                    ids.update({e.old, e.new})
        ids.discard(ZERO_ID)
        return ids
