"""Branches, tags, HEAD and the reflog.

Layout (git's): ``HEAD`` holds ``ref: refs/heads/<branch>`` or a commit id
(detached); ``refs/heads/<name>`` and ``refs/tags/<name>`` hold a commit id;
``logs/<ref>`` is the reflog, one line per move:
``<old id> <new id> <unix time> <message>``. Every write is atomic; moving a ref
is a compare-and-swap under the repository lock, and is the commit point of
every operation.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidRefNameError, RefConflictError
from .fsutil import append_line, write_atomic

ZERO_ID = "0" * 64
HEADS = "refs/heads/"
TAGS = "refs/tags/"
_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def validate_name(name: str) -> str:
    """Check a branch or tag name the way ``git check-ref-format`` does."""
    why = None
    if not name:
        why = "empty"
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
    if why:
        raise InvalidRefNameError(name, why)
    return name


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

    def _file(self, ref: str) -> Path:
        return self.root / ref

    # -- reading -----------------------------------------------------------
    def read(self, ref: str) -> str | None:
        p = self._file(ref)
        try:
            value = p.read_text().strip()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return value if _ID_RE.match(value) else None

    def head(self) -> Head:
        raw = (self.root / "HEAD").read_text().strip()
        if raw.startswith("ref: "):
            ref = raw[5:]
            return Head(ref.removeprefix(HEADS), self.read(ref))
        return Head(None, raw if _ID_RE.match(raw) else None)

    def list(self, prefix: str) -> dict[str, str]:
        base = self.root / prefix
        out: dict[str, str] = {}
        if not base.is_dir():
            return out
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                name = p.relative_to(base).as_posix()
                value = self.read(prefix + name)
                if value:
                    out[name] = value
        return out

    def branches(self) -> dict[str, str]:
        return self.list(HEADS)

    def tags(self) -> dict[str, str]:
        return self.list(TAGS)

    # -- writing -----------------------------------------------------------
    def _log(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        line = f"{old or ZERO_ID} {new or ZERO_ID} {time.time():.3f} {message.splitlines()[0] if message else ''}"
        append_line(self.root / "logs" / ref, line)

    def update(self, ref: str, new: str, *, expect: str | None, message: str) -> None:
        """Compare-and-swap *ref* from *expect* to *new* (caller holds the repo lock)."""
        current = self.read(ref)
        if current != expect:
            raise RefConflictError(ref)
        write_atomic(self._file(ref), (new + "\n").encode())
        self._log(ref, current, new, message)
        head = self.head()
        if head.branch is not None and HEADS + head.branch == ref:
            self._log("HEAD", current, new, message)

    def delete(self, ref: str, *, message: str) -> None:
        current = self.read(ref)
        p = self._file(ref)
        p.unlink(missing_ok=True)
        # Drop now-empty directories of a/b style names, but never refs/heads itself.
        parent = p.parent
        while parent != self.root / "refs" and parent.name not in ("heads", "tags"):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        self._log(ref, current, None, message)

    def set_head(self, *, branch: str | None = None, commit: str | None = None, message: str) -> None:
        """Attach HEAD to *branch*, or detach it at *commit*."""
        old = self.head().commit if (self.root / "HEAD").exists() else None
        if branch is not None:
            write_atomic(self.root / "HEAD", f"ref: {HEADS}{branch}\n".encode())
            new = self.read(HEADS + branch)
        else:
            assert commit is not None
            write_atomic(self.root / "HEAD", f"{commit}\n".encode())
            new = commit
        self._log("HEAD", old, new, message)

    # -- reflog ------------------------------------------------------------
    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]:
        p = self.root / "logs" / ref
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

    def reflog_ids(self) -> set[str]:
        ids: set[str] = set()
        logs = self.root / "logs"
        if not logs.is_dir():
            return ids
        for p in logs.rglob("*"):
            if p.is_file():
                for e in self.reflog(p.relative_to(logs).as_posix()):
                    ids.update({e.old, e.new})
        ids.discard(ZERO_ID)
        return ids
