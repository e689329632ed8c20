"""Merge, revert and cherry-pick (L3): three states in, the working database and a commit out.

All three are one operation over :func:`dbvers.rowmerge.merge_states`:

=============  ==========  ============  =====================
operation      base        theirs        the commit it makes
=============  ==========  ============  =====================
merge REV      merge base  REV           parents HEAD, REV
revert C       C           C's parent    'Revert "<message>"'
cherry-pick C  C's parent  C             C's message
=============  ==========  ============  =====================

How an operation runs, and why it is safe to kill at any instant:

1. The merged state is built privately (ours' materialized state copied, then
   merged) and kept in the store as ``MERGE_WORK.db``, its conflicts as
   ``MERGE_CONFLICTS.db``; nothing the user sees has changed yet.
2. The operation journal (the worktree's, which checkout uses too) records the
   operation: kind, ours, theirs, base, message, and that the merged state is not
   yet installed.
3. The merged state is copied into the working database in one transaction, like
   a checkout; then the journal says it is installed and ``MERGE_WORK.db`` goes.
4. Without conflicts (and unless ``--no-commit``), the commit is made and the
   journal ends. With conflicts, the journal stays until ``--continue`` (after
   ``resolve``) commits or ``--abort`` puts HEAD's state back.

A process killed between 2 and 3 leaves the working database in HEAD's state or the
merged one: recovery compares and either marks it installed or forgets the
operation (nothing happened). While an operation is in progress, checkout, a second
merge and commit with conflicts left are refused with a one-line error.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import graph, sqlio
from .capture import make_commit
from .errors import (
    CheckoutJournalError,
    ConflictsRemainError,
    DbversError,
    DirtyWorkingDatabaseError,
    EmptyChangeError,
    MergeInProgressError,
    NoMergeInProgressError,
    NothingToCommitError,
    UnrelatedHistoriesError,
    UsageError,
)
from .fsutil import publish, temp_path
from .objects import Commit
from .rowmerge import MergeOutcome, RowConflict, merge_states
from .storage.refnames import HEADS

if TYPE_CHECKING:
    import pandas

    from .conflicts import ConflictFile
    from .repo import Repo

#: The operations that leave a state to continue or abort.
OPERATIONS = ("merge", "revert", "cherry-pick")
WORK = "MERGE_WORK.db"
CONFLICTS = "MERGE_CONFLICTS.db"


@dataclass
class MergeResult:
    """What a merge (revert, cherry-pick) did."""

    fast_forward: bool = False
    up_to_date: bool = False
    commit: Commit | None = None  # the commit made (a fast-forward's target), None while in progress
    conflicts: dict[str, int] = field(default_factory=dict)  # conflicting rows per table
    base: str | None = None
    note: str | None = None  # e.g. which of several best common ancestors was the base

    @property
    def in_progress(self) -> bool:
        return self.commit is None and not self.up_to_date

    def __repr__(self) -> str:
        if self.up_to_date:
            return "<MergeResult: already up to date>"
        if self.fast_forward:
            return f"<MergeResult: fast-forward to {self.commit.id[:12] if self.commit else '?'}>"
        if self.conflicts:
            return f"<MergeResult: {sum(self.conflicts.values())} conflicts in {len(self.conflicts)} tables>"
        return f"<MergeResult: {'committed ' + self.commit.id[:12] if self.commit else 'not committed'}>"


@dataclass(frozen=True)
class Operation:
    """The operation in progress, as its journal records it."""

    kind: str
    ours: str
    theirs: str
    base: str
    message: str
    installed: bool
    aborting: bool = False  # --abort began writing ours back

    def to_state(self) -> dict[str, Any]:
        return {"ours": self.ours, "theirs": self.theirs, "base": self.base, "message": self.message,
                "installed": self.installed, "aborting": self.aborting}

    @classmethod
    def from_intent(cls, op: str, state: dict[str, Any]) -> Operation:
        return cls(op, state["ours"], state["theirs"], state["base"], state.get("message") or "",
                   bool(state.get("installed")), bool(state.get("aborting")))


def current(repo: Repo) -> Operation | None:
    """The merge, revert or cherry-pick in progress, if any."""
    intent = repo.worktree.operation()
    if intent is None or intent.op not in OPERATIONS or intent.state is None:
        return None
    if not all(isinstance(intent.state.get(k), str) for k in ("ours", "theirs", "base")):
        raise CheckoutJournalError(str(repo.worktree.journal), f"its {intent.op} record lacks ours/theirs/base")
    return Operation.from_intent(intent.op, intent.state)


def _conflict_file(repo: Repo) -> ConflictFile:
    from .conflicts import ConflictFile  # pandas and pyarrow: only when conflicts are read

    return ConflictFile(repo.store_dir / CONFLICTS)


# -- starting ---------------------------------------------------------------------------


def merge(repo: Repo, rev: str, *, message: str | None = None, ff: bool = True, commit: bool = True) -> MergeResult:
    """Merge ``rev`` into the current branch (or detached HEAD)."""
    with repo.locked():
        theirs = repo.resolve(rev)
        refuse_busy(repo, "merge")
        head = repo.head
        ours = repo.resolve("HEAD")
        if ours == theirs or graph.is_ancestor(repo.objects, theirs, ours):
            return MergeResult(up_to_date=True)
        if ff and graph.is_ancestor(repo.objects, ours, theirs):
            repo.reset(theirs, hard=True)
            return MergeResult(fast_forward=True, commit=repo.get_commit(theirs))
        bases = graph.merge_base(repo.objects, ours, theirs)
        if not bases:
            raise UnrelatedHistoriesError(rev)
        base = graph.merge_base_one(repo.objects, ours, theirs)
        assert base is not None
        note = (f"{len(bases)} best common ancestors; merged against {base[:12]} (the newest)"
                if len(bases) > 1 else None)
        into = head.branch or "HEAD"
        msg = message or f"Merge {_describe(rev)} into {into}"
        return _run(repo, Operation("merge", ours, theirs, base, msg, False), commit=commit, note=note)


def revert(repo: Repo, rev: str, *, mainline: int | None = None, commit: bool = True) -> MergeResult:
    """A new commit on HEAD that undoes ``rev``'s changes (three-way: base rev, theirs rev's parent)."""
    with repo.locked():
        target = repo.resolve(rev)
        refuse_busy(repo, "revert")
        ours = repo.resolve("HEAD")
        c = repo.get_commit(target)
        parent = _parent(c, mainline, "revert", rev)
        msg = f'Revert "{c.summary}"\n\nThis reverts commit {target}.'
        return _run(repo, Operation("revert", ours, parent, target, msg, False), commit=commit)


def cherry_pick(repo: Repo, rev: str, *, mainline: int | None = None, commit: bool = True) -> MergeResult:
    """A new commit on HEAD that applies ``rev``'s changes (three-way: base rev's parent, theirs rev)."""
    with repo.locked():
        target = repo.resolve(rev)
        refuse_busy(repo, "cherry-pick")
        ours = repo.resolve("HEAD")
        c = repo.get_commit(target)
        parent = _parent(c, mainline, "cherry-pick", rev)
        return _run(repo, Operation("cherry-pick", ours, target, parent, c.message, False), commit=commit)


def _parent(c: Commit, mainline: int | None, what: str, rev: str) -> str:
    if not c.parents:
        raise UsageError(f"{rev} is a root commit: there is nothing to {what} against")
    if len(c.parents) > 1:
        if mainline is None:
            raise UsageError(f"{rev} is a merge commit; pass -m 1 or -m 2 to say which parent's side to keep")
        if not 1 <= mainline <= len(c.parents):
            raise UsageError(f"-m {mainline}: {rev} has {len(c.parents)} parents")
        return c.parents[mainline - 1]
    if mainline is not None:
        raise UsageError(f"-m is for merge commits; {rev} has one parent")
    return c.parents[0]


def _describe(rev: str) -> str:
    return f"'{rev}'" if rev.strip() else rev


def refuse_during(repo: Repo, action: str) -> None:
    """Refuse *action* (checkout, restore, ...) while an operation is in progress."""
    op = current(repo)
    if op is not None:
        raise MergeInProgressError(op.kind, action)


def forget(repo: Repo) -> None:
    """End an operation in progress without committing (a hard reset put a state in place)."""
    if current(repo) is not None:
        _end(repo)


def refuse_busy(repo: Repo, what: str) -> None:
    """Refuse *what* while an operation is in progress or the working database has changes."""
    op = current(repo)
    if op is not None:
        raise MergeInProgressError(op.kind, what)
    dirty = repo.worktree.dirty_tables()
    if dirty:
        raise DirtyWorkingDatabaseError(dirty, what, force=False)


def _run(repo: Repo, op: Operation, *, commit: bool, note: str | None = None) -> MergeResult:
    """Build the merged state, journal the operation, install it; commit when it is clean."""
    work = repo.store_dir / WORK
    outcome = _build(repo, op, work)
    from .conflicts import write as write_conflicts

    result = MergeResult(conflicts=outcome.conflict_counts, base=op.base, note=note)
    if not outcome.conflict_counts and commit:
        result.commit = _commit_clean(repo, op, work)
        return result
    write_conflicts(repo.store_dir / CONFLICTS, outcome)
    repo.worktree.begin_operation(op.kind, op.to_state())
    _install(repo, op, work)
    return result


def _commit_clean(repo: Repo, op: Operation, work: Path) -> Commit:
    """A merge without conflicts: the commit is made from the private merged state first, then
    the working database and the branch move together under the worktree's journal, as in a
    checkout, so a failure before the commit point (a damaged store, a full disk) changes nothing."""
    head = repo.head
    parents = (op.ours, op.theirs) if op.kind == "merge" else (op.ours,)
    try:
        commit = make_commit(repo.objects, repo.states, repo.worktree, work, parents, message=op.message,
                             meta={op.kind: op.theirs if op.kind == "merge" else op.base},
                             allow_empty=op.kind == "merge")
    except NothingToCommitError:
        work.unlink(missing_ok=True)
        raise EmptyChangeError(op.kind, op.base if op.kind == "revert" else op.theirs) from None
    with contextlib.suppress(OSError, DbversError):
        publish(work, repo.states.cache_path(commit.id))  # the state checks out from the cache
    new_head, ref = (None, (HEADS + head.branch, commit.id)) if head.branch else (f"{commit.id}\n", None)
    repo.worktree.write_working(commit.id, head=new_head, ref=ref, op=op.kind)
    repo.worktree.finish_move(new_head, ref, f"{op.kind}: {commit.summary}", commit.id)
    work.unlink(missing_ok=True)
    return commit


def _build(repo: Repo, op: Operation, work: Path) -> MergeOutcome:
    tmp = temp_path(repo.store_dir, ".db")
    try:
        shutil.copyfile(repo.materialize(op.ours), tmp)
        # The patches between base and theirs name the rows theirs can have changed.
        from .history import changed_keys

        hint = changed_keys(repo, op.base, op.theirs)
        outcome = merge_states(tmp, repo.materialize(op.base), repo.materialize(op.theirs), hint)
        # apsw's SQLite wrote theirs' rows: the user's computes their STORED generated columns
        sqlio.recompute_generated(tmp, sorted(t for t, m in outcome.tables.items() if m.changed))
        tmp.replace(work)
    finally:
        tmp.unlink(missing_ok=True)
    return outcome


def _install(repo: Repo, op: Operation, work: Path) -> None:
    sqlio.copy_in(work, repo.path, repo.lock_timeout())
    repo.worktree.begin_operation(op.kind, {**op.to_state(), "installed": True})
    work.unlink(missing_ok=True)


# -- recovering ------------------------------------------------------------------------------


def recover(repo: Repo) -> None:
    """Finish step 3 for a process killed around it (called by the repository's recovery)."""
    op = current(repo)
    work = repo.store_dir / WORK
    if op is None:
        _remove_files(repo)  # an operation that never started leaves these
        return
    if op.aborting:
        if repo.worktree.holds_file(repo.materialize(op.ours), repo.get_commit(op.ours).pragmas):
            _end(repo)  # killed after --abort wrote ours back: the abort is done
        return
    if op.installed:
        work.unlink(missing_ok=True)
        head = repo.head.commit
        if head is not None and head != op.ours and repo.get_commit(head).parents[:1] == (op.ours,):
            _end(repo)  # killed between the concluding commit (the commit point) and forgetting the state
        return
    if work.exists() and repo.worktree.holds_file(work):
        repo.worktree.begin_operation(op.kind, {**op.to_state(), "installed": True})
        work.unlink(missing_ok=True)
    else:
        # Killed before the copy committed: the working database is still ours, so the
        # operation never took effect; forget it (the user runs it again).
        _end(repo)


# -- conflicts and resolving ----------------------------------------------------------------


def conflicts(repo: Repo, table: str | None = None) -> dict[str, pandas.DataFrame]:
    with repo.locked(write=False):
        if current(repo) is None:
            raise NoMergeInProgressError("conflicts")
        return _conflict_file(repo).frames(table)


def conflict_counts(repo: Repo) -> dict[str, int]:
    """Conflicting rows left per table ({} when no operation is in progress)."""
    if current(repo) is None:
        return {}
    return _conflict_file(repo).counts()


def resolve(repo: Repo, side: str, tables: Sequence[str] | None = None, where: str | None = None) -> int:
    """Settle conflicts: ``ours`` keeps the working database's row (ours, or what the user
    wrote there with SQL), ``theirs`` writes theirs' row there. Returns the rows settled."""
    if side not in ("ours", "theirs"):
        raise UsageError("resolve takes --ours or --theirs")
    with repo.locked():
        if current(repo) is None:
            raise NoMergeInProgressError("resolve")
        cf = _conflict_file(repo)
        names = list(tables) if tables else cf.tables()
        done = 0
        for name in names:
            picked = cf.select(name, where)
            if side == "theirs" and picked:
                columns, key = cf.columns(name)
                sqlio.write_rows(repo.path, name, columns, key, [(c.key, c.theirs) for c in picked],
                                 repo.lock_timeout())
            cf.remove(name, picked)
            done += len(picked)
        return done


# -- concluding --------------------------------------------------------------------------------


def merge_continue(repo: Repo, message: str | None = None) -> Commit:
    """Commit the resolved merge (revert, cherry-pick); refused while conflicts remain."""
    with repo.locked():
        op = current(repo)
        if op is None:
            raise NoMergeInProgressError("--continue")
        left = _conflict_file(repo).counts()
        if left:
            raise ConflictsRemainError(left)
        return _conclude(repo, op, message)


def _conclude(repo: Repo, op: Operation, message: str | None) -> Commit:
    if repo.resolve("HEAD") != op.ours:
        raise UsageError(f"HEAD moved during the {op.kind}; run 'dbvers {op.kind} --abort' and start again")
    parents = [op.ours, op.theirs] if op.kind == "merge" else [op.ours]
    commit = repo.commit(message or op.message, parents=parents, allow_empty=op.kind != "merge",
                         meta={op.kind: op.theirs if op.kind == "merge" else op.base})
    _end(repo)
    return commit


def merge_abort(repo: Repo) -> str:
    """Put HEAD's state back exactly and forget the operation."""
    with repo.locked():
        op = current(repo)
        if op is None:
            raise NoMergeInProgressError("--abort")
        aborting = Operation(op.kind, op.ours, op.theirs, op.base, op.message, op.installed, True)
        repo.worktree.write_working(op.ours, op=op.kind, state=aborting.to_state())
        _end(repo)
        return op.ours


def _end(repo: Repo) -> None:
    repo.worktree.end_operation()
    _remove_files(repo)


def _remove_files(repo: Repo) -> None:
    """The merged state and the conflicts file of an operation that is over (or never began)."""
    for name in (WORK, CONFLICTS):
        (repo.store_dir / name).unlink(missing_ok=True)


__all__ = ["OPERATIONS", "MergeResult", "Operation", "RowConflict", "cherry_pick", "conflict_counts",
           "conflicts", "current", "merge", "merge_abort", "merge_continue", "recover", "resolve", "revert"]
