"""Repo.export_to / Repo.import_from with real ``sqlite3.Connection`` objects in this
process: no handle crosses between apsw and the stdlib's sqlite3 (files only), open
transactions give a clear error, page sizes and WAL targets work, and a 200 MB
database streams through files instead of memory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import dump_state, execute

import dbvers
from dbvers.errors import BackupError, UsageError


def dump_conn(conn: sqlite3.Connection, tmp: Path) -> dict[str, Any]:
    """dump_state of a connection's database (copied to a file with the stdlib backup API)."""
    out = tmp / "dump.db"
    out.unlink(missing_ok=True)
    dst = sqlite3.connect(out)
    conn.backup(dst)
    dst.close()
    return dump_state(out)


@pytest.fixture
def two_commits(repo: dbvers.Repo) -> tuple[dbvers.Repo, dict[str, Any]]:
    states = {repo.head.commit: dump_state(repo.path)}
    execute(repo.path, "INSERT INTO orders VALUES (4, 'dan', 1, 2.0, 3); PRAGMA user_version = 5")
    c = repo.commit("four")
    states[c.id] = dump_state(repo.path)
    return repo, states


def test_export_to_memory_connection(two_commits: tuple[dbvers.Repo, dict[str, Any]], tmp_path: Path) -> None:
    repo, states = two_commits
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE scratch(x)")  # replaced entirely
    conn.commit()
    assert repo.export_to(conn) == repo.head.commit
    assert dump_conn(conn, tmp_path) == states[repo.head.commit]
    first = repo.resolve("HEAD~1")
    repo.export_to(conn, at=first)
    assert dump_conn(conn, tmp_path) == states[first]
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 3  # still usable


def test_export_to_memory_connection_with_another_page_size(repo: dbvers.Repo, tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA page_size = 1024")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    repo.export_to(conn)
    assert dump_conn(conn, tmp_path) == dump_state(repo.path)


def test_export_to_wal_file_with_another_page_size(two_commits: tuple[dbvers.Repo, dict[str, Any]],
                                                   tmp_path: Path) -> None:
    repo, states = two_commits
    target = tmp_path / "other.db"
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    reader = sqlite3.connect(target)  # another connection holding it open
    repo.export_to(conn)
    assert reader.execute("SELECT count(*) FROM orders").fetchone()[0] == 4
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reader.close()
    conn.close()
    assert dump_state(target) == states[repo.head.commit]


def test_export_refuses_a_connection_with_an_open_transaction(repo: dbvers.Repo, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "user.db")
    conn.execute("CREATE TABLE mine(x)")
    conn.execute("INSERT INTO mine VALUES (1)")  # implicit transaction left open
    assert conn.in_transaction
    with pytest.raises(BackupError, match="open transaction"):
        repo.export_to(conn)
    assert conn.in_transaction and conn.execute("SELECT x FROM mine").fetchall() == [(1,)]
    conn.commit()
    repo.export_to(conn)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 3


def test_bad_connections(repo: dbvers.Repo, tmp_path: Path) -> None:
    other = apsw.Connection(":memory:")
    for bad in (other, str(repo.path), None):
        with pytest.raises(UsageError, match=r"sqlite3\.Connection"):
            repo.export_to(bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=r"sqlite3\.Connection"):
            repo.import_from(bad)  # type: ignore[arg-type]
    other.close()
    closed = sqlite3.connect(":memory:")
    closed.close()
    with pytest.raises(BackupError, match="cannot be used"):
        repo.export_to(closed)
    same = sqlite3.connect(repo.path)
    with pytest.raises(UsageError, match="working database"):
        repo.import_from(same)
    with pytest.raises(UsageError, match="working database"):
        repo.export_to(same)
    same.close()


def test_import_from_a_connection(repo: dbvers.Repo, tmp_path: Path) -> None:
    src = sqlite3.connect(":memory:")
    src.executescript(
        """
        CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, qty INTEGER, price REAL, note);
        INSERT INTO orders VALUES (1, 'ann', 3, 9.5, 1.0), (7, 'new', 1, 1, x'01');
        CREATE TABLE extra(k TEXT PRIMARY KEY, v);
        INSERT INTO extra VALUES ('a', 1);
        PRAGMA user_version = 9;
        """
    )
    src.commit()
    want = dump_conn(src, tmp_path)
    reader = sqlite3.connect(repo.path)  # someone reading the working database
    repo.import_from(src)
    assert reader.execute("SELECT count(*) FROM orders").fetchone()[0] == 2
    reader.close()
    assert dump_state(repo.path) == want
    st = repo.status()
    assert not st.clean and "orders" in st.dirty_tables
    c = repo.commit("imported")
    assert c.pragmas["user_version"] == 9
    # the source connection is untouched and usable
    assert src.execute("SELECT count(*) FROM extra").fetchone()[0] == 1
    assert dump_conn(src, tmp_path) == want


def test_import_refuses_an_open_transaction(repo: dbvers.Repo) -> None:
    before = dump_state(repo.path)
    src = sqlite3.connect(":memory:")
    src.execute("CREATE TABLE t(x)")
    src.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(BackupError, match="open transaction"):
        repo.import_from(src)
    assert dump_state(repo.path) == before


def test_import_into_a_wal_working_database_with_another_page_size(repo: dbvers.Repo, tmp_path: Path) -> None:
    conn = sqlite3.connect(repo.path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    src = sqlite3.connect(tmp_path / "src.db")
    src.execute("PRAGMA page_size = 16384")
    src.execute("CREATE TABLE t(x)")
    src.execute("INSERT INTO t VALUES ('from the connection')")
    src.commit()
    repo.import_from(src)
    assert dump_state(repo.path) == dump_state(tmp_path / "src.db")
    repo.commit("wal")
    assert repo.fsck().ok


BIG = textwrap.dedent(
    """
    import json, resource, sqlite3, sys
    from pathlib import Path
    import dbvers

    work = Path(sys.argv[1])
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MB (Linux: kB)
    big = work / "data.db"
    c = sqlite3.connect(big)
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
    c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25000) "
              "INSERT INTO t SELECT i, randomblob(8000) FROM n")
    c.commit()
    c.close()
    out = {"size": big.stat().st_size, "start": peak()}
    repo = dbvers.init(big)
    out["init"] = peak()
    dest = sqlite3.connect(work / "copy.db")
    repo.export_to(dest)
    out["export"] = peak()
    out["rows"] = dest.execute("SELECT count(*), sum(length(b)) FROM t").fetchone()
    dest.execute("UPDATE t SET b = zeroblob(10) WHERE id <= 10")
    dest.commit()
    repo.import_from(dest)
    out["import"] = peak()
    check = sqlite3.connect(big)
    out["imported"] = check.execute("SELECT count(*) FROM t WHERE length(b) = 10").fetchone()[0]
    check.close()
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_200_mb_database_streams_through_files(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", BIG, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["size"] > 200_000_000
    assert out["rows"] == [25000, 25000 * 8000]
    assert out["imported"] == 10
    # a 200 MB database never passes through memory: the peak stays far below its size
    assert out["export"] - out["init"] < 60, out
    assert out["import"] - out["init"] < 60, out
