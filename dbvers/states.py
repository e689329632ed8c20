"""Commit states (layer L2): materialization, the keyframe policy and the materialization cache.

A commit's state is rebuilt from the nearest keyframe on its first-parent chain
(its own snapshot, a keyframe record made by ``dbvers snapshot``, or a cached
materialization) by replaying the patchsets after it in order. Rebuilt states
are kept in ``cache/<commit>.db`` (at least HEAD's: the *base cache*); the cache
is derived data, so whatever is wrong with a file there costs a rebuild, never
a wrong answer. A store this process can't write gets a private cache outside it.

:class:`States` also reads (and caches) commit objects, which every walk here needs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import apsw

from . import changes as ch
from . import graph, snapshots, sqlio
from .config import Config
from .errors import CorruptObjectError, DbversError, TableNotFoundError
from .formats import is_id
from .fsutil import (
    TMP_PREFIX,
    WriteBehind,
    remove_stale_temps,
    temp_path,
    temp_prefix,
    write_atomic,
)
from .objects import Commit, Schema
from .rowidstream import RowidStream
from .storage.base import ObjectStore, RefStore
from .values import read_rows

VERIFIED = "verified.json"
# Per store, this process's private stand-in for a cache it can't write (a read-only store).
_private_caches: dict[Path, Path] = {}

# A state is rebuilt in memory (serialize/deserialize, no page cache limit) up to this size
# when the caller trusts the store's sizes (checkout, diff, status: this repository's own
# objects); past it, and for untrusted sources (restore keeps snapshots.IN_MEMORY_MAX), it is
# rebuilt in a private file. The bound is a share of the machine's memory, capped.
TRUSTED_MEMORY_SHARE = 1 / 16
TRUSTED_MEMORY_CAP = 1 << 30


def trusted_memory_limit() -> int:
    """How large a state this process rebuilds in memory: a sixteenth of RAM, at most 1 GiB
    (a rebuild holds about three copies: the bytes read, the database, the bytes written)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return snapshots.IN_MEMORY_MAX
    return max(snapshots.IN_MEMORY_MAX, min(TRUSTED_MEMORY_CAP, int(ram * TRUSTED_MEMORY_SHARE)))


class States:
    """Materialized commit states of one store, and the commit objects they come from.

    *memory_limit*: the largest state rebuilt in memory (``None``: ``trusted_memory_limit()``);
    a restore from an untrusted archive passes ``snapshots.IN_MEMORY_MAX``.
    """

    def __init__(self, objects: ObjectStore, refs: RefStore, config: Config, store_dir: Path,
                 *, memory_limit: int | None = None) -> None:
        self.objects = objects
        self.refs = refs
        self.config = config
        self.store_dir = store_dir
        self.cache_dir = store_dir / "cache"
        self.keyframes_dir = store_dir / "keyframes"  # stores made before keyframe records were refs
        self.memory_limit = trusted_memory_limit() if memory_limit is None else memory_limit
        self._commits: dict[str, Commit] = {}
        self._unpacked: dict[str, Path] = {}  # snapshot id -> its verified body, decoded once (a clone)

    # -- commit objects ------------------------------------------------------------------
    def get_commit(self, oid: str) -> Commit:
        c = self._commits.get(oid)
        if c is None:
            c = graph.commit_reader(self.objects)(oid)  # one that doesn't parse is corrupt
            self._commits[oid] = c
        return c

    def remember(self, oid: str, commit: Commit) -> None:
        """Cache a commit this process just wrote (saves reading it back)."""
        self._commits[oid] = commit

    def get_schema(self, oid: str) -> Schema:
        data = self.objects.get(oid, "schema")
        try:
            return Schema.from_bytes(data)
        except (ValueError, KeyError, TypeError) as e:  # a crafted or damaged schema object
            raise CorruptObjectError(oid, f"not a schema: {str(e)[:80]}") from None

    # -- keyframes -----------------------------------------------------------------------
    def snapshot_of(self, oid: str) -> str | None:
        """The snapshot to start *oid*'s state from: the commit's own, else a usable keyframe record."""
        c = self.get_commit(oid)
        if c.snapshot:
            return c.snapshot
        return self.keyframe_of(oid)

    def keyframe_of(self, oid: str) -> str | None:
        """The snapshot id the keyframe record of *oid* (``refs/keyframes/<oid>``) holds, if it
        names a stored snapshot.

        A keyframe record is optional derived data (``dbvers snapshot``): one that
        is unreadable, garbage or names a missing object is treated as absent (fsck
        reports it), so materialization falls back to an older snapshot.
        """
        value = self.refs.keyframe(oid)
        if value is None or not is_id(value) or not self.objects.has(value):
            return None
        try:
            if self.objects.object_type(value) != "snapshot":
                return None
        except (DbversError, OSError):
            return None  # unreadable: an older snapshot serves, and fsck names this one
        return value

    def snapshot(self, oid: str) -> str:
        """Make a keyframe at commit *oid* (recorded beside it: commits are immutable); its snapshot id."""
        existing = self.snapshot_of(oid)
        if existing:
            return existing
        snap = snapshots.make(self.objects, self.materialize(oid))
        self.refs.set_keyframe(oid, snap)
        return snap

    def keyframe_reason(self, parent: str | None, changes: ch.Changes | None, patch_size: int) -> str | None:
        """Why a new commit on *parent* with *changes* must carry a snapshot (None: it needn't)."""
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

    # -- the cache -----------------------------------------------------------------------
    def cache_path(self, oid: str) -> Path:
        """Where commit *oid*'s materialized state is cached (it may not be there)."""
        return self.cache_dir / f"{oid}.db"

    def _cached(self, oid: str) -> Path | None:
        """The cached materialization of *oid* if it looks whole; a damaged one is removed.

        The cache is derived data: whatever is wrong with a file there (garbage,
        truncation) costs a rebuild from the store, never a wrong answer or a crash.
        """
        p = self.cache_path(oid)
        if not p.exists():
            return None
        if snapshots.looks_whole(p):
            return p
        with contextlib.suppress(OSError):
            p.unlink()
        return None

    def prune_cache(self, keep: set[str]) -> None:
        """Drop cached states past ``[cache] keep`` (oldest used first); *keep* and HEAD's stay."""
        keep_n = self.config.getint("cache", "keep")
        head = self.refs.head().commit
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

    def choose_cache_dir(self, read_only: bool) -> None:
        """The store's cache, or (store or cache not writable) a private one outside the store."""
        store_cache = self.store_dir / "cache"
        if not read_only and (not store_cache.exists() or os.access(store_cache, os.W_OK)):
            self.cache_dir = store_cache
            return
        key = self.store_dir.resolve()
        private = _private_caches.get(key)
        if private is None or not private.is_dir():
            tmp_root = Path(tempfile.gettempdir())
            remove_stale_temps(tmp_root, pattern="cache-*")  # private caches of killed processes
            private = Path(tempfile.mkdtemp(prefix=temp_prefix("cache"), dir=tmp_root))
            # Kept until exit, not until this Repo goes: a live Diff may have pinned files here.
            atexit.register(shutil.rmtree, private, True)
            # Start from what the store's cache already knows (HEAD's state, the clean record).
            with contextlib.suppress(OSError, DbversError):
                head = self.refs.head().commit
                names = ["working.json"] + ([f"{head}.db"] if head else [])
                for name in names:
                    if (store_cache / name).is_file():
                        shutil.copyfile(store_cache / name, private / name)
            _private_caches[key] = private
        self.cache_dir = private

    # -- materialization -----------------------------------------------------------------
    def materialize(self, oid: str, *, use_cache: bool = True) -> Path:
        """A private file holding commit *oid*'s state (cached; rebuilt from the store if needed).

        The nearest keyframe (snapshot, or a cached materialization) on the
        first-parent chain is loaded (into memory up to ``memory_limit``), the
        patchsets after it are applied in order in one transaction, and the result's
        schema is checked against the commit before it is published to the cache.
        ``use_cache=False`` rebuilds from the store's objects alone.
        """
        target = self.cache_path(oid)
        if use_cache and self._cached(oid) is not None:
            self.get_commit(oid)  # a corrupt or missing commit is refused even when its state is cached
            with contextlib.suppress(OSError):
                os.utime(target)
            return target
        conn, chain = self._nearest_keyframe(oid, use_cache)
        # Rows the replay wrote got their STORED generated values from apsw's SQLite: the user's
        # (the sqlite3 module's) computes them again, so that the state holds what they had.
        replayed = sorted({t for c in chain if c.patch for t in c.counts})
        try:
            self._replay(conn, chain, oid)
            self.cache_dir.mkdir(exist_ok=True)
            snapshots.save(conn, target, (lambda p: sqlio.recompute_generated(p, replayed)) if replayed else None)
        finally:
            conn.close()
        self.prune_cache(keep={oid})
        return target

    def _nearest_keyframe(self, oid: str, use_cache: bool) -> tuple[apsw.Connection, list[Commit]]:
        """The nearest loadable keyframe on *oid*'s first-parent chain, and the commits after it."""
        chain: list[Commit] = []
        cur = oid
        while True:
            commit = self.get_commit(cur)
            conn = self._load_cached(cur) if use_cache and cur != oid else None
            if conn is None and commit.snapshot:
                conn = self._load_snapshot(commit.snapshot)  # history: its damage is an error
            if conn is None and (kf := self.keyframe_of(cur)) is not None:
                # An optional keyframe that fails to load is skipped for an older one.
                with contextlib.suppress(DbversError):
                    conn = self._load_snapshot(kf)
            if conn is not None:
                chain.reverse()
                return conn, chain
            chain.append(commit)
            if not commit.parents:
                raise CorruptObjectError(cur, "root commit without a snapshot")
            cur = commit.parents[0]

    def _load_cached(self, oid: str) -> apsw.Connection | None:
        """A writable copy of *oid*'s cached state, or None (absent or damaged: derived, so dropped)."""
        cached = self._cached(oid)
        if cached is None:
            return None
        with contextlib.suppress(DbversError, OSError):
            return snapshots.load_file(cached, oid, self.cache_dir, memory_limit=self.memory_limit)
        cached.unlink(missing_ok=True)  # the store rebuilds it
        return None

    def _load_snapshot(self, snap: str) -> apsw.Connection:
        unpacked = self._unpacked.pop(snap, None)
        if unpacked is not None:
            try:
                return snapshots.open_unpacked(unpacked, snap, memory_limit=self.memory_limit)
            except (DbversError, OSError, apsw.Error):  # derived: decoded again from the object
                unpacked.unlink(missing_ok=True)
        return snapshots.load(self.objects, snap, self.cache_dir, memory_limit=self.memory_limit)

    # -- snapshots decoded as they were fetched -----------------------------------------
    @contextlib.contextmanager
    def unpacking(self, snap: str) -> Iterator[BinaryIO]:
        """A private file for snapshot *snap*'s body as it is verified on its way into the store
        (``put_raw(..., body_to=)``), kept for the next state rebuilt from *snap*: a clone
        decodes its snapshot once. Kept only if the block ends normally and the file holds the
        whole body (an object already stored is not read again: nothing was written)."""
        self.cache_dir.mkdir(exist_ok=True)
        tmp = temp_path(self.cache_dir, ".db")
        try:
            with open(tmp, "wb") as out, WriteBehind(out) as behind:
                yield behind  # type: ignore[misc]
            whole = tmp.stat().st_size == self.objects.body_size(snap)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if whole and snap not in self._unpacked:
            self._unpacked[snap] = tmp
        else:
            tmp.unlink(missing_ok=True)

    def drop_unpacked(self) -> None:
        """Remove the decoded snapshots no rebuild used (the caller is done rebuilding)."""
        while self._unpacked:
            self._unpacked.popitem()[1].unlink(missing_ok=True)

    def _replay(self, conn: apsw.Connection, chain: list[Commit], oid: str) -> None:
        """Apply *chain*'s patches to *conn*, set what patches don't carry, check the schema."""
        ch.apply_patchsets(conn, (
            (c.patch, self.objects.open_body(c.patch, "patch"),
             RowidStream(c.rowids, self.objects.open_body(c.rowids, "rowids")) if c.rowids else None)
            for c in chain if c.patch
        ))
        final = self.get_commit(oid)
        ch.restore_extras(conn, final.pragmas, final.sequences)
        # A commit made before statistics were left out recorded them in its schema.
        if final.schema not in (ch.read_schema(conn).id, ch.read_schema(conn, stats=True).id):
            raise CorruptObjectError(oid, "materialized schema does not match the commit")

    def materialize_verified(self, oid: str) -> Path:
        """``materialize``, checked: a state fit to hand to a user (checkout, reset, restore).

        A state rebuilt now from the store is sound by construction (verified
        objects, replayed by SQLite, schema checked). A cached one gets ``PRAGMA
        quick_check``, unless it passed one (or was built) and its file is unchanged
        since (inode, size, mtime, ctime: the clean record's rule), which costs about
        as much as copying the file in. One that fails is derived data gone bad: it is
        dropped and rebuilt from the store.
        """
        path = self.cache_path(oid)
        hit = self._cached(oid) is not None
        trusted = hit and self._stamps().get(oid) == _stat_key(path)
        src = self.materialize(oid)  # (a hit is touched for the LRU: stamped again below)
        if hit and not trusted:
            try:
                problems = snapshots.file_problems(src, quick=True)
            except apsw.Error as e:
                problems = [str(e)]
            if problems:
                src.unlink(missing_ok=True)
                src = self.materialize(oid, use_cache=False)
        self._stamp(oid, src)
        return src

    def _stamps(self) -> dict[str, Any]:
        """``cache/verified.json``: cached states known sound, by the stat data they had then."""
        try:
            rec = json.loads((self.cache_dir / VERIFIED).read_bytes())
        except (OSError, ValueError):
            return {}
        return rec if isinstance(rec, dict) else {}

    def _stamp(self, oid: str, path: Path) -> None:
        stamps = {k: v for k, v in self._stamps().items() if k != oid and self.cache_path(k).exists()}
        with contextlib.suppress(OSError):
            stamps[oid] = _stat_key(path)
        with contextlib.suppress(DbversError):  # derived: without it the next use checks again
            write_atomic(self.cache_dir / VERIFIED, json.dumps(stamps).encode())


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

def table_rows(path: Path, table: str, label: str) -> tuple[list[Any], list[str], list[str]]:
    """Rows, column names and declared types of *table* in the private state file *path*
    (*label* names the state in the error when the table isn't there)."""
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
