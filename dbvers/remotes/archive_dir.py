"""A directory of backup archives as a transfer destination and source.

L3. Writing: :class:`ArchiveDestination` is one new archive being written into the
directory — a :class:`dbvers.transfer.Destination` whose objects are tar members,
whose "refs" are recorded in it, and whose commit point is :meth:`ArchiveDestination.publish`
(the finished file gets its final name, never replacing another backup). What it
already holds is the objects of the incremental chain it extends, read from the
manifests, never from the objects themselves.

Reading: :func:`archives` (a directory's archives, oldest first), :func:`chain`
(the archives a restore of one needs, full backup first) and :func:`extract_chain`,
which checks every archive of a chain byte for byte and unpacks it into a scratch
store: an :class:`ExtractedChain`, the :class:`dbvers.transfer.ObjectSource` a
restore transfers from, with the checks an archive must pass (declared sizes, every
object against its id, snapshots' ``integrity_check``, a complete history).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .. import snapshots
from ..errors import (
    BackupError,
    BackupIOError,
    BackupValidationError,
    DbversError,
    MissingObjectError,
)
from ..formats import ZERO_ID, is_id
from ..fsutil import fsync_dir, make_store_skeleton, remove_stale_temps, temp_prefix
from ..graph import commit_reader, walk
from ..objects import Commit
from ..storage.local import LocalObjectStore
from ..storage.local_refs import LocalRefStore
from ..storage.refnames import HEADS, keyframe_record_commit
from ..transfer import LocalSource, RawObject
from .archive import (
    CHUNK,
    MANIFEST,
    OBJECT_RE,
    SUFFIX,
    Scanned,
    TarWriter,
    allowed_name,
    object_member,
    read_manifest,
    scan,
    sign_manifest,
)

TEMP_KIND = "backup"
# Temp archives whose name names no owner (older dbvers) go after an hour, as they always did.
UNOWNED_TEMP_AGE = 3600.0
_METADATA_ORDER = ("HEAD", "config", "refs/", "logs/", "keyframes/")


def remove_stale_temp_archives(directory: Path) -> int:
    """Delete the temp archives of killed backups (a live backup's temp stays)."""
    return remove_stale_temps(directory, pattern=f"{TEMP_KIND}-*.tar", unowned_max_age=UNOWNED_TEMP_AGE)


def _new_temp(directory: Path) -> Path:
    """A new private file ``.tmp-backup-<owner>-<random>.tar``: its name says who owns it."""
    while True:
        p = directory / f"{temp_prefix(TEMP_KIND)}{secrets.token_hex(4)}.tar"
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return p


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


def _metadata_key(name: str) -> tuple[int, list[str]]:
    """The order store files follow the objects in: HEAD, config, refs, reflogs, keyframes."""
    rank = next(i for i, p in enumerate(_METADATA_ORDER) if name == p or (p.endswith("/") and name.startswith(p)))
    return rank, name.split("/")


class ArchiveDestination:
    """One new archive in *directory*: a transfer destination, published (or removed) at the end.

    *have*: the objects the chain it extends already holds. Use it as a context
    manager: leaving it by an exception removes the temp file.
    """

    def __init__(self, directory: Path, mtime: int, have: set[str] | None = None) -> None:
        self.directory = directory
        self.have = have or set()
        self.recorded: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        try:
            self.tmp = _new_temp(directory)
            self._f: IO[bytes] = open(self.tmp, "wb", buffering=CHUNK)  # noqa: SIM115 - closed by publish/abort
        except OSError as e:
            raise BackupIOError.from_os_error(directory, e) from None
        self.writer = TarWriter(self._f, mtime)

    def __enter__(self) -> ArchiveDestination:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if exc is not None:
            self.abort()

    # -- the Destination protocol --------------------------------------------------------
    def refs(self) -> dict[str, str]:
        return {}  # an archive's objects are known from the chain's manifests (missing)

    def missing(self, oids: set[str]) -> set[str]:
        return oids - self.have

    def put_raw(self, obj: RawObject) -> None:
        self._guard(lambda: self.writer.add(object_member(obj.oid), obj.size, obj.chunks()))

    def flush(self) -> None:
        pass  # the archive is fsynced once, when it is published

    def compare_and_swap(self, name: str, expect: str | None, new: str) -> bool:
        if self.recorded.get(name) != expect:
            return False
        self.recorded[name] = new
        return True

    # -- archive-only ----------------------------------------------------------------------
    def add_file(self, name: str, data: bytes) -> None:
        """A store file that travels with the history in a backup (HEAD, config, a reflog, a keyframe)."""
        if not allowed_name(name) or name == MANIFEST:
            raise ValueError(f"not a store file: {name!r}")
        self.files[name] = data

    def publish(self, manifest: dict[str, Any], stem: str) -> tuple[Path, bytes]:
        """Write the store files and the signed manifest, then give the archive its final name.

        Returns the archive's path and the manifest's bytes.
        """
        files = {**self.files, **{name: f"{oid}\n".encode() for name, oid in self.recorded.items()}}

        def finish() -> tuple[Path, bytes]:
            for name in sorted(files, key=_metadata_key):
                self.writer.add(name, len(files[name]), [files[name]])
            raw = sign_manifest({**manifest, "members": self.writer.members})
            self.writer.add(MANIFEST, len(raw), [raw], record=False)
            self.writer.finish()
            self._f.close()
            return _link_noclobber(self.tmp, self.directory, stem), raw

        return self._guard(finish)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()
        self.tmp.unlink(missing_ok=True)

    def _guard(self, step: Any) -> Any:
        try:
            return step()
        except OSError as e:
            self.abort()
            raise BackupIOError.from_os_error(self.directory, e) from None
        except BaseException:
            self.abort()
            raise


# -- reading a directory of archives -----------------------------------------------------------


def archives(directory: Path) -> list[Path]:
    """The archive files of a directory, oldest first (by backup.json's created_at)."""
    def key(p: Path) -> tuple[str, str]:
        try:
            return read_manifest(p)["created_at"], p.name
        except BackupError:
            return "", p.name

    return sorted((p for p in directory.glob("*" + SUFFIX) if p.is_file() and not p.name.startswith(".")),
                  key=key)


def archives_by_id(directory: Path) -> dict[str, Path]:
    """Every readable archive of *directory* by its id (its manifest's checksum)."""
    out: dict[str, Path] = {}
    for p in archives(directory):
        with contextlib.suppress(BackupError):
            out[read_manifest(p)["checksum"]] = p
    return out


def chain(path: Path, by_id: dict[str, Path] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The archives needed to restore *path*: its full ancestor first, *path* last.

    A parent is found by the file name its child records, else by its id among the
    directory's archives (*by_id*, read from the directory when not given).
    """
    out: list[tuple[Path, dict[str, Any]]] = []
    seen: set[str] = set()
    cur, m = path, read_manifest(path)
    while True:
        out.append((cur, m))
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
                by_id = archives_by_id(cur.parent)
            found = by_id.get(parent["id"])
            if found is None:
                raise BackupValidationError(
                    path.name, f"it needs its parent backup {parent['file']}, which is not in {cur.parent}"
                )
            candidate, pm = found, read_manifest(found)
        if pm["checksum"] in seen:
            raise BackupValidationError(path.name, "its chain of parent backups loops")
        cur, m = candidate, pm
    out.reverse()
    return out


def chain_objects(manifests: list[dict[str, Any]]) -> set[str]:
    """The objects a chain of archives holds, from their manifests alone."""
    have: set[str] = set()
    for m in manifests:
        for mem in m["members"]:
            if mo := OBJECT_RE.match(mem["name"]):
                have.add(mo[1] + mo[2])
    return have


# -- an extracted chain: the source a restore transfers from --------------------------------------


def _short(e: Exception) -> str:
    s = str(e)
    m = re.search(r"\(([^()]*)\)", s)
    return m[1] if m else s


def _write_metadata(store_dir: Path, metadata: dict[str, bytes]) -> None:
    for name, data in metadata.items():
        if name == MANIFEST or not allowed_name(name):
            continue
        dest = store_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    make_store_skeleton(store_dir)


@dataclass
class ExtractedChain:
    """A chain of archives, checked byte for byte and unpacked into the scratch store *root*.

    An :class:`dbvers.transfer.ObjectSource` whose files a destination may move in
    (the scratch store is thrown away). The checks below run before anything uses it.
    """

    root: Path
    scanned: list[Scanned]
    where: dict[str, Path]  # object id -> the archive it came from

    @property
    def objects(self) -> LocalObjectStore:
        return LocalObjectStore(self.root / "objects")

    @property
    def ref_store(self) -> LocalRefStore:
        return LocalRefStore(self.root)

    @property
    def metadata(self) -> dict[str, bytes]:
        return self.scanned[-1].metadata

    @property
    def label(self) -> str:
        return self.scanned[-1].path.name

    def raw(self, oid: str) -> RawObject:
        return LocalSource(self.objects).raw(oid)

    def verify(self, oid: str) -> str:
        return self.objects.verify(oid)

    def keyframes(self) -> dict[str, bytes]:
        """The keyframe records of the newest archive, by member name (``refs/keyframes/<commit>``,
        or an old archive's ``keyframes/<commit>``)."""
        return {name: data for name, data in self.metadata.items() if keyframe_record_commit(name) is not None}

    def refs(self) -> dict[str, str]:
        """The archive's refs (full name -> commit id); an unreadable ref file names nothing."""
        values, _ = self.ref_store.check()
        return {name: oid for name, oid in values.items()
                if name != "HEAD" and oid is not None and keyframe_record_commit(name) is None}  # a keyframe ref is no root

    def head_text(self) -> str:
        return (self.ref_store.head_text() or "").strip()

    def check_claims(self) -> None:
        """Every snapshot's declared size is the one backup.json claims, before anything is expanded.

        The free-space check trusts those claims, and reads stop at an object's declared
        size (``ObjectStore`` checks as it decompresses), so a small archive can never
        expand into more than it said. Only the header of each object is read here.
        """
        claims: dict[str, int] = {}
        for s in self.scanned:
            claims.update(s.manifest["snapshots"])
        objects = self.objects
        for oid, archive in self.where.items():
            try:
                kind, size = objects.object_type(oid), objects.body_size(oid)
            except DbversError as e:
                raise BackupValidationError(archive.name, f"object {oid} is corrupt ({_short(e)})",
                                            member=object_member(oid)) from None
            if kind == "snapshot" and claims.get(oid) != size:
                claimed = "nothing" if oid not in claims else f"{claims[oid]:,} bytes"
                raise BackupValidationError(
                    archive.name, f"snapshot {oid[:12]} expands to {size:,} bytes but backup.json claims {claimed}",
                    member=object_member(oid))

    def check_objects(self, integrity: bool) -> tuple[dict[str, str], int]:
        """Every object against its id (and, with *integrity*, every snapshot's integrity_check)."""
        types: dict[str, str] = {}
        n_snap = 0
        for oid, archive in self.where.items():
            try:
                types[oid] = self.verify(oid)
            except DbversError as e:
                raise BackupValidationError(archive.name, f"object {oid} is corrupt ({_short(e)})",
                                            member=object_member(oid)) from None
            if types[oid] == "snapshot":
                n_snap += 1
                if integrity:
                    self._check_snapshot(oid, archive)
        return types, n_snap

    def _check_snapshot(self, oid: str, archive: Path) -> None:
        tmp = self.root / f"{oid}.db"
        try:
            self.objects.get_to_file(oid, tmp, "snapshot")
            problems = snapshots.file_problems(tmp)
        except DbversError as e:
            problems = [_short(e)]
        except Exception as e:  # apsw errors: not a database, malformed
            problems = [str(e)]
        finally:
            tmp.unlink(missing_ok=True)
        if problems:
            raise BackupValidationError(archive.name, f"snapshot {oid} fails integrity_check ({problems[0][:100]})",
                                        member=object_member(oid))

    def _starts(self, types: dict[str, str]) -> list[tuple[str, str]]:
        """Where the history starts: every ref, HEAD, and the reflogs' commits the chain holds."""
        label, refs, head = self.label, self.refs(), self.head_text()
        starts: list[tuple[str, str]] = [(oid, ref) for ref, oid in refs.items()]
        if head.startswith("ref: "):
            if not head[5:].startswith(HEADS):
                raise BackupValidationError(label, f"its HEAD names {head[5:][:80]!r}, which is not a branch")
            if head[5:] not in refs:
                raise BackupValidationError(label, f"HEAD names {head[5:]}, which the backup lacks")
        elif is_id(head):
            starts.append((head, "HEAD"))
        else:
            raise BackupValidationError(label, "its HEAD is malformed")
        # A reflog may name commits an earlier gc removed: only those the chain holds are walked.
        reflog = self.ref_store.reflog_ids() - {ZERO_ID}
        return starts + [(oid, "a reflog entry") for oid in sorted(reflog) if oid in types]

    def check_complete(self, types: dict[str, str]) -> int:
        """Every commit the refs, HEAD and reflogs reach is there, with its objects. Returns commits."""
        label = self.label

        def read(oid: str) -> Commit:
            if types.get(oid) != "commit":
                raise MissingObjectError(oid)
            return commit_reader(self.objects)(oid)

        reach = walk(read, dict(self._starts(types)), missing_from="the backup chain")
        if reach.problems:
            raise BackupValidationError(label, reach.problems[0])
        for oid, c in reach.commits.items():
            wanted = c.typed_references()
            kf = self.metadata.get(f"refs/keyframes/{oid}") or self.metadata.get(f"keyframes/{oid}")
            if kf:
                wanted.append((kf.decode(errors="replace").strip(), "snapshot"))
            for ref_oid, kind in wanted:
                if types.get(ref_oid) != kind:
                    raise BackupValidationError(label, f"commit {oid[:12]} needs {kind} {ref_oid[:12]}, "
                                                       "which is missing from the backup chain")
            if not c.parents and not c.snapshot:
                raise BackupValidationError(label, f"root commit {oid[:12]} has no snapshot")
        return len(reach.commits)

    def root_commits(self, types: dict[str, str]) -> set[str]:
        """The chain's root commits, computed from the commits themselves (never from backup.json)."""
        roots: set[str] = set()
        for oid, kind in types.items():
            if kind != "commit":
                continue
            try:
                if not Commit.from_bytes(self.objects.get(oid, "commit")).parents:
                    roots.add(oid)
            except (ValueError, KeyError, TypeError):
                continue
        return roots


def extract_chain(paths: list[Path], store_dir: Path) -> ExtractedChain:
    """Check every archive of a chain and unpack all their objects, and the newest one's
    store files, into the scratch store *store_dir*."""
    objects_dir = store_dir / "objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    scanned: list[Scanned] = []
    where: dict[str, Path] = {}
    for i, p in enumerate(paths):
        s = scan(p, objects_dir, keep_metadata=(i == len(paths) - 1))
        for oid in s.objects:
            where.setdefault(oid, p)
        scanned.append(s)
    _write_metadata(store_dir, scanned[-1].metadata)
    return ExtractedChain(store_dir, scanned, where)
