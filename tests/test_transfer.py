"""The transfer engine backups and remotes share: what a destination lacks, copy, then ref CAS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import execute

import dbvers
from dbvers.remotes.archive_dir import ArchiveDestination
from dbvers.transfer import LocalDestination, LocalSource, RefUpdate, closure, lacking, transfer

TRACK = "refs/remotes/origin/main"


def _db(path: Path, sql: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.commit()
    conn.close()
    return path


def _pair(tmp_path: Path) -> tuple[dbvers.Repo, dbvers.Repo, LocalDestination]:
    src = dbvers.init(_db(tmp_path / "a" / "data.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
                                                      "INSERT INTO t VALUES (1, 'x');"))
    dst = dbvers.init(_db(tmp_path / "b" / "data.db", "CREATE TABLE u(x);"))
    return src, dst, LocalDestination(dst.objects, dst.refs, "fetch: test")


def test_transfer_copies_the_history_verbatim_then_moves_the_ref(tmp_path: Path) -> None:
    src, dst, dest = _pair(tmp_path)
    tip = src.head.commit
    assert tip is not None
    res = transfer(src, LocalSource(src.objects), dest, [tip], [RefUpdate(TRACK, None, tip)])
    assert not res.rejected and set(res.sent) == res.wanted  # the destination had none of it
    assert dst.refs.read(TRACK) == tip
    for oid in res.wanted:  # the same bytes under the same ids, readable there
        assert dst.objects.path(oid).read_bytes() == src.objects.path(oid).read_bytes()
        dst.objects.verify(oid)
    assert dst.log(TRACK)[0].id == tip and dst.fsck().ok


def test_an_incremental_transfer_sends_only_the_new_commits_objects(tmp_path: Path) -> None:
    src, dst, dest = _pair(tmp_path)
    first = src.head.commit
    assert first is not None
    transfer(src, LocalSource(src.objects), dest, [first], [RefUpdate(TRACK, None, first)])
    execute(src.path, "INSERT INTO t VALUES (2, 'y')")
    second = src.commit("two").id
    # From the destination's refs and the local graph alone: its objects are never listed.
    assert lacking(src, closure(src, [second]), dest) == closure(src, [second]) - closure(src, [first])
    res = transfer(src, LocalSource(src.objects), dest, [second], [RefUpdate(TRACK, first, second)])
    assert set(res.sent) == closure(src, [second]) - closure(src, [first]) and second in res.sent
    assert dst.refs.read(TRACK) == second


def test_a_ref_moved_by_someone_else_is_rejected_and_left_alone(tmp_path: Path) -> None:
    src, dst, dest = _pair(tmp_path)
    first = src.head.commit
    assert first is not None
    transfer(src, LocalSource(src.objects), dest, [first], [RefUpdate(TRACK, None, first)])
    execute(src.path, "INSERT INTO t VALUES (2, 'y')")
    second = src.commit("two").id
    stale = RefUpdate(TRACK, "0" * 64, second)  # expects a value the ref no longer holds
    res = transfer(src, LocalSource(src.objects), dest, [second], [stale])
    assert res.rejected == [stale] and dst.refs.read(TRACK) == first


def test_an_archive_destination_lacks_only_what_its_chain_does_not_hold(tmp_path: Path) -> None:
    src = dbvers.init(_db(tmp_path / "a" / "data.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v);"))
    tip = src.head.commit
    assert tip is not None
    wanted = closure(src, [tip])
    held = {tip}
    (tmp_path / "out").mkdir()
    with ArchiveDestination(tmp_path / "out", 0, held) as dest:
        assert lacking(src, wanted, dest) == wanted - held
        dest.abort()
    assert not list((tmp_path / "out").iterdir())  # nothing published, no temp left


def test_backup_errors_are_the_storage_and_lock_errors_of_the_one_tree() -> None:
    from dbvers.errors import (
        BackupError,
        BackupIOError,
        BackupLockError,
        DatabaseLockedError,
        StorageError,
    )

    io_error = BackupIOError.from_os_error("/x", OSError(28, "No space left on device"))
    assert isinstance(io_error, BackupError) and isinstance(io_error, StorageError)
    assert str(io_error) == "cannot write /x: No space left on device; nothing was changed"
    assert io_error.errno == 28 and io_error.exit_code == 2
    lock = BackupLockError("/db", 2.0)
    assert isinstance(lock, BackupError) and isinstance(lock, DatabaseLockedError)
    assert str(lock) == ("database is locked by another process: /db (waited 2s); "
                         "finish or close the other writer and try again")
