"""Restore from a backup: transfer from an archive chain, then replace the working database.

L3. The chain is checked byte for byte and extracted into a scratch store beside
the target (only regular files with the names a store uses; links, devices and
paths that would leave the directory are refused: :mod:`dbvers.remotes.archive`),
every object is verified, the history must be complete, the requested state is
rebuilt and passes ``PRAGMA quick_check``; only then is anything replaced:

* a new (or untracked) database: the scratch store becomes the store by a rename,
  holding the verified state and a ``RESTORE`` journal; the database goes in last
  (:func:`finish_restore`, which the next command's recovery also runs);
* a tracked database: the objects the repository lacks and its missing refs are
  transferred in (:mod:`dbvers.transfer`), then the working database moves to the
  state under the checkout journal, as checkout does.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import snapshots, sqlio
from .config import lock_timeout, parse_config, read_config, set_store_identity, write_config
from .errors import (
    BackupError,
    BackupIOError,
    BackupLockError,
    BackupSchemaError,
    BackupValidationError,
    CorruptObjectError,
    DatabaseLockedError,
    DatabaseOpenError,
    DbversError,
    NotADatabaseError,
    RepositoryBusyError,
    StorageError,
    UsageError,
)
from .formats import STORE_NAME, is_id
from .fsutil import copy_atomic, fsync_dir, publish, remove_stale_temps, temp_prefix, write_atomic
from .objects import FORMAT_VERSION
from .remotes.archive_dir import ExtractedChain, chain, extract_chain
from .storage.refnames import HEADS, keyframe_record_commit
from .transfer import LocalDestination, RefUpdate, copy_objects, update_refs

if TYPE_CHECKING:
    from .repo import Repo

# A restore to a new (or untracked) database: the journal and the verified state it installs.
RESTORE_JOURNAL = "RESTORE"
RESTORE_STATE = "RESTORE.db"


@dataclass
class RestoreResult:
    repo: Repo
    commit: str
    branch: str | None
    archive: Path
    chain: list[Path]
    created_store: bool
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    """Where a restore reads from and writes to, decided before anything is touched."""

    src: Path
    chain: list[tuple[Path, dict[str, Any]]]
    target: Path
    store_dir: Path
    timeout: float
    notes: list[str] = field(default_factory=list)
    existing: Repo | None = None
    target_exists: bool = False

    @property
    def top(self) -> dict[str, Any]:
        return self.chain[-1][1]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _check_space(directory: Path, need: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < need:
        raise BackupIOError(str(directory), f"not enough free space: the restore needs {_mb(need)} "
                                            f"(twice the expanded size), {_mb(free)} is free")


def _move_file(src: Path, dest: Path) -> None:
    """Rename *src* to *dest* (fsynced); copy through a temp file across file systems."""
    try:
        os.replace(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        copy_atomic(src, dest)


def _install_new(src: Path, target: Path) -> None:
    """Put the verified state at a new path: one rename on the same file system."""
    if os.stat(src).st_dev == os.stat(target.parent).st_dev:
        for suffix in ("-wal", "-shm", "-journal"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        publish(src, target)
    else:
        copy_atomic(src, target)


def restore(archive: str | os.PathLike[str], to: str | os.PathLike[str] | None = None, at: str = "HEAD",
            *, yes: bool = False, store: str | os.PathLike[str] | None = None) -> Repo:
    """Restore the state at *at* (a branch, tag or commit of the backup) from *archive* into *to*.

    Works without an existing repository (a new machine): the store is created
    beside the database (or at *store*) from the backup's history. An existing
    repository of *to* gets the backup's objects and missing refs; the branch
    restored is moved to the backup's commit (its reflog keeps the old one).
    Returns the repository.
    """
    result = restore_archive(archive, to, at, yes=yes, store=store)
    for w in result.warnings:
        warnings.warn(w, stacklevel=2)
    return result.repo


def _plan(archive: str | os.PathLike[str], to: str | os.PathLike[str] | None,
          store: str | os.PathLike[str] | None) -> _Plan:
    src = Path(archive).expanduser().resolve()
    if not src.is_file():
        raise BackupError(f"no such backup: {src}")
    chain_m = chain(src)
    name = chain_m[-1][1]["database"]["name"]
    target = Path(to).expanduser().resolve() if to else Path.cwd() / name
    if target.is_dir():
        target = target / name
    if not target.parent.is_dir():
        raise UsageError(f"directory {target.parent} does not exist")
    store_dir = Path(store).expanduser().resolve() if store else _store_dir_of(target)
    return _Plan(src, chain_m, target, store_dir, lock_timeout())


def _check_target(plan: _Plan, yes: bool) -> None:
    """What is there now, and may it be replaced?"""
    target, store_dir = plan.target, plan.store_dir
    if (store_dir / "config").is_file():
        tracked = (store_dir / read_config(store_dir).get("core", "database")).resolve()
        if tracked != target:
            raise UsageError(f"{store_dir} tracks {tracked}, not {target}; pass --store DIR")
        plan.existing = _open_store(store_dir, target)
        with plan.existing.locked():  # its recovery finishes a restore a killed process left half done
            pass
    elif store_dir.exists() and (not store_dir.is_dir() or any(store_dir.iterdir())):
        raise UsageError(f"{store_dir} exists and is not a dbvers store; pass --store DIR")
    plan.target_exists = target.exists() and (target.stat().st_size > 0 or plan.existing is not None)
    if not plan.target_exists:
        return
    try:
        sqlio.check_database_file(target)
        sqlio.check_unlocked(target, plan.timeout)
    except DatabaseLockedError as e:
        raise BackupLockError(e.path, e.waited) from None
    except DatabaseOpenError as e:
        raise BackupError(str(e)) from None
    except NotADatabaseError as e:
        if not yes:
            raise BackupError(f"{e}; pass --yes to replace it with the backup") from None
        plan.notes.append(f"{target} was not a readable SQLite database; replaced")
        plan.target_exists = False
    else:
        if plan.existing is None and not yes:
            raise BackupError(f"{target} exists and is not tracked by dbvers: restoring would replace "
                              "its contents; pass --yes to replace it")


def _work_parent(plan: _Plan) -> Path:
    """Where the scratch store goes, once there is room: the extracted members and the
    rebuilt database, twice over. It becomes the new store by a rename, so it lives beside
    the store (beside the target unless --store puts the store elsewhere)."""
    member_bytes = 0
    est_db = plan.top["database"]["size"]
    for _, m in plan.chain:
        member_bytes += sum(mem["size"] for mem in m["members"])
        est_db = max([est_db, *[v for v in m["snapshots"].values() if isinstance(v, int)]])
    work_parent = plan.target.parent if plan.existing is not None else plan.store_dir.parent
    if not work_parent.is_dir():
        raise UsageError(f"directory {work_parent} does not exist")
    _check_space(work_parent, 2 * (member_bytes + est_db))
    if os.stat(work_parent).st_dev != os.stat(plan.target.parent).st_dev:
        _check_space(plan.target.parent, 2 * est_db)
    # Scratch stores of killed restores (a live restore's stays).
    remove_stale_temps(work_parent, pattern="restore-*")
    return work_parent


def _extract(plan: _Plan, work: Path, yes: bool) -> tuple[ExtractedChain, dict[str, str]]:
    """Unpack and check the chain into *work*, made a store that tracks the target."""
    ext = extract_chain([p for p, _ in plan.chain], work)
    final_store = plan.existing.store_dir if plan.existing else plan.store_dir
    cfg = parse_config(ext.metadata.get("config", b"").decode("utf-8", "replace"))
    set_store_identity(cfg, store=final_store, database=plan.target,
                       store_format=min(plan.top["store_format"], FORMAT_VERSION))
    write_config(work, cfg)
    ext.check_claims()
    types, _ = ext.check_objects(integrity=False)
    ext.check_complete(types)
    if plan.existing is not None and not yes:
        _check_same_history(plan.existing, ext, types)
    return ext, types


def _check_same_history(repo: Repo, ext: ExtractedChain, types: dict[str, str]) -> None:
    """Refuse to graft a foreign history onto *repo* unless asked (``--yes``).

    The roots are computed from the commits themselves, never taken from
    backup.json's ``roots`` (a forger re-signs the manifest at will).
    """
    theirs = ext.root_commits(types)
    with repo.locked():
        ours = {oid for oid in repo.reachable_commits() if not repo.get_commit(oid).parents}
    if ours and not ours & theirs:
        raise BackupError(
            f"backup {ext.label} shares no history with the repository of {repo.path.name} (no common root "
            "commit): restoring would move its branch onto another database's history; "
            "pass --yes to restore anyway"
        )


def _choose(wrepo: Repo, ext: ExtractedChain, at: str) -> tuple[str, str | None]:
    """The commit *at* names in the backup, and the branch it restores (None: detached)."""
    refs, head_text = ext.refs(), ext.head_text()
    if at in ("HEAD", "@"):
        if head_text.startswith("ref: "):
            return refs[head_text[5:]], head_text[5:].removeprefix(HEADS)
        return head_text, None
    if HEADS + at in refs:
        return refs[HEADS + at], at
    try:
        return wrepo.resolve(at), None
    except DbversError as e:
        raise BackupError(f"{e} (in backup {ext.label})") from None


def _check_user_version(plan: _Plan, wrepo: Repo, oid: str, yes: bool) -> None:
    if not plan.target_exists:
        return
    want_uv = wrepo.get_commit(oid).pragmas.get("user_version", 0)
    have_uv = sqlio.user_version(plan.target, lock_timeout())
    if have_uv is not None and have_uv != want_uv:
        msg = (f"{plan.target.name} has user_version {have_uv} but the backup's state has {want_uv} "
               "(a different schema version)")
        if not yes:
            raise BackupSchemaError(f"{msg}; pass --yes to restore anyway")
        plan.notes.append(msg)


def restore_archive(archive: str | os.PathLike[str], to: str | os.PathLike[str] | None = None,
                    at: str = "HEAD", *, yes: bool = False,
                    store: str | os.PathLike[str] | None = None) -> RestoreResult:
    """:func:`restore`, returning what was restored (and the warnings) instead of warning."""
    plan = _plan(archive, to, store)
    _check_target(plan, yes)
    work = _work_parent(plan) / f"{temp_prefix('restore')}{os.urandom(4).hex()}"
    try:
        work.mkdir()
        ext, _ = _extract(plan, work, yes)
        wrepo = _open_store(work, plan.target, memory_limit=snapshots.IN_MEMORY_MAX)  # an archive's sizes are untrusted
        oid, branch = _choose(wrepo, ext, at)
        try:
            state = wrepo.materialize_verified(oid)
        except CorruptObjectError as e:
            raise BackupValidationError(plan.src.name, f"the rebuilt state is not sound ({e})") from None
        _check_user_version(plan, wrepo, oid, yes)
        why = f"restore: {at} from backup {plan.src.name}"
        if plan.existing is None:
            repo = install_store(wrepo, work, plan.store_dir, plan.target, state, oid, branch, why)
        else:
            repo = plan.existing
            _merge_into(repo, ext, state, oid, branch, why, yes)
    except BackupError:
        raise
    except DatabaseLockedError as e:
        raise BackupLockError(e.path, e.waited) from None
    except StorageError as e:
        raise BackupIOError(e.path, os.strerror(e.errno) if e.errno else str(e), e.errno) from None
    except OSError as e:
        raise BackupIOError.from_os_error(plan.target, e) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RestoreResult(repo, oid, branch, plan.src, [p for p, _ in plan.chain], plan.existing is None,
                         plan.notes)


def install_store(wrepo: Repo, work: Path, store_dir: Path, target: Path, state: Path, oid: str,
                  branch: str | None, why: str) -> Repo:
    """Put the scratch store *work* (of *wrepo*) in place at *store_dir* and the verified *state*
    at *target*, with HEAD on *branch* (None: detached at *oid*): one recoverable operation
    (a restore onto a new machine, a clone).

    The store goes in first, holding the verified state and a journal saying the
    database is still to be installed; the database goes in last. A process killed
    anywhere leaves either no store and the old database, or a store whose journal
    the next command (a rerun of restore or clone included) finishes.
    """
    if branch is not None:
        wrepo.refs.set_head(branch=branch, message=why)
    else:
        wrepo.refs.set_head(commit=oid, message=why)
    os.replace(state, work / RESTORE_STATE)
    write_atomic(work / RESTORE_JOURNAL, json.dumps({"commit": oid, "why": why}).encode())
    (work / "CHECKOUT").unlink(missing_ok=True)
    with wrepo.lock.held():  # the lock file moves with the directory: others wait for us
        if store_dir.is_dir():
            store_dir.rmdir()  # empty (checked above)
        os.rename(work, store_dir)
        fsync_dir(store_dir.parent)
        repo = _open_store(store_dir, target)
        finish_restore(repo)
    return repo


def finish_restore(repo: Repo) -> bool:
    """Install the database of a restore whose store is in place (the caller holds the lock).

    Called by the restore itself and, after a kill, by the next command's recovery.
    The journal goes last: while it exists, the staged state is installed again
    (a rename, or one copy-in transaction: either is safe to repeat). A journal
    without its staged state means the install already happened. Returns whether
    there was a journal.
    """
    journal = repo.store_dir / RESTORE_JOURNAL
    if not journal.is_file():
        return False
    try:
        oid = json.loads(journal.read_text())["commit"]
        if not isinstance(oid, str) or not is_id(oid):
            raise ValueError(oid)
    except (ValueError, KeyError, TypeError, OSError):
        oid = repo.head.commit or ""
    staging = repo.store_dir / RESTORE_STATE
    if staging.is_file():
        target = repo.path
        try:
            sqlio.check_database_file(target)
            in_place = target.stat().st_size > 0
        except NotADatabaseError:
            in_place = False
        if in_place:
            sqlio.copy_in(staging, target, lock_timeout(repo.config))
            repo.cache_dir.mkdir(exist_ok=True)
            if oid:
                os.replace(staging, repo.states.cache_path(oid))  # it is HEAD's state: the base cache
            else:
                staging.unlink()
        else:
            _install_new(staging, target)
        if oid:
            repo.worktree.record_clean(sqlio.fingerprint(target), oid)
    journal.unlink(missing_ok=True)
    fsync_dir(repo.store_dir)
    return True


def _check_no_uncommitted(repo: Repo, yes: bool) -> None:
    import sqlite3

    import apsw

    try:
        dirty = [] if yes else repo.worktree.dirty_tables()
    except (DbversError, apsw.Error, sqlite3.DatabaseError) as e:
        # Locks and a damaged store keep their own messages; anything else means the
        # working file itself cannot be read (whichever class reports it).
        if isinstance(e, (DatabaseLockedError, RepositoryBusyError, CorruptObjectError)) or (
                isinstance(e, sqlite3.DatabaseError) and sqlio.is_busy(e)):
            raise
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise BackupError(f"{repo.path.name} cannot be read ({detail}), so its uncommitted changes cannot be "
                          "checked; pass --yes to replace it with the backup's state") from None
    if dirty:
        raise BackupError(f"uncommitted changes in {', '.join(dirty[:10])} would be lost by the restore; "
                          "commit them, or pass --yes to discard them")


def _merge_into(repo: Repo, ext: ExtractedChain, state: Path, oid: str, branch: str | None, why: str,
                yes: bool) -> None:
    """Restore into an existing repository: transfer the objects and missing refs in, then
    move the working database (and HEAD, and the branch) to the state."""
    with repo.locked():
        _check_no_uncommitted(repo, yes)
        dest = LocalDestination(repo.objects, repo.refs, why)
        # The chain was verified as a whole (check_objects) before: no second pass.
        copy_objects(ext, dest, dest.missing(set(ext.where)), verify=False)
        for name, data in ext.keyframes().items():  # either layout: refs/keyframes/ or an old keyframes/
            kf_commit, value = keyframe_record_commit(name), data.decode("utf-8", "replace").strip()
            if kf_commit is not None and repo.refs.keyframe(kf_commit) is None and is_id(value):
                repo.refs.set_keyframe(kf_commit, value)
        # Refs the repository lacks are created; those it has keep their value (expect None).
        update_refs(dest, [RefUpdate(ref, None, value) for ref, value in sorted(ext.refs().items())
                           if repo.refs.read(ref) is None])
        repo.cache_dir.mkdir(exist_ok=True)
        cached = repo.states.cache_path(oid)
        if not cached.exists():
            _move_file(state, cached)
        if branch is not None:
            new_head, new_ref = f"ref: {HEADS}{branch}\n", (HEADS + branch, oid)
        else:
            new_head, new_ref = f"{oid}\n", None
        repo.worktree.write_working(oid, head=new_head, ref=new_ref)
        repo.worktree.apply_intent(new_head, new_ref, why)


def _store_dir_of(db_path: Path) -> Path:
    """The default store directory of the database at *db_path* (``.dbvers`` beside it)."""
    return db_path.parent / STORE_NAME


#: How a restore opens a repository: ``Repo.at``, set by :mod:`dbvers.repo` when it is imported.
#: Restore sits below the facade (the facade's recovery calls ``finish_restore``), so the
#: facade passes its constructor in rather than being imported from here.
open_store: Callable[..., Repo] | None = None


def use_store_opener(opener: Callable[..., Repo]) -> None:
    """Set how a restore opens a repository (``Repo.at``; called by :mod:`dbvers.repo`)."""
    global open_store
    open_store = opener


def _open_store(store_dir: Path, db_path: Path, *, memory_limit: int | None = None) -> Repo:
    """The repository of the store at *store_dir* tracking *db_path* (the store may be a scratch one)."""
    if open_store is None:  # pragma: no cover - dbvers/__init__ imports repo, which sets it
        raise RuntimeError("dbvers.repo was not imported")
    return open_store(store_dir, db_path, memory_limit=memory_limit)
