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

import dbvers
from dbvers.errors import DbversError

from conftest import dump_state, execute

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
