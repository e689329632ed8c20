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

