"""Moving HEAD and the working database (layer L3): checkout, reset, and throwing away
uncommitted changes.

Each works out the new HEAD (a ``ref: ...`` line or a detached id) and the branch to move, then
lets the :class:`~dbvers.worktree.Worktree` write the target state into the working database
under its operation journal and finish the move. A merge (revert, cherry-pick) in progress
refuses them, except a hard reset, which ends it as git's does.
:class:`~dbvers.repo.Repo` delegates ``checkout``, ``reset`` and ``restore`` here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import merge, refops
from .errors import DamagedRefError, DirtyWorkingDatabaseError, RefExistsError
from .revisions import head_commit
from .storage.base import Head
from .storage.refnames import HEADS

if TYPE_CHECKING:
    from .repo import Repo


def replace_working(repo: Repo, oid: str, head: str | None, ref: tuple[str, str] | None, op: str,
                    force: bool) -> None:
    """Write commit *oid*'s state into the working database, refusing to lose changes unless *force*."""
    if not force and (dirty := repo.worktree.dirty_tables()):
        raise DirtyWorkingDatabaseError(dirty, {"reset": "reset --hard"}.get(op, op))
    repo.worktree.write_working(oid, head=head, ref=ref, op=op)


def _current_head(repo: Repo, force: bool) -> Head:
    try:
        return repo.head
    except DamagedRefError as e:
        if not force or e.ref != "HEAD":
            raise
        return Head(None, None)  # --force replaces a damaged HEAD, as writing the file by hand would


def checkout(repo: Repo, ref: str, *, force: bool = False, create_branch: str | None = None) -> str:
    """Make *ref* current (see :meth:`Repo.checkout <dbvers.repo.Repo.checkout>`)."""
    with repo.locked():
        merge.refuse_during(repo, "checkout")
        if create_branch is not None:
            refops.check_new_branch_name(repo, create_branch)
            if repo.refs.read(HEADS + create_branch):
                raise RefExistsError(create_branch, "branch")
        # A branch name means that branch, even if a tag has the same name.
        oid = repo.refs.lookup(HEADS + ref) if create_branch is None else None
        oid = oid or repo.resolve(ref)
        head = _current_head(repo, force)
        new_ref: tuple[str, str] | None = None
        if create_branch is not None:
            new_head, new_ref = f"ref: {HEADS}{create_branch}\n", (HEADS + create_branch, oid)
        elif repo.refs.lookup(HEADS + ref) is not None:
            new_head = f"ref: {HEADS}{ref}\n"
        elif ref in ("HEAD", "@") and head.branch is not None:
            new_head = f"ref: {HEADS}{head.branch}\n"
        else:
            new_head = f"{oid}\n"
        written = None
        if oid != head.commit or force:
            replace_working(repo, oid, new_head, new_ref, "checkout", force)
            written = oid
        repo.worktree.finish_move(new_head, new_ref, f"checkout: moving to {create_branch or ref}", written)
        repo.states.prune_cache(keep={oid})
        return oid


def reset(repo: Repo, ref: str = "HEAD", *, hard: bool = True, force: bool = False) -> str:
    """Move the current branch (or detached HEAD) to *ref*; *hard* also rewrites the working database."""
    with repo.locked():
        if not hard:
            merge.refuse_during(repo, "reset --soft")
        oid = repo.resolve(ref)
        head = repo.head
        if head.branch is not None:
            new_head, new_ref = None, (HEADS + head.branch, oid)
        else:
            new_head, new_ref = f"{oid}\n", None
        written = None
        if hard:
            replace_working(repo, oid, new_head, new_ref, "reset", force)
            written = oid
        repo.worktree.finish_move(new_head, new_ref, f"reset: moving to {ref}", written)
        if hard:
            merge.forget(repo)
        return oid


def discard_changes(repo: Repo, *, force: bool = False) -> str:
    """Make the working database HEAD's state again (``Repo.restore``)."""
    with repo.locked():
        merge.refuse_during(repo, "restore")
        oid = head_commit(repo.refs)
        replace_working(repo, oid, None, None, "restore", force)
        repo.worktree.apply_intent(None, None, "restore")
        return oid
