"""Backups: verified tar archives of the store, retention, atomic restore, sqlite3 interop.

An archive is a plain tar (``tar tf`` lists it) of the store's files, copied
verbatim: the objects (already zstd-compressed, so no outer compression), the
refs, HEAD, the reflogs, the keyframe records and the config, then
``backup.json`` as the last member. A *full* backup holds every object that a
ref, HEAD or a reflog entry reaches; an *incremental* one holds only the
objects that its parent chain (earlier backups in the same directory) lacks,
plus the current refs, and names its parent by file name and id.

``backup.json`` is canonical JSON (sorted keys, no whitespace) with its own
SHA-256 in ``checksum`` (over the same document without that key). It lists
every other member with its offset, its size, the SHA-256 of its data and the
SHA-256 of its whole stretch of the tar (header, data and padding), so that a
changed byte anywhere before ``backup.json`` is found and named; the header of
``backup.json`` is rebuilt and compared, and what follows its data must be the
tar's zero blocks. Objects are further checked against their ids (SHA-256 of
the decompressed content) and every snapshot with ``PRAGMA integrity_check``.

Restore extracts into a temporary directory beside the target (only regular
files with the names a store uses; links, devices and paths that would leave
the directory are refused), verifies, rebuilds the requested state, runs
``PRAGMA quick_check`` and only then replaces the target: a rename for a new
path, or one backup-API transaction (``sqlio.copy_in``, as checkout does) for a
database that other connections may hold open.

The two-library rule (DESIGN.md section 2) holds throughout: a user's
``sqlite3.Connection`` and the working database are only touched with the
standard library's ``sqlite3``, and only through files that apsw has closed;
no handle ever crosses between the libraries.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import snapshots, sqlio
from .archive import (
    _ID_RE,
    _OBJECT_RE,
    BACKUP_FORMAT,
    CHUNK,
    MANIFEST,
    SUFFIX,
    _allowed_name,
    _io_error,
    _object_member,
    _parse_iso,
    _parse_manifest,
    _scan,
    _Scanned,
    _sign,
    _TarWriter,
    read_manifest,
)
from .config import SCHEMA, env_override, parse_config, read_config, write_config
from .errors import (
    BackupError,
    BackupIOError,
    BackupLockError,
    BackupSchemaError,
    BackupValidationError,
    CorruptObjectError,
    DatabaseLockedError,
    DbversError,
    NotADatabaseError,
    RepositoryBusyError,
    StorageError,
    UsageError,
)
from .formats import is_id
from .fsutil import TMP_PREFIX, copy_atomic, fsync_dir, publish, temp_path, write_atomic
from .objects import FORMAT_VERSION, Commit
from .storage.base import ObjectStore
from .storage.local import LocalObjectStore
from .storage.refnames import HEADS, TAGS, keyframe_record_commit

if TYPE_CHECKING:
    from .repo import Repo

VERIFIED_INDEX = ".dbvers-verified.json"
# A restore to a new (or untracked) database: the journal and the verified state it installs.
RESTORE_JOURNAL = "RESTORE"
RESTORE_STATE = "RESTORE.db"
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


@dataclass
class RestoreResult:
    repo: Repo
    commit: str
    branch: str | None
    archive: Path
    chain: list[Path]
    created_store: bool
    warnings: list[str] = field(default_factory=list)


# -- small helpers ---------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timeout() -> float:
    override = env_override("DBVERS_LOCK_TIMEOUT")
    return float(override if override is not None else SCHEMA["lock", "timeout"].default or 10)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _page_size(path: Path) -> int:
    """The page size of a private file (the working database's goes through sqlio)."""
    with open(path, "rb") as f:
        head = f.read(20)
    return sqlio.page_size_of(head)


# -- writing archives ------------------------------------------------------------------


@dataclass
class _StoreState:
    """What a backup holds, read under the repository lock."""

    metadata: dict[str, bytes]
    objects: set[str]
    commits: set[str]
    roots: list[str]
    snapshots: set[str]
    refs: dict[str, str]
    head_text: str
    head_commit: str | None
    user_version: int


def _collect(repo: Repo) -> _StoreState:
    store = repo.store_dir
    with repo._locked():
        metadata: dict[str, bytes] = {}
        for name in ("HEAD", "config"):
            metadata[name] = (store / name).read_bytes()
        for sub in ("refs", "logs", "keyframes"):
            base = store / sub
            if not base.is_dir():
                continue
            for p in sorted(base.rglob("*")):
                name = p.relative_to(store).as_posix()
                if p.is_file() and not p.is_symlink() and _allowed_name(name):
                    metadata[name] = p.read_bytes()
        refs = {HEADS + k: v for k, v in repo.refs.branches().items()}
        refs.update({TAGS + k: v for k, v in repo.refs.tags().items()})
        for ref, oid in refs.items():
            if not repo.objects.has(oid):
                raise BackupError(f"the store is damaged: {ref} points to missing commit {oid[:12]}; "
                                  "run 'dbvers fsck' before backing up")
        commits = repo.reachable_commits()
        objects: set[str] = set()
        snaps: set[str] = set()
        roots: list[str] = []
        try:
            for oid in commits:
                c = repo.get_commit(oid)
                objects.add(oid)
                objects.update(c.referenced_objects())
                snap = repo.snapshot_of(oid)
                if snap:
                    objects.add(snap)
                    snaps.add(snap)
                if not c.parents:
                    roots.append(oid)
        except DbversError as e:
            raise BackupError(f"the store is damaged ({e}); run 'dbvers fsck' before backing up") from None
        for oid in objects:
            if not repo.objects.has(oid):
                raise BackupError(f"the store is damaged: object {oid[:12]} is missing; "
                                  "run 'dbvers fsck' before backing up")
        head = repo.head
        uv = repo.get_commit(head.commit).pragmas.get("user_version", 0) if head.commit else 0
        return _StoreState(metadata, objects, commits, sorted(roots), snaps, refs,
                           metadata["HEAD"].decode().strip(), head.commit, uv)


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

    if not repo.path.exists():
        return []
    try:
        st = repo.status()
    except (DatabaseLockedError, RepositoryBusyError):
        return []
    except (DbversError, apsw.Error, sqlite3.DatabaseError) as e:
        if isinstance(e, sqlite3.DatabaseError) and sqlio._is_busy(e):
            return []
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise BackupError(
            f"the working database {repo.path.name} cannot be read ({detail}); nothing was backed up: "
            "run 'dbvers restore --force' to put HEAD's state back (or repair it), then back up"
        ) from None
    return [] if st.clean else st.dirty_tables


def _link_noclobber(tmp: Path, directory: Path, stem: str) -> Path:
    """Give the finished temp file its final name without ever replacing another backup."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    for i in range(1000):
        final = directory / f"{stem}{'' if i == 0 else f'-{i}'}{SUFFIX}"
        try:
            os.link(tmp, final)
        except FileExistsError:
            continue
        except OSError:
            # No hard links on this file system: check, then rename.
            if final.exists():
                continue
            os.replace(tmp, final)
            fsync_dir(directory)
            return final
        tmp.unlink()
        fsync_dir(directory)
        return final
    raise BackupError(f"too many backups named {stem} in {directory}")


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
            raise _io_error(target_dir, e) from None
        _remove_stale_temps(target_dir)
        db_name = repo.path.name

        note = None
        parent: BackupInfo | None = None
        have: set[str] = set()
        if incremental:
            parent, have, note = _incremental_base(target_dir, db_name, state.roots)
        objects = sorted(state.objects - have)
        try:
            snapshots_in = {oid: repo.objects.body_size(oid) for oid in objects if oid in state.snapshots}
        except (OSError, ValueError, DbversError) as e:
            raise BackupError(f"the store is damaged ({e}); run 'dbvers fsck' before backing up") from None
        created = _now()
        kind = "incremental" if parent is not None else "full"
        try:
            db_size = repo.path.stat().st_size
        except OSError:
            db_size = 0

        try:
            tmp = _owned_temp(target_dir, "backup", ".tar")
        except OSError as e:
            raise _io_error(target_dir, e) from None
        try:
            with open(tmp, "wb", buffering=CHUNK) as f:
                w = _TarWriter(f, int(created.timestamp()))
                for oid in objects:
                    # Never back up a damaged object silently: check it against its id first.
                    try:
                        repo.objects.verify(oid)
                    except DbversError as e:
                        raise BackupError(f"the store is damaged ({e}); nothing was backed up") from None
                    with repo.objects.open_raw(oid) as raw:
                        w.add(_object_member(oid), repo.objects.stored_size(oid), iter(lambda: raw.read(CHUNK), b""))
                for name, data in state.metadata.items():
                    w.add(name, len(data), [data])
                manifest = {
                    "backup_format": BACKUP_FORMAT,
                    "store_format": FORMAT_VERSION,
                    "dbvers_version": _version(),
                    "kind": kind,
                    "created_at": _iso(created),
                    "database": {"name": db_name, "size": db_size, "user_version": state.user_version},
                    "head": state.head_text,
                    "head_commit": state.head_commit,
                    "refs": state.refs,
                    "roots": state.roots,
                    "commits": len(state.commits),
                    "new_commits": sum(1 for o in objects if o in state.commits),
                    "objects": len(objects),
                    "total_objects": len(state.objects),
                    "snapshots": snapshots_in,
                    "parent": {"file": parent.path.name, "id": parent.id} if parent else None,
                    "members": w.members,
                }
                raw = _sign(manifest)
                w.add(MANIFEST, len(raw), [raw], record=False)
                w.finish()
            stem = f"{Path(db_name).stem}-{created.strftime(_STAMP)}{created.microsecond // 1000:03d}Z"
            final = _link_noclobber(tmp, target_dir, stem)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _io_error(target_dir, e) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except BaseException:
        for d in made:  # innermost first; only while empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    info = _info_from_manifest(final, _parse_manifest(raw, final.name), final.stat().st_size)
    info.uncommitted = uncommitted
    info.note = note
    cfg_keep, cfg_age = retention(repo)
    keep = keep if keep is not None else cfg_keep
    max_age = max_age if max_age is not None else cfg_age
    if keep is not None or max_age is not None:
        info.pruned = prune(target_dir, keep=keep, max_age=max_age, database=db_name)
    return info


def _version() -> str:
    from . import __version__

    return __version__


def _pid_alive(pid: int) -> bool:
    """Whether process *pid* exists (one that is not ours to signal counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owned_temp(directory: Path, kind: str, suffix: str = "") -> Path:
    """A new private file ``.tmp-<kind>-<pid>-<random><suffix>``: its name says who owns it."""
    while True:
        p = directory / f"{TMP_PREFIX}{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return p


def _owner_pid(p: Path, kind: str) -> int | None:
    m = re.match(rf"^{re.escape(TMP_PREFIX)}{kind}-(\d+)-", p.name)
    return int(m[1]) if m else None


def _remove_stale_temps(directory: Path, older_than: float = 3600.0) -> None:
    """Delete the temp archives of killed backups: by owner pid, at once; unowned ones after an hour."""
    import time

    now = time.time()
    for p in directory.glob(TMP_PREFIX + "*.tar"):
        pid = _owner_pid(p, "backup")
        with contextlib.suppress(OSError):
            if not p.is_file() or p.is_symlink():
                continue
            if pid is not None:
                if not _pid_alive(pid):
                    p.unlink()
            elif now - p.stat().st_mtime > older_than:
                p.unlink()


def _incremental_base(directory: Path, db_name: str, roots: list[str]
                      ) -> tuple[BackupInfo | None, set[str], str | None]:
    """The newest backup of this history in *directory* and the objects its chain holds."""
    entries = [e for e in list_backups(directory, database=db_name) if e.problem is None]
    entries = [e for e in entries if e.manifest and set(e.manifest["roots"]) & set(roots)]
    if not entries:
        return None, set(), "no earlier backup of this history in the directory: made a full backup"
    newest = max(entries, key=lambda e: e.created_at)
    try:
        chain = _chain(newest.path, {e.id: e for e in entries})
    except BackupError as e:
        return None, set(), f"the previous backup's chain is broken ({e}): made a full backup"
    have: set[str] = set()
    for _, m in chain:
        for mem in m["members"]:
            if mo := _OBJECT_RE.match(mem["name"]):
                have.add(mo[1] + mo[2])
    return newest, have, None


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


def _archives(directory: Path) -> list[Path]:
    """The archive files of a directory, oldest first (by backup.json's created_at)."""
    def key(p: Path) -> tuple[str, str]:
        try:
            return read_manifest(p)["created_at"], p.name
        except BackupError:
            return "", p.name

    return sorted((p for p in directory.glob("*" + SUFFIX) if p.is_file() and not p.name.startswith(".")),
                  key=key)


def list_backups(directory: str | os.PathLike[str], *, database: str | None = None) -> list[BackupInfo]:
    """The backups in *directory*, oldest first (damaged ones included, with their problem)."""
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"no backup directory {d}")
    index = _read_index(d)
    out: list[BackupInfo] = []
    for p in _archives(d):
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


def _chain(path: Path, by_id: dict[str, BackupInfo] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The archives needed to restore *path*: its full ancestor first, *path* last."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: set[str] = set()
    cur, m = path, read_manifest(path)
    while True:
        chain.append((cur, m))
        seen.add(m["checksum"])
        if m["kind"] == "full":
            break
        parent = m["parent"]
        candidate = cur.parent / parent["file"]
        pm = None
        if candidate.is_file():
            with contextlib.suppress(BackupError):
                pm = read_manifest(candidate)
        if pm is None or pm["checksum"] != parent["id"]:
            if by_id is None:
                by_id = {e.id: e for e in list_backups(cur.parent) if e.problem is None}
            found = by_id.get(parent["id"])
            if found is None:
                raise BackupValidationError(
                    path.name, f"it needs its parent backup {parent['file']}, which is not in {cur.parent}"
                )
            candidate, pm = found.path, read_manifest(found.path)
        if pm["checksum"] in seen:
            raise BackupValidationError(path.name, "its chain of parent backups loops")
        cur, m = candidate, pm
    chain.reverse()
    return chain


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
            too_old = max_age is not None and (now - _parse_iso(e.created_at)).total_seconds() > max_age * 86400
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
                    raise _io_error(e.path, err) from None
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
        return Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "verify-", dir=near))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "verify-"))


def _extract_chain(chain: list[Path], store_dir: Path) -> tuple[list[_Scanned], dict[str, Path]]:
    """Check every archive of a chain and put all their objects into *store_dir*/objects."""
    objects_dir = store_dir / "objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    scanned: list[_Scanned] = []
    where: dict[str, Path] = {}
    for i, p in enumerate(chain):
        s = _scan(p, objects_dir, keep_metadata=(i == len(chain) - 1))
        for oid in s.objects:
            where.setdefault(oid, p)
        scanned.append(s)
    return scanned, where


def _write_metadata(store_dir: Path, metadata: dict[str, bytes]) -> None:
    for name, data in metadata.items():
        if name == MANIFEST or not _allowed_name(name):
            continue
        dest = store_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    for sub in ("refs/heads", "refs/tags", "logs", "cache", "keyframes"):
        (store_dir / sub).mkdir(parents=True, exist_ok=True)


def _check_claims(objects: ObjectStore, where: dict[str, Path], chain: list[_Scanned]) -> None:
    """Every snapshot's declared size is the one backup.json claims, before anything is expanded.

    The free-space check trusts those claims, and reads stop at an object's declared
    size (``ObjectStore`` checks as it decompresses), so a small archive can never
    expand into more than it said. Only the header of each object is read here.
    """
    claims: dict[str, int] = {}
    for s in chain:
        claims.update(s.manifest["snapshots"])
    for oid, archive in where.items():
        try:
            kind, size = objects.object_type(oid), objects.body_size(oid)
        except DbversError as e:
            raise BackupValidationError(archive.name, f"object {oid} is corrupt ({_short(e)})",
                                        member=_object_member(oid)) from None
        if kind == "snapshot" and claims.get(oid) != size:
            claimed = "nothing" if oid not in claims else f"{claims[oid]:,} bytes"
            raise BackupValidationError(
                archive.name, f"snapshot {oid[:12]} expands to {size:,} bytes but backup.json claims {claimed}",
                member=_object_member(oid))


def _check_objects(objects: ObjectStore, where: dict[str, Path], integrity: bool,
                   scratch: Path) -> tuple[dict[str, str], int]:
    """Every object against its id (and, with *integrity*, every snapshot's integrity_check)."""
    types: dict[str, str] = {}
    n_snap = 0
    for oid, archive in where.items():
        try:
            types[oid] = objects.verify(oid)
        except DbversError as e:
            raise BackupValidationError(archive.name, f"object {oid} is corrupt ({_short(e)})",
                                        member=_object_member(oid)) from None
        if types[oid] == "snapshot":
            n_snap += 1
            if integrity:
                tmp = scratch / f"{oid}.db"
                try:
                    objects.get_to_file(oid, tmp, "snapshot")
                    problems = snapshots.file_problems(tmp)
                except DbversError as e:
                    problems = [_short(e)]
                except Exception as e:  # apsw errors: not a database, malformed
                    problems = [str(e)]
                finally:
                    tmp.unlink(missing_ok=True)
                if problems:
                    raise BackupValidationError(
                        archive.name, f"snapshot {oid} fails integrity_check ({problems[0][:100]})",
                        member=_object_member(oid))
    return types, n_snap


def _short(e: Exception) -> str:
    s = str(e)
    m = re.search(r"\(([^()]*)\)", s)
    return m[1] if m else s


def _roots_of(metadata: dict[str, bytes]) -> tuple[dict[str, str], str, set[str]]:
    """The refs, the HEAD text and the reflog ids of an archive's metadata."""
    refs: dict[str, str] = {}
    reflog: set[str] = set()
    for name, data in metadata.items():
        text = data.decode("utf-8", errors="replace")
        if name.startswith("refs/") and keyframe_record_commit(name) is None:  # a keyframe ref is no root
            value = text.strip()
            if _ID_RE.match(value):
                refs[name] = value
        elif name.startswith("logs/"):
            for line in text.splitlines():
                parts = line.split(" ", 3)
                for v in parts[:2]:
                    if _ID_RE.match(v) and v != "0" * 64:
                        reflog.add(v)
    head = metadata.get("HEAD", b"").decode("utf-8", errors="replace").strip()
    return refs, head, reflog


def _check_complete(objects: ObjectStore, types: dict[str, str], metadata: dict[str, bytes],
                    label: str) -> int:
    """Every commit the refs, HEAD and reflogs reach is there, with its objects. Returns commits."""
    refs, head, reflog = _roots_of(metadata)
    starts: list[tuple[str, str]] = [(oid, ref) for ref, oid in refs.items()]
    if head.startswith("ref: "):
        if not head[5:].startswith(HEADS):
            raise BackupValidationError(label, f"its HEAD names {head[5:][:80]!r}, which is not a branch")
        if head[5:] not in refs:
            raise BackupValidationError(label, f"HEAD names {head[5:]}, which the backup lacks")
    elif _ID_RE.match(head):
        starts.append((head, "HEAD"))
    else:
        raise BackupValidationError(label, "its HEAD is malformed")
    starts += [(oid, "a reflog entry") for oid in sorted(reflog) if oid in types]
    seen: set[str] = set()
    stack = starts
    while stack:
        oid, why = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if types.get(oid) != "commit":
            raise BackupValidationError(label, f"commit {oid[:12]} (reached from {why}) is missing from the backup chain")
        try:
            c = Commit.from_bytes(objects.get(oid, "commit"))
        except (ValueError, KeyError, TypeError) as e:
            raise BackupValidationError(label, f"commit {oid[:12]} is unreadable ({e})") from None
        wanted = c.typed_references()
        kf = metadata.get(f"refs/keyframes/{oid}") or metadata.get(f"keyframes/{oid}")
        if kf:
            wanted.append((kf.decode(errors="replace").strip(), "snapshot"))
        for ref_oid, kind in wanted:
            if types.get(ref_oid) != kind:
                raise BackupValidationError(label, f"commit {oid[:12]} needs {kind} {ref_oid[:12]}, "
                                                   "which is missing from the backup chain")
        if not c.parents and not c.snapshot:
            raise BackupValidationError(label, f"root commit {oid[:12]} has no snapshot")
        stack.extend((p, f"commit {oid[:12]}") for p in c.parents)
    return len(seen)


def _root_commits(objects: ObjectStore, commits: list[str]) -> set[str]:
    roots: set[str] = set()
    for oid in commits:
        try:
            if not Commit.from_bytes(objects.get(oid, "commit")).parents:
                roots.add(oid)
        except (ValueError, KeyError, TypeError):
            continue
    return roots


def _check_same_history(repo: Repo, objects: ObjectStore, types: dict[str, str], label: str) -> None:
    """Refuse to graft a foreign history onto *repo* unless asked (``--yes``).

    The roots are computed from the commits themselves, never taken from
    backup.json's ``roots`` (a forger re-signs the manifest at will).
    """
    theirs = _root_commits(objects, [oid for oid, kind in types.items() if kind == "commit"])
    with repo._locked():
        ours = _root_commits(repo.objects, sorted(repo.reachable_commits()))
    if ours and not ours & theirs:
        raise BackupError(
            f"backup {label} shares no history with the repository of {repo.path.name} (no common root "
            "commit): restoring would move its branch onto another database's history; "
            "pass --yes to restore anyway"
        )


def verify(path: str | os.PathLike[str]) -> list[VerifyResult]:
    """Check an archive (with the chain it needs) or every archive of a directory.

    Every member's checksums, the archive's structure, every object against its
    id, ``PRAGMA integrity_check`` of every snapshot, and that the history is
    complete. Results are remembered in the directory for ``--list``.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = _archives(p)
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
        chain = [c for c, _ in _chain(path)]
        result.kind = "incremental" if len(chain) > 1 else "full"
        for earlier in chain[:-1]:
            prior = checked.get(earlier)
            if prior is not None and not prior.ok:
                raise BackupValidationError(path.name, f"its parent backup {earlier.name} is damaged ({prior.problem})")
        scanned, where = _extract_chain(chain, scratch)
        objects = LocalObjectStore(scratch / "objects")
        _check_claims(objects, where, scanned)
        types, n_snap = _check_objects(objects, where, True, scratch)
        result.commits = _check_complete(objects, types, scanned[-1].metadata, path.name)
        result.objects = len(scanned[-1].objects)
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


# -- restore ---------------------------------------------------------------------------


def _check_unlocked(target: Path, timeout: float) -> None:
    """Refuse a target that another process holds open for writing (a write transaction)."""
    import time

    start = time.monotonic()
    conn = sqlite3.connect(str(target), timeout=timeout, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise BackupLockError(str(target), time.monotonic() - start) from None
        raise BackupError(f"cannot open {target}: {e}") from None
    except sqlite3.DatabaseError as e:
        raise NotADatabaseError(str(target), str(e)) from None
    finally:
        conn.close()


def _user_version(target: Path) -> int | None:
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=_timeout())
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _remove_stale_restore_dirs(parent: Path) -> None:
    for p in parent.glob(TMP_PREFIX + "restore-*"):
        pid = _owner_pid(p, "restore")
        if pid is not None and p.is_dir() and not p.is_symlink() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


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
    import warnings

    result = restore_archive(archive, to, at, yes=yes, store=store)
    for w in result.warnings:
        warnings.warn(w, stacklevel=2)
    return result.repo


def restore_archive(archive: str | os.PathLike[str], to: str | os.PathLike[str] | None = None,
                    at: str = "HEAD", *, yes: bool = False,
                    store: str | os.PathLike[str] | None = None) -> RestoreResult:
    from .repo import STORE_NAME, Repo

    src = Path(archive).expanduser().resolve()
    if not src.is_file():
        raise BackupError(f"no such backup: {src}")
    chain_m = _chain(src)
    chain = [p for p, _ in chain_m]
    top = chain_m[-1][1]
    name = top["database"]["name"]
    target = Path(to).expanduser().resolve() if to else Path.cwd() / name
    if target.is_dir():
        target = target / name
    if not target.parent.is_dir():
        raise UsageError(f"directory {target.parent} does not exist")
    store_dir = Path(store).expanduser().resolve() if store else target.parent / STORE_NAME
    timeout = _timeout()
    notes: list[str] = []

    # What is there now, and may it be replaced?
    existing: Repo | None = None
    if (store_dir / "config").is_file():
        tracked = (store_dir / read_config(store_dir).get("core", "database")).resolve()
        if tracked != target:
            raise UsageError(f"{store_dir} tracks {tracked}, not {target}; pass --store DIR")
        existing = Repo(store_dir, target)
        with existing._locked():  # its recovery finishes a restore a killed process left half done
            pass
    elif store_dir.exists() and (not store_dir.is_dir() or any(store_dir.iterdir())):
        raise UsageError(f"{store_dir} exists and is not a dbvers store; pass --store DIR")
    target_exists = target.exists() and (target.stat().st_size > 0 or existing is not None)
    if target_exists:
        try:
            sqlio.check_database_file(target)
            _check_unlocked(target, timeout)
        except NotADatabaseError as e:
            if not yes:
                raise BackupError(f"{e}; pass --yes to replace it with the backup") from None
            notes.append(f"{target} was not a readable SQLite database; replaced")
            target_exists = False
        else:
            if existing is None and not yes:
                raise BackupError(f"{target} exists and is not tracked by dbvers: restoring would replace "
                                  "its contents; pass --yes to replace it")

    # Space: the extracted members and the rebuilt database, twice over.
    member_bytes = 0
    est_db = top["database"]["size"]
    for _, m in chain_m:
        member_bytes += sum(mem["size"] for mem in m["members"])
        est_db = max([est_db, *[v for v in m["snapshots"].values() if isinstance(v, int)]])
    # The work directory becomes the new store by a rename, so it lives beside the store
    # (beside the target unless --store puts the store elsewhere).
    work_parent = target.parent if existing is not None else store_dir.parent
    if not work_parent.is_dir():
        raise UsageError(f"directory {work_parent} does not exist")
    _check_space(work_parent, 2 * (member_bytes + est_db))
    if os.stat(work_parent).st_dev != os.stat(target.parent).st_dev:
        _check_space(target.parent, 2 * est_db)

    _remove_stale_restore_dirs(work_parent)
    work = work_parent / f"{TMP_PREFIX}restore-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        work.mkdir()
        scanned, where = _extract_chain(chain, work)
        metadata = scanned[-1].metadata
        _write_metadata(work, metadata)
        final_store = existing.store_dir if existing else store_dir
        cfg = parse_config(metadata.get("config", b"").decode("utf-8", "replace"))
        if not cfg.has_section("core"):
            cfg.add_section("core")
        cfg.set("core", "format", str(min(top["store_format"], FORMAT_VERSION)))
        cfg.set("core", "database", os.path.relpath(target, final_store))
        write_config(work, cfg)
        objects = LocalObjectStore(work / "objects")
        _check_claims(objects, where, scanned)
        types, _ = _check_objects(objects, where, False, work)
        _check_complete(objects, types, metadata, src.name)
        if existing is not None and not yes:
            _check_same_history(existing, objects, types, src.name)

        wrepo = Repo(work, target)
        refs, head_text, _ = _roots_of(metadata)
        branch: str | None = None
        if at in ("HEAD", "@"):
            if head_text.startswith("ref: "):
                branch = head_text[5:].removeprefix(HEADS)
                oid = refs[head_text[5:]]
            else:
                oid = head_text
        elif HEADS + at in refs:
            branch, oid = at, refs[HEADS + at]
        else:
            try:
                oid = wrepo.resolve(at)
            except DbversError as e:
                raise BackupError(f"{e} (in backup {src.name})") from None
        try:
            state = wrepo.materialize_verified(oid)
        except CorruptObjectError as e:
            raise BackupValidationError(src.name, f"the rebuilt state is not sound ({e})") from None

        want_uv = wrepo.get_commit(oid).pragmas.get("user_version", 0)
        if target_exists:
            have_uv = _user_version(target)
            if have_uv is not None and have_uv != want_uv:
                msg = (f"{target.name} has user_version {have_uv} but the backup's state has {want_uv} "
                       "(a different schema version)")
                if not yes:
                    raise BackupSchemaError(f"{msg}; pass --yes to restore anyway")
                notes.append(msg)

        why = f"restore: {at} from backup {src.name}"
        if existing is None:
            created = True
            if branch is not None:
                wrepo.refs.set_head(branch=branch, message=why)
            else:
                wrepo.refs.set_head(commit=oid, message=why)
            # One recoverable operation: the store goes in first, holding the verified state
            # and a journal saying the database is still to be installed; the database goes
            # in last. A process killed anywhere leaves either no store and the old database,
            # or a store whose journal the next command (a rerun of restore included) finishes.
            staging = work / RESTORE_STATE
            os.replace(state, staging)
            write_atomic(work / RESTORE_JOURNAL, json.dumps({"commit": oid, "why": why}).encode())
            (work / "CHECKOUT").unlink(missing_ok=True)
            with wrepo.lock.held():  # the lock file moves with the directory: others wait for us
                if store_dir.is_dir():
                    store_dir.rmdir()  # empty (checked above)
                os.rename(work, store_dir)
                fsync_dir(store_dir.parent)
                repo = Repo(store_dir, target)
                finish_restore(repo)
        else:
            created = False
            repo = existing
            _merge_into(repo, work, metadata, state, oid, branch, why, yes)
    except DatabaseLockedError as e:
        raise BackupLockError(e.path, e.waited) from None
    except StorageError as e:
        raise BackupIOError(e.path, os.strerror(e.errno) if e.errno else str(e)) from None
    except OSError as e:
        raise _io_error(target, e) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RestoreResult(repo, oid, branch, src, chain, created, notes)


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
        if not isinstance(oid, str) or not _ID_RE.match(oid):
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
            sqlio.copy_in(staging, target, repo._timeout())
            repo.cache_dir.mkdir(exist_ok=True)
            if oid:
                os.replace(staging, repo._cache_path(oid))  # it is HEAD's state: the base cache
            else:
                staging.unlink()
        else:
            _install_new(staging, target)
        if oid:
            repo._record_clean(sqlio.fingerprint(target), oid)
    journal.unlink(missing_ok=True)
    fsync_dir(repo.store_dir)
    return True


def _merge_into(repo: Repo, work: Path, metadata: dict[str, bytes], state: Path, oid: str,
                branch: str | None, why: str, yes: bool) -> None:
    """Restore into an existing repository: add the objects, then move the working database."""
    import apsw

    with repo._locked():
        try:
            dirty = [] if yes else repo._dirty_tables()
        except (DbversError, apsw.Error, sqlite3.DatabaseError) as e:
            # Locks and a damaged store keep their own messages; anything else means the
            # working file itself cannot be read (whichever class reports it).
            if isinstance(e, (DatabaseLockedError, RepositoryBusyError, CorruptObjectError)) or (
                    isinstance(e, sqlite3.DatabaseError) and sqlio._is_busy(e)):
                raise
            detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise BackupError(f"{repo.path.name} cannot be read ({detail}), so its uncommitted changes cannot be "
                              "checked; pass --yes to replace it with the backup's state") from None
        if dirty:
            raise BackupError(f"uncommitted changes in {', '.join(dirty[:10])} would be lost by the restore; "
                              "commit them, or pass --yes to discard them")
        for d in sorted((work / "objects").iterdir()):
            for f in sorted(d.iterdir()):
                if not repo.objects.has(d.name + f.name):
                    with open(f, "rb") as raw:
                        repo.objects.put_raw(d.name + f.name, raw)
        for name, data in metadata.items():
            kf_commit = keyframe_record_commit(name)  # either layout: refs/keyframes/ or an old keyframes/
            value = data.decode("utf-8", "replace").strip()
            if kf_commit is not None and repo.refs.keyframe(kf_commit) is None and is_id(value):
                repo.refs.set_keyframe(kf_commit, value)
        refs, _, _ = _roots_of(metadata)
        for ref, value in sorted(refs.items()):
            if repo.refs.read(ref) is None:
                repo.refs.update(ref, value, expect=None, message=why)
        repo.cache_dir.mkdir(exist_ok=True)
        cached = repo._cache_path(oid)
        if not cached.exists():
            _move_file(state, cached)
        if branch is not None:
            new_head, new_ref = f"ref: {HEADS}{branch}\n", (HEADS + branch, oid)
        else:
            new_head, new_ref = f"{oid}\n", None
        repo._write_working(oid, head=new_head, ref=new_ref)
        repo._apply_intent(new_head, new_ref, why)


# -- sqlite3.Connection interop ------------------------------------------------------------


def _user_conn(conn: Any, action: str) -> str:
    """Check a user's connection; return its main database file ('' for in-memory)."""
    if not isinstance(conn, sqlite3.Connection):
        raise UsageError(f"{action} needs a sqlite3.Connection, not {type(conn).__name__} "
                         "(for another library, give dbvers a database file instead)")
    try:
        if conn.in_transaction:
            raise BackupError(f"the sqlite3.Connection has an open transaction; commit or roll it back "
                              f"before {action}")
        rows = conn.execute("PRAGMA database_list").fetchall()
    except sqlite3.ProgrammingError as e:
        raise BackupError(f"the sqlite3.Connection cannot be used here: {e}") from None
    return next((r[2] or "" for r in rows if r[1] == "main"), "")


def _same_file(a: str, b: Path) -> bool:
    return bool(a) and Path(a).resolve() == b.resolve()


def _sqlite3_error(e: sqlite3.Error, what: str, path: str) -> BackupError:
    if sqlio._is_busy(e):
        return BackupLockError(path or "(the connection's database)", 0.0)
    return BackupError(f"{what}: {e}")


def export_to(repo: Repo, conn: sqlite3.Connection, at: str = "HEAD") -> str:
    """Write the state of *at* into *conn*'s main database (replacing it, one transaction).

    The state goes through a private file that only the standard library's
    sqlite3 opens: no handle crosses between apsw and sqlite3, and large
    databases stream page by page instead of passing through memory.
    """
    main = _user_conn(conn, "export_to")
    if _same_file(main, repo.path):
        raise UsageError("this connection is the working database; use checkout to change it")
    with repo._locked():
        oid = repo.resolve(at)
        src = repo.materialize(oid)
        tmp = temp_path(repo.cache_dir, ".db")
        try:
            shutil.copyfile(src, tmp)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _io_error(tmp, e) from None
    try:
        want = conn.execute("PRAGMA page_size").fetchone()[0]
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if want != _page_size(tmp) and (not main or mode in ("wal", "memory")):
            # The backup API cannot change the page size of an in-memory or WAL target:
            # give our private copy the target's page size instead (a bare VACUUM would
            # renumber the rowids of tables without an INTEGER PRIMARY KEY).
            sqlio.rebuild_layout(tmp, int(want))
        source = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            source.backup(conn)
        finally:
            source.close()
    except sqlite3.Error as e:
        raise _sqlite3_error(e, "could not write into the connection", main) from None
    except OSError as e:
        raise _io_error(tmp, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    return oid


def import_from(repo: Repo, conn: sqlite3.Connection) -> None:
    """Make the working database a copy of *conn*'s main database (one transaction; not committed)."""
    main = _user_conn(conn, "import_from")
    if _same_file(main, repo.path):
        raise UsageError("this connection is the working database already")
    with repo._locked():
        repo.cache_dir.mkdir(exist_ok=True)
        tmp = temp_path(repo.cache_dir, ".db")
        try:
            dst = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                conn.backup(dst)
                # copy_in gives the state the working file's page size and auto_vacuum.
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
            if problems := snapshots.file_problems(tmp, quick=True):
                raise BackupError(f"the connection's database fails quick_check ({problems[0][:100]}); "
                                  "nothing was imported")
            (repo.cache_dir / "working.json").unlink(missing_ok=True)
            sqlio.copy_in(tmp, repo.path, repo._timeout())
        except sqlite3.Error as e:
            raise _sqlite3_error(e, "could not read the connection's database", main) from None
        except DatabaseLockedError as e:
            raise BackupLockError(e.path, e.waited) from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise _io_error(tmp, e) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
