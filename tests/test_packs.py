"""Packs on a remote (``dbvers.remotes.packs``): what a push brought for a tip, read in one
request by fetch and clone, and never trusted: damaged, foreign or missing packs change
nothing but the number of requests."""

from __future__ import annotations

import importlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import dump_state, execute
from test_sync import RemoteAt, clone_of, make_db, states
from test_sync import remote as remote  # a fixture: pytest finds it by its name

import dbvers
from dbvers.errors import PushRejectedError
from dbvers.remotes import packs
from dbvers.remotes.directory import DirectoryRemote
from dbvers.remotes.s3 import S3ObjectStore, S3Remote
from dbvers.storage.local import LocalObjectStore


class Reads:
    """What a fetch asked the remote for: objects read whole (the walk's commits), objects
    opened to be copied (downloads), and packs."""

    def __init__(self) -> None:
        self.commits: list[str] = []
        self.opened: list[str] = []
        self.packs: list[str] = []

    def clear(self) -> None:
        for seen in (self.commits, self.opened, self.packs):
            seen.clear()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, remote: RemoteAt) -> Reads:
    seen = Reads()
    for cls in (DirectoryRemote, S3Remote):
        monkeypatch.setattr(cls, "read_pack", _counting(cls.read_pack, seen.packs))
    for cls, name, into in ((S3ObjectStore, "get", seen.commits), (S3ObjectStore, "open_raw", seen.opened),
                            (LocalObjectStore, "get", seen.commits), (LocalObjectStore, "open_raw", seen.opened)):
        monkeypatch.setattr(cls, name, _counting(getattr(cls, name), into))
    return seen


def _counting(read, into: list[str]):  # type: ignore[no-untyped-def]
    """*read*, noting what it is asked for when it reads a remote (the directory remote's
    objects are a LocalObjectStore too: told apart from local stores by their path)."""
    def counted(self, oid, *args):  # type: ignore[no-untyped-def]
        if not isinstance(self, LocalObjectStore) or "remote" in self.root.parts:
            into.append(oid)
        return read(self, oid, *args)
    return counted


def pushes(path: Path, remote: RemoteAt, rounds: int, per_round: int = 2) -> dbvers.Repo:
    """A repository pushed *rounds* times, *per_round* commits each time."""
    repo = dbvers.init(make_db(path, rows=300))
    repo.remote_add("origin", remote.url, **remote.options)
    n = 0
    for _ in range(rounds):
        for _ in range(per_round):
            n += 1
            execute(repo.path, f"UPDATE t SET v = {n} WHERE id % 7 = {n % 7}; INSERT INTO bag VALUES ({n}, {n})")
            repo.commit(f"commit {n}")
        repo.push(set_upstream=True)
    return repo


def put_pack(remote: RemoteAt, tip: str, data: bytes) -> None:
    """Replace *tip*'s pack on the remote (a push writes one only where none is)."""
    rem = remote.backend()
    if isinstance(rem, DirectoryRemote):
        (rem.root / packs.pack_key(tip)).write_bytes(data)
    else:
        rem.conn.put(packs.pack_key(tip), data)


def drop_packs(remote: RemoteAt) -> None:
    rem = remote.backend()
    if isinstance(rem, DirectoryRemote):
        shutil.rmtree(rem.root / "packs")
    else:
        for e in rem.conn.list(packs.PACKS):
            rem.conn.delete(e.key)


def test_a_pack_holds_what_it_can_and_a_reader_stops_at_damage() -> None:
    small, big = ("a" * 64, b"x" * 100), ("b" * 64, b"y" * (packs.OBJECT_MAX + 1))
    data = packs.build([small, big, ("c" * 64, b"z")])
    assert list(packs.parse(data)) == [small, ("c" * 64, b"z")]  # too big: left out (it stays loose)
    assert list(packs.parse(data[:-1])) == [small]  # cut short: the whole entries before the cut
    assert list(packs.parse(data + b"garbage\n")) == [small, ("c" * 64, b"z")]
    assert list(packs.parse(b"not a pack" + data)) == []
    assert list(packs.parse(data.replace(b" 100\n", b" -100\n"))) == []
    many = packs.build((f"{i:064x}", bytes(packs.OBJECT_MAX)) for i in range(40))
    assert len(many) <= packs.PACK_MAX and 0 < len(list(packs.parse(many))) < 40


def test_a_clone_reads_a_pack_per_push_and_no_commit_or_patch_loose(remote: RemoteAt, reads: Reads,
                                                                   tmp_path: Path) -> None:
    origin = pushes(tmp_path / "a" / "data.db", remote, rounds=3)
    snaps = {c.snapshot for c in origin.log() if c.snapshot}
    reads.clear()  # what the pushes read
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert len(reads.packs) == 3 and reads.commits == []  # each push's pack leads to the one before
    assert set(reads.opened) <= snaps  # only the snapshot is read loose: too big to pack
    assert states(repo) == states(origin) and repo.fsck().ok


def test_a_fetch_reads_the_new_pack_only(remote: RemoteAt, reads: Reads, tmp_path: Path) -> None:
    origin = pushes(tmp_path / "a" / "data.db", remote, rounds=1)
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    execute(origin.path, "UPDATE t SET note = 'later' WHERE id = 5")
    later = origin.commit("later")
    origin.push()
    reads.clear()
    got = repo.fetch()
    assert reads.packs == [later.id] and reads.commits == [] and reads.opened == []
    assert got.objects >= 2 and repo.objects.has(later.patch or "")
    repo.pull()
    assert dump_state(repo.path) == dump_state(origin.path) and repo.fsck().ok


def test_a_remote_without_packs_is_walked_commit_by_commit(remote: RemoteAt, reads: Reads,
                                                           tmp_path: Path) -> None:
    origin = pushes(tmp_path / "a" / "data.db", remote, rounds=2)
    drop_packs(remote)  # what an older dbvers pushed
    reads.clear()
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert sorted(reads.commits) == sorted(c.id for c in origin.log())
    assert len(reads.packs) == 1  # the tip's only: a commit read loose says nothing of packs below
    assert states(repo) == states(origin) and repo.fsck().ok


def test_damaged_and_foreign_packs_are_not_trusted(remote: RemoteAt, reads: Reads, tmp_path: Path) -> None:
    """A pack entry that fails its check is read loose; objects and commits no walked commit
    needs (a foreign history's) are not stored; a pack that isn't one is not used at all."""
    origin = pushes(tmp_path / "a" / "data.db", remote, rounds=1, per_round=3)
    tip = origin.log()[0]
    stranger = dbvers.init(make_db(tmp_path / "s" / "data.db", rows=77))
    execute(stranger.path, "UPDATE t SET note = 'nobody else has this' WHERE id = 9")
    foreign = stranger.commit("a history no ref of this remote holds")
    entries = dict(packs.parse(remote.backend().read_pack(tip.id) or b""))
    assert tip.id in entries and tip.patch in entries
    entries[tip.patch or ""] = entries[tip.patch or ""][:-3] + b"\0\0\0"  # bit rot in the pack
    for oid in (foreign.id, foreign.patch or ""):
        with stranger.objects.open_raw(oid) as f:
            entries[oid] = f.read()
    put_pack(remote, tip.id, packs.build(entries.items()))
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert reads.opened.count(tip.patch) == 1  # its packed copy failed: read loose
    assert not repo.objects.has(foreign.id) and not repo.objects.has(foreign.patch or "")
    assert states(repo) == states(origin) and repo.fsck().ok
    put_pack(remote, tip.id, b"something else entirely")
    again = clone_of(remote, tmp_path / "c" / "data.db")
    assert states(again) == states(origin) and again.fsck().ok


def test_a_rejected_push_leaves_no_pack(remote: RemoteAt, tmp_path: Path) -> None:
    origin = pushes(tmp_path / "a" / "data.db", remote, rounds=1)
    other = clone_of(remote, tmp_path / "b" / "data.db")
    execute(origin.path, "UPDATE t SET note = 'first' WHERE id = 1")
    origin.commit("first")
    origin.push()
    execute(other.path, "UPDATE t SET note = 'second' WHERE id = 2")
    late = other.commit("second")
    with pytest.raises(PushRejectedError):
        other.push()
    assert remote.backend().read_pack(late.id) is None
    assert remote.backend().read_pack(origin.head.commit or "") is not None


def test_a_clone_makes_its_objects_durable_before_its_store_is_in_place(remote: RemoteAt, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone's scratch store renames objects in without an fsync each; every one of them
    (and their directories) is fsynced before the store takes its place."""
    pushes(tmp_path / "a" / "data.db", remote, rounds=2)
    clone_module = importlib.import_module("dbvers.clone")
    local = importlib.import_module("dbvers.storage.local")
    synced: set[Path] = set()
    fsync_path = local.fsync_path
    monkeypatch.setattr(local, "fsync_path", lambda p: synced.add(Path(p)) or fsync_path(p))
    unsynced: list[Path] = []
    install = clone_module.install_store

    def checked(wrepo, work, *args, **kwargs):  # type: ignore[no-untyped-def]
        files = [p for p in (work / "objects").rglob("*")]
        unsynced.extend(p for p in files if p not in synced)
        return install(wrepo, work, *args, **kwargs)
    monkeypatch.setattr(clone_module, "install_store", checked)
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert unsynced == [] and len(synced) > 10
    assert repo.fsck().ok and sqlite3.connect(repo.path).execute("SELECT count(*) FROM t").fetchone()[0] == 300
