"""The repository: commit, materialize, checkout, branches, tags, log (fsck and gc in maintenance).

A repository is a working database plus a store directory. Every operation
holds the store's lock, writes objects first and moves a ref last (the commit
point), and touches the working database only through :mod:`dbvers.sqlio`.
"""

from __future__ import annotations

import configparser
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

from . import changes as ch
from . import maintenance, snapshots, sqlio
from .errors import (
    AmbiguousRefError,
    CorruptObjectError,
    DatabaseLockedError,
    DbversError,
    DirtyWorkingDatabaseError,
    NothingToCommitError,
    RefExistsError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    TableNotFoundError,
    UnknownRefError,
    UnsupportedFormatError,
    UsageError,
)
from .frames import rows_frame
from .fsutil import TMP_PREFIX, RepoLock, publish, temp_path, write_atomic
from .maintenance import FsckReport, GcReport
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
from .refs import HEADS, TAGS, Head, RefStore, validate_name
from .schemadiff import describe_schema_changes, schema_changes
from .store import ObjectStore
from .values import read_rows

if TYPE_CHECKING:
    import pandas

    from .diff import Diff

STORE_NAME = ".dbvers"
DEFAULTS: dict[str, dict[str, str]] = {
    "snapshot": {"max_patch_ratio": "0.05", "max_commits": "100"},
    "cache": {"keep": "2"},
    "lock": {"timeout": "10"},
}
_REV_RE = re.compile(r"^(?P<base>.*?)(?P<suffix>(?:[~^]\d*)*)$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default_author(cfg: configparser.ConfigParser) -> str:
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


def _read_config(store: Path) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read_dict(DEFAULTS)
    try:
        found = cfg.read(store / "config", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DbversError(f"{store / 'config'} is unreadable ({reason}); repair or restore it") from None
    if not found:
        raise RepositoryNotFoundError(str(store))
    return cfg


def _write_config(store: Path, cfg: configparser.ConfigParser) -> None:
    import io

    buf = io.StringIO()
    cfg.write(buf)
    write_atomic(store / "config", buf.getvalue().encode())


def init_repo(db_path: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None,
         message: str = "Initial commit") -> Repo:
    """Start versioning *db_path*: create its store and commit its current state."""
    db = Path(db_path).resolve()
    store_dir = Path(store).resolve() if store else db.parent / STORE_NAME
    if (store_dir / "config").is_file():
        tracked = _read_config(store_dir).get("core", "database", fallback="?")
        raise RepositoryExistsError(str(store_dir), str((store_dir / tracked).resolve()))
    if store_dir.exists() and any(store_dir.iterdir()):
        raise UsageError(f"{store_dir} exists and is not empty; choose another --store")
    if not db.exists():
        if not db.parent.is_dir():
            raise UsageError(f"directory {db.parent} does not exist")
        sqlio.create_empty(db)
    sqlio.check_database_file(db)

    # Build the store under a temporary name and rename it into place at the end,
    # so a killed init leaves no half-made repository behind.
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    building = store_dir.parent / f"{TMP_PREFIX}{store_dir.name}-{os.getpid()}"
    if building.exists():
        shutil.rmtree(building)
    for sub in ("objects", "refs/heads", "refs/tags", "logs", "cache", "keyframes"):
        (building / sub).mkdir(parents=True)
    cfg = configparser.ConfigParser()
    cfg.read_dict(
        {
            "core": {"format": str(FORMAT_VERSION), "database": os.path.relpath(db, store_dir)},
            "snapshot": DEFAULTS["snapshot"],
        }
    )
    _write_config(building, cfg)
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
    cfg = _read_config(store_dir)
    db = (store_dir / cfg.get("core", "database")).resolve()
    if db_path and not Path(db_path).is_dir() and Path(db_path).resolve() != db:
        raise UsageError(f"{store_dir} tracks {db}, not {Path(db_path).resolve()}; use --store")
    return Repo(store_dir, db)


class Repo:
    def __init__(self, store_dir: Path, db_path: Path) -> None:
        self.store_dir = store_dir
        self.path = db_path
        self.config = _read_config(store_dir)
        fmt = self.config.getint("core", "format", fallback=FORMAT_VERSION)
        if fmt > FORMAT_VERSION:
            raise UnsupportedFormatError(fmt, FORMAT_VERSION)
        self.objects = ObjectStore(store_dir / "objects")
        self.refs = RefStore(store_dir)
        self.cache_dir = store_dir / "cache"
        self.keyframes_dir = store_dir / "keyframes"
        self.lock = RepoLock(store_dir / "lock", self.config.getfloat("lock", "timeout"))
        self._commits: dict[str, Commit] = {}

    def __repr__(self) -> str:
        return f"<dbvers.Repo {self.path}>"

    # -- plumbing ------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        timeout = os.environ.get("DBVERS_LOCK_TIMEOUT")
        if timeout is not None:
            self.lock.timeout = float(timeout)
        with self.lock.held():
            if self.lock._depth == 1:
                self._recover()
            yield

    def _timeout(self) -> float:
        return float(os.environ.get("DBVERS_LOCK_TIMEOUT", self.config.getfloat("lock", "timeout")))

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
            if ref and (oid := self.refs.read(ref)):
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
        c = self.get_commit(oid)
        if c.snapshot:
            return c.snapshot
        kf = self.keyframes_dir / oid
        if kf.is_file():
            value = kf.read_text().strip()
            return value or None
        return None

    def _keyframe_files(self) -> list[Path]:
        """keyframes/<commit id> files (a killed writer's temp file is not one)."""
        if not self.keyframes_dir.is_dir():
            return []
        return [p for p in self.keyframes_dir.iterdir() if len(p.name) == 64 and not p.name.startswith(TMP_PREFIX)]

    def _cache_path(self, oid: str) -> Path:
        return self.cache_dir / f"{oid}.db"

    def materialize(self, oid: str) -> Path:
        """A private file holding commit *oid*'s state (cached; rebuilt from the store if needed).

        The nearest keyframe (snapshot, or a cached materialization) on the
        first-parent chain is loaded into memory, the patchsets after it are
        applied in order in one transaction, and the result's schema is checked
        against the commit before it is published to the cache.
        """
        target = self._cache_path(oid)
        if target.is_file():
            self.get_commit(oid)  # a corrupt or missing commit is refused even when its state is cached
            os.utime(target)
            return target
        chain: list[Commit] = []
        cur = oid
        while True:
            commit = self.get_commit(cur)
            cached = self._cache_path(cur)
            if cur != oid and cached.is_file():
                conn = snapshots.load_bytes(cached.read_bytes(), cur)
                break
            snap = self.snapshot_of(cur)
            if snap:
                conn = snapshots.load(self.objects, snap)
                break
            chain.append(commit)
            if not commit.parents:
                raise CorruptObjectError(cur, "root commit without a snapshot")
            cur = commit.parents[0]
        try:
            chain.reverse()
            ch.apply_patchsets(conn, (
                (c.patch, self.objects.get(c.patch, "patch"),
                 RowidFixups.from_bytes(self.objects.get(c.rowids, "rowids")) if c.rowids else None)
                for c in chain if c.patch
            ))
            final = self.get_commit(oid)
            ch.restore_extras(conn, final.pragmas, final.sequences)
            if ch.read_schema(conn).id != final.schema:
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
        files = sorted(self.cache_dir.glob("*.db"), key=lambda p: p.stat().st_mtime, reverse=True)
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

    def _compare(self, new_file: Path, old_file: Path, *, rowids: bool = False) -> tuple[ch.Changes, Any]:
        """What turns *old_file* into *new_file*; with *rowids*, also the hidden rowids a
        replay of the patchset would get wrong (what a commit records)."""
        conn = ch.open_private(new_file)
        try:
            ch.attach(conn, old_file)
            changes = ch.compute_changes(conn)
            if rowids and changes.patchset and not changes.schema_changed:
                changes.rowids = ch.rowid_fixups(conn, changes)
            extras = (
                ch.read_schema(conn),
                ch.read_pragmas(conn),
                ch.read_sequences(conn),
                schema_changes(conn),
            )
            ch.detach(conn)
        finally:
            conn.close()
        return changes, extras

    # -- status and commit ---------------------------------------------------
    def status(self) -> Status:
        with self._locked():
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
            changes, (_, pragmas, sequences, sch) = self._compare(tmp, self.materialize(head.commit))
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
                    conn = ch.open_private(tmp)
                    try:
                        extras = (ch.read_schema(conn), ch.read_pragmas(conn), ch.read_sequences(conn), [])
                        counts = {
                            t: TableCounts(inserts=int(conn.execute(f"SELECT count(*) FROM {ch.quote(t)}").fetchone()[0]))
                            for t in ch.classify_tables(conn).tracked
                        }
                    finally:
                        conn.close()
                    changes = None
                else:
                    base = self.materialize(parent)
                    changes, extras = self._compare(tmp, base, rowids=True)
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
                # The copy we diffed is exactly the committed state: it becomes the base cache.
                publish(tmp, self._cache_path(oid))
                self._record_clean(fp, oid)
                self._prune_cache(keep={oid})
                self._commits[oid] = commit
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
        """``materialize``, then ``PRAGMA quick_check``: a state fit to hand to a user."""
        src = self.materialize(oid)
        if problems := snapshots.file_problems(src, quick=True):
            src.unlink(missing_ok=True)
            raise CorruptObjectError(oid, f"materialized state fails quick_check: {problems[0][:100]}")
        return src

    def _write_working(self, oid: str, *, head: str | None = None,
                       ref: tuple[str, str | None] | None = None) -> None:
        """Replace the working database with commit *oid*'s state, verified, in one transaction.

        Before the copy, the ref moves that must follow it (*head*: new HEAD
        text; *ref*: a ref name and its new value) are written to a pending file,
        so a process killed after the copy is finished by the next one.
        """
        src = self.materialize_verified(oid)
        intent = {"target": oid, "head": head, "ref": list(ref) if ref else None}
        write_atomic(self.store_dir / "CHECKOUT", json.dumps(intent).encode())
        (self.cache_dir / "working.json").unlink(missing_ok=True)
        try:
            sqlio.copy_in(src, self.path, self._timeout())
        except DatabaseLockedError:
            # The copy never started its transaction: the working database is unchanged,
            # so the ref moves must not be finished by a later recovery either.
            (self.store_dir / "CHECKOUT").unlink(missing_ok=True)
            raise
        self._record_clean(sqlio.fingerprint(self.path), oid)

    def _apply_intent(self, head: str | None, ref: list[Any] | tuple[Any, ...] | None, why: str) -> None:
        if ref:
            name, new = ref
            current = self.refs.read(name)
            if current != new:
                self.refs.update(name, new, expect=current, message=why)
        if head and (self.store_dir / "HEAD").read_text() != head:
            if head.startswith("ref: "):
                self.refs.set_head(branch=head[5:].strip().removeprefix(HEADS), message=why)
            else:
                self.refs.set_head(commit=head.strip(), message=why)
        (self.store_dir / "CHECKOUT").unlink(missing_ok=True)

    def _recover(self) -> None:
        """Finish or forget a checkout/reset that a killed process left half done.

        The working database was copied in within one transaction, so it holds
        either the old or the target state; the refs are moved only if it holds
        the target.
        """
        # Temp files of a killed process, wherever atomic writes make them (we hold the lock).
        leftovers = [d.glob(TMP_PREFIX + "*") for d in
                     (self.store_dir, self.cache_dir, self.objects.root, self.keyframes_dir)]
        leftovers.append((self.store_dir / "refs").rglob(TMP_PREFIX + "*"))
        for p in [p for group in leftovers for p in group]:
            # Diff directories of other processes may go too: their files stay readable while open.
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        pending = self.store_dir / "CHECKOUT"
        if not pending.is_file():
            return
        try:
            intent = json.loads(pending.read_text())
            target = intent["target"]
        except (ValueError, KeyError):
            pending.unlink()
            return
        if intent.get("head") or intent.get("ref"):
            tmp = self._copy_out()
            try:
                changes, (_, pragmas, _, _) = self._compare(tmp, self.materialize(target))
            finally:
                tmp.unlink(missing_ok=True)
            if changes.empty and pragmas == self.get_commit(target).pragmas:
                self._apply_intent(intent.get("head"), intent.get("ref"), "recovered after interruption")
        pending.unlink(missing_ok=True)

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
            oid = self.refs.read(HEADS + ref) if create_branch is None else None
            oid = oid or self.resolve(ref)
            head = self.head
            if create_branch is not None:
                new_head, new_ref = f"ref: {HEADS}{create_branch}\n", (HEADS + create_branch, oid)
            elif self.refs.read(HEADS + ref) is not None:
                new_head, new_ref = f"ref: {HEADS}{ref}\n", None
            elif ref in ("HEAD", "@") and head.branch is not None:
                new_head, new_ref = f"ref: {HEADS}{head.branch}\n", None
            else:
                new_head, new_ref = f"{oid}\n", None
            why = f"checkout: moving to {create_branch or ref}"
            if oid != head.commit or force:
                if not force and (dirty := self._dirty_tables()):
                    raise DirtyWorkingDatabaseError(dirty, "checkout")
                self._write_working(oid, head=new_head, ref=new_ref)
            self._apply_intent(new_head, new_ref, why)
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
            if hard:
                if not force and (dirty := self._dirty_tables()):
                    raise DirtyWorkingDatabaseError(dirty, "reset --hard")
                self._write_working(oid, head=new_head, ref=new_ref)
            self._apply_intent(new_head, new_ref, f"reset: moving to {ref}")
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

        with self._locked():
            return row_history(self, table, pk, ref)

    def diff(self, a: str | None = "HEAD", b: str | None = None) -> Diff:
        """What changed from *a* to *b* (a ref, or ``None`` for the working database)."""
        from .diff import Diff, changed_keys

        with self._locked():
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
        with self._locked():
            tmp = None
            if at is None:
                path = tmp = self._copy_out()
                label = "the working database"
            else:
                path = self.materialize(self.resolve(at))
                label = at
            try:
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
                finally:
                    conn.close()
            finally:
                if tmp:
                    tmp.unlink(missing_ok=True)
        # the dtypes every DataFrame of dbvers has (a NULL doesn't make integers floats)
        return rows_frame(names, rows, types)

    # -- maintenance -----------------------------------------------------------
    def snapshot(self) -> str:
        """Make a keyframe at HEAD now (kept beside the commit; commits are immutable)."""
        with self._locked():
            oid = self._head_commit()
            existing = self.snapshot_of(oid)
            if existing:
                return existing
            snap = snapshots.make(self.objects, self.materialize(oid))
            write_atomic(self.keyframes_dir / oid, (snap + "\n").encode())
            return snap

    # (fsck and gc: the logic lives in dbvers.maintenance)
    def reachable_commits(self) -> set[str]:
        """Commits reachable from a branch, tag, HEAD or reflog entry (what gc keeps)."""
        return maintenance.reachable_commits(self)

    def fsck(self) -> FsckReport:
        """Verify every object's hash, every snapshot's integrity, every ref and commit link."""
        with self._locked():
            return maintenance.fsck(self)

    def gc(self) -> GcReport:
        """Remove objects no ref, tag, HEAD or reflog entry reaches (nothing a user did is lost)."""
        with self._locked():
            return maintenance.gc(self)

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
