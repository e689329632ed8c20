"""The repository (layer L3): a facade that wires a store's parts into the operations users call.

A :class:`Repo` is an object store and a ref store (the history), :class:`~dbvers.states.States`
(materialized commit states and their cache), a :class:`~dbvers.worktree.Worktree` (the working
database and its operation journal) and the store's config. Every operation holds the store's
lock (:meth:`Repo.locked`), writes objects first and moves a ref last (the commit point), and
touches the working database only through the worktree (so through :mod:`dbvers.sqlio`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from . import capture, checkout, diff, history, maintenance, merge, refops, revisions, sync
from . import push as pushing
from .config import Config, config_stamp, read_config, reload_into
from .errors import DbversError, UnsupportedFormatError, UsageError
from .fsutil import RepoLock
from .maintenance import FsckReport, GcReport, ReflogExpireReport
from .objects import FORMAT_VERSION, Commit, Schema, SchemaChange
from .remotes import named
from .remotes.named import RemoteInfo
from .restore import finish_restore, use_store_opener
from .states import States
from .status import Status, working_status
from .storage.base import Head, ObjectStore, ReflogEntry, RefStore
from .storage.local import LocalObjectStore
from .storage.local_refs import LocalRefStore
from .storage.refnames import HEADS, REMOTES, TAGS
from .sync import SyncResult
from .transfer import Progress
from .worktree import Worktree, lock_timeout

if TYPE_CHECKING:
    import pandas

    from .diff import Diff


class Repo:
    """One repository: the operations, over the parts it is given (see :meth:`at` for a local store)."""

    def __init__(self, objects: ObjectStore, refs: RefStore, states: States, worktree: Worktree,
                 config: Config) -> None:
        self.objects = objects
        self.refs = refs
        self.states = states
        self.worktree = worktree
        self.config = config
        self.store_dir = worktree.store_dir
        self.path = worktree.path
        self.lock = RepoLock(self.store_dir / "lock", config.getfloat("lock", "timeout"))
        self.config_stamp = config_stamp(self.store_dir)
        # The planner's sqlite_stat* tables are versioned only when asked (guide: "What is versioned").
        self.version_stats = worktree.version_stats

    @classmethod
    def at(cls, store_dir: Path, db_path: Path, *, memory_limit: int | None = None, scratch: bool = False) -> Repo:
        """The repository of the local store *store_dir* tracking *db_path* (the composition root).

        *memory_limit*: the largest state rebuilt in memory (see :class:`~dbvers.states.States`);
        a restore from an untrusted archive passes ``snapshots.IN_MEMORY_MAX``. *scratch*: a
        store nothing uses until it is put in place, after ``objects.sync()`` (a clone's).
        """
        config = read_config(store_dir)
        fmt = config.getint("core", "format", fallback=FORMAT_VERSION)
        if fmt > FORMAT_VERSION:
            raise UnsupportedFormatError(fmt, FORMAT_VERSION)
        objects = LocalObjectStore(store_dir / "objects", scratch=scratch)
        refs = LocalRefStore(store_dir)
        states = States(objects, refs, config, store_dir, memory_limit=memory_limit)
        return cls(objects, refs, states, Worktree(db_path, store_dir, states, refs, config), config)

    def __repr__(self) -> str:
        return f"<dbvers.Repo {self.path}>"

    @property
    def cache_dir(self) -> Path:
        """The materialization cache in use (the store's, or a private one for a read-only store)."""
        return self.states.cache_dir

    @property
    def keyframes_dir(self) -> Path:
        return self.states.keyframes_dir

    @property
    def journal_problem(self) -> str | None:
        """Why the last recovery couldn't use .dbvers/CHECKOUT (read-only commands run anyway)."""
        return self.worktree.journal_problem

    # -- the lock, and recovery --------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, *, write: bool = True, recovery_problems: list[str] | None = None) -> Iterator[None]:
        """Hold the store's lock (re-entrant per thread; other threads and processes wait),
        finishing a killed operation first.

        *write*: the operation changes the store. A read-only one (``write=False``)
        also runs on a store this process can't write, with a private cache, and
        despite a damaged checkout journal (which it reports in ``journal_problem``).
        With *recovery_problems* (fsck), a recovery that fails is noted there instead
        of raised: fsck must run whatever else is damaged.
        """
        self.reload_config()
        self.lock.timeout = self.lock_timeout()
        with self.lock.held(write) as fresh:
            self.states.choose_cache_dir(self.lock.read_only)
            if fresh:
                try:
                    self._recover(write)
                except (DbversError, OSError, apsw.Error, ValueError) as e:
                    if recovery_problems is None:
                        raise
                    recovery_problems.append(
                        f"an interrupted operation could not be recovered ({str(e).splitlines()[0][:120]})")
            yield

    def reload_config(self) -> None:
        """Pick up a config another Repo object or process wrote (``%dbvers remote add``)."""
        stamp = config_stamp(self.store_dir)
        if stamp is not None and stamp != self.config_stamp:
            reload_into(self.config, self.store_dir)
            self.config_stamp = stamp

    def _recover(self, write: bool) -> None:
        """Clean up after killed processes, then finish what they left half done."""
        if self.lock.read_only:
            # Nothing can be cleaned or finished in a store this process can't write; a damaged
            # journal is still worth a word from fsck and status.
            self.worktree.check_journal()
            return
        self.worktree.sweep_temps()
        if (self.store_dir / "RESTORE").is_file():
            # A restore from a backup installed this store but was killed before the database.
            finish_restore(self)
        self.worktree.recover(write)
        merge.recover(self)  # a merge (revert, cherry-pick) killed around installing its state

    def lock_timeout(self) -> float:
        """Seconds to wait for the store's lock or the working database (``DBVERS_LOCK_TIMEOUT`` wins)."""
        return lock_timeout(self.config)

    # -- reading the history -----------------------------------------------------------
    def get_commit(self, oid: str) -> Commit:
        return self.states.get_commit(oid)

    def get_schema(self, oid: str) -> Schema:
        return self.states.get_schema(oid)

    @property
    def head(self) -> Head:
        return self.refs.head()

    @property
    def current_branch(self) -> str | None:
        return self.head.branch

    # -- revisions -----------------------------------------------------------
    def resolve(self, rev: str = "HEAD") -> str:
        """Turn HEAD, a branch, a tag, a full or unique short id, with ~N/^N suffixes, into an id."""
        return revisions.resolve(rev, self.refs, self.objects, self.get_commit)

    def materialize(self, oid: str, *, use_cache: bool = True) -> Path:
        """A private file holding commit *oid*'s state (cached; see ``States.materialize``)."""
        return self.states.materialize(oid, use_cache=use_cache)

    def materialize_verified(self, oid: str) -> Path:
        return self.states.materialize_verified(oid)

    def snapshot_of(self, oid: str) -> str | None:
        return self.states.snapshot_of(oid)

    def keyframe_of(self, oid: str) -> str | None:
        return self.states.keyframe_of(oid)

    def status(self) -> Status:
        """How the working database differs from HEAD (``dbvers.status``)."""
        with self.locked(write=False):
            st = working_status(self.worktree)
            if (op := merge.current(self)) is not None:
                st.operation, st.conflicts = op.kind, merge.conflict_counts(self)
            st.upstream, st.upstream_gone, st.ahead, st.behind = sync.upstream_state(self)
            return st

    # -- commit --------------------------------------------------------------------------
    def commit(self, message: str, *, parents: Sequence[str] | None = None, allow_empty: bool = False,
               author: str | None = None, meta: dict[str, Any] | None = None) -> Commit:
        """Record the working database's current state as a new commit, and move HEAD to it.

        *parents*: revisions (default: HEAD's commit); several make a merge commit, ours
        (the one the patch is taken against) first. An unchanged state is refused unless
        *allow_empty* (a merge commit never is: its parents are its news).
        """
        if not message.strip():
            raise UsageError("empty commit message; pass -m MESSAGE")
        with self.locked():
            if parents is None and merge.current(self) is not None:
                # git's habit: a plain commit concludes a merge (revert, cherry-pick) in progress.
                return merge.merge_continue(self, message)
            ids = None if parents is None else [self.resolve(p) for p in parents]
            return capture.commit_working(self.objects, self.refs, self.states, self.worktree, message.strip(),
                                          parents=ids, allow_empty=allow_empty, author=author, meta=meta)

    # -- history -------------------------------------------------------------
    def log(self, ref: str = "HEAD", n: int | None = None) -> list[Commit]:
        """Commits reachable from *ref*, newest first (a list; notebooks show it as a table)."""
        return history.log(self, ref, n)

    def show(self, ref: str = "HEAD") -> tuple[Commit, list[SchemaChange]]:
        """A commit and its schema changes against its first parent."""
        return history.show(self, ref)

    # -- branches and tags ---------------------------------------------------
    def branches(self) -> dict[str, str]:
        return self.refs.branches()

    def tags(self) -> dict[str, str]:
        return self.refs.tags()

    def branch(self, name: str, at: str = "HEAD", *, force: bool = False) -> str:
        return refops.create(self, HEADS, name, at, force=force, why=f"branch: created from {at}")

    def delete_branch(self, name: str, *, remote: bool = False) -> str:
        """Delete branch *name*, or with *remote* the remote-tracking branch *name*
        (``origin/main``: the remote itself is untouched, and the next fetch brings it back)."""
        return refops.delete(self, REMOTES if remote else HEADS, name)

    def tag(self, name: str, at: str = "HEAD", *, force: bool = False) -> str:
        return refops.create(self, TAGS, name, at, force=force, why=f"tag: {at}")

    def delete_tag(self, name: str) -> str:
        return refops.delete(self, TAGS, name)

    # -- moving the working database -------------------------------------------------------
    def checkout(self, ref: str, *, force: bool = False, create_branch: str | None = None) -> str:
        """Make *ref* current: a branch attaches HEAD, anything else detaches it (like git).

        Uncommitted changes stay when the target is HEAD's commit (as in git);
        otherwise they must be committed first, or discarded with *force*.
        """
        return checkout.checkout(self, ref, force=force, create_branch=create_branch)

    def reset(self, ref: str = "HEAD", *, hard: bool = True, force: bool = False) -> str:
        """Move the current branch (or detached HEAD) to *ref*; ``hard`` also rewrites the working database.

        A hard reset ends a merge (revert, cherry-pick) in progress, as git's does."""
        return checkout.reset(self, ref, hard=hard, force=force)

    def restore(self, *, force: bool = False) -> str:
        """Throw away uncommitted changes: make the working database HEAD's state again."""
        return checkout.discard_changes(self, force=force)

    # -- reading data ----------------------------------------------------------------------
    def history(self, table: str, pk: Any, ref: str = "HEAD") -> pandas.DataFrame:
        """Every commit that changed one row (``pk``: a value, or a tuple for composite keys)."""
        with self.locked(write=False):
            return history.row_history(self, table, pk, ref)

    def diff(self, a: str | None = "HEAD", b: str | None = None) -> Diff:
        """What changed from *a* to *b* (a ref, or ``None`` for the working database)."""
        return diff.between(self, a, b)

    def read_table(self, table: str, at: str | None = "HEAD") -> pandas.DataFrame:
        """A table's rows at a commit (``at=None``: the working database) as a DataFrame,
        with ``Diff.to_pandas``'s dtypes (``dbvers.frames``)."""
        return history.read_table(self, table, at)

    # -- maintenance -----------------------------------------------------------------------
    def snapshot(self) -> str:
        """Make a keyframe at HEAD now (kept beside the commit; commits are immutable)."""
        with self.locked():
            return self.states.snapshot(revisions.head_commit(self.refs))

    # (fsck and gc: the logic lives in dbvers.maintenance)
    def reachable_commits(self) -> set[str]:
        """Commits reachable from a branch, tag, HEAD or reflog entry (what gc keeps).

        Raises ``HistoryDamagedError`` when a ref, reflog line or commit on the way
        can't be read: the answer would be wrong, not just incomplete.
        """
        return maintenance.reachable_commits(self)

    def fsck(self) -> FsckReport:
        """Verify every object's hash, every snapshot's integrity, every ref and commit link.

        Runs whatever else is damaged: what it can't read is a problem in the report.
        """
        return maintenance.fsck(self)

    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]:
        """*ref*'s reflog, oldest first (a deleted branch's too, until it expires)."""
        return self.refs.reflog(self.reflog_ref(ref))

    def reflog_ref(self, name: str) -> str:
        """The full ref whose reflog *name* means: HEAD, a full name, or a branch, tag or remote
        branch (one that was deleted too: its reflog outlives it)."""
        return refops.reflog_ref(self.refs, name)

    def reflog_expire(self, expire: str | float | None = None, expire_unreachable: str | float | None = None,
                      refs: list[str] | None = None, dry_run: bool = False) -> ReflogExpireReport:
        """Drop reflog entries older than *expire* (default ``[gc] reflog_expire``, 90 days), and
        those whose commit the ref's tip doesn't reach older than *expire_unreachable* (default
        ``[gc] reflog_expire_unreachable``, 30 days). A WHEN is ``"now"``, ``"never"``, a number
        of days (``30``, ``"30.days"``) or an ISO date. *refs* None: every reflog."""
        return maintenance.reflog_expire(self, expire=expire, expire_unreachable=expire_unreachable,
                                         refs=refs, dry_run=dry_run)

    def gc(self, prune: str | float | None = None) -> GcReport:
        """Expire reflogs (as ``reflog_expire()`` with the config's times), then remove objects no
        ref, tag, HEAD or reflog entry reaches that are older than *prune* (default ``[gc]
        prune_expire``, 14 days; ``"now"``: all of them)."""
        return maintenance.gc(self, prune=prune)

    # -- backups (the logic lives in dbvers.backup) ------------------------------
    # -- merge, revert, cherry-pick (dbvers.merge) ----------------------------------------
    def merge(self, ref: str, *, message: str | None = None, ff: bool = True, commit: bool = True) -> merge.MergeResult:
        """Join *ref*'s changes into the current branch: fast-forward, or a three-way cell-level merge."""
        return merge.merge(self, ref, message=message, ff=ff, commit=commit)

    def revert(self, ref: str, *, mainline: int | None = None, commit: bool = True) -> merge.MergeResult:
        return merge.revert(self, ref, mainline=mainline, commit=commit)

    def cherry_pick(self, ref: str, *, mainline: int | None = None, commit: bool = True) -> merge.MergeResult:
        return merge.cherry_pick(self, ref, mainline=mainline, commit=commit)

    def conflicts(self, table: str | None = None) -> dict[str, pandas.DataFrame]:
        """The conflicting rows of the operation in progress, a DataFrame per table (Dolt's shape)."""
        return merge.conflicts(self, table)

    def resolve_conflicts(self, side: str, tables: Sequence[str] | None = None, where: str | None = None) -> int:
        """Settle conflicts with ``"ours"`` (the working database's rows) or ``"theirs"``."""
        return merge.resolve(self, side, tables, where)

    def conflict_counts(self) -> dict[str, int]:
        return merge.conflict_counts(self)

    def operation(self) -> merge.Operation | None:
        """The merge, revert or cherry-pick in progress, if any (after finishing a killed one's install)."""
        with self.locked(write=False):
            return merge.current(self)

    def merge_continue(self, message: str | None = None) -> Commit:
        return merge.merge_continue(self, message)

    def merge_abort(self) -> str:
        return merge.merge_abort(self)

    def backup(self, dir: str | os.PathLike[str] | None = None, *, incremental: bool = False) -> Any:
        """Write a verified backup archive of the history into *dir*; returns a ``BackupInfo``."""
        from .backup import backup as make_backup

        return make_backup(self, dir, incremental=incremental)

    def export_to(self, conn: Any, at: str = "HEAD") -> str:
        """Write the state of *at* into a ``sqlite3.Connection``'s database; returns the commit id."""
        from .backup import export_to

        return export_to(self, conn, at)

    def import_from(self, conn: Any) -> None:
        """Make the working database a copy of a ``sqlite3.Connection``'s database (not committed)."""
        from .backup import import_from

        import_from(self, conn)


    # -- remotes (dbvers.remotes.named, dbvers.sync) ---------------------------------------
    def remotes(self) -> list[RemoteInfo]:
        return named.remotes(self)

    def remote_add(self, name: str, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                   profile: str | None = None) -> RemoteInfo:
        """Add remote *name* (``s3://bucket/prefix``, a directory, ``file:///path``); S3 options kept."""
        return named.remote_add(self, name, url, endpoint_url=endpoint_url, region=region, profile=profile)

    def remote_remove(self, name: str) -> RemoteInfo:
        return named.remote_remove(self, name)

    def remote_rename(self, old: str, new: str) -> RemoteInfo:
        return named.remote_rename(self, old, new)

    def push(self, remote: str | None = None, branch: str | None = None, *, all: bool = False,
             tags: bool = False, force_with_lease: bool = False, set_upstream: bool = False,
             delete: bool = False, progress: Progress | None = None) -> SyncResult:
        """Send *branch* (default: the current one) to *remote* (default: its upstream, or origin);
        with *delete*, delete *branch* there instead."""
        if delete:
            if branch is None or all or tags or force_with_lease or set_upstream:
                raise UsageError("push --delete takes one BRANCH and no other option ('dbvers push origin "
                                 "--delete BRANCH')")
            return pushing.delete_remote_branch(self, remote, branch)
        return pushing.push(self, remote, branch, all_branches=all, tags=tags, force_with_lease=force_with_lease,
                         set_upstream=set_upstream, progress=progress)

    def fetch(self, remote: str | None = None, *, prune: bool = False,
              progress: Progress | None = None) -> SyncResult:
        """Download *remote*'s new history and move ``refs/remotes/<remote>/*``."""
        return sync.fetch(self, remote, prune=prune, progress=progress)

    def fetch_all(self, *, prune: bool = False, progress: Progress | None = None) -> list[SyncResult]:
        return sync.fetch_all(self, prune=prune, progress=progress)

    def pull(self, remote: str | None = None, branch: str | None = None, *, message: str | None = None,
             progress: Progress | None = None) -> sync.PullResult:
        """Fetch, then merge the upstream (a fast-forward when it can) into the current branch."""
        return sync.pull(self, remote, branch, message=message, progress=progress)


# Restore (below this facade) opens the repositories it writes with the facade's own constructor.
use_store_opener(Repo.at)
