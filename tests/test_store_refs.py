"""Unit tests for the object store, ref names, the reflog, the repository lock, the
public API surface, and the import cost of the CLI's hot paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import execute

import dbvers
from dbvers.errors import (
    CorruptObjectError,
    DamagedRefError,
    InvalidRefNameError,
    MissingObjectError,
    RefConflictError,
    RepositoryBusyError,
)
from dbvers.formats import ZERO_ID
from dbvers.fsutil import RepoLock
from dbvers.objects import object_id
from dbvers.storage.local import LocalObjectStore as ObjectStore
from dbvers.storage.local_refs import LocalRefStore as RefStore
from dbvers.storage.refnames import HEADS, validate_name

# -- ObjectStore -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


@pytest.mark.parametrize("obj_type", ["commit", "schema", "patch", "snapshot"])
@pytest.mark.parametrize("body", [b"", b"x", b'{"a":1}', bytes(range(256)) * 50])
def test_round_trip(store: ObjectStore, obj_type: str, body: bytes) -> None:
    oid = store.put_bytes(obj_type, body)
    assert oid == object_id(obj_type, body)
    assert len(oid) == 64
    assert store.has(oid)
    assert store.path(oid) == store.root / oid[:2] / oid[2:]
    assert store.get(oid) == body
    assert store.get(oid, obj_type) == body
    assert store.object_type(oid) == obj_type
    assert store.verify(oid) == obj_type
    assert list(store.iter_ids()) == [oid]
    # idempotent
    assert store.put_bytes(obj_type, body) == oid
    assert list(store.iter_ids()) == [oid]


def test_type_is_part_of_the_id(store: ObjectStore) -> None:
    a = store.put_bytes("patch", b"same")
    b = store.put_bytes("schema", b"same")
    assert a != b
    assert sorted(store.iter_ids()) == sorted([a, b])


def test_stored_compressed(store: ObjectStore) -> None:
    body = b"abc" * 100_000
    oid = store.put_bytes("patch", body)
    assert store.stored_size(oid) < len(body) // 10
    assert store.path(oid).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic


def test_no_temp_files_left(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("patch", b"one")
    src = tmp_path / "big.bin"
    src.write_bytes(b"z" * 5000)
    store.put_file("snapshot", src)
    store.put_file("snapshot", src)  # already there: the temp copy is dropped
    leftovers = [p for p in store.root.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_flipped_byte_is_corrupt(store: ObjectStore) -> None:
    body = os.urandom(3000)
    oid = store.put_bytes("patch", body)
    p = store.path(oid)
    original = p.read_bytes()
    detected = 0
    for pos in range(4, len(original), max(1, len(original) // 40)):
        data = bytearray(original)
        data[pos] ^= 0x01
        p.write_bytes(bytes(data))
        with pytest.raises(CorruptObjectError) as exc:
            store.get(oid)
        assert exc.value.object_id == oid
        assert oid[:12] in str(exc.value)
        with pytest.raises(CorruptObjectError):
            store.verify(oid)
        detected += 1
    assert detected >= 20


def test_valid_compression_of_other_content_is_refused(store: ObjectStore) -> None:
    """The hash is checked on every read, not only the compression framing."""
    oid = store.put_bytes("patch", b"the real content")
    other = store.put_bytes("patch", b"the fake content")
    os.replace(store.path(other), store.path(oid))
    with pytest.raises(CorruptObjectError, match="does not match its id"):
        store.get(oid)
    with pytest.raises(CorruptObjectError):
        store.verify(oid)


def test_truncated_is_corrupt(store: ObjectStore) -> None:
    oid = store.put_bytes("snapshot", os.urandom(10_000))
    p = store.path(oid)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CorruptObjectError):
        store.get(oid)
    p.write_bytes(b"")
    with pytest.raises(CorruptObjectError):
        store.get(oid)


def test_bad_header_is_corrupt(store: ObjectStore) -> None:
    import pyarrow as pa

    for raw in (b"no header at all", b"blob 3\0abc", b"patch x\0abc", b"patch 5\0abc"):
        oid = object_id("patch", b"abc")
        p = store.path(oid)
        p.parent.mkdir(parents=True, exist_ok=True)
        with pa.output_stream(str(p), compression="zstd") as out:
            out.write(raw)
        with pytest.raises(CorruptObjectError):
            store.get(oid)


def test_missing_object(store: ObjectStore) -> None:
    oid = object_id("patch", b"never stored")
    assert not store.has(oid)
    with pytest.raises(MissingObjectError) as exc:
        store.get(oid)
    assert isinstance(exc.value, CorruptObjectError)
    assert "missing" in str(exc.value)
    with pytest.raises(MissingObjectError):
        store.get_to_file(oid, store.root.parent / "out.bin")
    assert not (store.root.parent / "out.bin").exists()


def test_wrong_expected_type_refused(store: ObjectStore, tmp_path: Path) -> None:
    oid = store.put_bytes("patch", b"payload")
    with pytest.raises(CorruptObjectError, match="expected a commit"):
        store.get(oid, "commit")
    dest = tmp_path / "out.bin"
    with pytest.raises(CorruptObjectError, match="expected a snapshot"):
        store.get_to_file(oid, dest, "snapshot")
    assert not dest.exists()
    assert store.get(oid, "patch") == b"payload"


def test_put_file_streams_large_file(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.db"
    # > 2 MB, several read chunks, partly incompressible
    chunk = os.urandom(256 * 1024)
    with open(src, "wb") as f:
        for i in range(10):
            f.write(chunk if i % 2 else bytes(256 * 1024))
        f.write(b"tail")
    data = src.read_bytes()
    assert len(data) > 2 * 1024 * 1024
    oid = store.put_file("snapshot", src)
    assert oid == object_id("snapshot", data)
    assert store.put_bytes("snapshot", data) == oid  # same id either way
    dest = tmp_path / "restored.db"
    store.get_to_file(oid, dest, "snapshot")
    assert dest.read_bytes() == data
    assert store.get(oid) == data
    assert store.verify(oid) == "snapshot"


def test_get_to_file_removes_partial_output(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.db"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    oid = store.put_file("snapshot", src)
    p = store.path(oid)
    p.write_bytes(p.read_bytes()[: p.stat().st_size - 1000])
    dest = tmp_path / "restored.db"
    with pytest.raises(CorruptObjectError):
        store.get_to_file(oid, dest)
    assert not dest.exists()


def test_with_prefix_and_delete(store: ObjectStore) -> None:
    ids = [store.put_bytes("patch", str(i).encode()) for i in range(50)]
    for oid in ids[:5]:
        assert oid in store.with_prefix(oid[:4])
        assert store.with_prefix(oid[:20]) == [oid]
        assert store.with_prefix(oid.upper()[:8]) == [oid]
    assert store.with_prefix("zz") == []
    assert store.with_prefix("a") == []
    store.delete(ids[0])
    assert not store.has(ids[0])
    store.delete(ids[0])  # deleting twice is fine
    assert sorted(store.iter_ids()) == sorted(ids[1:])


# -- ref names ---------------------------------------------------------------------


GOOD_NAMES = ["main", "feature/x", "v1.0", "release-2024_01", "a/b/c", "fix#12", "日本",
              "a.b", "x-", "HEADS", "head", "@x", "a@b", "deadbeef"]
BAD_NAMES = ["", "..", "a..b", "-x", "-", "a b", " a", "a\tb", "a\nb", "a~1", "a^", "a:b",
             "a?", "a*", "a[0]", "a\\b", "/a", "a/", "a//b", ".a", "a/.b", "a.lock",
             "a/b.lock", "a.", "@", "a@{1}", "HEAD", "\x7f", "\x00", "0" * 64, "a" * 64]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_validate_name_good(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_validate_name_bad(name: str) -> None:
    with pytest.raises(InvalidRefNameError) as exc:
        validate_name(name)
    assert exc.value.name == name
    assert "not a valid name" in str(exc.value)


# -- refs and the reflog -------------------------------------------------------------


A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def refs(tmp_path: Path) -> RefStore:
    (tmp_path / "HEAD").write_text("ref: refs/heads/main\n")
    return RefStore(tmp_path)


def test_refs_update_and_head(refs: RefStore) -> None:
    assert refs.head().branch == "main" and refs.head().commit is None
    refs.update(HEADS + "main", A, expect=None, message="commit: first")
    assert refs.read(HEADS + "main") == A
    assert refs.head().commit == A and not refs.head().detached
    with pytest.raises(RefConflictError):
        refs.update(HEADS + "main", B, expect=C, message="lost race")
    assert refs.read(HEADS + "main") == A
    refs.update(HEADS + "main", B, expect=A, message="commit: second")
    refs.update(HEADS + "feature/x", A, expect=None, message="branch")
    assert refs.branches() == {"main": B, "feature/x": A}
    refs.set_head(commit=A, message="checkout")
    assert refs.head().detached and refs.head().commit == A
    refs.set_head(branch="feature/x", message="checkout")
    assert refs.head().branch == "feature/x"
    refs.delete(HEADS + "feature/x", message="deleted")
    assert refs.read(HEADS + "feature/x") is None
    assert not (refs.root / "refs/heads/feature").exists()  # empty directory removed
    assert (refs.root / "refs/heads").is_dir()


def test_read_refuses_garbage(refs: RefStore) -> None:
    # Only a ref that does not exist is unborn; one that can't be read is damaged (issue 9, item 11).
    p = refs.root / "refs/heads/junk"
    p.parent.mkdir(parents=True)
    p.write_text("not an id\n")
    with pytest.raises(DamagedRefError, match="refs/heads/junk is damaged"):
        refs.read(HEADS + "junk")
    with pytest.raises(DamagedRefError):
        refs.branches()
    assert refs.read("refs/heads/nothing") is None
    values, damaged = refs.check()
    assert [d.ref for d in damaged] == ["refs/heads/junk"] and values == {"HEAD": None}


def test_reflog_lines(refs: RefStore) -> None:
    refs.update(HEADS + "main", A, expect=None, message="commit: first\nsecond line dropped")
    refs.update(HEADS + "main", B, expect=A, message="commit: two")
    log = refs.reflog(HEADS + "main")
    assert [(e.old, e.new, e.message) for e in log] == [
        (ZERO_ID, A, "commit: first"),
        (A, B, "commit: two"),
    ]
    assert all(abs(e.time - time.time()) < 60 for e in log)
    # moves of the checked-out branch are logged for HEAD too
    assert [(e.old, e.new) for e in refs.reflog("HEAD")] == [(ZERO_ID, A), (A, B)]
    text = (refs.root / "logs/refs/heads/main").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2
    assert refs.reflog_ids() == {A, B}


@pytest.mark.parametrize("torn", [f"{B} {C[:20]}", f"{B}", f"{B} {C} ", f"{B} {C} 17xx commit: torn",
                                  "\x00\x00\x00", f"{B[:63]}"])
def test_reflog_torn_last_line_ignored(refs: RefStore, torn: str) -> None:
    refs.update(HEADS + "main", A, expect=None, message="commit: first")
    refs.update(HEADS + "main", B, expect=A, message="commit: two")
    with open(refs.root / "logs/refs/heads/main", "a") as f:
        f.write(torn)  # a writer killed mid-line: no newline
    log = refs.reflog(HEADS + "main")
    assert [(e.old, e.new, e.message) for e in log] == [
        (ZERO_ID, A, "commit: first"),
        (A, B, "commit: two"),
    ]
    assert C not in refs.reflog_ids()
    # the next append starts on its own line and is read back
    refs.update(HEADS + "main", C, expect=B, message="commit: three")
    assert refs.reflog(HEADS + "main")[-1].new == C


def test_reflog_missing(refs: RefStore) -> None:
    assert refs.reflog("refs/heads/none") == []
    assert refs.reflog_ids() == set()


# -- the repository lock -------------------------------------------------------------


def _open_fds() -> int | None:
    """How many descriptors this process has open (None where /proc can't say)."""
    fds = Path("/proc/self/fd")
    return len(list(fds.iterdir())) if fds.is_dir() else None


def test_lock_timeout(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder = RepoLock(path, timeout=5)
    holder.acquire()
    try:
        waiter = RepoLock(path, timeout=0.3)
        fds = _open_fds()
        start = time.monotonic()
        with pytest.raises(RepositoryBusyError) as exc:
            waiter.acquire()
        waited = time.monotonic() - start
        assert 0.3 <= waited < 3
        assert exc.value.lock_path == str(path)
        assert "busy" in str(exc.value)
        assert waiter.depth == 0 and _open_fds() == fds  # nothing held, no descriptor left open
    finally:
        holder.release()
    # free again: acquired at once
    waiter = RepoLock(path, timeout=0.3)
    with waiter.held():
        assert waiter.depth == 1


def test_lock_reentrant_and_waits(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    lock = RepoLock(path, timeout=5)
    with lock.held():
        with lock.held():
            assert lock.depth == 2
        assert lock.depth == 1
    assert lock.depth == 0

    # The holder takes and releases the lock in its own thread (the lock is per thread).
    holder = RepoLock(path, timeout=5)
    taken = threading.Event()

    def hold() -> None:
        with holder.held():
            taken.set()
            time.sleep(0.3)

    timer = threading.Thread(target=hold)
    timer.start()
    try:
        assert taken.wait(5)
        waiter = RepoLock(path, timeout=5)
        start = time.monotonic()
        with waiter.held():
            assert time.monotonic() - start >= 0.2
    finally:
        timer.join()


def test_lock_released_by_dead_process(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    with RepoLock(path, timeout=0.5).held():
        pass


# -- public API (pinned in tests/test_layers.py) ------------------------------------------


def test_the_entry_points_are_callable() -> None:
    assert callable(dbvers.init) and callable(dbvers.open) and callable(dbvers.clone)
    assert isinstance(dbvers.__version__, str)


# -- import cost of the hot CLI paths --------------------------------------------------


HEAVY = ("pandas", "pyarrow.compute", "pyarrow.parquet", "pyarrow.dataset")

WRAPPER = textwrap.dedent(
    """
    import json, sys
    from dbvers.cli import main
    code = main(sys.argv[1:])
    print("MODULES=" + json.dumps(sorted(sys.modules)))
    sys.exit(code)
    """
)


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--format", "json"], ["commit", "-m", "light"], ["log", "--oneline"]],
    ids=["status", "status-json", "commit", "log"],
)
def test_hot_paths_do_not_import_heavy_modules(repo: dbvers.Repo, db_path: Path, tmp_path: Path,
                                                args: list[str]) -> None:
    execute(db_path, "INSERT INTO orders VALUES (4, 'dan', 7, 3.5, NULL); CREATE TABLE t2(a);")
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    r = subprocess.run([sys.executable, str(script), *args], cwd=db_path.parent,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("MODULES="))
    modules = set(json.loads(line.removeprefix("MODULES=")))
    assert "dbvers.repo" in modules
    loaded = sorted(m for m in modules for h in HEAVY if m == h or m.startswith(h + "."))
    assert loaded == [], f"dbvers {' '.join(args)} imported {loaded}"
