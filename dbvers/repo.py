"""The repository: commit, materialize, checkout, branches, tags, log (fsck and gc in maintenance).

A repository is a working database plus a store directory. Every operation
holds the store's lock, writes objects first and moves a ref last (the commit
point), and touches the working database only through :mod:`dbvers.sqlio`.
"""

from __future__ import annotations

import contextlib
import getpass
import heapq
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from . import changes as ch
from . import maintenance, snapshots, sqlio
from .config import SCHEMA, Config, env_override, new_config, read_config, write_config
from .errors import (
    AmbiguousRefError,
    CheckoutJournalError,
    CorruptDatabaseError,
    CorruptObjectError,
    DamagedRefError,
    DbversError,
    DirtyWorkingDatabaseError,
    NothingToCommitError,
    RefExistsError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    StorageError,
    TableNotFoundError,
    UnfinishedMoveError,
    UnknownRefError,
    UnsupportedFormatError,
    UsageError,
)
from .frames import rows_frame
from .fsutil import (
    TMP_PREFIX,
    RepoLock,
    publish,
    remove_stale_temps,
    temp_path,
    temp_prefix,
    write_atomic,
)
from .maintenance import FsckReport, GcReport, ReflogExpireReport
from .objects import (
    FORMAT_VERSION,
    Commit,
    CommitLog,
    RowidFixups,
    Schema,
    SchemaChange,
    TableCounts,
    counts_summary,
)
from .schemadiff import describe_schema_changes, schema_changes
from .storage.base import Head, ReflogEntry
from .storage.local import LocalObjectStore
from .storage.local_refs import LocalRefStore
from .storage.refnames import HEADS, REMOTES, TAGS, check_ref_format, is_valid_ref, validate_name
from .values import read_rows

if TYPE_CHECKING:
    import pandas

    from .diff import Diff

STORE_NAME = ".dbvers"
_REV_RE = re.compile(r"^(?P<base>.*?)(?P<suffix>(?:[~^]\d*)*)$")
_OID_RE = re.compile(r"[0-9a-f]{64}")
# Per store, this process's private stand-in for a cache it can't write (a read-only store).
_private_caches: dict[Path, Path] = {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default_author(cfg: Config) -> str:
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


@dataclass
class Status:
    branch: str | None
    head: str | None
    changes: ch.Changes
    schema_changes: list[SchemaChange]
    pragmas_changed: dict[str, tuple[int, int]]
    sequences_changed: bool = False

    @property
    def clean(self) -> bool:
        return self.changes.empty and not self.pragmas_changed and not self.sequences_changed

    @property
    def dirty_tables(self) -> list[str]:
        names = set(self.changes.changed_tables)
        names.update(s.name for s in self.schema_changes)
        if self.sequences_changed:
            names.add("sqlite_sequence")
        if not names and self.changes.needs_keyframe:
            # Changes only a keyframe can carry (virtual tables' contents, sqlite_stat*).
            names.update(self.changes.untracked or ["(sqlite_stat tables)"])
        return sorted(names) or (["(database header)"] if self.pragmas_changed else [])

    # The changes hold the whole patchset (megabytes after a big update): the repr is one
    # bounded line; str() is what `dbvers status` prints, and notebooks get HTML.
    def __repr__(self) -> str:
        where = self.branch or f"detached at {(self.head or '')[:10]}"
        if self.clean:
            return f"<dbvers.Status {where}: clean>"
        counts = {t: c for t, c in self.changes.counts.items() if c.total}
        return (f"<dbvers.Status {where}: {counts_summary(counts)}, "
                f"{len(self.schema_changes)} schema change(s)>")

    def __str__(self) -> str:
        from .render.html import status_text

        return status_text(self, colour=False)

    def _repr_html_(self) -> str:
        from .render.html import status_html

        return status_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else str(self))

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "head": self.head,
            "clean": self.clean,
            "tables": {t: c.to_json() for t, c in sorted(self.changes.counts.items())},
            "schema_changes": [str(s) for s in self.schema_changes],
            "untracked": self.changes.untracked,
            "pragmas_changed": {k: list(v) for k, v in self.pragmas_changed.items()},
        }


def find_store(start: Path) -> Path:
    """Walk up from *start* to the first directory holding a ``.dbvers`` store (like git)."""
    start = start.resolve()
    for d in [start, *start.parents]:
        if (d / STORE_NAME / "config").is_file():
            return d / STORE_NAME
    raise RepositoryNotFoundError(str(start))


def init_repo(db_path: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None,
         message: str = "Initial commit", create: bool = False) -> Repo:
    """Start versioning *db_path*: create its store and commit its current state.

    A missing *db_path* is refused (a typo must not become an empty tracked
    database); ``create=True`` makes a new empty database there instead.
    """
    db = Path(db_path).resolve()
    store_dir = Path(store).resolve() if store else db.parent / STORE_NAME
    if (store_dir / "config").is_file():
        tracked = read_config(store_dir).get("core", "database", fallback="?")
        raise RepositoryExistsError(str(store_dir), str((store_dir / tracked).resolve()))
    if store_dir.exists() and any(store_dir.iterdir()):
        raise UsageError(f"{store_dir} exists and is not empty; choose another --store")
    if not db.exists():
        if not db.parent.is_dir():
            raise UsageError(f"directory {db.parent} does not exist")
        if not create:
            raise UsageError(f"{db} does not exist; check the name, or pass --create to start "
                             "a new empty database there")
        sqlio.create_empty(db)
    sqlio.check_database_file(db)

    # Build the store under a temporary name and rename it into place at the end,
    # so a killed init leaves no half-made repository behind.
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    building = store_dir.parent / f"{TMP_PREFIX}{store_dir.name}-{os.getpid()}"
    if building.exists():
        shutil.rmtree(building)
    for sub in ("objects", "refs/heads", "refs/tags", "logs", "cache"):
        (building / sub).mkdir(parents=True)
    cfg = new_config()
    cfg.read_dict(
        {
            "core": {"format": str(FORMAT_VERSION), "database": os.path.relpath(db, store_dir)},
            "snapshot": {k: SCHEMA["snapshot", k].default or "" for k in ("max_patch_ratio", "max_commits")},
        }
    )
    write_config(building, cfg)
    write_atomic(building / "HEAD", b"ref: refs/heads/main\n")
    try:
        repo = Repo(building, db)
        repo.commit(message, allow_empty=True)
        os.rename(building, store_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return Repo(store_dir, db)


def open_repo(db_path: str | os.PathLike[str] | None = None, *,
              store: str | os.PathLike[str] | None = None) -> Repo:
    """Open the repository of *db_path* (or the one found from the current directory)."""
    if store:
        store_dir = Path(store).resolve()
    elif db_path:
        db = Path(db_path).resolve()
        if db.is_dir():
            store_dir = find_store(db)
        else:
            store_dir = db.parent / STORE_NAME
            if not (store_dir / "config").is_file():
                raise RepositoryNotFoundError(str(db.parent))
    else:
        store_dir = find_store(Path.cwd())
    cfg = read_config(store_dir)
    db = (store_dir / cfg.get("core", "database")).resolve()
    if db_path and not Path(db_path).is_dir() and Path(db_path).resolve() != db:
        raise UsageError(f"{store_dir} tracks {db}, not {Path(db_path).resolve()}; use --store")
    return Repo(store_dir, db)


class Repo:
    def __init__(self, store_dir: Path, db_path: Path) -> None:
        self.store_dir = store_dir
        self.path = db_path
        self.config = read_config(store_dir)
        fmt = self.config.getint("core", "format", fallback=FORMAT_VERSION)
        if fmt > FORMAT_VERSION:
            raise UnsupportedFormatError(fmt, FORMAT_VERSION)
        self.objects = LocalObjectStore(store_dir / "objects")
        self.refs = LocalRefStore(store_dir)
        self.cache_dir = store_dir / "cache"
        self.keyframes_dir = store_dir / "keyframes"  # stores made before keyframe records were refs
        self.lock = RepoLock(store_dir / "lock", self.config.getfloat("lock", "timeout"))
        self._commits: dict[str, Commit] = {}
        # The planner's sqlite_stat* tables are versioned only when asked (guide: "What is versioned").
        self.version_stats = self.config.getboolean("stats", "version")
        # Why the last recovery couldn't use .dbvers/CHECKOUT (read-only commands run anyway).
        self.journal_problem: str | None = None

    def __repr__(self) -> str:
        return f"<dbvers.Repo {self.path}>"

    # -- plumbing ------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, *, write: bool = True,
                recovery_problems: list[str] | None = None) -> Iterator[None]:
        """Hold the store's lock (re-entrant per thread; other threads and processes wait),
        finishing a killed operation first.

        *write*: the operation changes the store. A read-only one (``write=False``)
        also runs on a store this process can't write, with a private cache, and
        despite a damaged checkout journal (which it reports in ``journal_problem``).
        With *recovery_problems* (fsck), a recovery that fails is noted there instead
        of raised: fsck must run whatever else is damaged.
        """
        self.lock.timeout = self._timeout()
        with self.lock.held(write) as fresh:
            self._choose_cache_dir()
            if fresh:
                try:
                    self._recover(write)
                except (DbversError, OSError, apsw.Error, ValueError) as e:
                    if recovery_problems is None:
                        raise
                    recovery_problems.append(
                        f"an interrupted operation could not be recovered ({str(e).splitlines()[0][:120]})")
            yield

    def _choose_cache_dir(self) -> None:
        """The store's cache, or (store or cache not writable) a private one outside the store."""
        store_cache = self.store_dir / "cache"
        if not self.lock.read_only and (not store_cache.exists() or os.access(store_cache, os.W_OK)):
            self.cache_dir = store_cache
            return
        key = self.store_dir.resolve()
        private = _private_caches.get(key)
        if private is None or not private.is_dir():
            import atexit
            import tempfile

            tmp_root = Path(tempfile.gettempdir())
            remove_stale_temps(tmp_root, pattern="cache-*")  # private caches of killed processes
            private = Path(tempfile.mkdtemp(prefix=temp_prefix("cache"), dir=tmp_root))
            # Kept until exit, not until this Repo goes: a live Diff may have pinned files here.
            atexit.register(shutil.rmtree, private, True)
            # Start from what the store's cache already knows (HEAD's state, the clean record).
            with contextlib.suppress(OSError, DbversError):
                head = self.head.commit
                names = ["working.json"] + ([f"{head}.db"] if head else [])
                for name in names:
                    if (store_cache / name).is_file():
                        shutil.copyfile(store_cache / name, private / name)
            _private_caches[key] = private
        self.cache_dir = private

    def _timeout(self) -> float:
        override = env_override("DBVERS_LOCK_TIMEOUT")
        return float(override) if override is not None else self.config.getfloat("lock", "timeout")

    def get_commit(self, oid: str) -> Commit:
        c = self._commits.get(oid)
        if c is None:
            c = Commit.from_bytes(self.objects.get(oid, "commit"))
            self._commits[oid] = c
        return c

    def get_schema(self, oid: str) -> Schema:
        return Schema.from_bytes(self.objects.get(oid, "schema"))

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
        m = _REV_RE.match(rev.strip())
        if not rev.strip() or not m:
            raise UnknownRefError(rev)
        base, suffix = m["base"], m["suffix"]
        oid = self._resolve_base(base or "HEAD", rev)
        for op, num in re.findall(r"([~^])(\d*)", suffix):
            n = int(num) if num else 1
            if op == "~":
                for _ in range(n):
                    parents = self.get_commit(oid).parents
                    if not parents:
                        raise UnknownRefError(rev, f"'{rev}' goes past the first commit")
                    oid = parents[0]
            elif n:
                parents = self.get_commit(oid).parents
                if len(parents) < n:
                    raise UnknownRefError(rev, f"'{rev}': commit has no parent {n}")
                oid = parents[n - 1]
        return oid

    def _resolve_base(self, name: str, rev: str) -> str:
        if name in ("HEAD", "@"):
            return self._head_commit()
        for ref in (TAGS + name, HEADS + name, name if name.startswith("refs/") else None):
            if ref and (oid := self.refs.lookup(ref)):
                return oid
        lowered = name.lower()
        if re.fullmatch(r"[0-9a-f]{4,64}", lowered):
            if len(lowered) == 64 and self.objects.has(lowered):
                return lowered
            candidates = [
                c for c in self.objects.with_prefix(lowered) if self._is_commit(c)
            ]
            if len(candidates) == 1:
                return candidates[0]
            if len(candidates) > 1:
                raise AmbiguousRefError(name, candidates)
        raise UnknownRefError(rev)

    def _is_commit(self, oid: str) -> bool:
        try:
            return self.objects.object_type(oid) == "commit"
        except DbversError:
            return False

    # -- materialization -----------------------------------------------------
    def snapshot_of(self, oid: str) -> str | None:
        """The snapshot to start *oid*'s state from: the commit's own, else a usable keyframe record."""
        c = self.get_commit(oid)
        if c.snapshot:
            return c.snapshot
        return self.keyframe_of(oid)

    def keyframe_of(self, oid: str) -> str | None:
        """The snapshot id the keyframe record of *oid* holds, if it names a stored object.

        A keyframe record is optional derived data (``dbvers snapshot``): one that
        is unreadable, garbage or names a missing object is treated as absent (fsck
        reports it), so materialization falls back to an older snapshot.
        """
        value = self.refs.keyframe(oid)
        if value is None or not self.objects.has(value):
            return None
        try:
            if self.objects.object_type(value) != "snapshot":
                return None
        except (DbversError, OSError):
            return None  # unreadable: an older snapshot serves, and fsck names this one
        return value

    def _cache_path(self, oid: str) -> Path:
        return self.cache_dir / f"{oid}.db"

    def _cached(self, oid: str) -> Path | None:
        """The cached materialization of *oid* if it looks whole; a damaged one is removed.

        The cache is derived data: whatever is wrong with a file there (garbage,
        truncation) costs a rebuild from the store, never a wrong answer or a crash.
        """
        p = self._cache_path(oid)
        if not p.exists():
            return None
        if snapshots.looks_whole(p):
            return p
        with contextlib.suppress(OSError):
            p.unlink()
        return None

    def materialize(self, oid: str, *, use_cache: bool = True) -> Path:
        """A private file holding commit *oid*'s state (cached; rebuilt from the store if needed).

        The nearest keyframe (snapshot, or a cached materialization) on the
        first-parent chain is loaded into memory, the patchsets after it are
        applied in order in one transaction, and the result's schema is checked
        against the commit before it is published to the cache. ``use_cache=False``
        rebuilds from the store's objects alone.
        """
        target = self._cache_path(oid)
        if use_cache and self._cached(oid) is not None:
            self.get_commit(oid)  # a corrupt or missing commit is refused even when its state is cached
            with contextlib.suppress(OSError):
                os.utime(target)
            return target
        chain: list[Commit] = []
        cur = oid
        while True:
            commit = self.get_commit(cur)
            conn = None
            if use_cache and cur != oid and (cached := self._cached(cur)) is not None:
                with contextlib.suppress(DbversError, OSError):
                    conn = snapshots.load_file(cached, cur, self.cache_dir)
                if conn is None:
                    cached.unlink(missing_ok=True)  # derived: the store rebuilds it
            if conn is None and commit.snapshot:
                conn = snapshots.load(self.objects, commit.snapshot, self.cache_dir)  # history: its damage is an error
            if conn is None and (kf := self.keyframe_of(cur)) is not None:
                # An optional keyframe that fails to load is skipped for an older one.
                with contextlib.suppress(DbversError):
                    conn = snapshots.load(self.objects, kf, self.cache_dir)
            if conn is not None:
                break
            chain.append(commit)
            if not commit.parents:
                raise CorruptObjectError(cur, "root commit without a snapshot")
            cur = commit.parents[0]
        try:
            chain.reverse()
            ch.apply_patchsets(conn, (
                (c.patch, self.objects.open_body(c.patch, "patch"),
                 RowidFixups.from_bytes(self.objects.get(c.rowids, "rowids")) if c.rowids else None)
                for c in chain if c.patch
            ))
            final = self.get_commit(oid)
            ch.restore_extras(conn, final.pragmas, final.sequences)
            # A commit made before statistics were left out recorded them in its schema.
            if final.schema not in (ch.read_schema(conn).id, ch.read_schema(conn, stats=True).id):
                raise CorruptObjectError(oid, "materialized schema does not match the commit")
            self.cache_dir.mkdir(exist_ok=True)
            snapshots.save(conn, target)
        finally:
            conn.close()
        self._prune_cache(keep={oid})
        return target

    def _prune_cache(self, keep: set[str]) -> None:
        keep_n = self.config.getint("cache", "keep")
        head = self.head.commit
        if head:
            keep = keep | {head}
        # Only materialized states: a temp file (a copy in the making) is its owner's to remove.
        files = sorted((p for p in self.cache_dir.glob("*.db") if not p.name.startswith(TMP_PREFIX)),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        kept = 0
        for p in files:
            if p.stem in keep:
                continue
            kept += 1
            if kept >= keep_n:
                p.unlink(missing_ok=True)

    # -- the "known clean" record: skip full diffs when the file hasn't changed --
    def _record_clean(self, fp: str | None, oid: str) -> None:
        if fp is not None:
            write_atomic(self.cache_dir / "working.json", json.dumps({"fingerprint": fp, "commit": oid}).encode())

    def _known_clean(self) -> bool:
        """True when the working database provably still holds HEAD's state (unchanged file)."""
        try:
            rec = json.loads((self.cache_dir / "working.json").read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(rec, dict):
            return False  # derived data gone bad: the next full status rewrites it
        fp = sqlio.fingerprint(self.path)
        return fp is not None and rec.get("fingerprint") == fp and rec.get("commit") == self.head.commit

    def _copy_out(self) -> Path:
        """A private copy of the working database's current committed state."""
        self.cache_dir.mkdir(exist_ok=True)
        tmp = temp_path(self.cache_dir, ".db")
        try:
            sqlio.copy_out(self.path, tmp, self._timeout())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    @contextlib.contextmanager
    def _reading_copy(self, copy: Path) -> Iterator[None]:
        """Turn SQLite's "malformed" while reading *copy* (a private copy of the working
        database) into the user's error: the copy has the working file's damaged pages."""
        import apsw

        try:
            yield
        except snapshots.IntegrityError as e:
            raise CorruptDatabaseError(str(self.path), e.problems[0][:100], self._corrupt_fix()) from None
        except (apsw.CorruptError, apsw.NotADBError) as e:
            try:
                damaged = bool(snapshots.file_problems(copy, quick=True))
            except apsw.Error:
                damaged = True
            if not damaged:
                raise  # the copy is sound: the damage is in dbvers's own files
            raise CorruptDatabaseError(str(self.path), str(e), self._corrupt_fix()) from None

    def _corrupt_fix(self) -> str:
        if self.head.commit is None:
            return "repair it (e.g. sqlite3's .recover) and run the command again"
        return ""

    def _compare(self, new_file: Path, old_file: Path, *, rowids: bool = False) -> tuple[ch.Changes, Any]:
        """What turns *old_file* into *new_file*; with *rowids*, also the hidden rowids a
        replay of the patchset would get wrong (what a commit records)."""
        conn = ch.open_private(new_file)
        try:
            ch.attach(conn, old_file)
            changes = ch.compute_changes(conn, stats=self.version_stats)
            if rowids and changes.patchset and not changes.schema_changed:
                changes.rowids = ch.rowid_fixups(conn, changes)
            extras = (
                ch.read_schema(conn, stats=self.version_stats),
                ch.read_pragmas(conn),
                ch.read_sequences(conn),
                schema_changes(conn, stats=self.version_stats),
            )
            ch.detach(conn)
        finally:
            conn.close()
        return changes, extras

    def _compare_with(self, new_file: Path, oid: str, *, rowids: bool = False) -> tuple[ch.Changes, Any]:
        """``_compare`` against commit *oid*'s materialized state; a cached state that SQLite
        finds damaged inside (past what ``looks_whole`` checks) is rebuilt from the store once."""
        try:
            return self._compare(new_file, self.materialize(oid), rowids=rowids)
        except (apsw.CorruptError, apsw.NotADBError):
            self._cache_path(oid).unlink(missing_ok=True)
        return self._compare(new_file, self.materialize(oid, use_cache=False), rowids=rowids)

    # -- status and commit ---------------------------------------------------
    def status(self) -> Status:
        with self._locked(write=False):
            head = self.head
            if head.commit is not None and self._known_clean():
                hc = self.get_commit(head.commit)
                schema = self.get_schema(hc.schema)
                virtual = sorted(e.name for e in schema.entries
                                 if e.type == "table" and (e.sql or "").upper().startswith("CREATE VIRTUAL"))
                return Status(head.branch, head.commit,
                              ch.Changes(None, {}, False, untracked=virtual), [], {})
            if head.commit is None:
                raise UnknownRefError("HEAD", "HEAD has no commit yet")
            return self._full_status(head)

    def _full_status(self, head: Head) -> Status:
        """Diff the working database against HEAD (and remember it if they are equal)."""
        assert head.commit is not None
        fp = sqlio.fingerprint(self.path)
        tmp = self._copy_out()
        try:
            with self._reading_copy(tmp):
                changes, (_, pragmas, sequences, sch) = self._compare_with(tmp, head.commit)
        finally:
            tmp.unlink(missing_ok=True)
        hc = self.get_commit(head.commit)
        st = Status(
            head.branch, head.commit, changes, sch,
            {k: (hc.pragmas.get(k, 0), v) for k, v in pragmas.items() if hc.pragmas.get(k, 0) != v},
            sequences != hc.sequences,
        )
        if st.clean:
            self._record_clean(fp, head.commit)
        return st

    def _keyframe_reason(self, parent: str | None, changes: ch.Changes | None, patch_size: int) -> str | None:
        if parent is None or changes is None:
            return "first commit"
        if changes.schema_changed:
            return "schema changed"
        if changes.needs_keyframe:
            return changes.needs_keyframe[0]
        max_commits = self.config.getint("snapshot", "max_commits")
        ratio = self.config.getfloat("snapshot", "max_patch_ratio")
        total, n, cur = patch_size, 1, parent
        while True:
            snap = self.snapshot_of(cur)
            if snap:
                if total > ratio * self.objects.stored_size(snap):
                    return "patches since the last snapshot passed max_patch_ratio"
                break
            c = self.get_commit(cur)
            if c.patch:
                total += self.objects.stored_size(c.patch)
            n += 1
            cur = c.parents[0]
        if n >= max_commits:
            return "max_commits since the last snapshot"
        return None

    def commit(self, message: str, *, allow_empty: bool = False, author: str | None = None,
               meta: dict[str, Any] | None = None) -> Commit:
        """Record the working database's current state as a new commit on HEAD."""
        if not message.strip():
            raise UsageError("empty commit message; pass -m MESSAGE")
        with self._locked():
            head = self.head
            parent = head.commit
            if parent is not None and not allow_empty and self._known_clean():
                raise NothingToCommitError()
            fp = sqlio.fingerprint(self.path)  # before the copy: a write during it makes it stale
            tmp = self._copy_out()
            try:
                if parent is None:
                    with self._reading_copy(tmp):
                        conn = ch.open_private(tmp)
                        try:
                            extras = (ch.read_schema(conn, stats=self.version_stats), ch.read_pragmas(conn),
                                      ch.read_sequences(conn), [])
                            counts = {
                                t: TableCounts(inserts=int(conn.execute(f"SELECT count(*) FROM {ch.quote(t)}").fetchone()[0]))
                                for t in ch.classify_tables(conn).tracked
                            }
                        finally:
                            conn.close()
                    changes = None
                else:
                    with self._reading_copy(tmp):
                        changes, extras = self._compare_with(tmp, parent, rowids=True)
                    counts = changes.counts
                schema, pragmas, sequences, _ = extras
                if changes is not None and parent is not None and not allow_empty:
                    pc = self.get_commit(parent)
                    if changes.empty and pragmas == pc.pragmas and sequences == pc.sequences:
                        raise NothingToCommitError()
                patch_id = None
                if changes is not None and changes.patchset and not changes.schema_changed:
                    patch_id = self.objects.put_bytes("patch", changes.patchset)
                reason = self._keyframe_reason(
                    parent, changes, self.objects.stored_size(patch_id) if patch_id else 0
                )
                with self._reading_copy(tmp):
                    snap_id = snapshots.make(self.objects, tmp) if reason else None
                rowids_id = None
                if patch_id and changes is not None and changes.rowids is not None:
                    rowids_id = self.objects.put_bytes("rowids", changes.rowids.to_bytes())
                schema_id = self.objects.put_bytes("schema", schema.to_bytes())
                commit_meta = dict(meta or {})
                if reason:
                    commit_meta["keyframe"] = reason
                if changes is not None and changes.key_changed:
                    commit_meta["key_changed"] = changes.key_changed
                commit = Commit(
                    parents=(parent,) if parent else (),
                    schema=schema_id,
                    patch=patch_id,
                    snapshot=snap_id,
                    message=message.strip(),
                    author=author or _default_author(self.config),
                    timestamp=_now(),
                    counts=counts,
                    pragmas=pragmas,
                    sequences=sequences,
                    meta=commit_meta,
                    rowids=rowids_id,
                )
                oid = self.objects.put_bytes("commit", commit.to_bytes())
                self._move_head(head, oid, f"commit: {commit.summary}")
                self._commits[oid] = commit
                # Past the commit point only derived data is written: a failure here must not
                # report the (done) commit as failed; the cache and clean record rebuild later.
                with contextlib.suppress(OSError, DbversError):
                    # The copy we diffed is exactly the committed state: it becomes the base cache.
                    publish(tmp, self._cache_path(oid))
                    self._record_clean(fp, oid)
                    self._prune_cache(keep={oid})
                return commit
            finally:
                tmp.unlink(missing_ok=True)

    def _move_head(self, head: Head, new: str, message: str) -> None:
        if head.branch is not None:
            self.refs.update(HEADS + head.branch, new, expect=head.commit, message=message)
        else:
            self.refs.set_head(commit=new, message=message)

    # -- history -------------------------------------------------------------
    def log(self, ref: str = "HEAD", n: int | None = None) -> list[Commit]:
        """Commits reachable from *ref*, newest first (a list; notebooks show it as a table)."""
        start = self.resolve(ref)
        out: list[Commit] = CommitLog(repo=self)
        seen = {start}
        first = self.get_commit(start)
        heap: list[tuple[float, str]] = [(_newest_first(first.timestamp), start)]
        while heap and (n is None or len(out) < n):
            _, oid = heapq.heappop(heap)
            c = self.get_commit(oid)
            out.append(c)
            for p in c.parents:
                if p not in seen:
                    seen.add(p)
                    heapq.heappush(heap, (_newest_first(self.get_commit(p).timestamp), p))
        return out

    def show(self, ref: str = "HEAD") -> tuple[Commit, list[SchemaChange]]:
        """A commit and its schema changes against its first parent."""
        oid = self.resolve(ref)
        c = self.get_commit(oid)
        if not c.parents:
            return c, describe_schema_changes(Schema(()), self.get_schema(c.schema))
        old = self.get_schema(self.get_commit(c.parents[0]).schema)
        return c, describe_schema_changes(old, self.get_schema(c.schema))

    # -- branches and tags ---------------------------------------------------
    def branches(self) -> dict[str, str]:
        return self.refs.branches()

    def tags(self) -> dict[str, str]:
        return self.refs.tags()

    def branch(self, name: str, at: str = "HEAD", *, force: bool = False) -> str:
        validate_name(name)
        with self._locked():
            oid = self.resolve(at)
            current = self.refs.read(HEADS + name)
            if current and not force:
                raise RefExistsError(name, "branch")
            self.refs.update(HEADS + name, oid, expect=current, message=f"branch: created from {at}")
            return oid

    def delete_branch(self, name: str) -> str:
        validate_name(name)
        with self._locked():
            oid = self.refs.read(HEADS + name)
            if oid is None:
                raise UnknownRefError(name, f"no branch named '{name}'")
            if self.head.branch == name:
                raise UsageError(f"cannot delete branch '{name}': it is checked out")
            self.refs.delete(HEADS + name, message="branch: deleted")
            return oid

    def tag(self, name: str, at: str = "HEAD", *, force: bool = False) -> str:
        validate_name(name)
        with self._locked():
            oid = self.resolve(at)
            current = self.refs.read(TAGS + name)
            if current and not force:
                raise RefExistsError(name, "tag")
            self.refs.update(TAGS + name, oid, expect=current, message=f"tag: {at}")
            return oid

    def delete_tag(self, name: str) -> str:
        validate_name(name)
        with self._locked():
            oid = self.refs.read(TAGS + name)
            if oid is None:
                raise UnknownRefError(name, f"no tag named '{name}'")
            self.refs.delete(TAGS + name, message="tag: deleted")
            return oid

    # -- moving the working database -----------------------------------------
    def _dirty_tables(self) -> list[str]:
        """Tables whose uncommitted changes would be lost (empty when clean)."""
        head = self.head
        if head.commit is None or not self.path.exists() or self._known_clean():
            return []  # a deleted working database has nothing to lose
        return self._full_status(head).dirty_tables

    def materialize_verified(self, oid: str) -> Path:
        """``materialize``, then ``PRAGMA quick_check``: a state fit to hand to a user.

        A cached state that fails the check is derived data gone bad: it is
        dropped and rebuilt from the store once; only a rebuilt state that fails is
        an error.
        """
        for attempt in (1, 2):
            src = self.materialize(oid, use_cache=attempt == 1)
            try:
                problems = snapshots.file_problems(src, quick=True)
            except apsw.Error as e:
                problems = [str(e)]
            if not problems:
                return src
            src.unlink(missing_ok=True)
            if attempt == 2:
                raise CorruptObjectError(oid, f"materialized state fails quick_check: {problems[0][:100]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_working(self, oid: str, *, head: str | None = None,
                       ref: tuple[str, str | None] | None = None) -> None:
        """Replace the working database with commit *oid*'s state, verified, in one transaction.

        Before the copy, the ref moves that must follow it (*head*: new HEAD
        text; *ref*: a ref name and its new value) are written to a pending file,
        so a process killed after the copy is finished by the next one.
        """
        src = self.materialize_verified(oid)
        # The refs must be movable before the working database changes (read-only logs, a folder in
        # the way): otherwise the copy would be made and the command fail after it.
        self.refs.check_writable([*([ref[0]] if ref else []), *(["HEAD"] if head else [])])
        intent = {"target": oid, "head": head, "ref": list(ref) if ref else None}
        write_atomic(self.store_dir / "CHECKOUT", json.dumps(intent).encode())
        (self.cache_dir / "working.json").unlink(missing_ok=True)
        try:
            sqlio.copy_in(src, self.path, self._timeout())
        except DbversError:
            # The copy's transaction never committed (locked, disk full, ...): the working
            # database is unchanged, so the ref moves must not be finished by a later recovery.
            (self.store_dir / "CHECKOUT").unlink(missing_ok=True)
            raise
        self._record_clean(sqlio.fingerprint(self.path), oid)

    def _apply_intent(self, head: str | None, ref: list[Any] | tuple[Any, ...] | None, why: str) -> None:
        # Both moves are proven writable before the first: a failure can't leave only the branch moved.
        self.refs.check_writable([*([ref[0]] if ref else []), *(["HEAD"] if head else [])])
        if ref:
            name, new = ref
            current = self.refs.read(name)
            if current != new:
                self.refs.update(name, new, expect=current, message=why)
        if head and self.refs.head_text() != head:
            if head.startswith("ref: "):
                self.refs.set_head(branch=head[5:].strip().removeprefix(HEADS), message=why)
            else:
                self.refs.set_head(commit=head.strip(), message=why)
        (self.store_dir / "CHECKOUT").unlink(missing_ok=True)

    def _finish_move(self, head: str | None, ref: tuple[str, str | None] | None, why: str,
                     written: str | None) -> None:
        """Move the refs after the working database was (or was not) rewritten to *written*."""
        try:
            self._apply_intent(head, ref, why)
        except StorageError as e:
            if written is None:
                raise  # nothing was changed: the plain error says so
            # The CHECKOUT record stays: the next command finishes the move once the store is writable.
            raise UnfinishedMoveError(written, e.path, os.strerror(e.errno) if e.errno else str(e)) from None

    def _recover(self, write: bool = True) -> None:
        """Clean up after killed processes and finish or forget a checkout/reset one left half done.

        The working database was copied in within one transaction, so it holds
        either the old or the target state; the refs are moved only if it holds
        the target. A journal that can't be used (damaged, or naming a commit the
        store can't read) refuses write commands with :class:`CheckoutJournalError`;
        read-only ones run and report it in ``journal_problem``.
        """
        self.journal_problem = None
        pending = self.store_dir / "CHECKOUT"
        if self.lock.read_only:
            # Nothing can be cleaned or finished in a store this process can't write; a damaged
            # journal is still worth a word from fsck and status.
            if pending.exists():
                try:
                    self._read_journal(pending)
                except CheckoutJournalError as e:
                    self.journal_problem = str(e)
            return
        # Temp files of killed processes only: a live process's (a Diff's pinned states,
        # another thread's copy) stay, whoever sweeps (see fsutil.remove_stale_temps).
        for d in (self.store_dir, self.store_dir / "cache", self.objects.root, self.keyframes_dir):
            remove_stale_temps(d)
        remove_stale_temps(self.store_dir / "refs", recursive=True)
        remove_stale_temps(self.store_dir / "logs", recursive=True)  # check_writable's probes
        if (self.store_dir / "RESTORE").is_file():
            # A restore from a backup installed this store but was killed before the database.
            from .backup import finish_restore

            finish_restore(self)
        if not pending.exists() and not pending.is_symlink():
            return
        try:
            target, head, ref = self._read_journal(pending)
            if head or ref:
                tmp = self._copy_out()
                try:
                    changes, (_, pragmas, _, _) = self._compare(tmp, self.materialize(target))
                finally:
                    tmp.unlink(missing_ok=True)
                if changes.empty and pragmas == self.get_commit(target).pragmas:
                    self._apply_intent(head, ref, "recovered after interruption")
            pending.unlink(missing_ok=True)
        except DbversError as e:
            if write:
                raise
            self.journal_problem = str(e)

    def _read_journal(self, pending: Path) -> tuple[str, str | None, list[str] | None]:
        """The checkout journal's (target, new HEAD text, [ref, new id]), checked field by field."""
        try:
            intent = json.loads(pending.read_bytes())
        except OSError as e:
            raise CheckoutJournalError(str(pending), e.strerror or str(e)) from None
        except ValueError:
            raise CheckoutJournalError(str(pending), "not JSON") from None
        if not isinstance(intent, dict):
            raise CheckoutJournalError(str(pending), "not a JSON object")
        target, head, ref = intent.get("target"), intent.get("head"), intent.get("ref")
        if not isinstance(target, str) or not _OID_RE.fullmatch(target):
            raise CheckoutJournalError(str(pending), "no valid target commit id")
        if head is not None:
            name = head[5:].strip().removeprefix(HEADS) if isinstance(head, str) and head.startswith(
                "ref: " + HEADS) else None
            if not isinstance(head, str) or not (
                    _OID_RE.fullmatch(head.strip()) or (name and self._valid_name(name))):
                raise CheckoutJournalError(str(pending), "its new HEAD is not a branch or a commit id")
        if ref is not None and not (
                isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str)
                and ref[0].startswith(HEADS) and self._valid_name(ref[0].removeprefix(HEADS))
                and isinstance(ref[1], str) and _OID_RE.fullmatch(ref[1])):
            raise CheckoutJournalError(str(pending), "its branch update is not a branch and a commit id")
        try:
            self.get_commit(target)
        except DbversError as e:
            raise CheckoutJournalError(str(pending), f"its target commit {target[:12]} can't be read: "
                                       f"{str(e).split(';')[0]}") from None
        return target, head, ref

    @staticmethod
    def _valid_name(name: str) -> bool:
        try:
            validate_name(name)
        except DbversError:
            return False
        return True

    def checkout(self, ref: str, *, force: bool = False, create_branch: str | None = None) -> str:
        """Make *ref* current: a branch attaches HEAD, anything else detaches it (like git).

        Uncommitted changes stay when the target is HEAD's commit (as in git);
        otherwise they must be committed first, or discarded with *force*.
        """
        with self._locked():
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
            why = f"checkout: moving to {create_branch or ref}"
            written = None
            if oid != head.commit or force:
                if not force and (dirty := self._dirty_tables()):
                    raise DirtyWorkingDatabaseError(dirty, "checkout")
                self._write_working(oid, head=new_head, ref=new_ref)
                written = oid
            self._finish_move(new_head, new_ref, why, written)
            self._prune_cache(keep={oid})
            return oid

    def reset(self, ref: str = "HEAD", *, hard: bool = True, force: bool = False) -> str:
        """Move the current branch (or detached HEAD) to *ref*; ``hard`` also rewrites the working database."""
        with self._locked():
            oid = self.resolve(ref)
            head = self.head
            if head.branch is not None:
                new_head, new_ref = None, (HEADS + head.branch, oid)
            else:
                new_head, new_ref = f"{oid}\n", None
            written = None
            if hard:
                if not force and (dirty := self._dirty_tables()):
                    raise DirtyWorkingDatabaseError(dirty, "reset --hard")
                self._write_working(oid, head=new_head, ref=new_ref)
                written = oid
            self._finish_move(new_head, new_ref, f"reset: moving to {ref}", written)
            return oid

    def restore(self, *, force: bool = False) -> str:
        """Throw away uncommitted changes: make the working database HEAD's state again."""
        with self._locked():
            oid = self._head_commit()
            if not force and (dirty := self._dirty_tables()):
                raise DirtyWorkingDatabaseError(dirty, "restore")
            self._write_working(oid)
            self._apply_intent(None, None, "restore")
            return oid

    # -- reading data ----------------------------------------------------------
    def history(self, table: str, pk: Any, ref: str = "HEAD") -> pandas.DataFrame:
        """Every commit that changed one row (``pk``: a value, or a tuple for composite keys)."""
        from .history import row_history

        with self._locked(write=False):
            return row_history(self, table, pk, ref)

    def diff(self, a: str | None = "HEAD", b: str | None = None) -> Diff:
        """What changed from *a* to *b* (a ref, or ``None`` for the working database)."""
        from .diff import Diff, changed_keys

        with self._locked(write=False):
            owned: list[Path] = []

            def side(ref: str | None) -> tuple[Path, str, str | None]:
                if ref is None:
                    tmp = self._copy_out()
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
        with self._locked(write=False):
            tmp = None
            if at is None:
                path = tmp = self._copy_out()
                label = "the working database"
            else:
                path = self.materialize(self.resolve(at))
                label = at
            try:
                with self._reading_copy(path) if tmp else contextlib.nullcontext():
                    rows, names, types = self._read_rows(path, table, label)
            finally:
                if tmp:
                    tmp.unlink(missing_ok=True)
        # the dtypes every DataFrame of dbvers has (a NULL doesn't make integers floats)
        return rows_frame(names, rows, types)

    @staticmethod
    def _read_rows(path: Path, table: str, label: str) -> tuple[list[Any], list[str], list[str]]:
        """Rows, column names and declared types of *table* in the private file *path*."""
        conn = ch.open_private(path)
        try:
            if table not in ch.classify_tables(conn).tracked and not conn.execute(
                "SELECT 1 FROM sqlite_schema WHERE name = ? AND type IN ('table', 'view')",
                (table,),
            ).fetchone():
                raise TableNotFoundError(table, label)
            # what SELECT * gives (generated columns too; a virtual table's hidden ones not)
            info = [r for r in conn.execute(f"PRAGMA table_xinfo({ch.quote(table)})") if r[6] != 1]
            names, types = [r[1] for r in info], [r[2] for r in info]
            rows = list(read_rows(conn, f"SELECT {', '.join(map(ch.quote, names))} FROM {ch.quote(table)}"))
            return rows, names, types
        finally:
            conn.close()

    # -- maintenance -----------------------------------------------------------
    def snapshot(self) -> str:
        """Make a keyframe at HEAD now (kept beside the commit; commits are immutable)."""
        with self._locked():
            oid = self._head_commit()
            existing = self.snapshot_of(oid)
            if existing:
                return existing
            snap = snapshots.make(self.objects, self.materialize(oid))
            self.refs.set_keyframe(oid, snap)
            return snap

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
        with self._locked(write=False, recovery_problems=recovery):
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
        with self._locked(write=not dry_run):
            full = None if refs is None else [self.reflog_ref(r) for r in refs]
            return maintenance.reflog_expire(self, expire=expire, expire_unreachable=expire_unreachable,
                                             refs=full, dry_run=dry_run)

    def gc(self, prune: str | float | None = None) -> GcReport:
        """Expire reflogs (as ``reflog_expire()`` with the config's times), then remove objects no
        ref, tag, HEAD or reflog entry reaches that are older than *prune* (default ``[gc]
        prune_expire``, 14 days; ``"now"``: all of them)."""
        with self._locked():
            return maintenance.gc(self, prune=prune)

    # -- backups (the logic lives in dbvers.backup) ------------------------------
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


def _newest_first(ts: str) -> float:
    """Heap key: heapq pops the smallest, so negate the commit time."""
    try:
        return -datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0
