"""Repository maintenance: fsck (verify everything the store holds) and gc (remove what
nothing reaches). The callers (``Repo.fsck``, ``Repo.gc``) hold the repository lock."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from . import snapshots
from .errors import DbversError, HistoryDamagedError, MissingObjectError
from .fsutil import TMP_PREFIX, temp_path
from .refs import HEADS, validate_name

if TYPE_CHECKING:
    from .repo import Repo


@dataclass
class FsckReport:
    objects: int = 0
    commits: int = 0
    snapshots: int = 0
    refs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class GcReport:
    removed_objects: int = 0
    removed_bytes: int = 0
    kept_objects: int = 0


_ID_RE = re.compile(r"[0-9a-f]{64}")
# A reflog line starts "<old id> <new id>"; the time and message after them may be torn.
_REFLOG_RE = re.compile(r"([0-9a-f]{64}) ([0-9a-f]{64})(?: |$)")
ZERO_ID = "0" * 64


@dataclass
class HistoryRoots:
    """Every commit id HEAD, a ref or a reflog line names, and what could not be read.

    Read from the files themselves rather than through lookups that skip what they
    can't parse: a ref or reflog line that is garbage may be the only thing that
    names some history, so it must stop ``gc``, not be ignored by it.
    """

    ids: dict[str, str] = field(default_factory=dict)  # commit id -> where it was named first
    refs: int = 0  # HEAD plus ref files
    problems: list[str] = field(default_factory=list)


def _short(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:120]


def history_roots(repo: Repo) -> HistoryRoots:
    """HEAD, every file under ``refs/`` and every line under ``logs/`` (never raises)."""
    out = HistoryRoots()
    out.refs += 1
    try:
        head = repo.refs.head()
    except (OSError, ValueError, DbversError) as e:
        out.problems.append(f"HEAD is unreadable ({_short(e)})")
    else:
        if head.branch is None:
            if head.commit is None:
                out.problems.append("HEAD holds neither a commit id nor a branch")
            else:
                out.ids.setdefault(head.commit, "HEAD")
        else:
            try:
                validate_name(head.branch)
            except DbversError:
                out.problems.append(f"HEAD names an invalid branch {head.branch!r}")
            else:
                # dbvers never has an unborn branch (init makes the first commit): a
                # missing ref is a deleted ref, whose history gc must not take as garbage.
                if not (repo.refs.root / (HEADS + head.branch)).is_file():
                    out.problems.append(f"HEAD names branch '{head.branch}', which does not exist")
    _read_refs(repo, out)
    _read_reflogs(repo, out)
    return out


def _files(base: Path) -> list[Path]:
    """Files under *base*, sorted, skipping temp and hidden names (as RefStore.list does)."""
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))


def _read_refs(repo: Repo, out: HistoryRoots) -> None:
    """Every ref under ``refs/``, read by the RefStore's own tolerant check (HEAD is read above)."""
    try:
        values, damaged = repo.refs.check()
    except OSError as e:
        out.problems.append(f"refs/ can't be listed ({_short(e)})")
        return
    for bad in damaged:
        if bad.ref != "HEAD":
            out.refs += 1
            out.problems.append(f"{bad.ref} is damaged: {bad.detail} ({bad.path})")
    for name, oid in values.items():
        if name == "HEAD":
            continue
        out.refs += 1
        if oid is None or not _ID_RE.fullmatch(oid):
            out.problems.append(f"{name} does not hold a commit id")
        else:
            out.ids.setdefault(oid, name)


def _read_reflogs(repo: Repo, out: HistoryRoots) -> None:
    logs = repo.refs.root / "logs"
    try:
        files = _files(logs)
    except OSError as e:
        out.problems.append(f"logs/ can't be listed ({_short(e)})")
        return
    for p in files:
        name = p.relative_to(repo.refs.root).as_posix()
        try:
            text = p.read_bytes().decode("utf-8", errors="replace")
        except OSError as e:
            out.problems.append(f"{name} is unreadable ({_short(e)})")
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            m = _REFLOG_RE.match(line)
            if m is None:
                out.problems.append(f"{name} line {n} is not a reflog entry (torn or garbage)")
                continue
            for oid in m.groups():
                if oid != ZERO_ID:
                    out.ids.setdefault(oid, f"{name} line {n}")


def walk_history(repo: Repo, roots: HistoryRoots) -> tuple[set[str], list[str]]:
    """Every commit the roots reach, and every commit on the way that can't be read (never raises).

    Unlike a walk that skips what it can't read, a missing or corrupt commit is a
    problem here: its parents (and what they reach) are unknown, so nobody may
    conclude that anything is unreachable.
    """
    seen: set[str] = set()
    readable: set[str] = set()
    problems: list[str] = []
    stack = sorted(roots.ids.items(), reverse=True)
    while stack:
        oid, why = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        try:
            c = repo.get_commit(oid)
        except MissingObjectError:
            problems.append(f"commit {oid[:12]} (reached from {why}) is missing from the store")
            continue
        except (DbversError, ValueError, KeyError, TypeError) as e:
            problems.append(f"commit {oid[:12]} (reached from {why}) is unreadable ({_short(e)})")
            continue
        readable.add(oid)
        stack.extend((p, f"commit {oid[:12]}") for p in c.parents)
    return readable, problems


def reachable_commits(repo: Repo, action: str = "the operation") -> set[str]:
    """Commits reachable from a branch, tag, HEAD or reflog entry.

    Raises HistoryDamagedError when any of them can't be read or resolved: an
    answer computed around a hole would call the history behind it unreachable.
    """
    roots = history_roots(repo)
    commits, problems = walk_history(repo, roots)
    if roots.problems or problems:
        raise HistoryDamagedError(action, roots.problems + problems)
    return commits


def fsck(repo: Repo) -> FsckReport:
    """Verify every object's hash, every snapshot's integrity, every ref, reflog and commit link.

    Never raises for damage: whatever it finds unreadable is a problem in the report.
    """
    report = FsckReport()
    types: dict[str, str] = {}
    try:
        ids = list(repo.objects.iter_ids())
    except OSError as e:
        ids = []
        report.problems.append(f"objects/ can't be listed ({_short(e)})")
    for oid in ids:
        report.objects += 1
        try:
            types[oid] = repo.objects.verify(oid)
        except (DbversError, OSError) as e:
            report.problems.append(str(e) if isinstance(e, DbversError) else f"object {oid[:12]}: {_short(e)}")
    roots = history_roots(repo)
    report.refs = roots.refs
    report.problems.extend(roots.problems)
    for oid, where in roots.ids.items():
        if types.get(oid) != "commit":
            report.problems.append(f"{where} points to {oid[:12]}, which is not a commit in the store")
    for oid, t in types.items():
        if t == "commit":
            report.commits += 1
            _fsck_commit(repo, oid, types, report)
        elif t == "snapshot":
            report.snapshots += 1
            _fsck_snapshot(repo, oid, report)
    _fsck_keyframes(repo, types, report)
    return report


def _fsck_keyframes(repo: Repo, types: dict[str, str], report: FsckReport) -> None:
    try:
        records = repo.keyframe_files()
    except OSError as e:
        report.problems.append(f"keyframes/ can't be listed ({_short(e)})")
        return
    for kf in records:
        try:
            snap = kf.read_bytes().decode("utf-8", errors="replace").strip()
        except OSError as e:
            report.problems.append(f"keyframe record {kf.name[:12]} is unreadable ({_short(e)})")
            continue
        if not _ID_RE.fullmatch(snap):
            report.problems.append(f"keyframe record of {kf.name[:12]} is garbage (not a snapshot id); "
                                   "it is ignored, delete it or run 'dbvers snapshot' at that commit")
        elif types.get(snap) != "snapshot":
            report.problems.append(f"keyframe of {kf.name[:12]} names missing snapshot {snap[:12]}")


def _fsck_commit(repo: Repo, oid: str, types: dict[str, str], report: FsckReport) -> None:
    try:
        c = repo.get_commit(oid)
    except (DbversError, ValueError, KeyError, TypeError) as e:
        report.problems.append(str(e) if isinstance(e, DbversError) else f"commit {oid[:12]} is unreadable ({_short(e)})")
        return
    wanted = c.typed_references() + [(p, "commit") for p in c.parents]
    for ref_oid, kind in wanted:
        if types.get(ref_oid) != kind:
            report.problems.append(f"commit {oid[:12]} refers to missing {kind} {ref_oid[:12]}")
    if not c.parents and not c.snapshot:
        report.problems.append(f"root commit {oid[:12]} has no snapshot")


def _fsck_snapshot(repo: Repo, oid: str, report: FsckReport) -> None:
    try:
        repo.cache_dir.mkdir(exist_ok=True)
        tmp = temp_path(repo.cache_dir, ".db")
    except OSError as e:
        report.problems.append(f"snapshot {oid[:12]} not checked: no room to unpack it ({_short(e)})")
        return
    try:
        repo.objects.get_to_file(oid, tmp, "snapshot")
        if problems := snapshots.file_problems(tmp):
            report.problems.append(f"snapshot {oid[:12]} fails integrity_check: {problems[0]}")
    except DbversError as e:
        report.problems.append(str(e))
    except (OSError, apsw.Error) as e:
        report.problems.append(f"snapshot {oid[:12]} is not a usable database ({_short(e)})")
    finally:
        tmp.unlink(missing_ok=True)


def gc(repo: Repo) -> GcReport:
    """Remove objects no ref, tag, HEAD or reflog entry reaches (nothing a user did is lost).

    Refuses, deleting nothing, unless every ref, HEAD and reflog line resolves to a
    readable commit whose whole ancestry is readable: what is unreachable can only
    be known from a complete picture of what is reachable.
    """
    report = GcReport()
    commits = reachable_commits(repo, "gc")
    keep: set[str] = set(commits)
    for oid in commits:
        keep.update(repo.get_commit(oid).referenced_objects())
        if (snap := repo.snapshot_of(oid)) is not None:
            keep.add(snap)
    for oid in list(repo.objects.iter_ids()):
        if oid in keep:
            report.kept_objects += 1
            continue
        report.removed_bytes += repo.objects.stored_size(oid)
        repo.objects.delete(oid)
        report.removed_objects += 1
    for kf in repo.keyframe_files():
        if kf.name not in commits:
            kf.unlink()
    for p in repo.cache_dir.glob("*.db"):
        if p.stem not in commits and not p.name.startswith(TMP_PREFIX):  # temps: their owners' to remove
            p.unlink(missing_ok=True)
    return report
