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

from . import capture, history, maintenance, merge, revisions, sqlio, sync
from .config import Config, config_stamp, read_config, reload_into
from .errors import (
    DamagedRefError,
    DbversError,
    DirtyWorkingDatabaseError,
    NothingToCommitError,
    RefExistsError,
    UnknownRefError,
    UnsupportedFormatError,
    UsageError,
)
from .frames import rows_frame
from .fsutil import RepoLock, publish
from .maintenance import FsckReport, GcReport, ReflogExpireReport
from .objects import (
    FORMAT_VERSION,
    Commit,
    Schema,
    SchemaChange,
)
from .remotes import named
from .remotes.named import RemoteInfo
from .restore import finish_restore, use_store_opener
from .states import States, table_rows
from .status import Status, clean_status, compared_status
from .storage.base import Head, ObjectStore, ReflogEntry, RefStore
from .storage.local import LocalObjectStore
from .storage.local_refs import LocalRefStore
from .storage.refnames import HEADS, REMOTES, TAGS, check_ref_format, is_valid_ref, validate_name
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
    def at(cls, store_dir: Path, db_path: Path, *, memory_limit: int | None = None) -> Repo:
        """The repository of the local store *store_dir* tracking *db_path* (the composition root).

        *memory_limit*: the largest state rebuilt in memory (see :class:`~dbvers.states.States`);
        a restore from an untrusted archive passes ``snapshots.IN_MEMORY_MAX``.
        """
        config = read_config(store_dir)
        fmt = config.getint("core", "format", fallback=FORMAT_VERSION)
        if fmt > FORMAT_VERSION:
            raise UnsupportedFormatError(fmt, FORMAT_VERSION)
        objects = LocalObjectStore(store_dir / "objects")
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

    def _head_commit(self) -> str:
        head = self.head
        if head.commit is None:
            raise UnknownRefError("HEAD", "HEAD has no commit yet")
        return head.commit

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
            st = self._status()
            if (op := merge.current(self)) is not None:
                st.operation, st.conflicts = op.kind, merge.conflict_counts(self)
            st.upstream, st.ahead, st.behind = sync.upstream_state(self)
            return st

    def _status(self) -> Status:
        with self.locked(write=False):
            head = self.head
            if head.commit is None:
                raise UnknownRefError("HEAD", "HEAD has no commit yet")
            if self.worktree.known_clean():
                return clean_status(head, self.get_schema(self.get_commit(head.commit).schema))
            fp = sqlio.fingerprint(self.path)  # before the copy: a write during it makes it stale
            tmp = self.worktree.copy_out()
            try:
                with self.worktree.reading_copy(tmp):
                    changes, (_, pragmas, sequences, sch) = self.worktree.compare_with(tmp, head.commit)
            finally:
                tmp.unlink(missing_ok=True)
            st = compared_status(head, self.get_commit(head.commit), changes, pragmas, sequences, sch)
            if st.clean:
                self.worktree.record_clean(fp, head.commit)
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
            head = self.head
            ids = self._parents(head, parents)
            first, is_merge = (ids[0] if ids else None), len(ids) > 1
            if first is not None and first == head.commit and not (allow_empty or is_merge) \
                    and self.worktree.known_clean():
                raise NothingToCommitError()
            fp = sqlio.fingerprint(self.path)  # before the copy: a write during it makes it stale
            tmp = self.worktree.copy_out()
            try:
                commit = capture.make_commit(self.objects, self.states, self.worktree, tmp, ids,
                                             message=message.strip(), author=author, meta=meta,
                                             allow_empty=allow_empty or is_merge)
                oid = commit.id
                self._move_head(head, oid, f"commit{' (merge)' if is_merge else ''}: {commit.summary}")
                # Past the commit point only derived data is written: a failure here must not
                # report the (done) commit as failed; the cache and clean record rebuild later.
                with contextlib.suppress(OSError, DbversError):
                    # The copy we diffed is exactly the committed state: it becomes the base cache.
                    publish(tmp, self.states.cache_path(oid))
                    self.worktree.record_clean(fp, oid)
                    self.states.prune_cache(keep={oid})
                return commit
            finally:
                tmp.unlink(missing_ok=True)

    def _parents(self, head: Head, parents: Sequence[str] | None) -> tuple[str, ...]:
        if parents is None:
            return (head.commit,) if head.commit else ()
        ids = tuple(self.resolve(p) for p in parents)
        if len(set(ids)) != len(ids):
            raise UsageError("a commit can't have the same parent twice")
        return ids

    def _move_head(self, head: Head, new: str, message: str) -> None:
        if head.branch is not None:
            self.refs.update(HEADS + head.branch, new, expect=head.commit, message=message)
        else:
            self.refs.set_head(commit=new, message=message)

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
        validate_name(name)
        with self.locked():
            oid = self.resolve(at)
            current = self.refs.read(HEADS + name)
            if current and not force:
                raise RefExistsError(name, "branch")
            self.refs.update(HEADS + name, oid, expect=current, message=f"branch: created from {at}")
            return oid

    def delete_branch(self, name: str) -> str:
        validate_name(name)
        with self.locked():
            oid = self.refs.read(HEADS + name)
            if oid is None:
                raise UnknownRefError(name, f"no branch named '{name}'")
            if self.head.branch == name:
                raise UsageError(f"cannot delete branch '{name}': it is checked out")
            self.refs.delete(HEADS + name, message="branch: deleted")
            return oid

    def tag(self, name: str, at: str = "HEAD", *, force: bool = False) -> str:
        validate_name(name)
        with self.locked():
            oid = self.resolve(at)
            current = self.refs.read(TAGS + name)
            if current and not force:
                raise RefExistsError(name, "tag")
            self.refs.update(TAGS + name, oid, expect=current, message=f"tag: {at}")
            return oid

    def delete_tag(self, name: str) -> str:
        validate_name(name)
        with self.locked():
            oid = self.refs.read(TAGS + name)
            if oid is None:
                raise UnknownRefError(name, f"no tag named '{name}'")
            self.refs.delete(TAGS + name, message="tag: deleted")
            return oid

    # -- moving the working database -------------------------------------------------------
    def checkout(self, ref: str, *, force: bool = False, create_branch: str | None = None) -> str:
        """Make *ref* current: a branch attaches HEAD, anything else detaches it (like git).

        Uncommitted changes stay when the target is HEAD's commit (as in git);
        otherwise they must be committed first, or discarded with *force*.
        """
        with self.locked():
            merge.refuse_during(self, "checkout")
            if create_branch is not None:
                validate_name(create_branch)
                if self.refs.read(HEADS + create_branch):
                    raise RefExistsError(create_branch, "branch")
            # A branch name means that branch, even if a tag has the same name.
            oid = self.refs.lookup(HEADS + ref) if create_branch is None else None
            oid = oid or self.resolve(ref)
            try:
                head = self.head
            except DamagedRefError as e:
                if not force or e.ref != "HEAD":
                    raise
                head = Head(None, None)  # --force replaces a damaged HEAD, as writing the file by hand would
            if create_branch is not None:
                new_head, new_ref = f"ref: {HEADS}{create_branch}\n", (HEADS + create_branch, oid)
            elif self.refs.lookup(HEADS + ref) is not None:
                new_head, new_ref = f"ref: {HEADS}{ref}\n", None
            elif ref in ("HEAD", "@") and head.branch is not None:
                new_head, new_ref = f"ref: {HEADS}{head.branch}\n", None
            else:
                new_head, new_ref = f"{oid}\n", None
            written = None
            if oid != head.commit or force:
                self._replace_working(oid, new_head, new_ref, "checkout", force)
                written = oid
            self.worktree.finish_move(new_head, new_ref, f"checkout: moving to {create_branch or ref}", written)
            self.states.prune_cache(keep={oid})
            return oid

    def _replace_working(self, oid: str, head: str | None, ref: tuple[str, str] | None, op: str,
                         force: bool) -> None:
        """Write commit *oid*'s state into the working database, refusing to lose changes unless *force*."""
        if not force and (dirty := self.worktree.dirty_tables()):
            raise DirtyWorkingDatabaseError(dirty, {"reset": "reset --hard"}.get(op, op))
        self.worktree.write_working(oid, head=head, ref=ref, op=op)

    def reset(self, ref: str = "HEAD", *, hard: bool = True, force: bool = False) -> str:
        """Move the current branch (or detached HEAD) to *ref*; ``hard`` also rewrites the working database.

        A hard reset ends a merge (revert, cherry-pick) in progress, as git's does."""
        with self.locked():
            if not hard:
                merge.refuse_during(self, "reset --soft")
            oid = self.resolve(ref)
            head = self.head
            if head.branch is not None:
                new_head, new_ref = None, (HEADS + head.branch, oid)
            else:
                new_head, new_ref = f"{oid}\n", None
            written = None
            if hard:
                self._replace_working(oid, new_head, new_ref, "reset", force)
                written = oid
            self.worktree.finish_move(new_head, new_ref, f"reset: moving to {ref}", written)
            if hard:
                merge.forget(self)
            return oid

    def restore(self, *, force: bool = False) -> str:
        """Throw away uncommitted changes: make the working database HEAD's state again."""
        with self.locked():
            merge.refuse_during(self, "restore")
            oid = self._head_commit()
            self._replace_working(oid, None, None, "restore", force)
            self.worktree.apply_intent(None, None, "restore")
            return oid

    # -- reading data ----------------------------------------------------------------------
    def history(self, table: str, pk: Any, ref: str = "HEAD") -> pandas.DataFrame:
        """Every commit that changed one row (``pk``: a value, or a tuple for composite keys)."""
        from .history import row_history

        with self.locked(write=False):
            return row_history(self, table, pk, ref)

    def diff(self, a: str | None = "HEAD", b: str | None = None) -> Diff:
        """What changed from *a* to *b* (a ref, or ``None`` for the working database)."""
        from .diff import Diff
        from .history import changed_keys

        with self.locked(write=False):
            owned: list[Path] = []

            def side(ref: str | None) -> tuple[Path, str, str | None]:
                if ref is None:
                    tmp = self.worktree.copy_out()
                    owned.append(tmp)
                    return tmp, "working", None
                oid = self.resolve(ref)
                return self.materialize(oid), ref, oid

            try:
                a_path, a_label, a_id = side(a)
                b_path, b_label, b_id = side(b)
                # Two commits: their patches name the rows that can differ (no full scan).
                hint = changed_keys(self, a_id, b_id) if a_id and b_id else None
                return Diff(a_path, b_path, a_label=a_label, b_label=b_label, a_commit=a_id,
                            b_commit=b_id, owned=owned, workdir=self.cache_dir, hint=hint)
            finally:
                for p in owned:
                    p.unlink(missing_ok=True)

    def read_table(self, table: str, at: str | None = "HEAD") -> pandas.DataFrame:
        """A table's rows at a commit (``at=None``: the working database) as a DataFrame,
        with ``Diff.to_pandas``'s dtypes (``dbvers.frames``)."""
        with self.locked(write=False):
            if at is not None:
                rows, names, types = table_rows(self.materialize(self.resolve(at)), table, at)
            else:
                tmp = self.worktree.copy_out()
                try:
                    with self.worktree.reading_copy(tmp):
                        rows, names, types = table_rows(tmp, table, "the working database")
                finally:
                    tmp.unlink(missing_ok=True)
        # the dtypes every DataFrame of dbvers has (a NULL doesn't make integers floats)
        return rows_frame(names, rows, types)

    # -- maintenance -----------------------------------------------------------------------
    def snapshot(self) -> str:
        """Make a keyframe at HEAD now (kept beside the commit; commits are immutable)."""
        with self.locked():
            return self.states.snapshot(self._head_commit())

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
        recovery: list[str] = []
        with self.locked(write=False, recovery_problems=recovery):
            report = maintenance.fsck(self)
            if self.journal_problem:
                report.problems.append(self.journal_problem)
        report.problems[:0] = recovery
        return report

    def reflog(self, ref: str = "HEAD") -> list[ReflogEntry]:
        """*ref*'s reflog, oldest first (a deleted branch's too, until it expires)."""
        return self.refs.reflog(self.reflog_ref(ref))

    def reflog_ref(self, name: str) -> str:
        """The full ref whose reflog *name* means: HEAD, a full name, or a branch, tag or remote
        branch (one that was deleted too: its reflog outlives it)."""
        if name == "HEAD" or name.startswith("refs/"):
            check_ref_format(name)
            return name
        for ns in (HEADS, TAGS, REMOTES):
            full = ns + name
            if is_valid_ref(full) and (self.refs.has_reflog(full) or self.refs.read(full) is not None):
                return full
        raise UnknownRefError(name, f"no reflog for '{name}'")

    def reflog_expire(self, expire: str | float | None = None, expire_unreachable: str | float | None = None,
                      refs: list[str] | None = None, dry_run: bool = False) -> ReflogExpireReport:
        """Drop reflog entries older than *expire* (default ``[gc] reflog_expire``, 90 days), and
        those whose commit the ref's tip doesn't reach older than *expire_unreachable* (default
        ``[gc] reflog_expire_unreachable``, 30 days). A WHEN is ``"now"``, ``"never"``, a number
        of days (``30``, ``"30.days"``) or an ISO date. *refs* None: every reflog."""
        with self.locked(write=not dry_run):
            full = None if refs is None else [self.reflog_ref(r) for r in refs]
            return maintenance.reflog_expire(self, expire=expire, expire_unreachable=expire_unreachable,
                                             refs=full, dry_run=dry_run)

    def gc(self, prune: str | float | None = None) -> GcReport:
        """Expire reflogs (as ``reflog_expire()`` with the config's times), then remove objects no
        ref, tag, HEAD or reflog entry reaches that are older than *prune* (default ``[gc]
        prune_expire``, 14 days; ``"now"``: all of them)."""
        with self.locked():
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
             progress: Progress | None = None) -> SyncResult:
        """Send *branch* (default: the current one) to *remote* (default: its upstream, or origin)."""
        return sync.push(self, remote, branch, all_branches=all, tags=tags, force_with_lease=force_with_lease,
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
