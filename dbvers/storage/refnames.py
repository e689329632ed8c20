"""Ref names: the namespaces, git's ``check-ref-format`` rules, and the reflog line format.

L1 (imports only L0). Shared by every RefStore backend, so a name that one backend
refuses, all refuse. ``refs/keyframes/<commit id>`` is dbvers's own namespace: a
keyframe record (the snapshot made for a commit by ``dbvers snapshot``) is a ref
there, so a remote moves only objects and refs. It is never a user's ref: it holds
a snapshot id, not a commit id, and revision parsing never resolves it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from ..errors import DamagedRefError, InvalidRefNameError
from ..formats import ZERO_ID, is_id
from .base import Head, ReflogEntry

HEADS = "refs/heads/"
TAGS = "refs/tags/"
REMOTES = "refs/remotes/"
KEYFRAMES = "refs/keyframes/"
#: The namespaces of refs that hold commits (the roots of the history).
NAMESPACES = (HEADS, TAGS, REMOTES)
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# File systems refuse longer components (ENAMETOOLONG); a whole name is kept well under PATH_MAX.
MAX_COMPONENT_BYTES = 255
MAX_NAME_BYTES = 1024


# Cached: every read, listing and swap checks its names, and a store has few distinct ones.
@functools.lru_cache(maxsize=4096)
def _name_problem(name: str) -> str | None:
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8" if name else "empty"
    checks = (
        (not name, "empty"),
        (name.startswith("-"), "cannot start with '-'"),
        (".." in name, "cannot contain '..'"),
        (bool(_BAD_CHARS.search(name)), "cannot contain spaces, control characters or any of ~^:?*[\\"),
        (name.startswith("/") or name.endswith("/") or "//" in name, "bad '/' placement"),
        (any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")),
         "a component cannot start with '.' or end with '.lock'"),
        (name.endswith(".") or name == "@" or "@{" in name, "reserved form"),
        (name == "HEAD", "HEAD is reserved"),
        (is_id(name), "looks like a commit id"),
        (len(encoded) > MAX_NAME_BYTES, f"longer than {MAX_NAME_BYTES} bytes"),
        (any(len(part.encode("utf-8")) > MAX_COMPONENT_BYTES for part in name.split("/")),
         f"a component between '/' is longer than {MAX_COMPONENT_BYTES} bytes"),
    )
    return next((why for bad, why in checks if bad), None)


def validate_name(name: str) -> str:
    """Check a branch or tag name the way ``git check-ref-format`` does."""
    why = _name_problem(name)
    if why:
        raise InvalidRefNameError(name, why)
    return name


def check_ref_format(ref: str) -> str:
    """Check a *full* ref name: ``HEAD``, ``refs/heads|tags|remotes/`` and a valid name, or
    ``refs/keyframes/<commit id>``. The one validator every ref a store touches passes through.
    """
    if ref == "HEAD":
        return ref
    if ref.startswith(KEYFRAMES):
        if not is_id(ref[len(KEYFRAMES):]):
            raise InvalidRefNameError(ref, "a keyframe ref is refs/keyframes/<commit id>")
        return ref
    for ns in NAMESPACES:
        if ref.startswith(ns):
            validate_name(ref[len(ns):])
            if ns == REMOTES and "/" not in ref[len(ns):]:
                raise InvalidRefNameError(ref, "a remote ref is refs/remotes/<remote>/<branch>")
            return ref
    raise InvalidRefNameError(ref, "a ref is HEAD or under refs/heads/, refs/tags/ or refs/remotes/")


def check_ref_prefix(prefix: str) -> str:
    """Check what a listing is of: a namespace (``refs/heads/``) or a folder in one
    (``refs/remotes/origin/``). A listing never leaves the refs (``refs/heads/../..``)."""
    for ns in NAMESPACES:
        if prefix == ns:
            return prefix
        if prefix.startswith(ns) and prefix.endswith("/"):
            validate_name(prefix[len(ns):-1])
            return prefix
    raise InvalidRefNameError(prefix, "a listing is of refs/heads/, refs/tags/ or refs/remotes/, or a folder in one")


def is_valid_ref(ref: str) -> bool:
    try:
        check_ref_format(ref)
    except InvalidRefNameError:
        return False
    return True


def is_commit_ref(ref: str) -> bool:
    """A valid ref that holds a commit (HEAD, a branch, tag or remote branch; not a keyframe)."""
    return is_valid_ref(ref) and not ref.startswith(KEYFRAMES)


def keyframe_ref(commit: str) -> str:
    """The ref that records *commit*'s keyframe snapshot."""
    if not is_id(commit):
        raise ValueError(f"not a commit id: {commit!r}")
    return KEYFRAMES + commit


def keyframe_record_commit(name: str) -> str | None:
    """The commit a store file or archive member *name* is the keyframe record of (None: not one).

    Both layouts: ``refs/keyframes/<commit>`` (a ref) and ``keyframes/<commit>`` (before
    keyframe records were refs; old stores and old backup archives still hold them).
    """
    for prefix in (KEYFRAMES, "keyframes/"):
        if name.startswith(prefix) and is_id(name[len(prefix):]):
            return name[len(prefix):]
    return None


def printable(text: str, limit: int = 80) -> str:
    """*text* fit for a one-line message: control characters and stray surrogates escaped, long text cut."""
    out = text.encode("utf-8", "backslashreplace").decode("utf-8")
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in out)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def reflog_line(old: str | None, new: str | None, when: float, message: str) -> str:
    """One reflog line, git's: ``<old id> <new id> <unix time> <message's first line>``."""
    return f"{old or ZERO_ID} {new or ZERO_ID} {when:.3f} {message.splitlines()[0] if message else ''}"


def parse_reflog(text: str) -> list[ReflogEntry]:
    out: list[ReflogEntry] = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3 or not (is_id(parts[0]) and is_id(parts[1])):
            continue  # a torn line from a killed writer
        try:
            t = float(parts[2])
        except ValueError:
            continue
        out.append(ReflogEntry(parts[0], parts[1], t, parts[3] if len(parts) > 3 else ""))
    return out


def parse_head(text: str, where: str, read: Callable[[str], str | None]) -> Head:
    """HEAD's text (stripped) as a Head; *read* resolves the branch ref it names."""
    if text.startswith("ref:"):
        target = text[4:].strip()
        # HEAD attaches only to a branch: anything else would make the next commit move it.
        if not target.startswith(HEADS) or not is_valid_ref(target):
            raise DamagedRefError("HEAD", where, f"points to {printable(target, 60)!r}, not a branch")
        return Head(target[len(HEADS):], read(target))
    if is_id(text):
        return Head(None, text)
    raise DamagedRefError("HEAD", where, f"holds {printable(text, 40)!r}, neither 'ref: refs/heads/<branch>' "
                                         "nor a commit id")
