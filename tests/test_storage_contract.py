"""One contract suite per storage protocol, run against every backend.

``OBJECT_BACKENDS`` and ``REF_BACKENDS`` list the backends: adding one (the remotes'
directory and S3 stores) is one entry there, and every test below runs on it. An
object backend entry also says how to damage a stored object, since only the
backend knows where its bytes are.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import moto_endpoint, moto_remote_url

import dbvers
from dbvers.errors import (
    CorruptObjectError,
    InvalidRefNameError,
    MissingObjectError,
    RefConflictError,
    RepositoryBusyError,
)
from dbvers.formats import ZERO_ID
from dbvers.fsutil import owner_tag
from dbvers.remotes import DirectoryRemote, S3Remote, open_remote
from dbvers.remotes.layout import object_key
from dbvers.remotes.s3 import S3ObjectStore
from dbvers.storage import reflock
from dbvers.storage.base import ObjectStore, RefStore
from dbvers.storage.local import LocalObjectStore
from dbvers.storage.local_refs import LocalRefStore
from dbvers.storage.memory import MemoryObjectStore, MemoryRefStore
from dbvers.storage.refnames import KEYFRAMES


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@dataclass
class ObjectBackend:
    make: Callable[[Path], ObjectStore]
    damage: Callable[[ObjectStore, str], None]  # change the stored bytes of one object


def _local_objects(tmp: Path) -> ObjectStore:
    return LocalObjectStore(tmp / "objects")


def _damage_local(store: ObjectStore, oid: str) -> None:
    assert isinstance(store, LocalObjectStore)
    p = store.path(oid)
    p.write_bytes(_flip_last_byte(p.read_bytes()))


_memory_data: dict[int, dict[str, bytes]] = {}


def _memory_objects(tmp: Path) -> ObjectStore:
    data: dict[str, bytes] = {}
    store = MemoryObjectStore(data)
    _memory_data[id(store)] = data
    return store


def _damage_memory(store: ObjectStore, oid: str) -> None:
    data = _memory_data[id(store)]
    data[oid] = _flip_last_byte(data[oid])


def _directory_objects(tmp: Path) -> ObjectStore:
    return DirectoryRemote(tmp / "remote").check(create=True).objects


def _s3_remote() -> S3Remote:
    remote = open_remote(moto_remote_url(), create=True, endpoint_url=moto_endpoint())
    assert isinstance(remote, S3Remote)
    return remote


def _damage_s3(store: ObjectStore, oid: str) -> None:
    conn = store.conn  # type: ignore[attr-defined]
    got = conn.get(object_key(oid), 1 << 30)
    conn.put(object_key(oid), _flip_last_byte(got[0]))


OBJECT_BACKENDS: dict[str, ObjectBackend] = {
    "local": ObjectBackend(_local_objects, _damage_local),
    "memory": ObjectBackend(_memory_objects, _damage_memory),
    "directory": ObjectBackend(_directory_objects, _damage_local),  # the remote's objects are a local store
    "s3": ObjectBackend(lambda tmp: _s3_remote().objects, _damage_s3),
}


def _local_refs(tmp: Path) -> RefStore:
    (tmp / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    return LocalRefStore(tmp)


REF_BACKENDS: dict[str, Callable[[Path], RefStore]] = {
    "local": _local_refs,
    "memory": lambda tmp: MemoryRefStore(),
    "directory": lambda tmp: DirectoryRemote(tmp / "remote").check(create=True).refs,
    "s3": lambda tmp: _s3_remote().refs,
}


@pytest.fixture(params=list(OBJECT_BACKENDS))
def backend(request: pytest.FixtureRequest) -> ObjectBackend:
    return OBJECT_BACKENDS[request.param]


@pytest.fixture
def objects(backend: ObjectBackend, tmp_path: Path) -> ObjectStore:
    return backend.make(tmp_path)


@pytest.fixture(params=list(REF_BACKENDS))
def refs(request: pytest.FixtureRequest, tmp_path: Path) -> RefStore:
    return REF_BACKENDS[request.param](tmp_path)


def _id(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


# -- ObjectStore ---------------------------------------------------------------------

BODIES = {"empty": b"", "small": b"hello", "binary": bytes(range(256)) * 40, "big": os.urandom(9 << 20)}


@pytest.mark.parametrize("body", list(BODIES))
def test_round_trip(objects: ObjectStore, body: str) -> None:
    assert isinstance(objects, ObjectStore)  # every method of the protocol is there
    data = BODIES[body]
    oid = objects.put_bytes("patch", data)
    assert objects.has(oid) and oid in set(objects.iter_ids())
    assert objects.get(oid) == objects.get(oid, "patch") == data
    with objects.open_body(oid, "patch") as reader:  # type: ignore[attr-defined]
        pieces = []
        while piece := reader.read(4096):
            pieces.append(piece)
    assert b"".join(pieces) == data
    assert objects.object_type(oid) == objects.verify(oid) == "patch"
    assert objects.body_size(oid) == len(data)
    assert objects.stored_size(oid) > 0
    assert abs(objects.mtime(oid) - time.time()) < 60


def test_files_round_trip(objects: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(BODIES["big"])
    oid = objects.put_file("snapshot", src)
    assert oid == objects.put_bytes("snapshot", BODIES["big"])  # the same id either way
    dest = tmp_path / "out.bin"
    objects.get_to_file(oid, dest, "snapshot")
    assert dest.read_bytes() == BODIES["big"]


def test_type_is_checked(objects: ObjectStore, tmp_path: Path) -> None:
    oid = objects.put_bytes("schema", b"{}")
    with pytest.raises(CorruptObjectError, match="expected a commit"):
        objects.get(oid, "commit")
    with pytest.raises(CorruptObjectError, match="expected a commit"):
        objects.get_to_file(oid, tmp_path / "x", "commit")
    assert not (tmp_path / "x").exists()


def test_missing_object(objects: ObjectStore) -> None:
    oid = _id("nothing")
    assert not objects.has(oid)
    for read in (objects.get, objects.verify, objects.object_type, objects.open_raw):
        with pytest.raises(MissingObjectError):
            read(oid)


@pytest.mark.parametrize("body", ["small", "big"])
def test_damaged_object_is_an_error_never_wrong_bytes(backend: ObjectBackend, objects: ObjectStore,
                                                       tmp_path: Path, body: str) -> None:
    oid = objects.put_bytes("patch", BODIES[body])
    backend.damage(objects, oid)
    with pytest.raises(CorruptObjectError):
        objects.get(oid)
    with pytest.raises(CorruptObjectError):
        objects.verify(oid)
    with pytest.raises(CorruptObjectError):
        objects.get_to_file(oid, tmp_path / "out", "patch")
    assert not (tmp_path / "out").exists()
    with pytest.raises(CorruptObjectError):  # a stream fails by its end at the latest
        reader = objects.open_body(oid)
        while reader.read(1 << 16):
            pass


def test_put_is_idempotent_and_repairs(backend: ObjectBackend, objects: ObjectStore) -> None:
    oid = objects.put_bytes("commit", b"{}")
    assert objects.put_bytes("commit", b"{}") == oid
    assert list(objects.iter_ids()) == [oid]
    backend.damage(objects, oid)
    assert objects.put_bytes("commit", b"{}") == oid  # a damaged copy is replaced, not trusted
    assert objects.get(oid, "commit") == b"{}"


@pytest.mark.parametrize("dest_kind", list(OBJECT_BACKENDS))
def test_raw_transfer_keeps_ids_and_bytes(objects: ObjectStore, dest_kind: str, tmp_path: Path) -> None:
    dest = OBJECT_BACKENDS[dest_kind].make(tmp_path / "dest")
    ids = [objects.put_bytes("patch", data) for data in BODIES.values()]
    for oid in ids:
        with objects.open_raw(oid) as raw:
            assert dest.put_raw(oid, raw) == oid
    assert sorted(dest.iter_ids()) == sorted(ids)
    for oid in ids:
        with objects.open_raw(oid) as a, dest.open_raw(oid) as b:
            assert a.read() == b.read()
        assert dest.get(oid) == objects.get(oid)
    with objects.open_raw(ids[1]) as raw:  # again: idempotent
        assert dest.put_raw(ids[1], raw) == ids[1]


def test_put_raw_verifies_before_publishing(objects: ObjectStore, tmp_path: Path) -> None:
    source = MemoryObjectStore()
    good = source.put_bytes("patch", b"the real content")
    wrong = _id("another")
    with source.open_raw(good) as raw, pytest.raises(CorruptObjectError):
        objects.put_raw(wrong, raw)
    assert not objects.has(wrong) and list(objects.iter_ids()) == []
    with source.open_raw(good) as raw:
        damaged = _flip_last_byte(raw.read())
    import io

    with pytest.raises(CorruptObjectError):
        objects.put_raw(good, io.BytesIO(damaged))
    assert not objects.has(good)


def test_put_raw_of_a_large_object_from_a_file(objects: ObjectStore, tmp_path: Path) -> None:
    """A large object handed over as a local file (as a push does): stored exactly; damaged
    (its last byte), it is refused and never appears, however the backend streams it."""
    source = MemoryObjectStore()
    oid = source.put_bytes("snapshot", os.urandom(9 << 20))  # incompressible: > 8 MiB stored
    with source.open_raw(oid) as raw:
        encoded = raw.read()
    damaged, good = tmp_path / "damaged", tmp_path / "good"
    damaged.write_bytes(_flip_last_byte(encoded))
    good.write_bytes(encoded)
    with open(damaged, "rb") as f, pytest.raises(CorruptObjectError):
        objects.put_raw(oid, f)
    assert not objects.has(oid)
    with open(good, "rb") as f:
        assert objects.put_raw(oid, f) == oid
    with objects.open_raw(oid) as raw:
        assert raw.read() == encoded


@pytest.mark.parametrize("size", [100, 9 << 20])  # one PUT, and a streamed / multipart transfer
def test_put_raw_hands_over_the_verified_body(objects: ObjectStore, size: int, tmp_path: Path) -> None:
    """*body_to* gets the decoded body, exactly (a clone's snapshot is decoded once); an object
    already stored is not read again, and nothing is written to it."""
    body = os.urandom(size)
    source = MemoryObjectStore()
    oid = source.put_bytes("snapshot", body)
    with source.open_raw(oid) as raw:
        encoded = raw.read()
    (tmp_path / "raw").write_bytes(encoded)
    with open(tmp_path / "raw", "rb") as raw, open(tmp_path / "body", "wb") as out:
        assert objects.put_raw(oid, raw, body_to=out) == oid
    assert (tmp_path / "body").read_bytes() == body
    if not isinstance(objects, S3ObjectStore):  # S3 re-sends (it doesn't ask what it has)
        with open(tmp_path / "raw", "rb") as raw, open(tmp_path / "again", "wb") as out:
            objects.put_raw(oid, raw, body_to=out)
        assert (tmp_path / "again").read_bytes() == b""


def test_delete_and_with_prefix(objects: ObjectStore) -> None:
    a, b = objects.put_bytes("commit", b"1"), objects.put_bytes("commit", b"2")
    assert objects.with_prefix(a[:6]) == [a]
    assert objects.with_prefix(a[:6].upper()) == [a]
    assert set(objects.with_prefix(a[:2])) >= {a}
    assert objects.with_prefix("x") == objects.with_prefix("zz") == []
    objects.delete(a)
    objects.delete(a)  # absent: no error
    assert not objects.has(a) and objects.has(b)
    assert objects.with_prefix(a[:6]) == [] and list(objects.iter_ids()) == [b]


# -- RefStore ------------------------------------------------------------------------


def test_cas_create_move_and_delete(refs: RefStore) -> None:
    assert isinstance(refs, RefStore)  # every method of the protocol is there
    a, b = _id("a"), _id("b")
    ref = "refs/heads/topic/x"
    assert refs.read(ref) is None
    assert refs.compare_and_swap(ref, None, a, message="create")
    assert not refs.compare_and_swap(ref, None, b, message="create again")  # exists: expect None loses
    assert refs.read(ref) == a
    assert not refs.compare_and_swap(ref, b, b, message="stale")
    assert refs.compare_and_swap(ref, a, b, message="move")
    assert refs.read(ref) == b
    assert not refs.compare_and_swap(ref, a, None, message="stale delete")
    assert refs.compare_and_swap(ref, b, None, message="delete")
    assert refs.read(ref) is None and refs.list("refs/heads/") == {}
    with pytest.raises(RefConflictError):
        refs.update(ref, a, expect=b, message="lost")
    with pytest.raises(ValueError):
        refs.compare_and_swap(ref, None, "not an id", message="")


def test_names_are_validated(refs: RefStore) -> None:
    for bad in ("refs/heads/a..b", "refs/heads/x.lock", "refs/other/x", "refs/keyframes/abc", "../x"):
        with pytest.raises(InvalidRefNameError):
            refs.compare_and_swap(bad, None, _id(1), message="")
        with pytest.raises(InvalidRefNameError):
            refs.read(bad)


def test_head_symbolic_and_detached(refs: RefStore) -> None:
    a, b = _id("a"), _id("b")
    assert refs.head().branch == "main" and refs.head().commit is None  # unborn
    refs.update("refs/heads/main", a, expect=None, message="first")
    assert refs.head().commit == a
    refs.update("refs/tags/v1", a, expect=None, message="tag")
    assert refs.branches() == {"main": a} and refs.tags() == {"v1": a}
    refs.set_head(commit=b, message="detach")
    assert refs.head().detached and refs.head().commit == b
    refs.update("refs/heads/dev", b, expect=None, message="dev")
    refs.set_head(branch="dev", message="attach")
    assert refs.head().branch == "dev" and refs.head().commit == b
    assert (refs.head_text() or "").strip() == "ref: refs/heads/dev"
    values, problems = refs.check()
    assert problems == [] and values == {"HEAD": b, "refs/heads/dev": b, "refs/heads/main": a, "refs/tags/v1": a}


def test_reflog(refs: RefStore) -> None:
    a, b = _id("a"), _id("b")
    refs.update("refs/heads/main", a, expect=None, message="commit: one\nmore lines")
    refs.update("refs/heads/main", b, expect=a, message="commit: two")
    refs.update("refs/heads/side", a, expect=None, message="branch")
    refs.delete("refs/heads/side", message="delete")
    log = refs.reflog("refs/heads/main")
    assert [(e.old, e.new, e.message) for e in log] == [(ZERO_ID, a, "commit: one"), (a, b, "commit: two")]
    assert [(e.old, e.new) for e in refs.reflog("HEAD")] == [(ZERO_ID, a), (a, b)]  # the checked-out branch
    assert [(e.old, e.new) for e in refs.reflog("refs/heads/side")] == [(ZERO_ID, a), (a, ZERO_ID)]
    assert refs.reflog_names() == ["HEAD", "refs/heads/main", "refs/heads/side"]
    assert refs.has_reflog("refs/heads/side") and not refs.has_reflog("refs/heads/none")
    assert refs.reflog_ids() == {a, b}
    refs.append_reflog("refs/heads/main", b, a, "by hand")
    assert refs.reflog("refs/heads/main")[-1].message == "by hand"
    lines = refs.reflog_lines("refs/heads/main")
    refs.rewrite_reflog("refs/heads/main", lines[1:])
    assert len(refs.reflog("refs/heads/main")) == 2
    refs.rewrite_reflog("refs/heads/side", [])
    assert not refs.has_reflog("refs/heads/side")


def test_a_listing_never_leaves_the_refs(refs: RefStore) -> None:
    for bad in ("../", "refs/heads/../../", "refs/", "", "refs/remotes/a/../../../", "refs/heads/x"):
        with pytest.raises(InvalidRefNameError):
            refs.list(bad)
    assert refs.list("refs/remotes/origin/") == {} and refs.list("refs/heads/") == refs.branches()


def test_keyframe_records(refs: RefStore) -> None:
    commit, snap = _id("commit"), _id("snapshot")
    assert refs.keyframe(commit) is None and refs.keyframes() == {}
    refs.set_keyframe(commit, snap)
    assert refs.keyframe(commit) == snap
    assert refs.read(KEYFRAMES + commit) == snap  # a ref like any other, for transfer
    assert refs.keyframes() == {commit: snap}
    # ... but no commit ref: not a root of the history, no reflog, never a revision
    assert refs.check()[0] == {"HEAD": None}
    assert refs.reflog_names() == [] and refs.lookup(KEYFRAMES + commit) is None
    other, snap2 = _id("other commit"), _id("other snapshot")
    refs.set_keyframe(other, snap2)
    # Only the records asked for (a fetch asks for those of the commits it receives).
    assert refs.keyframes(among={other, _id("no record")}) == {other: snap2}
    assert refs.keyframes(among=[]) == {} and refs.keyframes() == {commit: snap, other: snap2}
    # ... or those a test picks from the names (a fetch: the records of commits it doesn't have)
    assert refs.keyframes(among=lambda c: c != commit) == {other: snap2}
    refs.delete_keyframe(other)
    refs.delete_keyframe(commit)
    assert refs.keyframe(commit) is None and refs.keyframes() == {}
    with pytest.raises(ValueError):
        refs.set_keyframe(commit, "garbage")


def _race(refs: RefStore, ref: str, start: str, workers: int, rounds: int) -> list[str]:
    """Workers that each move *ref* forward *rounds* times by CAS: no move may be lost."""
    won: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(workers)

    def work(w: int) -> None:
        barrier.wait()
        done = 0
        while done < rounds:
            cur = refs.read(ref)
            new = _id(f"{cur}{w}{done}")
            if refs.compare_and_swap(ref, cur, new, message=f"w{w}"):
                with lock:
                    won.append(new)
                done += 1

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_concurrent_cas_from_threads(refs: RefStore) -> None:
    start = _id("start")
    refs.update("refs/heads/main", start, expect=None, message="start")
    won = _race(refs, "refs/heads/main", start, workers=4, rounds=15)
    assert len(won) == 60
    chain = [(e.old, e.new) for e in refs.reflog("refs/heads/main")][1:]
    assert len(chain) == 60 and all(a[1] == b[0] for a, b in itertools.pairwise(chain))
    assert chain[0][0] == start and chain[-1][1] == refs.read("refs/heads/main")


def _cas_once(root: str, expect: str, new: str, go: float, out: multiprocessing.Queue) -> None:
    while time.time() < go:
        time.sleep(0.0005)
    out.put(LocalRefStore(Path(root)).compare_and_swap("refs/heads/main", expect, new, message="race"))


def test_concurrent_cas_from_processes_local(tmp_path: Path) -> None:
    refs = _local_refs(tmp_path)
    start = _id("start")
    refs.update("refs/heads/main", start, expect=None, message="start")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    go = time.time() + 0.5
    procs = [ctx.Process(target=_cas_once, args=(str(tmp_path), start, _id(i), go, out)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    results = [out.get(timeout=5) for _ in procs]
    assert results.count(True) == 1, results
    assert refs.read("refs/heads/main") in {_id(i) for i in range(4)}
    assert len(refs.reflog("refs/heads/main")) == 2
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # every lock file was removed


def test_stale_ref_lock_of_a_killed_writer_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refs = _local_refs(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tag = owner_tag().split(".")[0]
    lock = reflock.lock_path(tmp_path / "refs" / "heads" / "main")
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{tag}.{int(dead.stdout)}.1-0123\n")  # a writer killed while holding it
    assert refs.compare_and_swap("refs/heads/main", None, _id(1), message="after a crash")
    assert not lock.exists()
    # A live writer's lock is waited for, then reported (never broken)
    lock.write_text(f"{owner_tag()}-live\n")
    monkeypatch.setattr(reflock, "WAIT", 0.2)
    with pytest.raises(RepositoryBusyError):
        refs.compare_and_swap("refs/heads/main", _id(1), _id(2), message="blocked")
    assert refs.read("refs/heads/main") == _id(1) and lock.exists()


# -- keyframe records in an old store ------------------------------------------------


def test_old_layout_keyframe_records_read_and_migrate(db_path: Path, tmp_path: Path) -> None:
    import configparser
    import sqlite3

    dbvers.init(db_path)
    cfg = configparser.ConfigParser()
    cfg.read(db_path.parent / ".dbvers" / "config")
    cfg.set("snapshot", "max_patch_ratio", "1000")  # commits are patches: the record is what helps
    with open(db_path.parent / ".dbvers" / "config", "w") as f:
        cfg.write(f)
    repo = dbvers.open(db_path)
    con = sqlite3.connect(db_path)
    for i in range(3):
        con.execute("INSERT INTO orders VALUES (?, 'kf', 1, 1.0, NULL)", (10 + i,))
        con.commit()
        repo.commit(f"row {i}")
    con.close()
    tip = repo.resolve("HEAD")
    assert repo.get_commit(tip).snapshot is None
    snap = repo.snapshot()
    # Make it an old store: the record as keyframes/<commit>, no refs/keyframes/
    store = repo.store_dir
    (store / "refs" / "keyframes" / tip).unlink()
    (store / "refs" / "keyframes").rmdir()
    (store / "keyframes").mkdir(exist_ok=True)
    (store / "keyframes" / tip).write_text(snap + "\n")
    old = dbvers.open(db_path)
    assert old.snapshot_of(tip) == snap and old.refs.keyframes() == {tip: snap}
    assert old.fsck().ok
    assert old.snapshot() == snap  # already recorded: nothing new
    # backups of an old store carry keyframes/ members; a restore reads them
    archive = old.backup(tmp_path / "backups").path
    (tmp_path / "elsewhere").mkdir()
    restored = dbvers.restore(archive, to=tmp_path / "elsewhere" / "restored.db")
    assert restored.snapshot_of(tip) == snap
    old.gc()  # migrates
    assert not (store / "keyframes").exists()
    assert (store / "refs" / "keyframes" / tip).read_text().strip() == snap
    assert dbvers.open(db_path).snapshot_of(tip) == snap and old.fsck().ok
    # restoring that old archive into the repository itself brings the record back as a ref
    old.refs.delete_keyframe(tip)
    assert old.snapshot_of(tip) is None
    dbvers.restore(archive, to=db_path)
    assert (store / "refs" / "keyframes" / tip).read_text().strip() == snap
