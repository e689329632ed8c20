"""Repository maintenance: fsck (verify everything the store holds) and gc (remove what
nothing reaches). The callers (``Repo.fsck``, ``Repo.gc``) hold the repository lock."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import snapshots
from .errors import DbversError, MissingObjectError
from .fsutil import TMP_PREFIX, temp_path
from .refs import HEADS, TAGS

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


def reachable_commits(repo: Repo) -> set[str]:
    """Commits reachable from a branch, tag, HEAD or reflog entry."""
    roots = set(repo.refs.branches().values()) | set(repo.refs.tags().values())
    roots |= repo.refs.reflog_ids()
    if repo.head.commit:
        roots.add(repo.head.commit)
    seen: set[str] = set()
    stack = [r for r in roots if repo.objects.has(r)]
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        with contextlib.suppress(DbversError):
            stack.extend(repo.get_commit(oid).parents)
    return seen


def fsck(repo: Repo) -> FsckReport:
    """Verify every object's hash, every snapshot's integrity, every ref and commit link."""
    report = FsckReport()
    types: dict[str, str] = {}
    for oid in repo.objects.iter_ids():
        report.objects += 1
        try:
            types[oid] = repo.objects.verify(oid)
        except DbversError as e:
            report.problems.append(str(e))
    refs = {"HEAD": repo.head.commit}
    refs.update({HEADS + k: v for k, v in repo.refs.branches().items()})
    refs.update({TAGS + k: v for k, v in repo.refs.tags().items()})
    for name, oid in refs.items():
        report.refs += 1
        if oid is None:
            report.problems.append(f"{name} points to no commit")
        elif types.get(oid) != "commit":
            report.problems.append(f"{name} points to {oid[:12]}, which is not a commit in the store")
    for oid, t in types.items():
        if t == "commit":
            report.commits += 1
            _fsck_commit(repo, oid, types, report)
        elif t == "snapshot":
            report.snapshots += 1
            _fsck_snapshot(repo, oid, report)
    for kf in repo._keyframe_files():
        snap = kf.read_text().strip()
        if types.get(snap) != "snapshot":
            report.problems.append(f"keyframe of {kf.name[:12]} names missing snapshot {snap[:12]}")
    return report


def _fsck_commit(repo: Repo, oid: str, types: dict[str, str], report: FsckReport) -> None:
    try:
        c = repo.get_commit(oid)
    except DbversError as e:
        report.problems.append(str(e))
        return
    wanted = c.typed_references() + [(p, "commit") for p in c.parents]
    for ref_oid, kind in wanted:
        if types.get(ref_oid) != kind:
            report.problems.append(f"commit {oid[:12]} refers to missing {kind} {ref_oid[:12]}")
    if not c.parents and not c.snapshot:
        report.problems.append(f"root commit {oid[:12]} has no snapshot")


def _fsck_snapshot(repo: Repo, oid: str, report: FsckReport) -> None:
    tmp = temp_path(repo.cache_dir, ".db")
    try:
        repo.objects.get_to_file(oid, tmp, "snapshot")
        if problems := snapshots.file_problems(tmp):
            report.problems.append(f"snapshot {oid[:12]} fails integrity_check: {problems[0]}")
    except DbversError as e:
        report.problems.append(str(e))
    finally:
        tmp.unlink(missing_ok=True)


def gc(repo: Repo) -> GcReport:
    """Remove objects no ref, tag, HEAD or reflog entry reaches (nothing a user did is lost)."""
    report = GcReport()
    commits = reachable_commits(repo)
    keep: set[str] = set(commits)
    for oid in commits:
        try:
            keep.update(repo.get_commit(oid).referenced_objects())
        except MissingObjectError:
            continue
        if (snap := repo.snapshot_of(oid)) is not None:
            keep.add(snap)
    for oid in list(repo.objects.iter_ids()):
        if oid in keep:
            report.kept_objects += 1
            continue
        report.removed_bytes += repo.objects.stored_size(oid)
        repo.objects.delete(oid)
        report.removed_objects += 1
    for kf in repo._keyframe_files():
        if kf.name not in commits:
            kf.unlink()
    for p in repo.cache_dir.glob("*.db"):
        if p.stem not in commits and not p.name.startswith(TMP_PREFIX):  # temps: their owners' to remove
            p.unlink(missing_ok=True)
    return report
