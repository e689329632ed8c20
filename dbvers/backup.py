"""Backups: verified tar archives of the store, listing, retention and verification (porcelain).

L3. A backup is a transfer (:mod:`dbvers.transfer`) to an archive
(:class:`dbvers.remotes.archive_dir.ArchiveDestination`); a restore is a transfer
back plus a replacement of the working database (:mod:`dbvers.restore`); the
format is :mod:`dbvers.remotes.archive`, and a ``sqlite3.Connection`` as a source or
target is :mod:`dbvers.interop`.

An archive is a plain tar (``tar tf`` lists it) of the store's files, copied
verbatim: the objects (already zstd-compressed, so no outer compression), HEAD,
the config, the refs, the reflogs and the keyframe records, then ``backup.json``
as the last member. A *full* backup holds every object that a ref, HEAD or a
reflog entry reaches; an *incremental* one holds only the objects that its parent
chain (earlier backups in the same directory) lacks, plus the current refs, and
names its parent by file name and id. ``backup.json`` lists and checksums every
other member and itself (see the format module); objects are further checked
against their ids and every snapshot with ``PRAGMA integrity_check``.

The two-library rule (DESIGN.md section 2) holds throughout: the working
database is only touched through :mod:`dbvers.sqlio`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BackupError,
    BackupIOError,
    BackupValidationError,
    CorruptObjectError,
    DatabaseLockedError,
    DbversError,
    RepositoryBusyError,
    StorageError,
    UsageError,
)
from .formats import TIMESTAMP_FORMAT, is_id, parse_timestamp
from .fsutil import fsync_dir, temp_prefix, write_atomic
from .interop import export_to, import_from
from .objects import FORMAT_VERSION
from .remotes.archive import BACKUP_FORMAT, allowed_name, parse_manifest, read_manifest
from .remotes.archive_dir import (
    ArchiveDestination,
    archives,
    chain,
    chain_objects,
    extract_chain,
    remove_stale_temp_archives,
)
from .restore import RestoreResult, finish_restore, restore, restore_archive
from .storage.refnames import HEADS, TAGS, keyframe_ref
from .transfer import LocalSource, RefUpdate, all_refs, closure, copy_objects, lacking, update_refs

if TYPE_CHECKING:
    from .repo import Repo

__all__ = [
    "BackupInfo", "RestoreResult", "VerifyResult", "backup", "default_dir", "export_to", "finish_restore",
    "import_from", "list_backups", "prune", "read_manifest", "restore", "restore_archive", "retention",
    "verify",
]

VERIFIED_INDEX = ".dbvers-verified.json"
_STAMP = "%Y%m%dT%H%M%S."  # + milliseconds + "Z": ISO 8601 basic format, sorts by time


# -- results -------------------------------------------------------------------------


@dataclass
class BackupInfo:
    """One backup archive: what ``Repo.backup`` returns and ``dbvers backup --list`` shows."""

    path: Path
    kind: str  # "full" or "incremental" ("damaged" in listings of unreadable files)
    created_at: str = ""
    database: str = ""
    database_size: int = 0
    user_version: int = 0
    commits: int = 0  # commits in the history this backup restores
    new_commits: int = 0  # commits stored in this archive
    objects: int = 0  # objects stored in this archive
    size: int = 0  # bytes of the archive file
    id: str = ""
    parent: str | None = None  # file name of the parent backup (incrementals)
    head: str | None = None  # HEAD's commit when the backup was made
    verified: str | None = None  # "ok", "failed: ...", "changed since verified", None: never
    uncommitted: list[str] = field(default_factory=list)  # tables whose changes it lacks
    pruned: list[Path] = field(default_factory=list)  # old backups removed by retention
    note: str | None = None
    problem: str | None = None
    manifest: dict[str, Any] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "file": self.path.name,
            "kind": self.kind,
            "created_at": self.created_at,
            "database": self.database,
            "database_size": self.database_size,
            "user_version": self.user_version,
            "commits": self.commits,
            "new_commits": self.new_commits,
            "objects": self.objects,
            "size": self.size,
            "id": self.id,
            "parent": self.parent,
            "head": self.head,
            "verified": self.verified,
            "uncommitted": self.uncommitted,
            "pruned": [str(p) for p in self.pruned],
            "note": self.note,
            "problem": self.problem,
        }


@dataclass
class VerifyResult:
    path: Path
    ok: bool
    problem: str | None = None
    kind: str = ""
    commits: int = 0
    objects: int = 0
    snapshots: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "problem": self.problem, "kind": self.kind,
                "commits": self.commits, "objects": self.objects, "snapshots": self.snapshots}



def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.strftime(TIMESTAMP_FORMAT)


def _damaged(e: Exception, what: str = "run 'dbvers fsck' before backing up") -> BackupError:
    return BackupError(f"the store is damaged ({e}); {what}")


# -- what a backup holds -----------------------------------------------------------------


@dataclass
class _StoreState:
    """What a backup holds, read under the repository lock."""

    files: dict[str, bytes]  # store files that travel verbatim: HEAD, config, reflogs, keyframe refs
    refs: dict[str, str]  # every ref, by full name
    objects: set[str]
    commits: set[str]
    roots: list[str]
    snapshots: set[str]
    head_text: str
    head_commit: str | None
    user_version: int

    @property
    def shown_refs(self) -> dict[str, str]:
        """The branches and tags, as backup.json lists them."""
        return {k: v for k, v in self.refs.items() if k.startswith((HEADS, TAGS))}


def _store_files(repo: Repo) -> dict[str, bytes]:
    store = repo.store_dir
    files: dict[str, bytes] = {}
    for name in ("HEAD", "config"):
        files[name] = (store / name).read_bytes()
    base = store / "logs"
    if base.is_dir():
        for p in sorted(base.rglob("*")):
            name = p.relative_to(store).as_posix()
            if p.is_file() and not p.is_symlink() and allowed_name(name):
                files[name] = p.read_bytes()
    # Keyframe records travel as ordinary ref members (refs/keyframes/<commit>), whichever
    # layout the store keeps them in; a record that is not an id is derived data left behind.
    for commit, snap in repo.refs.keyframes().items():
        if is_id(snap):
            files[keyframe_ref(commit)] = f"{snap}\n".encode()
    return files


def _collect(repo: Repo) -> _StoreState:
    with repo.locked():
        files = _store_files(repo)
        refs = all_refs(repo.refs)
        for ref, oid in refs.items():
            if not repo.objects.has(oid):
                raise BackupError(f"the store is damaged: {ref} points to missing commit {oid[:12]}; "
                                  "run 'dbvers fsck' before backing up")
        commits = repo.reachable_commits()  # HEAD, refs and reflogs: what gc keeps
        try:
            objects = closure(repo, commits)
            snaps = {s for oid in commits if (s := repo.snapshot_of(oid))}
            roots = sorted(oid for oid in commits if not repo.get_commit(oid).parents)
        except DbversError as e:
            raise _damaged(e) from None
        for oid in objects:
            if not repo.objects.has(oid):
                raise BackupError(f"the store is damaged: object {oid[:12]} is missing; "
                                  "run 'dbvers fsck' before backing up")
        head = repo.head
        uv = repo.get_commit(head.commit).pragmas.get("user_version", 0) if head.commit else 0
        return _StoreState(files, refs, objects, commits, roots, snaps, files["HEAD"].decode().strip(),
                           head.commit, uv)


def default_dir(repo: Repo) -> Path:
    """``[backup] dir`` of the config (relative to the database's directory), else ``backups/``."""
    configured = repo.config.get("backup", "dir", fallback="").strip()
    base = repo.path.parent
    return (base / Path(configured).expanduser()).resolve() if configured else base / "backups"


def retention(repo: Repo) -> tuple[int | None, float | None]:
    """`[backup] keep` and `max_age` from the config (checked when it was read)."""
    try:
        keep = repo.config.getint("backup", "keep", fallback=None)
        age = repo.config.getfloat("backup", "max_age", fallback=None)
    except ValueError as e:
        raise UsageError(f"[backup] keep/max_age in {repo.store_dir / 'config'}: {e}") from None
    return keep, age


def _uncommitted(repo: Repo) -> list[str]:
    """Tables whose uncommitted changes the backup does not hold (it holds commits only).

    A working database that cannot be read (damaged pages, a truncated file) is
    refused here, before anything is written: its state cannot be compared, so the
    promise "the backup holds what is committed, and here is what it lacks" cannot
    be kept. A lock held by a writer only means the comparison is skipped.
    """
    import apsw

    from . import sqlio

    if not repo.path.exists():
        return []
    try:
        st = repo.status()
    except (DatabaseLockedError, RepositoryBusyError):
        return []
    except (DbversError, apsw.Error, sqlite3.DatabaseError) as e:
        if isinstance(e, sqlite3.DatabaseError) and sqlio.is_busy(e):
            return []
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise BackupError(
            f"the working database {repo.path.name} cannot be read ({detail}); nothing was backed up: "
            "run 'dbvers restore --force' to put HEAD's state back (or repair it), then back up"
        ) from None
    return [] if st.clean else st.dirty_tables


# -- writing a backup: a transfer to an archive -----------------------------------------------


def backup(repo: Repo, directory: str | os.PathLike[str] | None = None, *, incremental: bool = False,
           keep: int | None = None, max_age: float | None = None) -> BackupInfo:
    """Write a full (or incremental) backup archive of *repo*'s history into *directory*."""
    target_dir = Path(directory).expanduser().resolve() if directory else default_dir(repo)
    if target_dir.exists() and not target_dir.is_dir():
        raise UsageError(f"{target_dir} is not a directory")
    # Everything that can refuse runs before the first file (or directory) is made.
    state = _collect(repo)
    uncommitted = _uncommitted(repo)
    # Directories this backup creates go again if it fails: a refusal leaves nothing behind.
    made = [d for d in (target_dir, *target_dir.parents) if not d.exists()]
    try:
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BackupIOError.from_os_error(target_dir, e) from None
        remove_stale_temp_archives(target_dir)
        final, raw, note = _write_archive(repo, target_dir, state, incremental)
    except BaseException:
        for d in made:  # innermost first; only while empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    info = _info_from_manifest(final, parse_manifest(raw, final.name), final.stat().st_size)
    info.uncommitted = uncommitted
    info.note = note
    cfg_keep, cfg_age = retention(repo)
    keep = keep if keep is not None else cfg_keep
    max_age = max_age if max_age is not None else cfg_age
    if keep is not None or max_age is not None:
        info.pruned = prune(target_dir, keep=keep, max_age=max_age, database=repo.path.name)
    return info


def _write_archive(repo: Repo, target_dir: Path, state: _StoreState, incremental: bool
                   ) -> tuple[Path, bytes, str | None]:
    """Transfer *state* into a new archive of *target_dir*: (its path, its manifest, a note)."""
    db_name = repo.path.name
    parent, have, note = _incremental_base(target_dir, db_name, state.roots) if incremental else (None, set(), None)
    created = _now()
    with ArchiveDestination(target_dir, int(created.timestamp()), have) as dest:
        send = sorted(lacking(repo, state.objects, dest))
        try:
            snapshots_in = {oid: repo.objects.body_size(oid) for oid in send if oid in state.snapshots}
        except (OSError, ValueError, DbversError) as e:
            raise _damaged(e) from None
        try:
            # Never back up a damaged object silently: each is checked against its id first.
            copy_objects(LocalSource(repo.objects), dest, send)
        except CorruptObjectError as e:
            raise _damaged(e, "nothing was backed up") from None
        except OSError as e:
            raise BackupIOError.from_os_error(target_dir, e) from None
        update_refs(dest, [RefUpdate(name, None, oid) for name, oid in state.refs.items()])
        for name, data in state.files.items():
            dest.add_file(name, data)
        try:
            db_size = repo.path.stat().st_size
        except OSError:
            db_size = 0
        manifest = {
            "backup_format": BACKUP_FORMAT,
            "store_format": FORMAT_VERSION,
            "dbvers_version": __version__,
            "kind": "incremental" if parent is not None else "full",
            "created_at": _iso(created),
            "database": {"name": db_name, "size": db_size, "user_version": state.user_version},
            "head": state.head_text,
            "head_commit": state.head_commit,
            "refs": state.shown_refs,
            "roots": state.roots,
            "commits": len(state.commits),
            "new_commits": sum(1 for o in send if o in state.commits),
            "objects": len(send),
            "total_objects": len(state.objects),
            "snapshots": snapshots_in,
            "parent": {"file": parent.path.name, "id": parent.id} if parent else None,
        }
        stem = f"{Path(db_name).stem}-{created.strftime(_STAMP)}{created.microsecond // 1000:03d}Z"
        final, raw = dest.publish(manifest, stem)
    return final, raw, note


def _incremental_base(directory: Path, db_name: str, roots: list[str]
                      ) -> tuple[BackupInfo | None, set[str], str | None]:
    """The newest backup of this history in *directory* and the objects its chain holds."""
    entries = [e for e in list_backups(directory, database=db_name) if e.problem is None]
    entries = [e for e in entries if e.manifest and set(e.manifest["roots"]) & set(roots)]
    if not entries:
        return None, set(), "no earlier backup of this history in the directory: made a full backup"
    newest = max(entries, key=lambda e: e.created_at)
    try:
        parents = chain(newest.path, {e.id: e.path for e in entries})
    except BackupError as e:
        return None, set(), f"the previous backup's chain is broken ({e}): made a full backup"
    return newest, chain_objects([m for _, m in parents]), None


# -- listing, chains, retention ----------------------------------------------------------


def _info_from_manifest(path: Path, m: dict[str, Any], size: int) -> BackupInfo:
    info = BackupInfo(
        path=path, kind=m["kind"], created_at=m["created_at"], database=m["database"]["name"],
        database_size=m["database"]["size"], user_version=m["database"]["user_version"],
        commits=m["commits"], new_commits=m.get("new_commits", 0), objects=m["objects"], size=size,
        id=m["checksum"], parent=(m.get("parent") or {}).get("file"), head=m.get("head_commit"),
        manifest=m,
    )
    return info


def list_backups(directory: str | os.PathLike[str], *, database: str | None = None) -> list[BackupInfo]:
    """The backups in *directory*, oldest first (damaged ones included, with their problem)."""
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"no backup directory {d}")
    index = _read_index(d)
    out: list[BackupInfo] = []
    for p in archives(d):
        st = p.stat()
        try:
            info = _info_from_manifest(p, read_manifest(p), st.st_size)
        except BackupError as e:
            info = BackupInfo(path=p, kind="damaged", size=st.st_size, problem=str(e))
        if database is not None and info.problem is None and info.database != database:
            continue
        rec = index.get(p.name)
        if rec:
            if rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
                info.verified = "changed since verified"
            else:
                info.verified = "ok" if rec.get("ok") else f"failed: {rec.get('problem')}"
        out.append(info)
    out.sort(key=lambda i: (i.created_at, i.path.name))
    return out


def prune(directory: str | os.PathLike[str], *, keep: int | None = None, max_age: float | None = None,
          database: str | None = None, now: datetime | None = None) -> list[Path]:
    """Delete old backups: beyond the *keep* newest, or older than *max_age* days.

    The newest backup of each database is always kept, and so is every backup
    that a kept incremental needs; damaged files are never deleted.
    """
    if keep is not None and keep < 1:
        raise UsageError("--keep needs a number >= 1")
    if max_age is not None and max_age < 0:
        raise UsageError("--max-age needs a number of days >= 0")
    d = Path(directory)
    now = now or _now()
    entries = [e for e in list_backups(d, database=database) if e.problem is None]
    groups: dict[str, list[BackupInfo]] = {}
    for e in entries:
        groups.setdefault(e.database, []).append(e)
    removed: list[Path] = []
    for group in groups.values():
        group.sort(key=lambda e: e.created_at, reverse=True)
        by_id = {e.id: e for e in group}
        kept: set[str] = set()
        for i, e in enumerate(group):
            too_many = keep is not None and i >= keep
            too_old = max_age is not None and (now - parse_timestamp(e.created_at)).total_seconds() > max_age * 86400
            if i == 0 or not (too_many or too_old):
                kept.add(e.id)
        for e in group:
            cur: BackupInfo | None = e if e.id in kept else None
            while cur is not None and cur.kind == "incremental" and cur.manifest:
                cur = by_id.get(cur.manifest["parent"]["id"])
                if cur is not None:
                    kept.add(cur.id)
        for e in group:
            if e.id not in kept:
                try:
                    e.path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as err:
                    raise BackupIOError.from_os_error(e.path, err) from None
                removed.append(e.path)
    if removed:
        index = _read_index(d)
        for p in removed:
            index.pop(p.name, None)
        _write_index(d, index)
        fsync_dir(d)
    return removed


def _read_index(d: Path) -> dict[str, Any]:
    try:
        data = json.loads((d / VERIFIED_INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_index(d: Path, index: dict[str, Any]) -> None:
    with contextlib.suppress(StorageError, OSError):  # the index is a convenience; never fail for it
        write_atomic(d / VERIFIED_INDEX, json.dumps(index, indent=1, sort_keys=True).encode())


# -- verification ------------------------------------------------------------------------


def _scratch_dir(near: Path) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=temp_prefix("verify"), dir=near))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=temp_prefix("verify")))


def verify(path: str | os.PathLike[str]) -> list[VerifyResult]:
    """Check an archive (with the chain it needs) or every archive of a directory.

    Every member's checksums, the archive's structure, every object against its
    id, ``PRAGMA integrity_check`` of every snapshot, and that the history is
    complete. Results are remembered in the directory for ``--list``.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = archives(p)
    elif p.exists():
        files = [p]
    else:
        raise UsageError(f"no such backup file or directory: {p}")
    results: list[VerifyResult] = []
    checked: dict[Path, VerifyResult] = {}
    for f in files:
        results.append(_verify_one(f, checked))
    for d in {f.parent for f in files}:
        index = _read_index(d)
        for r in results:
            if r.path.parent == d and r.path.exists():
                st = r.path.stat()
                index[r.path.name] = {"ok": r.ok, "problem": r.problem, "size": st.st_size,
                                      "mtime_ns": st.st_mtime_ns, "checked_at": _iso(_now())}
        _write_index(d, index)
    return results


def _verify_one(path: Path, checked: dict[Path, VerifyResult]) -> VerifyResult:
    result = VerifyResult(path, False)
    scratch = _scratch_dir(path.parent)
    try:
        paths = [c for c, _ in chain(path)]
        result.kind = "incremental" if len(paths) > 1 else "full"
        for earlier in paths[:-1]:
            prior = checked.get(earlier)
            if prior is not None and not prior.ok:
                raise BackupValidationError(path.name, f"its parent backup {earlier.name} is damaged ({prior.problem})")
        ext = extract_chain(paths, scratch)
        ext.check_claims()
        types, n_snap = ext.check_objects(integrity=True)
        result.commits = ext.check_complete(types)
        result.objects = len(ext.scanned[-1].objects)
        result.snapshots = n_snap
        result.ok = True
    except BackupError as e:
        result.problem = str(e)
    except OSError as e:
        result.problem = f"cannot check {path}: {e.strerror or e}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checked[path] = result
    return result
