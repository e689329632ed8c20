"""Whatever writes the working database, a commit captures exactly its committed state.

Writers: pandas ``to_sql``, another process, a WAL database with a writer in the
middle of a transaction, SQLAlchemy, the ``sqlite3`` shell. And the other way
round: connections that were open before a checkout/reset/restore see the new
state on their next query. Plus the two ways a repository can be busy: another
dbvers process (the store lock) and another writer (the database lock).
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import Zygote, dump_state, run_cli

import dbvers


def state_at(repo: dbvers.Repo, rev: str, tmp_path: Path) -> dict[str, Any]:
    """The exact state dbvers holds for *rev* (read from a copy of its materialization)."""
    copy = tmp_path / "materialized-copy.db"
    shutil.copyfile(repo.materialize(repo.resolve(rev)), copy)
    try:
        return dump_state(copy)
    finally:
        copy.unlink()


def assert_captured(repo: dbvers.Repo, db: Path, tmp_path: Path,
                    expected: dict[str, Any] | None = None) -> None:
    """HEAD holds exactly the working database's state (or *expected*), and status is clean."""
    want = dump_state(db) if expected is None else expected
    assert state_at(repo, "HEAD", tmp_path) == want
    assert repo.status().clean


def store_fingerprint(store: Path) -> dict[str, str]:
    """Every file of the store and its content hash (the lock file itself excluded)."""
    out = {}
    for p in sorted(store.rglob("*")):
        if p.is_file() and p.name != "lock":
            out[p.relative_to(store).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def table_rows(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """All rows of all tables, read through *conn* (an already-open user connection)."""
    out = {}
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )]
    for name in names:
        q = '"' + name.replace('"', '""') + '"'
        out[name] = sorted(conn.execute(f"SELECT * FROM {q}").fetchall(), key=repr)
    return out


def fresh_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return table_rows(conn)
    finally:
        conn.close()


@pytest.fixture
def wal_db(db_path: Path) -> Path:
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    conn.close()
    return db_path


# -- writers -----------------------------------------------------------------


def test_pandas_to_sql_append_new_table_and_replace(repo: dbvers.Repo, db_path: Path,
                                                    tmp_path: Path) -> None:
    conn = sqlite3.connect(db_path)  # stays open across commits, as in a notebook
    try:
        pd.DataFrame(
            {"id": [10, 11], "customer": ["cy", "dee"], "qty": [3, 4], "price": [1.5, 2.0],
             "note": [None, "n"]}
        ).to_sql("orders", conn, if_exists="append", index=False)
        c1 = repo.commit("append orders")
        assert c1.counts["orders"].inserts == 2
        assert_captured(repo, db_path, tmp_path)
        after_append = dump_state(db_path)

        metrics = pd.DataFrame({"name": ["a", "b", "c"], "value": [1.0, float("inf"), -0.0]})
        metrics.to_sql("metrics", conn, index=False)
        repo.commit("new metrics table")
        assert_captured(repo, db_path, tmp_path)
        with_metrics = dump_state(db_path)

        pd.DataFrame({"name": ["z"], "value": [42], "extra": [b"\x00"]}).to_sql(
            "metrics", conn, if_exists="replace", index=True
        )
        c3 = repo.commit("replace metrics")
        assert_captured(repo, db_path, tmp_path)
        replaced = dump_state(db_path)
        assert [str(s) for s in repo.show("HEAD")[1]]  # the replaced table is a schema change
        assert c3.meta.get("keyframe") == "schema changed"
        assert list(repo.read_table("metrics")["name"]) == ["z"]
        assert list(repo.read_table("metrics", at="HEAD~1")["name"]) == ["a", "b", "c"]

        repo.checkout("HEAD~2")
        assert dump_state(db_path) == after_append
        repo.checkout(c3.id)
        assert dump_state(db_path) == replaced
        repo.checkout(c3.parents[0])
        assert dump_state(db_path) == with_metrics
        # The connection that pandas wrote through sees every switch.
        assert pd.read_sql("SELECT name FROM metrics ORDER BY name", conn)["name"].tolist() == [
            "a", "b", "c"
        ]
    finally:
        conn.close()


def test_second_process_writes_are_captured(repo: dbvers.Repo, db_path: Path,
                                            tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1])
        conn.execute("INSERT INTO orders VALUES (7, 'proc', 1, 0.5, zeroblob(3))")
        conn.execute("UPDATE orders SET qty = qty + 10 WHERE id = 1")
        conn.execute("DELETE FROM events WHERE kind = 'close'")
        conn.execute('UPDATE "odd name" SET v = 3.25 WHERE "key part" = \\'a\\'')
        conn.execute("PRAGMA user_version = 9")
        conn.commit()
        conn.close()
        """
    )
    subprocess.run([sys.executable, "-c", script, str(db_path)], check=True, timeout=60)
    c = repo.commit("from another process")
    assert c.counts["orders"].inserts == 1 and c.counts["orders"].updates == 1
    assert c.counts["events"].deletes == 1
    assert c.counts["odd name"].updates == 1
    assert c.pragmas["user_version"] == 9
    assert_captured(repo, db_path, tmp_path)


_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("INSERT INTO orders VALUES (20, 'committed', 1, 1.0, NULL)")
    conn.execute(sys.argv[2])
    conn.execute("INSERT INTO orders VALUES (99, 'uncommitted', 1, 1.0, NULL)")
    conn.execute("UPDATE orders SET qty = 999 WHERE id = 1")
    print("ready", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    conn.close()
    print("committed", flush=True)
    """
)


@pytest.mark.parametrize("where", ["same process", "other process"])
def test_wal_commit_sees_only_committed_data_of_an_open_writer(
    repo: dbvers.Repo, wal_db: Path, tmp_path: Path, where: str
) -> None:
    repo.commit("switch to WAL", allow_empty=True)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    proc = None
    writer = None
    if where == "other process":
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(wal_db), "BEGIN IMMEDIATE"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
    else:
        writer = sqlite3.connect(wal_db, isolation_level=None)
        writer.execute("INSERT INTO orders VALUES (20, 'committed', 1, 1.0, NULL)")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO orders VALUES (99, 'uncommitted', 1, 1.0, NULL)")
        writer.execute("UPDATE orders SET qty = 999 WHERE id = 1")
    try:
        committed_only = dump_state(wal_db)  # another connection: sees committed data only
        ids = [r[1] for r in committed_only["tables"]["orders"]]
        assert ("integer", 20) in ids and ("integer", 99) not in ids

        started = time.monotonic()
        fut = pool.submit(repo.commit, "while a writer is busy")
        try:
            c = fut.result(timeout=30)
        except concurrent.futures.TimeoutError:
            pytest.fail("commit blocked behind an open write transaction in WAL mode")
        assert time.monotonic() - started < 10
        assert c.counts["orders"].inserts == 1 and c.counts["orders"].updates == 0
        assert_captured(repo, wal_db, tmp_path, expected=committed_only)
        assert 99 not in repo.read_table("orders")["id"].tolist()

        # The writer is not disturbed: it can still commit, and the next commit has its rows.
        if proc is not None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "committed"
            assert proc.wait(timeout=30) == 0
            proc = None
        else:
            assert writer is not None
            writer.execute("COMMIT")
        st = repo.status()
        assert st.changes.counts["orders"].inserts == 1
        assert st.changes.counts["orders"].updates == 1
        c2 = repo.commit("writer finished")
        assert c2.counts["orders"].inserts == 1
        assert_captured(repo, wal_db, tmp_path)
        assert 99 in repo.read_table("orders")["id"].tolist()
        check = sqlite3.connect(wal_db)
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        check.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if writer is not None:
            writer.close()
        pool.shutdown()  # after the writer is gone, so a stuck commit cannot hang the test


def test_sqlalchemy_writes_are_captured(repo: dbvers.Repo, db_path: Path, tmp_path: Path) -> None:
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO orders(customer, qty, price) VALUES (:c, :q, :p)"),
                      [{"c": "sa1", "q": 1, "p": 0.1}, {"c": "sa2", "q": 2, "p": None}])
            c.execute(sa.text("DELETE FROM orders WHERE id = 2"))
            c.execute(sa.text("UPDATE events SET payload = 'x' WHERE kind = 'open'"))
        pd.DataFrame({"k": [1, 2], "label": ["one", "two"]}).to_sql(
            "labels", engine, index=False
        )
        commit = repo.commit("via sqlalchemy")
        assert commit.counts["orders"].inserts == 2 and commit.counts["orders"].deletes == 1
        assert commit.counts["events"].updates == 2
        assert_captured(repo, db_path, tmp_path)

        # A pooled connection sees a checkout on its next query.
        assert len(pd.read_sql("SELECT * FROM orders", engine)) == 4
        repo.checkout("HEAD~1")
        assert len(pd.read_sql("SELECT * FROM orders", engine)) == 3
        with engine.connect() as c:
            assert not c.execute(
                sa.text("SELECT 1 FROM sqlite_schema WHERE name = 'labels'")
            ).fetchall()
    finally:
        engine.dispose()


def test_sqlite3_shell_writes_are_captured(repo: dbvers.Repo, db_path: Path,
                                           tmp_path: Path) -> None:
    shell = shutil.which("sqlite3")
    if shell is None:
        pytest.skip("no sqlite3 shell binary")
    script = """
        INSERT INTO orders VALUES (30, 'shell', 3, 3.5, X'CAFE');
        UPDATE orders SET note = 'from the shell' WHERE id = 3;
        INSERT INTO events VALUES ('shell', 1e100);
        CREATE TABLE shell_made(a INTEGER PRIMARY KEY, b TEXT);
        INSERT INTO shell_made(b) VALUES ('x'), ('y');
        PRAGMA application_id = 1234;
    """
    subprocess.run([shell, str(db_path)], input=script, text=True, check=True, timeout=60)
    commit = repo.commit("via the sqlite3 shell")
    assert commit.pragmas["application_id"] == 1234
    assert_captured(repo, db_path, tmp_path)
    repo.checkout("HEAD~1")
    out = subprocess.run([shell, str(db_path)], input="SELECT count(*) FROM orders;\n.tables\n",
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.split()[0] == "3" and "shell_made" not in out


# -- open connections see checkouts ----------------------------------------------


@pytest.fixture
def two_states(repo: dbvers.Repo, db_path: Path, sql: Callable[..., None]) -> Iterator[
    tuple[dict[str, Any], dict[str, Any]]
]:
    """HEAD~1 = state A (the fixture's data), HEAD = state B (rows and schema changed)."""
    a = dump_state(db_path)
    sql(db_path, """
        INSERT INTO orders VALUES (4, 'new', 1, 2.0, NULL);
        UPDATE orders SET qty = 50 WHERE id = 1;
        DELETE FROM events WHERE kind = 'close';
        CREATE TABLE extra(x INTEGER PRIMARY KEY, y);
        INSERT INTO extra VALUES (1, 'why');
        ALTER TABLE orders ADD COLUMN status TEXT DEFAULT 'open';
    """)
    repo.commit("state B")
    yield a, dump_state(db_path)


@pytest.mark.parametrize("journal", ["delete", "wal"])
@pytest.mark.parametrize("action", ["checkout", "reset --hard", "restore"])
def test_open_connection_sees_the_new_state(
    repo: dbvers.Repo, db_path: Path, two_states: tuple[dict[str, Any], dict[str, Any]],
    action: str, journal: str, sql: Callable[..., None],
) -> None:
    a, b = two_states
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute(f"PRAGMA journal_mode = {journal}").fetchone()[0] == journal
        if action == "restore":
            sql(db_path, "DELETE FROM orders; DROP TABLE extra; PRAGMA user_version = 5;")
            expected = b
        else:
            expected = a
        before = table_rows(conn)  # the connection has read (and cached) the old pages
        assert before == fresh_rows(db_path)
        old_df = pd.read_sql("SELECT * FROM orders ORDER BY id", conn)

        if action == "checkout":
            repo.checkout("HEAD~1")
        elif action == "reset --hard":
            repo.reset("HEAD~1", hard=True)
        else:
            repo.restore(force=True)

        assert dump_state(db_path) == expected
        assert table_rows(conn) == fresh_rows(db_path) != before
        df = pd.read_sql("SELECT * FROM orders ORDER BY id", conn)
        assert not df.equals(old_df)
        other = sqlite3.connect(db_path)
        try:
            pd.testing.assert_frame_equal(df, pd.read_sql("SELECT * FROM orders ORDER BY id", other))
        finally:
            other.close()
        assert ("status" in df.columns) == (expected is b)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == expected["pragmas"]["user_version"]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert ("extra" in tables) == (expected is b)
        # The open connection can keep writing, and the mode the user chose is kept.
        conn.execute("INSERT INTO events VALUES ('after', 1)")
        conn.commit()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    check = sqlite3.connect(db_path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == journal
    check.close()
    assert repo.status().changes.counts["events"].inserts == 1


def test_wal_database_stays_wal_across_checkouts(repo: dbvers.Repo, wal_db: Path,
                                                 sql: Callable[..., None], tmp_path: Path) -> None:
    states = [dump_state(wal_db)]
    for i in range(3):
        sql(wal_db, f"INSERT INTO orders(customer) VALUES ('w{i}'); ALTER TABLE events ADD COLUMN c{i};")
        repo.commit(f"wal {i}")
        states.append(dump_state(wal_db))
    for back in (3, 1, 2, 0):
        repo.checkout(f"main~{back}")
        assert dump_state(wal_db) == states[3 - back]
        conn = sqlite3.connect(wal_db)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    repo.checkout("main")
    assert dump_state(wal_db) == states[-1]
    assert_captured(repo, wal_db, tmp_path)


# -- concurrency ------------------------------------------------------------------


def test_concurrent_dbvers_commits_succeed_or_report_busy(repo: dbvers.Repo, db_path: Path,
                                                          sql: Callable[..., None], zygote: Zygote) -> None:
    start_head = repo.resolve("HEAD")
    ok = 0
    for round_ in range(3):
        sql(db_path, f"INSERT INTO orders(customer) VALUES ('round {round_}')")
        # Three processes of their own at once, forked with dbvers imported (conftest.Zygote).
        procs = [
            zygote.popen(
                [sys.executable, "-m", "dbvers", "--db", str(db_path), "commit", "--allow-empty",
                 "-m", f"r{round_} p{i}"],
                env={**os.environ, "DBVERS_LOCK_TIMEOUT": "20" if round_ else "0"},
            )
            for i in range(3)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            if p.returncode == 0:
                ok += 1
            else:
                assert p.returncode == 2, err
                lines = err.strip().splitlines()
                assert len(lines) == 1 and "repository is busy" in lines[0], err
    assert ok >= 3  # with a 20 s timeout nobody gives up
    log = repo.log()
    assert log[-1].id == start_head
    new = log[:-1]
    assert len(new) == ok
    # One line of history: every commit's parent is the one before it (no lost ref update).
    for child, parent in zip(new, log[1:], strict=False):
        assert child.parents == (parent.id,)
    assert repo.fsck().ok
    assert repo.status().clean


def test_busy_repository_is_a_clean_error(repo: dbvers.Repo, db_path: Path,
                                          sql: Callable[..., None]) -> None:
    sql(db_path, "INSERT INTO orders(customer) VALUES ('waiting')")
    store = db_path.parent / ".dbvers"
    before_store = store_fingerprint(store)
    before_db = dump_state(db_path)
    fd = os.open(store / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        r = run_cli("--db", str(db_path), "commit", "-m", "blocked",
                    env={"DBVERS_LOCK_TIMEOUT": "0.5"})
        elapsed = time.monotonic() - started
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "repository is busy" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert 0.5 <= elapsed < 15
    assert store_fingerprint(store) == before_store
    assert dump_state(db_path) == before_db
    # Once the lock is free the same command works.
    r = run_cli("--db", str(db_path), "commit", "-m", "unblocked")
    assert r.returncode == 0, r.stderr
    assert repo.log()[0].message == "unblocked"


def test_database_locked_by_another_writer_is_a_clean_error(
    repo: dbvers.Repo, db_path: Path, sql: Callable[..., None], zygote: Zygote
) -> None:
    sql(db_path, "INSERT INTO orders(customer) VALUES ('pending')")
    store = db_path.parent / ".dbvers"
    before_store = store_fingerprint(store)
    before_db = dump_state(db_path)
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert locker.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        locker.execute("BEGIN EXCLUSIVE")
        locker.execute("INSERT INTO orders(customer) VALUES ('never committed')")
        started = time.monotonic()
        # another process: in this one dbvers would see its own process's lock
        r = zygote.cli("--db", str(db_path), "commit", "-m", "blocked", env={"DBVERS_LOCK_TIMEOUT": "0.3"})
        elapsed = time.monotonic() - started
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "locked by another process" in lines[0], r.stderr
        assert elapsed < 15
        assert store_fingerprint(store) == before_store
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert dump_state(db_path) == before_db
    r = run_cli("--db", str(db_path), "commit", "-m", "unblocked")
    assert r.returncode == 0, r.stderr
    assert repo.log()[0].message == "unblocked"


def test_checkout_into_a_database_another_writer_holds_is_a_clean_error(
    repo: dbvers.Repo, db_path: Path, sql: Callable[..., None], tmp_path: Path, zygote: Zygote
) -> None:
    sql(db_path, "INSERT INTO orders(customer) VALUES ('second')")
    repo.commit("second")
    head = repo.resolve("HEAD")
    before_db = dump_state(db_path)
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        # RESERVED lock: dbvers can still read (so its dirty check passes) but cannot write.
        locker.execute("BEGIN IMMEDIATE")
        locker.execute("INSERT INTO events VALUES ('uncommitted', 0)")
        started = time.monotonic()
        r = zygote.cli("--db", str(db_path), "checkout", "HEAD~1", env={"DBVERS_LOCK_TIMEOUT": "0.3"})
        elapsed = time.monotonic() - started
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "locked by another process" in lines[0], r.stderr
        assert elapsed < 15
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert dump_state(db_path) == before_db
    assert repo.resolve("HEAD") == head and repo.current_branch == "main"
    # Nothing of the failed checkout stays pending: when the user next brings the data to
    # the target's state by hand, that is an uncommitted change, and HEAD does not move.
    sql(db_path, "DELETE FROM orders WHERE customer = 'second'")
    assert dump_state(db_path) == state_at(repo, "HEAD~1", tmp_path)
    assert not repo.status().clean
    assert repo.resolve("HEAD") == head and repo.current_branch == "main"
    repo.checkout("HEAD~1", force=True)
    assert state_at(repo, "HEAD", tmp_path) == dump_state(db_path)
