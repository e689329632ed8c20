"""Capture (layer L2): the objects of a new commit, made from a private copy of the working database.

DESIGN.md section 3: the copy is compared with its first parent's state (the
patchset and the hidden rowids a replay would get wrong), the keyframe policy
decides whether it also becomes a snapshot, and the objects are written: patch,
snapshot, rowids, schema, then the commit. Moving a ref to it (the commit point)
is the caller's (``Repo.commit``); a merge commit is the same with more parents.
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import Any

from . import changes as ch
from . import snapshots
from .config import Config
from .errors import NothingToCommitError
from .formats import now_timestamp
from .objects import Commit, TableCounts
from .states import States
from .storage.base import ObjectStore
from .worktree import Worktree


def default_author(cfg: Config) -> str:
    """``DBVERS_AUTHOR``, else ``[user] name <email>``, else user@host."""
    if env := os.environ.get("DBVERS_AUTHOR"):
        return env
    name = cfg.get("user", "name", fallback="")
    email = cfg.get("user", "email", fallback="")
    if name:
        return f"{name} <{email}>" if email else name
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def compare_to_parent(worktree: Worktree, tmp: Path, parent: str | None
                      ) -> tuple[ch.Changes | None, Any, dict[str, TableCounts]]:
    """The private copy *tmp* against *parent*: (changes, extras, counts); no parent: every row new."""
    with worktree.reading_copy(tmp):
        if parent is not None:
            changes, extras = worktree.compare_with(tmp, parent, rowids=True)
            return changes, extras, changes.counts
        conn = ch.open_private(tmp)
        try:
            stats = worktree.version_stats
            extras = (ch.read_schema(conn, stats=stats), ch.read_pragmas(conn), ch.read_sequences(conn), [])
            counts = {
                t: TableCounts(inserts=int(conn.execute(f"SELECT count(*) FROM {ch.quote(t)}").fetchone()[0]))
                for t in ch.classify_tables(conn).tracked
            }
        finally:
            conn.close()
        return None, extras, counts


def make_commit(objects: ObjectStore, states: States, worktree: Worktree, tmp: Path,
                parents: tuple[str, ...], *, message: str, author: str | None = None,
                meta: dict[str, Any] | None = None, allow_empty: bool = False) -> Commit:
    """Write the objects of a commit of state *tmp* on *parents* (ours first); nothing moves.

    Raises :class:`NothingToCommitError` when the state is its first parent's and
    *allow_empty* is false.
    """
    parent = parents[0] if parents else None
    changes, (schema, pragmas, sequences, _), counts = compare_to_parent(worktree, tmp, parent)
    if parent is not None and changes is not None and not allow_empty:
        pc = states.get_commit(parent)
        if changes.empty and pragmas == pc.pragmas and sequences == pc.sequences:
            raise NothingToCommitError()
    patch_id = None
    if changes is not None and changes.patchset and not changes.schema_changed:
        patch_id = objects.put_bytes("patch", changes.patchset)
    reason = states.keyframe_reason(parent, changes, objects.stored_size(patch_id) if patch_id else 0)
    with worktree.reading_copy(tmp):
        snap_id = snapshots.make(objects, tmp) if reason else None
    rowids_id = None
    if patch_id and changes is not None and changes.rowids is not None:
        rowids_id = objects.put_bytes("rowids", changes.rowids.to_bytes())
    commit_meta = dict(meta or {})
    if reason:
        commit_meta["keyframe"] = reason
    if changes is not None and changes.key_changed:
        commit_meta["key_changed"] = changes.key_changed
    commit = Commit(
        parents=parents, schema=objects.put_bytes("schema", schema.to_bytes()), patch=patch_id,
        snapshot=snap_id, message=message, author=author or default_author(states.config),
        timestamp=now_timestamp(), counts=counts, pragmas=pragmas, sequences=sequences,
        meta=commit_meta, rowids=rowids_id,
    )
    objects.put_bytes("commit", commit.to_bytes())
    states.remember(commit.id, commit)
    return commit
