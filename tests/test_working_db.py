"""The working-database boundary (dbvers/sqlio.py): dbvers keeps the user's own SQLite
locks, copies in across page-size changes, keeps the file's settings, and turns a full
disk or a corrupt working database into one-line errors that change nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute

import dbvers
from dbvers.errors import DbversError

# A second process tries to take the write lock at once: it must find it held by the user.
_PROBE = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO orders(customer, qty) VALUES ('intruder', 1)")
    c.execute("COMMIT")
    print("wrote")
except sqlite3.OperationalError as e:
    print(e)
"""


def _other_process_write(db: Path) -> str:
    r = subprocess.run([sys.executable, "-c", _PROBE, str(db)], capture_output=True, text=True, timeout=60)
    return (r.stdout + r.stderr).strip()


def _magics_hook(repo: dbvers.Repo) -> None:
    from dbvers.magics import AutoCommit

    hook = AutoCommit(repo)
    hook.pre_run_cell(None)
    hook.post_run_cell(None)


def _import_from(repo: dbvers.Repo) -> None:
    other = sqlite3.connect(":memory:")
    other.execute("CREATE TABLE t(x)")
    other.commit()
    repo.import_from(other)


_CALLS: dict[str, Callable[[dbvers.Repo], Any]] = {
    "status": lambda r: r.status(),
    "commit": lambda r: r.commit("while the user writes", allow_empty=True),
    "diff": lambda r: r.diff().summary(),
    "read_table": lambda r: r.read_table("orders", at=None),
    "checkout": lambda r: r.checkout("HEAD~1", force=True),
    "reset": lambda r: r.reset("HEAD~1"),
    "import_from": _import_from,
    "open": lambda r: dbvers.open(r.path).status(),
    "autocommit_hook": _magics_hook,
}


@pytest.mark.parametrize("call", sorted(_CALLS))
def test_user_write_lock_survives_every_call(repo: dbvers.Repo, call: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's connection in this process holds a write transaction while dbvers runs:
    dbvers may fail (the database is locked) but must never drop the user's lock."""
    monkeypatch.setenv("DBVERS_LOCK_TIMEOUT", "0.2")
    execute(repo.path, "INSERT INTO orders VALUES (10, 'cy', 1, 1.0, NULL)")
    repo.commit("second")
    user = sqlite3.connect(str(repo.path), isolation_level=None, timeout=0)
    user.execute("BEGIN IMMEDIATE")
    user.execute("INSERT INTO orders VALUES (100, 'user', 7, 7.0, NULL)")
    assert "locked" in _other_process_write(repo.path)  # the probe works
    try:
        _CALLS[call](repo)
    except DbversError as e:
        assert "locked" in str(e) or "busy" in str(e), e
    # The lock is still held: another process cannot write "under" the user.
    assert "database is locked" in _other_process_write(repo.path)
    user.execute("COMMIT")
    ok = user.execute("PRAGMA integrity_check").fetchall()
    rows = {r[0] for r in user.execute("SELECT customer FROM orders")}
    user.close()
    assert ok == [("ok",)]
    assert "user" in rows and "intruder" not in rows


# -- item 8 / issue 10 item 15: the working file's layout survives every copy-in --------------

_SETTINGS = ("page_size", "auto_vacuum", "encoding", "journal_mode", "application_id", "user_version")


def _settings(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(str(db))
    try:
        return {p: conn.execute(f"PRAGMA {p}").fetchone()[0] for p in _SETTINGS}
    finally:
        conn.close()


def _relayout(db: Path, page_size: int, auto_vacuum: str, *, wal: bool = True) -> None:
    """What a user does to change how the file stores its pages (VACUUM renumbers rowids)."""
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute(f"PRAGMA auto_vacuum = {auto_vacuum}")
        conn.execute("VACUUM")
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


@pytest.fixture
def gappy(db_path: Path) -> Path:
    """The sample database with gaps in a keyless table's rowids (which VACUUM would renumber)."""
    execute(db_path, "INSERT INTO events(rowid, kind, payload) VALUES (40, 'late', 4), (77, 'later', 7);"
                     "DELETE FROM events WHERE rowid = 2;")
    return db_path


def _backup_restore_at(repo: dbvers.Repo, tmp_path: Path, at: str) -> None:
    from dbvers.backup import backup

    info = backup(repo, tmp_path / "backups")
    dbvers.restore(info.path, to=repo.path, at=at, yes=True)


_MOVES: dict[str, Callable[[dbvers.Repo, Path, str], Any]] = {
    "checkout": lambda r, t, at: r.checkout(at),
    "reset": lambda r, t, at: r.reset(at),
    "backup_restore": _backup_restore_at,
}


@pytest.mark.parametrize("move", sorted(_MOVES))
def test_older_commit_after_page_size_change_in_wal(gappy: Path, tmp_path: Path, move: str) -> None:
    """`pragma page_size=8192; vacuum; pragma journal_mode=wal`, commit, then go back: the old
    state arrives (rowids too) in the file's own page size, still in WAL mode."""
    repo = dbvers.init(gappy)
    first = repo.head.commit
    old = dump_state(gappy)
    _relayout(gappy, 8192, "NONE")
    execute(gappy, "INSERT INTO orders VALUES (50, 'dee', 3, 2.0, NULL)")
    repo.commit("bigger pages")
    new = dump_state(gappy)
    assert first is not None
    _MOVES[move](repo, tmp_path, first)
    assert dump_state(gappy) == old
    assert _settings(gappy)["page_size"] == 8192 and _settings(gappy)["journal_mode"] == "wal"
    assert repo.status().clean
    if move == "checkout":
        repo.checkout("main")
        assert dump_state(gappy) == new and _settings(gappy)["page_size"] == 8192


def test_restore_discards_changes_after_page_size_change_in_wal(gappy: Path) -> None:
    repo = dbvers.init(gappy)
    old = dump_state(gappy)
    _relayout(gappy, 8192, "NONE")
    execute(gappy, "DELETE FROM orders")
    repo.restore(force=True)
    assert dump_state(gappy) == old
    assert _settings(gappy)["page_size"] == 8192 and _settings(gappy)["journal_mode"] == "wal"


_LAYOUTS = [(8192, "FULL", True), (1024, "INCREMENTAL", False), (65536, "NONE", True)]


@pytest.mark.filterwarnings("ignore:.*user_version")  # the backup restore says it goes back to 7
@pytest.mark.parametrize("move", [*sorted(_MOVES), "restore"])
@pytest.mark.parametrize(("page_size", "auto_vacuum", "wal"), _LAYOUTS)
def test_file_settings_survive(tmp_path: Path, move: str, page_size: int, auto_vacuum: str, wal: bool) -> None:
    """Page size, auto_vacuum and journal mode are the file's and stay; encoding,
    application_id and user_version are the state's and come with it."""
    db = tmp_path / "u16.db"
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA encoding = 'UTF-16le'")
    conn.execute("PRAGMA application_id = 42")
    conn.execute("PRAGMA user_version = 7")
    conn.execute("CREATE TABLE t(a, b)")
    conn.executemany("INSERT INTO t(rowid, a, b) VALUES (?, ?, ?)", [(i * 5, i, "zoë" * i) for i in range(1, 60)])
    conn.close()
    repo = dbvers.init(db)
    first = repo.head.commit
    assert first is not None
    old = dump_state(db)
    _relayout(db, page_size, auto_vacuum, wal=wal)
    execute(db, "DELETE FROM t WHERE a % 3 = 0; PRAGMA user_version = 8; PRAGMA application_id = 43;")
    layout = {k: v for k, v in _settings(db).items() if k in ("page_size", "auto_vacuum", "journal_mode")}
    if move == "restore":
        repo.restore(force=True)
    else:
        repo.commit("relayout")
        _MOVES[move](repo, tmp_path, first)
    got = _settings(db)
    assert {k: got[k] for k in layout} == layout
    assert (got["encoding"], got["application_id"], got["user_version"]) == ("UTF-16le", 42, 7)
    assert dump_state(db) == old
    conn = sqlite3.connect(str(db))
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()



# -- item 9 (part): a corrupt working database and a full disk are one-line refusals ----------


def _corrupt_middle_page(db: Path) -> None:
    """Garbage over one page in the middle of the file; the header (page 1) stays valid."""
    size = db.stat().st_size
    page = 4096
    n = size // page
    assert n >= 6
    with open(db, "r+b") as f:  # the test's own write: no SQLite connection is open here
        f.seek((n // 2) * page)
        f.write(bytes(range(256)) * (page // 256))


@pytest.fixture
def corrupt_repo(tmp_path: Path) -> dbvers.Repo:
    db = tmp_path / "big.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v);")
    conn = sqlite3.connect(str(db))
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"value {i} " * 20) for i in range(400)])
    conn.commit()
    conn.close()
    repo = dbvers.init(db)
    execute(db, "UPDATE t SET v = 'changed' WHERE id = 1")
    repo.commit("second")
    _corrupt_middle_page(db)
    return repo


def _store_files(repo: dbvers.Repo) -> dict[str, bytes]:
    skip = ("cache", "lock")
    return {str(p.relative_to(repo.store_dir)): p.read_bytes() for p in sorted(repo.store_dir.rglob("*"))
            if p.is_file() and not str(p.relative_to(repo.store_dir)).startswith(skip)}


@pytest.mark.parametrize("args", [["status"], ["commit", "-m", "x"], ["checkout", "HEAD~1"],
                                  ["reset", "--hard", "HEAD~1"]])
def test_corrupt_working_database_is_a_one_line_error(corrupt_repo: dbvers.Repo, args: list[str]) -> None:
    from conftest import run_cli

    repo = corrupt_repo
    before_db, before_store = repo.path.read_bytes(), _store_files(repo)
    r = run_cli("--db", str(repo.path), *args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "corrupt" in r.stderr and "restore --force" in r.stderr
    assert repo.path.read_bytes() == before_db and _store_files(repo) == before_store


def test_init_of_a_corrupt_database_is_a_one_line_error(tmp_path: Path) -> None:
    from conftest import run_cli

    db = tmp_path / "big.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    conn = sqlite3.connect(str(db))
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"value {i} " * 20) for i in range(400)])
    conn.commit()
    conn.close()
    _corrupt_middle_page(db)
    before = db.read_bytes()
    r = run_cli("init", str(db))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "corrupt" in r.stderr, r.stderr
    assert db.read_bytes() == before and not (tmp_path / ".dbvers").exists()


def test_restore_force_repairs_a_corrupt_working_database(corrupt_repo: dbvers.Repo) -> None:
    repo = corrupt_repo
    with pytest.raises(DbversError, match="corrupt"):
        repo.status()
    repo.restore(force=True)
    assert repo.status().clean
    conn = sqlite3.connect(str(repo.path))
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT v FROM t WHERE id = 1").fetchone() == ("changed",)
    conn.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A real 3 MB file system (tmpfs), filled up on demand; skipped where mounting is not allowed."""
    import os

    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")

    def fill(leave: int = 0) -> None:
        with open(mnt / "filler", "ab") as f:
            try:
                while True:
                    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
                    if free <= leave:
                        break
                    f.write(b"\0" * min(65536, free - leave))
                    f.flush()
            except OSError:
                pass

    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _blob_db(db: Path) -> None:
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v);")
    execute(db, "INSERT INTO t VALUES (1, 'small')")


def test_commit_on_a_full_disk_changes_nothing(tmp_path: Path, small_disk: Any) -> None:
    """The store's disk is full: commit's copy-out fails with one line and nothing moves."""
    mnt, fill = small_disk
    db = tmp_path / "data.db"
    _blob_db(db)
    repo = dbvers.init(db, store=mnt / "store")
    execute(db, "INSERT INTO t VALUES (2, zeroblob(1000000))")
    head, before = repo.head.commit, _store_files(repo)
    fill(leave=4096)
    with pytest.raises(DbversError) as e:
        repo.commit("big")
    assert "\n" not in str(e.value) and ("disk" in str(e.value) or "space" in str(e.value)), e.value
    assert repo.head.commit == head and _store_files(repo) == before
    (mnt / "filler").unlink()
    repo.commit("big")  # and once there is space, it works
    assert repo.head.commit != head


def test_checkout_on_a_full_disk_changes_nothing(tmp_path: Path, small_disk: Any) -> None:
    """The working database's disk is full: checkout's copy-in fails with one line, the
    database keeps its state and HEAD does not move."""
    mnt, fill = small_disk
    db = mnt / "data.db"
    _blob_db(db)
    repo = dbvers.init(db, store=tmp_path / "store")
    execute(db, "INSERT INTO t VALUES (2, zeroblob(1000000))")
    repo.commit("big")
    execute(db, "DELETE FROM t WHERE id = 2; VACUUM;")
    repo.commit("small again")
    head, state = repo.head.commit, dump_state(db)
    repo.materialize(repo.resolve("HEAD~1"))  # the store's disk is not the full one
    fill(leave=4096)
    with pytest.raises(DbversError) as e:
        repo.checkout("HEAD~1")
    assert "\n" not in str(e.value) and ("disk" in str(e.value) or "space" in str(e.value)), e.value
    assert repo.head.commit == head and dump_state(db) == state
    assert not (repo.store_dir / "CHECKOUT").exists()
    (mnt / "filler").unlink()
    repo.checkout("HEAD~1")
    assert repo.status().clean


# -- minor: the WAL fingerprint sees writes that leave the WAL's size and mtime alone ---------


def test_status_sees_wal_writes_on_coarse_timestamps(tmp_path: Path) -> None:
    """After a checkpoint the next writer restarts the WAL from its start: the file keeps
    its size, and on a file system with coarse timestamps its mtime too (simulated by
    putting the mtime back). The clean fingerprint must still see both writes."""
    import os

    db = tmp_path / "w.db"
    user = sqlite3.connect(str(db), isolation_level=None)  # kept open: the WAL stays, as in a notebook
    user.execute("PRAGMA journal_mode = WAL")
    user.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    user.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 500) for i in range(400)])
    user.execute("PRAGMA wal_checkpoint(RESTART)")
    repo = dbvers.init(db)
    wal = Path(str(db) + "-wal")

    def write_keeping_stat(sql: str) -> None:
        before = os.stat(wal), os.stat(db)
        user.execute(sql)
        after = os.stat(wal), os.stat(db)
        assert [s.st_size for s in before] == [s.st_size for s in after]
        for p, s in zip((wal, db), before, strict=True):
            os.utime(p, ns=(s.st_atime_ns, s.st_mtime_ns))

    assert repo.status().clean
    write_keeping_stat("UPDATE t SET v = 'restarted' WHERE id = 1")  # new salts
    assert not repo.status().clean
    repo.commit("one")
    assert repo.status().clean
    write_keeping_stat("UPDATE t SET v = 'appended' WHERE id = 2")  # same salts, one more frame
    assert not repo.status().clean
    user.close()


def test_export_to_a_wal_file_with_another_page_size_keeps_rowids(gappy: Path, tmp_path: Path) -> None:
    repo = dbvers.init(gappy)
    target = tmp_path / "out.db"
    conn = sqlite3.connect(str(target), isolation_level=None)
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("CREATE TABLE x(y)")
    conn.execute("PRAGMA journal_mode = WAL")
    repo.export_to(conn)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
    conn.close()
    assert dump_state(target) == dump_state(gappy)
