"""Branches and tags (layer L3): creating and deleting the refs a user names, and which full ref
a reflog name means.

Each operation holds the store's lock and moves the ref with the ref store's compare-and-swap
(``RefStore.update`` with the value it read), so a concurrent writer makes it fail instead of
being overwritten. :class:`~dbvers.repo.Repo` delegates ``branch``, ``tag``, their deletion and
``reflog`` here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import config
from .errors import RefExistsError, UnknownRefError, UsageError
from .storage.base import RefStore
from .storage.refnames import HEADS, REMOTES, TAGS, check_ref_format, is_valid_ref, validate_name

if TYPE_CHECKING:
    from .repo import Repo

#: The user's word for each namespace (in messages).
_KINDS = {HEADS: "branch", TAGS: "tag", REMOTES: "remote-tracking branch"}


def check_new_branch_name(repo: Repo, name: str) -> None:
    """A valid branch name that doesn't shadow a remote-tracking branch: a local ``origin/main``
    would be what ``log origin/main`` and ``diff main origin/main`` read instead."""
    validate_name(name)
    first = name.split("/", 1)[0]
    if "/" in name and first in config.remote_names(repo.config):
        raise UsageError(f"a branch named '{name}' would hide the remote-tracking branch '{name}' "
                         f"of remote '{first}'; choose another name")


def create(repo: Repo, namespace: str, name: str, at: str, *, force: bool, why: str) -> str:
    """Point ``namespace + name`` at *at*'s commit; an existing one only with *force*."""
    if namespace == HEADS:
        check_new_branch_name(repo, name)
    validate_name(name)
    with repo.locked():
        oid = repo.resolve(at)
        current = repo.refs.read(namespace + name)
        if current and not force:
            raise RefExistsError(name, _KINDS[namespace])
        repo.refs.update(namespace + name, oid, expect=current, message=why)
        return oid


def delete(repo: Repo, namespace: str, name: str) -> str:
    """Delete ``namespace + name`` (never the checked-out branch); returns the commit it named."""
    validate_name(name)
    kind = _KINDS[namespace]
    with repo.locked():
        oid = repo.refs.read(namespace + name)
        if oid is None:
            raise UnknownRefError(name, f"no {kind} named '{name}'")
        if namespace == HEADS and repo.head.branch == name:
            raise UsageError(f"cannot delete branch '{name}': it is checked out")
        repo.refs.delete(namespace + name, message=f"{kind}: deleted")
        return oid


def reflog_ref(refs: RefStore, name: str) -> str:
    """The full ref whose reflog *name* means: HEAD, a full name, or a branch, tag or remote
    branch (one that was deleted too: its reflog outlives it)."""
    if name == "HEAD" or name.startswith("refs/"):
        check_ref_format(name)
        return name
    for ns in (HEADS, TAGS, REMOTES):
        full = ns + name
        if is_valid_ref(full) and (refs.has_reflog(full) or refs.read(full) is not None):
            return full
    raise UnknownRefError(name, f"no reflog for '{name}'")
