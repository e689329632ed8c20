"""The backup archive format: a plain tar of the store's files with ``backup.json`` last.

L3 (``remotes/``: the shapes history travels in). Writing (:class:`TarWriter`:
headers, data and padding written by hand so that every member's offset is known),
the manifest (canonical JSON that carries its own SHA-256 and one for every
member's data and for its whole stretch of the tar: :func:`sign_manifest`,
:func:`parse_manifest`, :func:`read_manifest`), and reading (:func:`scan`: listing,
refusing names and member types a store never has, and checking every byte against
the manifest while it copies the objects out). A directory of archives as a
transfer destination or source is :mod:`dbvers.remotes.archive_dir`; the backup
porcelain (backup, verify, prune, restore) is :mod:`dbvers.backup` and
:mod:`dbvers.restore`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import (
    BackupError,
    BackupSchemaError,
    BackupValidationError,
)
from ..formats import is_id, parse_timestamp
from ..objects import FORMAT_VERSION, canonical_json
from ..storage.refnames import is_valid_ref

BACKUP_FORMAT = 1
MANIFEST = "backup.json"
SUFFIX = ".dbvers.tar"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
CHUNK = 1 << 20
OBJECT_RE = re.compile(r"^objects/([0-9a-f]{2})/([0-9a-f]{62})$")
KEYFRAME_RE = re.compile(r"^keyframes/([0-9a-f]{64})$")


def bare_file_name_problem(name: str) -> str | None:
    """Why *name* (a file name read from an archive) cannot be used as one (None: it can).

    A name that an archive supplies becomes a path beside the restore's target, so
    it must be a single, ordinary component: nothing that climbs out of, or lands
    outside, the directory it is joined to.
    """
    if not name:
        return "is empty"
    if "\0" in name:
        return "contains a NUL byte"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        return "contains a path separator"
    if name in (".", ".."):
        return "names a directory"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid text"
    if len(encoded) > 255:
        return "is longer than a file name can be"
    return None


def object_member(oid: str) -> str:
    return f"objects/{oid[:2]}/{oid[2:]}"


def describe_member(name: str) -> str:
    m = OBJECT_RE.match(name)
    return f"object {m[1]}{m[2]} (member {name})" if m else f"member {name}"


def allowed_name(name: str) -> bool:
    """The names a store uses: anything else has no business in a dbvers archive.

    Ref and reflog members pass the same full-name check as every ref path of a store.
    """
    if name in ("HEAD", "config", MANIFEST) or OBJECT_RE.match(name) or KEYFRAME_RE.match(name):
        return True
    if name.startswith("refs/"):
        return is_valid_ref(name)
    if name.startswith("logs/"):
        return is_valid_ref(name[5:])
    return False


def _member_problem(ti: tarfile.TarInfo) -> str | None:
    """Why a tar member is refused (None: it is an ordinary store file)."""
    name = ti.name
    kinds = [(ti.issym(), "a symbolic link"), (ti.islnk(), "a hard link"),
             (ti.ischr() or ti.isblk(), "a device file"), (ti.isfifo(), "a FIFO"),
             (ti.isdir(), "a directory")]
    for is_kind, what in kinds:
        if is_kind:
            return f"member {name!r} is {what}; dbvers archives hold only regular files"
    if ti.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or ti.sparse is not None:
        return f"member {name!r} has tar type {ti.type!r}; dbvers archives hold only regular files"
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "\\" in name or re.match(r"^[A-Za-z]:", name):
        return f"member {name!r} would escape the extraction directory"
    if not name or "\0" in name or any(p in ("", ".") for p in parts) or not allowed_name(name):
        return f"member {name!r} is not a file of a dbvers store"
    return None


def tar_header(name: str, size: int, mtime: int) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = mtime
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def sign_manifest(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return canonical_json({**body, "checksum": hashlib.sha256(canonical_json(body)).hexdigest()})


def _natural(v: Any) -> bool:
    """A size or a count: a non-negative int (JSON's true/false are not numbers)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _require(m: dict[str, Any], key: str, kind: type | tuple[type, ...], label: str) -> Any:
    v = m.get(key)
    if not isinstance(v, kind) or isinstance(v, bool):
        raise BackupValidationError(label, f"backup.json has no valid '{key}'")
    return v


def parse_manifest(raw: bytes, label: str) -> dict[str, Any]:
    """backup.json's bytes, checked: JSON, a format this dbvers reads, signed, canonical, well formed."""
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BackupValidationError(label, "backup.json is not valid JSON (damaged or tampered with)") from None
    if not isinstance(m, dict):
        raise BackupValidationError(label, "backup.json is not a JSON object")
    body = {k: v for k, v in m.items() if k != "checksum"}
    signed = m.get("checksum") == hashlib.sha256(canonical_json(body)).hexdigest()
    fmt, store_fmt = m.get("backup_format"), m.get("store_format")
    if isinstance(fmt, int) and isinstance(store_fmt, int) and (
        fmt > BACKUP_FORMAT or store_fmt > FORMAT_VERSION
    ) and (signed or fmt > BACKUP_FORMAT):
        raise BackupSchemaError(
            f"backup {label} was made by a newer dbvers (backup format {fmt}, store format "
            f"{store_fmt}); this dbvers reads up to {BACKUP_FORMAT}/{FORMAT_VERSION}: upgrade dbvers"
        )
    if not signed:
        raise BackupValidationError(label, "backup.json was altered (its checksum does not match)")
    if canonical_json(m) != raw:
        raise BackupValidationError(label, "backup.json was altered (not in its canonical form)")
    _check_fields(m, label)
    return m


def _check_fields(m: dict[str, Any], label: str) -> None:
    """Every field of a signed backup.json has the type and form its readers rely on."""
    for key, kind in (("backup_format", int), ("store_format", int), ("created_at", str),
                      ("kind", str), ("members", list), ("database", dict), ("commits", int),
                      ("objects", int), ("snapshots", dict), ("roots", list), ("refs", dict),
                      ("head", str)):
        _require(m, key, kind, label)
    if m["kind"] not in ("full", "incremental"):
        raise BackupValidationError(label, f"backup.json has an unknown kind {m['kind']!r}")
    parent = m.get("parent")
    if m["kind"] == "incremental" and not (
        isinstance(parent, dict) and isinstance(parent.get("file"), str)
        and isinstance(parent.get("id"), str) and bare_file_name_problem(parent["file"]) is None
    ):
        raise BackupValidationError(label, "incremental backup.json names no valid parent")
    db = m["database"]
    if not (isinstance(db.get("name"), str) and _natural(db.get("size"))
            and isinstance(db.get("user_version"), int) and not isinstance(db.get("user_version"), bool)):
        raise BackupValidationError(label, "backup.json has no valid 'database'")
    # Every field that becomes a path or a size is checked here, once, for every reader
    # (restore, verify, list, prune): the checksums prove nothing against a forger, who
    # can re-sign an edited backup.json.
    if problem := bare_file_name_problem(db["name"]):
        raise BackupValidationError(
            label, f"backup.json's database name {db['name'][:80]!r} {problem}; a backup names a bare file name")
    for mem in m["members"]:
        if not (isinstance(mem, dict) and isinstance(mem.get("name"), str)
                and all(_natural(mem.get(k)) for k in ("offset", "size"))
                and all(isinstance(mem.get(k), str) for k in ("sha256", "tar_sha256"))):
            raise BackupValidationError(label, "backup.json has a malformed member entry")
        if mem["name"] == MANIFEST or not allowed_name(mem["name"]):
            raise BackupValidationError(label, f"backup.json lists {mem['name'][:80]!r}, "
                                               "which is not a file of a dbvers store")
    if not all(isinstance(k, str) and is_id(k) and _natural(v) for k, v in m["snapshots"].items()):
        raise BackupValidationError(label, "backup.json has a malformed 'snapshots' entry")
    if not all(isinstance(r, str) and is_id(r) for r in m["roots"]):
        raise BackupValidationError(label, "backup.json has a malformed 'roots' entry")
    for key in ("commits", "objects"):
        if not _natural(m[key]):
            raise BackupValidationError(label, f"backup.json has no valid '{key}'")
    try:
        parse_timestamp(m["created_at"])
    except ValueError:
        raise BackupValidationError(label, "backup.json has no valid 'created_at'") from None


def find_manifest(f: IO[bytes], size: int) -> tuple[int, tarfile.TarInfo] | None:
    """Locate backup.json's header from the end of the file (cheap: no full listing)."""
    window = 64 << 10
    while True:
        start = max(0, size - window)
        start -= start % BLOCK
        f.seek(start)
        buf = f.read(size - start)
        p = buf.rfind(b"backup.json\0")
        while p >= 0:
            if (start + p) % BLOCK == 0:
                try:
                    ti = tarfile.TarInfo.frombuf(buf[p:p + BLOCK], "utf-8", "surrogateescape")
                except tarfile.HeaderError:
                    ti = None
                if ti is not None and ti.name == MANIFEST:
                    return start + p, ti
            p = buf.rfind(b"backup.json\0", 0, p)
        if start == 0:
            return None
        window *= 8


def read_manifest(path: Path) -> dict[str, Any]:
    """backup.json of an archive, checked (checksum, form, format) but without reading the rest."""
    label = path.name
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            found = find_manifest(f, size)
            if found is None:
                raise BackupValidationError(label, "it has no backup.json (truncated, or not a dbvers backup)")
            offset, ti = found
            f.seek(offset + BLOCK)
            raw = f.read(ti.size)
    except FileNotFoundError:
        raise BackupError(f"no such backup: {path}") from None
    except IsADirectoryError:
        raise BackupError(f"{path} is a directory, not a backup archive") from None
    except OSError as e:
        raise BackupError(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) != ti.size:
        raise BackupValidationError(label, "backup.json is truncated")
    return parse_manifest(raw, label)


class TarWriter:
    """Writes a plain tar member by member, hashing each member's data and whole stretch."""

    def __init__(self, f: IO[bytes], mtime: int) -> None:
        self.f = f
        self.mtime = mtime
        self.pos = 0
        self.members: list[dict[str, Any]] = []

    def _write(self, data: bytes, *hashes: Any) -> None:
        self.f.write(data)
        self.pos += len(data)
        for h in hashes:
            h.update(data)

    def add(self, name: str, size: int, chunks: Iterable[bytes], record: bool = True) -> None:
        offset = self.pos
        span, data = hashlib.sha256(), hashlib.sha256()
        self._write(tar_header(name, size, self.mtime), span)
        n = 0
        for chunk in chunks:
            n += len(chunk)
            if n > size:
                break
            self._write(chunk, span, data)
        if n != size:
            raise BackupError(f"{name} changed size while it was being backed up; run the backup again")
        if pad := -size % BLOCK:
            self._write(b"\0" * pad, span)
        if record:
            self.members.append({"name": name, "offset": offset, "size": size,
                                 "sha256": data.hexdigest(), "tar_sha256": span.hexdigest()})

    def finish(self) -> None:
        self._write(b"\0" * (2 * BLOCK))
        if pad := -self.pos % RECORD:
            self._write(b"\0" * pad)


@dataclass
class Scanned:
    path: Path
    manifest: dict[str, Any]
    objects: list[str]
    metadata: dict[str, bytes]
    member_bytes: int


def _list_members(path: Path) -> tuple[list[tarfile.TarInfo], str | None]:
    """The archive's members (headers only), refusing links, devices and escaping paths.

    A damaged header ends the listing; the error is returned for the report.
    """
    label = path.name
    members: list[tarfile.TarInfo] = []
    error = None
    try:
        with tarfile.open(path, "r:") as tf:
            while True:
                try:
                    ti = tf.next()
                except Exception as e:  # any malformed header (tarfile raises many kinds)
                    error = str(e) or type(e).__name__
                    break
                if ti is None:
                    break
                if problem := _member_problem(ti):
                    raise BackupValidationError(label, problem, member=ti.name)
                members.append(ti)
    except BackupError:
        raise
    except FileNotFoundError:
        raise BackupError(f"no such backup: {path}") from None
    except IsADirectoryError:
        raise BackupError(f"{path} is a directory, not a backup archive") from None
    except (tarfile.TarError, EOFError, ValueError, UnicodeError, OverflowError) as e:
        error = str(e) or type(e).__name__
    except OSError as e:
        raise BackupError(f"cannot read {path}: {e.strerror or e}") from None
    return members, error


def scan(path: Path, objects_dir: Path | None, keep_metadata: bool = True) -> Scanned:
    """Check an archive byte for byte against its backup.json; copy its objects into *objects_dir*.

    Raises BackupValidationError naming the member (and object) a damage hit.
    """
    label = path.name
    members, list_error = _list_members(path)
    seen_names: set[str] = set()
    for ti in members:
        if ti.name in seen_names:
            raise BackupValidationError(label, f"member {ti.name!r} appears twice", member=ti.name)
        seen_names.add(ti.name)
    if not members or members[-1].name != MANIFEST:
        _explain_broken_listing(path, members, list_error)
    mti, listed = members[-1], members[:-1]
    objects: list[str] = []
    metadata: dict[str, bytes] = {}
    with open(path, "rb") as f:
        manifest = _check_tail(f, label, mti, path.stat().st_size)
        declared = manifest["members"]
        _check_listing(label, listed, declared)
        f.seek(0)
        for i, ti in enumerate(listed):
            span_end = listed[i + 1].offset if i + 1 < len(listed) else mti.offset
            mo = OBJECT_RE.match(ti.name)
            out: Any = None
            dest = None
            if mo:
                objects.append(mo[1] + mo[2])
                if objects_dir is not None:
                    dest = objects_dir / mo[1] / mo[2]
                    if not dest.exists():
                        dest.parent.mkdir(exist_ok=True)
                        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
                        out = os.fdopen(fd, "wb")
            elif keep_metadata:
                out = io.BytesIO()
            try:
                _copy_member(f, label, ti, span_end, declared[i], out)
                if isinstance(out, io.BytesIO):
                    metadata[ti.name] = out.getvalue()
                elif out is not None:
                    out.flush()
                    os.fsync(out.fileno())
            except BaseException:
                if dest is not None and out is not None:
                    out.close()
                    out = None
                    dest.unlink(missing_ok=True)
                raise
            finally:
                if out is not None and not isinstance(out, io.BytesIO):
                    out.close()
    return Scanned(path, manifest, objects, metadata, sum(ti.size for ti in listed))


def _check_tail(f: IO[bytes], label: str, mti: tarfile.TarInfo, size: int) -> dict[str, Any]:
    """backup.json: its bytes, its header (rebuilt and compared), and the zero blocks after it."""
    f.seek(mti.offset_data)
    raw = f.read(mti.size)
    if len(raw) != mti.size:
        raise BackupValidationError(label, "the archive is truncated (backup.json is cut off)")
    manifest = parse_manifest(raw, label)
    f.seek(mti.offset)
    if f.read(mti.offset_data - mti.offset) != tar_header(MANIFEST, mti.size, int(mti.mtime)):
        raise BackupValidationError(label, "the tar header of backup.json was altered", member=MANIFEST)
    end = mti.offset_data + mti.size
    expected = end + (-end % BLOCK) + 2 * BLOCK
    expected += -expected % RECORD
    if size < expected:
        raise BackupValidationError(label, "the archive is truncated (its end-of-archive blocks are missing)")
    if size != expected:
        raise BackupValidationError(label, "bytes were appended after the end of the archive")
    f.seek(end)
    if f.read().strip(b"\0"):
        raise BackupValidationError(label, "the bytes after backup.json were altered")
    return manifest


def _check_listing(label: str, listed: list[tarfile.TarInfo], declared: list[dict[str, Any]]) -> None:
    """The tar's members are backup.json's, in its order, at its offsets, of its sizes."""
    for i, ti in enumerate(listed):
        if i >= len(declared):
            raise BackupValidationError(label, f"{describe_member(ti.name)} is not listed in backup.json",
                                        member=ti.name)
        d = declared[i]
        if (d["name"], d["offset"], d["size"]) != (ti.name, ti.offset, ti.size):
            raise BackupValidationError(
                label, f"{describe_member(d['name'])} does not match backup.json (name, place or size)",
                member=d["name"])
    if len(declared) != len(listed):
        missing = declared[len(listed)]["name"]
        raise BackupValidationError(label, f"{describe_member(missing)} is missing", member=missing)
    if listed and listed[0].offset != 0:
        raise BackupValidationError(label, "the archive does not start with a member")


def _copy_member(f: IO[bytes], label: str, ti: tarfile.TarInfo, span_end: int, d: dict[str, Any],
                 out: IO[bytes] | None) -> None:
    """Read one member's stretch (header, data, padding) from *f*, checking both of its
    checksums; its data goes to *out* as it is read (None: only checked)."""
    span, data = hashlib.sha256(), hashlib.sha256()
    span.update(_read_exact(f, ti.offset_data - ti.offset, label))
    remaining = ti.size
    while remaining:
        chunk = _read_exact(f, min(CHUNK, remaining), label)
        span.update(chunk)
        data.update(chunk)
        if out is not None:
            out.write(chunk)
        remaining -= len(chunk)
    span.update(_read_exact(f, span_end - ti.offset_data - ti.size, label))
    if data.hexdigest() != d["sha256"]:
        raise BackupValidationError(label, f"{describe_member(ti.name)} is corrupt (checksum mismatch)",
                                    member=ti.name)
    if span.hexdigest() != d["tar_sha256"]:
        raise BackupValidationError(
            label, f"the tar header or padding of {describe_member(ti.name)} was altered", member=ti.name)


def _read_exact(f: IO[bytes], n: int, label: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BackupValidationError(label, "the archive is truncated")
    return data


def _explain_broken_listing(path: Path, members: list[tarfile.TarInfo], error: str | None) -> None:
    """The tar listing stopped before backup.json: say which member the damage hit."""
    label = path.name
    try:
        m = read_manifest(path)
    except BackupError:
        detail = "it has no backup.json (truncated, or not a dbvers backup)"
        if error:
            detail += f"; tar says: {error}"
        raise BackupValidationError(label, detail) from None
    declared = m["members"]
    for i, d in enumerate(declared):
        if i >= len(members) or members[i].name != d["name"] or members[i].offset != d["offset"]:
            raise BackupValidationError(label, f"the tar header of {describe_member(d['name'])} is damaged",
                                        member=d["name"])
    raise BackupValidationError(label, "the tar header of backup.json is damaged", member=MANIFEST)
