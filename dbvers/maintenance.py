"""Repository maintenance (layer L3): fsck (verify everything the store holds), reflog expiry
and gc (remove what nothing reaches). :func:`fsck`, :func:`reflog_expire` and :func:`gc` are
``Repo``'s (the facade delegates to them) and take the store's lock themselves: fsck a
read-only one that notes a failed recovery instead of raising, so it runs whatever is damaged.

Expiry is git's: a reflog entry older than ``expire`` goes; one older than
``expire_unreachable`` goes when its commit is not reachable from the current tip
of that ref (every entry of a deleted branch's reflog: it has no tip). The entry
that is a ref's current value stays, so a ref's log never loses where it is. gc
expires reflogs first, then deletes unreachable objects older than ``prune``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from . import graph, refops, snapshots
from .config import expiry_cutoff
from .errors import BadExpiryError, DbversError, HistoryDamagedError
from .fsutil import TMP_PREFIX, temp_path
from .storage.refnames import HEADS, validate_name

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


@dataclass(frozen=True)
class ExpiredEntry:
    ref: str
    old: str
    new: str
    time: float | None
    message: str


@dataclass
class ReflogExpireReport:
    expired: list[ExpiredEntry] = field(default_factory=list)  # what went (or would go, dry run)
    kept_entries: int = 0
    removed_reflogs: list[str] = field(default_factory=list)  # reflogs left with no entry (deleted)
    dry_run: bool = False


@dataclass
class GcReport:
    removed_objects: int = 0
    removed_bytes: int = 0
    kept_objects: int = 0
    recent_objects: int = 0  # unreachable, but newer than the prune time: kept
    expired_entries: int = 0  # reflog entries gc expired first


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


def reachable_commits(repo: Repo, action: str = "the operation") -> set[str]:
    """Commits reachable from a branch, tag, HEAD or reflog entry.

    Raises HistoryDamagedError when any of them can't be read or resolved: an
    answer computed around a hole would call the history behind it unreachable.
    """
    roots = history_roots(repo)
    reach = graph.walk(repo.get_commit, roots.ids)
    if roots.problems or reach.problems:
        raise HistoryDamagedError(action, roots.problems + reach.problems)
    return set(reach.commits)


def _closure(repo: Repo, commits: set[str]) -> set[str]:
    """*commits* and every object they refer to, their keyframes' snapshots included."""
    out = set(commits)
    for oid in commits:
        try:
            out.update(repo.get_commit(oid).referenced_objects())
            snap = repo.snapshot_of(oid)
        except (DbversError, ValueError, KeyError, TypeError):
            continue  # only an unreachable commit can be unreadable here (the history was checked)
        if snap is not None:
            out.add(snap)
    return out


def _mtime(repo: Repo, oid: str) -> float:
    try:
        return repo.objects.mtime(oid)
    except (OSError, DbversError):
        return math.inf  # can't tell its age: not old enough to delete


def _is_commit(repo: Repo, oid: str) -> bool:
    try:
        return repo.objects.object_type(oid) == "commit"
    except (DbversError, OSError, ValueError):
        return False


def fsck(repo: Repo) -> FsckReport:
    """Verify every object's hash, every snapshot's integrity, every ref, reflog and commit link.

    Never raises for damage: whatever it finds unreadable (a recovery that fails, a damaged
    checkout journal included) is a problem in the report.
    """
    recovery: list[str] = []
    with repo.locked(write=False, recovery_problems=recovery):
        report = _verify(repo)
        if repo.journal_problem:
            report.problems.append(repo.journal_problem)
    report.problems[:0] = recovery
    return report


def _verify(repo: Repo) -> FsckReport:
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
        records = repo.refs.keyframes()
    except OSError as e:
        report.problems.append(f"refs/keyframes/ can't be listed ({_short(e)})")
        return
    for commit, snap in records.items():
        if not _ID_RE.fullmatch(snap):
            report.problems.append(f"keyframe record of {commit[:12]} is unreadable or garbage (not a snapshot "
                                   "id); it is ignored, delete it or run 'dbvers snapshot' at that commit")
        elif types.get(snap) != "snapshot":
            report.problems.append(f"keyframe of {commit[:12]} names missing snapshot {snap[:12]}")


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


Expiry = str | float | None  # a WHEN (see config.expiry_cutoff); None: the config's setting


def cutoff(repo: Repo, value: Expiry, key: str, option: str, now: float) -> float:
    """The cutoff time of *value*, or of ``[gc] key`` when it is None; a bad value is one line."""
    if value is None:
        return expiry_cutoff(repo.config.get("gc", key), now)  # checked when the config was read
    try:
        return expiry_cutoff(value, now)
    except (ValueError, TypeError):
        raise BadExpiryError(option, str(value)) from None


_ENTRY_RE = re.compile(r"([0-9a-f]{64}) ([0-9a-f]{64}) (\S+)(?: (.*))?")


def _tip(repo: Repo, ref: str) -> str | None:
    return repo.refs.head().commit if ref == "HEAD" else repo.refs.read(ref)


def reflog_expire(repo: Repo, *, expire: Expiry = None, expire_unreachable: Expiry = None,
                  refs: list[str] | None = None, dry_run: bool = False) -> ReflogExpireReport:
    """Drop reflog entries older than their expiry (see the module's docstring); *refs*: the
    names of the reflogs to expire (as ``Repo.reflog`` takes them), None for every one."""
    with repo.locked(write=not dry_run):
        full = None if refs is None else [refops.reflog_ref(repo.refs, r) for r in refs]
        return _expire(repo, expire=expire, expire_unreachable=expire_unreachable, refs=full, dry_run=dry_run)


def _expire(repo: Repo, *, expire: Expiry = None, expire_unreachable: Expiry = None,
            refs: list[str] | None = None, dry_run: bool = False,
            action: str = "reflog expire") -> ReflogExpireReport:
    """Drop reflog entries of the full refs *refs* older than their expiry (the lock is held).

    Refuses, changing nothing, when the history is damaged: an entry's
    reachability can't be known past a missing commit, and a garbage line can't be
    dated. Each reflog is rewritten atomically.
    """
    now = time.time()
    expire_at = cutoff(repo, expire, "reflog_expire", "--expire", now)
    unreachable_at = cutoff(repo, expire_unreachable, "reflog_expire_unreachable", "--expire-unreachable", now)
    reachable_commits(repo, action)
    report = ReflogExpireReport(dry_run=dry_run)
    for ref in repo.refs.reflog_names() if refs is None else refs:
        lines = repo.refs.reflog_lines(ref)
        kept = _expire_lines(repo, ref, lines, expire_at, unreachable_at, report)
        report.kept_entries += len(kept)
        if kept == lines:
            continue
        if not kept:
            report.removed_reflogs.append(ref)
        if not dry_run:
            repo.refs.rewrite_reflog(ref, kept)
    return report


def _expire_lines(repo: Repo, ref: str, lines: list[str], expire_at: float, unreachable_at: float,
                  report: ReflogExpireReport) -> list[str]:
    """The lines of *ref*'s reflog that stay; the expired ones are added to *report*."""
    tip = _tip(repo, ref)
    from_tip: set[str] | None = None  # computed only when an entry needs it
    # The newest entry that moved the ref to where it is now: never expired.
    current = max((i for i, line in enumerate(lines)
                   if (m := _ENTRY_RE.match(line)) and tip is not None and m.group(2) == tip), default=-1)
    kept: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        m = _ENTRY_RE.match(line)
        try:
            when = float(m.group(3)) if m else None
        except ValueError:
            when = None
        if m is None or when is None:
            kept.append(line)  # undatable (a torn time): kept, nothing can say it is old
            continue
        old, new = m.group(1), m.group(2)
        go = when < expire_at
        if not go and when < unreachable_at:
            if tip is None:
                go = True  # a deleted ref: nothing is reachable from it
            else:
                if from_tip is None:
                    from_tip = graph.ancestor_ids(repo.get_commit, [tip])
                go = any(oid != ZERO_ID and oid not in from_tip for oid in (old, new))
        if go and i == current:
            # The ref's value stays logged, but what it moved *from* expired with the entries
            # before it: point it at the last entry kept (git's --rewrite), or at nothing, so
            # the old commit is not kept alive through this line.
            prev = _ENTRY_RE.match(kept[-1]) if kept else None
            line = (prev.group(2) if prev else ZERO_ID) + line[64:]
            go = False
        if go:
            report.expired.append(ExpiredEntry(ref, old, new, when, m.group(4) or ""))
        else:
            kept.append(line)
    return kept


def gc(repo: Repo, *, prune: Expiry = None) -> GcReport:
    """Expire reflogs, then remove objects no ref, tag, HEAD or reflog entry reaches that are
    older than *prune* (default ``[gc] prune_expire``)."""
    with repo.locked():
        return _collect(repo, prune=prune)


def _collect(repo: Repo, *, prune: Expiry = None) -> GcReport:
    """gc's work, under the lock.

    Refuses, deleting nothing, unless every ref, HEAD and reflog line resolves to a
    readable commit whose whole ancestry is readable: what is unreachable can only
    be known from a complete picture of what is reachable.
    """
    report = GcReport()
    now = time.time()
    prune_at = cutoff(repo, prune, "prune_expire", "--prune", now)  # a bad --prune changes nothing
    # Refuse before anything changes (reflogs included) when the history is damaged: a
    # commit that lost an object it needs is a store to restore, not one to trim.
    missing = [f"commit {oid[:12]} refers to missing {kind} {ref[:12]}"
               for oid in sorted(reachable_commits(repo, "gc"))
               for ref, kind in repo.get_commit(oid).typed_references() if not repo.objects.has(ref)]
    if missing:
        raise HistoryDamagedError("gc", missing)
    report.expired_entries = len(_expire(repo, action="gc").expired)
    commits = reachable_commits(repo, "gc")
    reachable = _closure(repo, commits)
    ids = list(repo.objects.iter_ids())
    recent = {oid for oid in ids if oid not in reachable and _mtime(repo, oid) >= prune_at}
    # Everything a recent commit reaches stays too (git keeps what recent objects reach):
    # an unreachable commit that is kept must stay whole.
    young_roots: set[str] = set()
    for oid in recent:
        if _is_commit(repo, oid):
            # an unreachable commit's ancestry as far as it can be read (it names no history to protect)
            young_roots |= graph.walk(repo.get_commit, [oid]).seen
    keep = reachable | recent | _closure(repo, young_roots - commits)
    for oid in ids:
        if oid in keep:
            report.kept_objects += 1
            report.recent_objects += oid not in reachable
            continue
        report.removed_bytes += repo.objects.stored_size(oid)
        repo.objects.delete(oid)
        report.removed_objects += 1
    repo.refs.migrate_keyframes()  # an old store's keyframes/ files become refs
    for commit in repo.refs.keyframes():
        if not repo.objects.has(commit):
            repo.refs.delete_keyframe(commit)
    for p in repo.cache_dir.glob("*.db"):
        if p.stem not in commits and not p.name.startswith(TMP_PREFIX):  # temps: their owners' to remove
            p.unlink(missing_ok=True)
    return report
