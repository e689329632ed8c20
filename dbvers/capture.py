"""Capture (layer L2): the objects of a new commit, made from a private copy of the working database.

DESIGN.md section 3: the copy is compared with its first parent's state (the
patchset and the hidden rowids a replay would get wrong), the keyframe policy
decides whether it also becomes a snapshot, and the objects are written: patch,
snapshot, rowids, schema, then the commit (:func:`make_commit`; a merge commit is the
same with more parents). :func:`commit_working` is ``Repo.commit``'s body: it also moves
HEAD's branch to the commit (the commit point) and keeps the copy as the cache of the new
state; the caller holds the store's lock.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import changes as ch
from . import snapshots, sqlio
from .config import Config
from .errors import DbversError, NothingToCommitError, UsageError
from .formats import now_timestamp
from .fsutil import publish
from .objects import Commit, TableCounts
from .states import States
from .storage.base import Head, ObjectStore, RefStore
from .storage.refnames import HEADS
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


def move_head(refs: RefStore, head: Head, new: str, message: str) -> None:
    """Move *head*'s branch to *new* (by compare-and-swap), or a detached HEAD itself."""
    if head.branch is not None:
        refs.update(HEADS + head.branch, new, expect=head.commit, message=message)
    else:
        refs.set_head(commit=new, message=message)


def commit_working(objects: ObjectStore, refs: RefStore, states: States, worktree: Worktree, message: str, *,
                   parents: Sequence[str] | None = None, allow_empty: bool = False, author: str | None = None,
                   meta: dict[str, Any] | None = None) -> Commit:
    """Commit the working database on *parents* (commit ids, ours first; default HEAD's commit)
    and move HEAD to it. An unchanged state is refused unless *allow_empty* (a merge never is)."""
    head = refs.head()
    if parents is None:
        ids: tuple[str, ...] = (head.commit,) if head.commit else ()
    elif len(set(parents)) != len(parents):
        raise UsageError("a commit can't have the same parent twice")
    else:
        ids = tuple(parents)
    first, is_merge = (ids[0] if ids else None), len(ids) > 1
    if first is not None and first == head.commit and not (allow_empty or is_merge) and worktree.known_clean():
        raise NothingToCommitError()
    fp = sqlio.fingerprint(worktree.path)  # before the copy: a write during it makes it stale
    tmp = worktree.copy_out()
    try:
        commit = make_commit(objects, states, worktree, tmp, ids, message=message, author=author, meta=meta,
                             allow_empty=allow_empty or is_merge)
        move_head(refs, head, commit.id, f"commit{' (merge)' if is_merge else ''}: {commit.summary}")
        # Past the commit point only derived data is written: a failure here must not
        # report the (done) commit as failed; the cache and clean record rebuild later.
        with contextlib.suppress(OSError, DbversError):
            # The copy we diffed is exactly the committed state: it becomes the base cache.
            publish(tmp, states.cache_path(commit.id))
            worktree.record_clean(fp, commit.id)
            states.prune_cache(keep={commit.id})
        return commit
    finally:
        tmp.unlink(missing_ok=True)
