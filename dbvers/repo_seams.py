"""What backups and restores need from a ``Repo`` beyond its public surface, in one place.

L3. A stopgap of one-liners while ``repo.py`` is being split (issue 11): each calls
today's private ``Repo`` method, so :mod:`dbvers.backup`, :mod:`dbvers.restore` and
:mod:`dbvers.interop` never do. When the new public names land, each body becomes
the public call (or its callers call it directly and this module goes):

=========================  ===========================================
here                       after the split
=========================  ===========================================
``locked(repo, write)``    ``repo.locked(write=...)``
``record_clean``           ``repo.worktree.record_clean``
``forget_clean``           ``repo.worktree`` (drop the clean record)
``dirty_tables``           ``repo.worktree.dirty_tables``
``write_working``          ``repo.worktree.write_working``
``apply_intent``           ``repo.worktree.apply_intent``
``cache_path``             ``repo.states.cache_path``
``open_store``             (see below)
=========================  ===========================================

:func:`open_store` is the one place a restore builds a ``Repo``, so the one import of
``repo`` from here (``repo`` imports ``backup`` for ``Repo.backup`` and its recovery's
``finish_restore``: a cycle until one side is injected, e.g. a factory the facade passes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .repo import Repo


@contextlib.contextmanager
def locked(repo: Repo, write: bool = True) -> Iterator[None]:
    """Hold the store's lock, finishing a killed operation first."""
    with repo._locked(write=write):
        yield


def record_clean(repo: Repo, fingerprint: str | None, oid: str) -> None:
    """Record that the working database (with *fingerprint*) holds commit *oid*'s state."""
    repo._record_clean(fingerprint, oid)


def forget_clean(repo: Repo) -> None:
    """Drop the clean record: the working database is about to change outside a checkout."""
    (repo.cache_dir / "working.json").unlink(missing_ok=True)


def dirty_tables(repo: Repo) -> list[str]:
    return repo._dirty_tables()


def write_working(repo: Repo, oid: str, *, head: str | None, ref: tuple[str, str] | None) -> None:
    """Replace the working database with *oid*'s state under the checkout journal."""
    repo._write_working(oid, head=head, ref=ref)


def apply_intent(repo: Repo, head: str | None, ref: tuple[str, str] | None, why: str) -> None:
    """Move HEAD and the branch as the journal says, then drop the journal."""
    repo._apply_intent(head, ref, why)


def cache_path(repo: Repo, oid: str) -> Path:
    """Where the materialized state of *oid* is cached."""
    return repo._cache_path(oid)


def store_dir_of(db_path: Path) -> Path:
    """The default store directory of the database at *db_path* (``.dbvers`` beside it)."""
    from .repo import STORE_NAME

    return db_path.parent / STORE_NAME


def open_store(store_dir: Path, db_path: Path) -> Repo:
    """The repository of the store at *store_dir* tracking *db_path* (the store may be a scratch one)."""
    from .repo import Repo

    return Repo(store_dir, db_path)
