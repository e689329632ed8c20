"""Locking, recovery and live objects: one Repo from two threads, live Diffs across other
commands (in this process and another), the lock's own failures (a directory, a holder in
this process), a read-only store, and a damaged checkout journal."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Zygote, execute, one_line_error, run_cli

import dbvers
from dbvers.errors import (
    CheckoutJournalError,
    DatabaseLockedError,
    LockFileError,
    ReadOnlyStoreError,
    RepositoryBusyError,
)


def store_files(store: Path) -> dict[str, str]:
    """Every file of the store (lock excluded) and its content hash."""
    return {p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file() and p.name != "lock"}


def marks(repo: dbvers.Repo, at: str) -> set[tuple[str, int]]:
    df = repo.read_table("marks", at=at)
    return {(str(b), int(i)) for b, i in zip(df["branch"], df["i"], strict=True)}


# -- item 7: one Repo, two threads -----------------------------------------------------


def test_one_repo_two_threads_checkout_commit_interleaved(repo: dbvers.Repo, db_path: Path) -> None:
    """Each thread switches to its branch, writes, commits, as one locked unit; the lock makes
    the other thread wait, so every commit holds exactly what its own thread wrote."""
    execute(db_path, "CREATE TABLE marks(branch TEXT, i INTEGER)")
    repo.commit("marks")
    repo.branch("b")
    committed: list[tuple[str, str, set[tuple[str, int]]]] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 4

    def work(branch: str) -> None:
        mine: set[tuple[str, int]] = set()
        i = 0
        try:
            while time.monotonic() < deadline and i < 40:
                with repo.lock.held():
                    repo.checkout(branch)
                    execute(db_path, "INSERT INTO marks VALUES (?, ?)", (branch, i))
                    mine.add((branch, i))
                    c = repo.commit(f"{branch} {i}")
                    committed.append((branch, c.id, set(mine)))
                    # Lock released and retaken at once: a fair chance for the other thread.
                i += 1
                time.sleep(0)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(b,)) for b in ("main", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert {b for b, _, _ in committed} == {"main", "b"}
    for branch, oid, expected in committed:
        assert marks(repo, oid) == expected, (branch, oid)
        assert repo.log(oid)[0].message.startswith(branch)
    assert repo.fsck().ok


def test_one_repo_two_threads_ungrouped_calls(repo: dbvers.Repo, db_path: Path) -> None:
    """One thread commits while another runs status, diff, read_table, fsck and branch on the
    same Repo object: no call fails, and each commit holds what the committing thread wrote."""
    execute(db_path, "CREATE TABLE marks(branch TEXT, i INTEGER)")
    repo.commit("marks")
    errors: list[BaseException] = []
    committed: list[tuple[str, set[tuple[str, int]]]] = []
    stop = threading.Event()
    deadline = time.monotonic() + 4

    def writer() -> None:
        try:
            mine: set[tuple[str, int]] = set()
            for i in range(30):
                if time.monotonic() > deadline:
                    break
                execute(db_path, "INSERT INTO marks VALUES ('w', ?)", (i,))
                mine.add(("w", i))
                committed.append((repo.commit(f"w {i}").id, set(mine)))
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    def reader() -> None:
        n = 0
        try:
            while not stop.is_set():
                repo.status()
                with repo.diff("HEAD", None) as d:
                    d.summary()
                repo.read_table("marks")
                if n % 5 == 0:
                    assert repo.fsck().ok
                    repo.branch(f"r{n}")
                n += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert committed
    for oid, expected in committed:
        assert marks(repo, oid) == expected, oid


def test_second_thread_waits_then_gets_a_busy_error_naming_the_thread(
        repo: dbvers.Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBVERS_LOCK_TIMEOUT", "0.3")
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with repo.lock.held():
            holding.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(5)
        start = time.monotonic()
        with pytest.raises(RepositoryBusyError) as exc:
            repo.status()
        assert time.monotonic() - start >= 0.25
        assert exc.value.holder == "thread"
        assert "another thread of this process" in str(exc.value)
    finally:
        done.set()
        t.join()
    repo.status()  # free again


# -- item 10 / issue 11: a live Diff survives every other command ------------------------


def _dead_process_leftovers(store: Path, zygote: Zygote) -> list[Path]:
    """A killed dbvers process's temp file and Diff directory (its pid is gone afterwards)."""
    code = ("import sys, os, tempfile; from pathlib import Path; from dbvers.fsutil import temp_path, "
            "temp_prefix; c = Path(sys.argv[1]); print(temp_path(c, '.db')); "
            "print(tempfile.mkdtemp(prefix=temp_prefix('diff'), dir=c), flush=True); "
            "os.kill(os.getpid(), 9)")
    r = zygote.run([sys.executable, "-c", code, str(store / "cache")], timeout=60)
    paths = [Path(line) for line in r.stdout.split()]
    assert len(paths) == 2 and all(p.exists() for p in paths), r.stderr
    return paths


def _assert_diff_alive(d: Any, before: Any) -> None:
    assert d.nbytes > 0
    assert d.to_pandas("orders").equals(before)
    with d.copy() as c:
        assert c.nbytes == d.nbytes
        assert c.to_pandas("orders").equals(before)


def test_live_diff_survives_commands_in_this_process(repo: dbvers.Repo, db_path: Path,
                                                    zygote: Zygote) -> None:
    store = db_path.parent / ".dbvers"
    execute(db_path, "UPDATE orders SET qty = qty + 10")
    dead = _dead_process_leftovers(store, zygote)
    d = repo.diff()  # working database vs HEAD
    h = repo.diff("HEAD", "HEAD")
    before = d.to_pandas("orders")
    assert len(before) == 3
    repo.status()
    repo.commit("more qty")
    repo.branch("x")
    repo.checkout("x")
    repo.fsck()
    repo.gc()
    repo.read_table("orders", at="HEAD~1")
    with repo.diff("HEAD~1", "HEAD"):
        pass
    _assert_diff_alive(d, before)
    assert h.nbytes > 0
    # Only the killed process's leftovers were cleaned.
    assert not any(p.exists() for p in dead)
    d.close()
    h.close()


def test_live_diff_survives_commands_in_another_process(repo: dbvers.Repo, db_path: Path,
                                                       zygote: Zygote) -> None:
    store = db_path.parent / ".dbvers"
    execute(db_path, "DELETE FROM orders WHERE id = 1")
    dead = _dead_process_leftovers(store, zygote)
    d = repo.diff()
    before = d.to_pandas("orders")
    for args in (["status"], ["commit", "-m", "gone"], ["fsck"], ["gc"], ["checkout", "HEAD~1"],
                 ["diff", "HEAD", "main"]):
        # Another process's recovery (a process of its own, forked with dbvers imported).
        r = zygote.cli("--db", str(db_path), *args)
        assert r.returncode in (0, 1), (args, r.stderr)
        _assert_diff_alive(d, before)
    assert not any(p.exists() for p in dead)
    d.close()
    assert not [p for p in (store / "cache").iterdir() if p.name.startswith(".tmp-diff-")]


def test_old_unowned_temps_are_cleaned_young_ones_kept(repo: dbvers.Repo, db_path: Path) -> None:
    """Temps whose name has no owner (an older dbvers) go only once a day old; a live Diff stays."""
    cache = db_path.parent / ".dbvers" / "cache"
    old, young = cache / ".tmp-abc123.db", cache / ".tmp-def456.db"
    for p in (old, young):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    execute(db_path, "UPDATE orders SET qty = 0")
    d = repo.diff()
    before = d.to_pandas("orders")
    repo.commit("zero")
    assert not old.exists() and young.exists()
    _assert_diff_alive(d, before)
    d.close()


# -- item 9 (lock part): the lock file is a directory --------------------------------------


def test_lock_that_is_a_directory_is_a_one_line_error(repo: dbvers.Repo, db_path: Path) -> None:
    lock = db_path.parent / ".dbvers" / "lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    for args in (["status"], ["commit", "-m", "x", "--allow-empty"], ["fsck"]):
        msg = one_line_error(run_cli("--db", str(db_path), *args))
        assert str(lock) in msg and "is a directory" in msg and "remove it" in msg, msg
    with pytest.raises(LockFileError):
        repo.status()
    lock.rmdir()
    assert run_cli("--db", str(db_path), "status").returncode == 0


# -- minor: who holds the lock -------------------------------------------------------------


def test_busy_says_when_the_holder_is_this_process(repo: dbvers.Repo, db_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBVERS_LOCK_TIMEOUT", "0.2")
    other = dbvers.open(db_path)
    with other.lock.held(), pytest.raises(RepositoryBusyError) as exc:
        repo.status()
    msg = str(exc.value)
    assert "this process" in msg and "another Repo object" in msg, msg
    assert "another dbvers process" not in msg
    repo.status()


def test_busy_names_the_pid_of_another_holder(repo: dbvers.Repo, db_path: Path, zygote: Zygote) -> None:
    code = ("import sys, time, dbvers; r = dbvers.open(sys.argv[1]); r.lock.acquire(); "
            "print('ready', flush=True); time.sleep(60)")
    proc = zygote.popen([sys.executable, "-c", code, str(db_path)])  # another process, forked
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        msg = one_line_error(run_cli("--db", str(db_path), "status", env={"DBVERS_LOCK_TIMEOUT": "0.3"}))
        assert "repository is busy" in msg and f"pid {proc.pid}" in msg, msg
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_cli("--db", str(db_path), "status").returncode == 0


# -- minor: a read-only store --------------------------------------------------------------


@contextlib.contextmanager
def read_only_mount(path: Path) -> Iterator[None]:
    """*path* as a read-only bind mount of itself (root ignores permission bits, not this)."""
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) to make a read-only bind mount")
    r = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"bind mounts are not allowed here: {r.stderr.strip()}")
    try:
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
        with pytest.raises(OSError):
            (path / "probe").write_bytes(b"")
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_read_only_store_runs_read_commands_and_refuses_writes(repo: dbvers.Repo, db_path: Path) -> None:
    store = db_path.parent / ".dbvers"
    execute(db_path, "UPDATE orders SET qty = 7 WHERE id = 2")
    repo.commit("seven")
    execute(db_path, "DELETE FROM events WHERE kind = 'close'")  # uncommitted
    before = store_files(store)
    with read_only_mount(store):
        ro = dbvers.open(db_path)
        st = ro.status()
        assert st.dirty_tables == ["events"]
        with ro.diff() as d:
            assert d.tables == ["events"]
            assert len(d.to_pandas("events")) == 1
        with ro.diff("HEAD~1", "HEAD") as d:
            assert d.tables == ["orders"]
        assert ro.fsck().ok
        assert len(ro.read_table("orders", at="HEAD~1")) == 3
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            ro.commit("nope")
        for args in (["status"], ["diff"], ["diff", "HEAD~1", "HEAD"], ["fsck"], ["log", "--oneline"]):
            r = run_cli("--db", str(db_path), *args)
            assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (args, r.stderr)
        for args in (["commit", "-m", "x"], ["branch", "b"], ["tag", "t"], ["checkout", "-f", "HEAD~1"],
                     ["gc"], ["snapshot"], ["reset", "--hard", "-f", "HEAD~1"]):
            msg = one_line_error(run_cli("--db", str(db_path), *args))
            assert "is read-only" in msg and str(store) in msg, (args, msg)
    assert store_files(store) == before
    assert not (store / "probe").exists()
    assert dbvers.open(db_path).status().dirty_tables == ["events"]


# -- minor: a damaged checkout journal -------------------------------------------------------


def _journals(repo: dbvers.Repo) -> dict[str, bytes]:
    head = repo.resolve("HEAD")
    missing = "ab" * 32
    return {
        "not json": b"\x00garbage{",
        "not an object": b"[1, 2]",
        "missing target": json.dumps({"target": missing, "head": "ref: refs/heads/main\n",
                                      "ref": ["refs/heads/main", missing]}).encode(),
        "escaping target": json.dumps({"target": "../../../../etc/passwd", "head": f"{head}\n",
                                       "ref": None}).encode(),
    }


@pytest.mark.parametrize("kind", ["not json", "not an object", "missing target", "escaping target"])
def test_damaged_checkout_journal_refuses_writes_and_lets_fsck_run(
        repo: dbvers.Repo, db_path: Path, kind: str) -> None:
    store = db_path.parent / ".dbvers"
    journal = store / "CHECKOUT"
    journal.write_bytes(_journals(repo)[kind])
    execute(db_path, "UPDATE orders SET qty = 1")
    before = store_files(store)
    report = repo.fsck()
    assert not report.ok and any(str(journal) in p for p in report.problems), report.problems
    assert repo.status().dirty_tables == ["orders"]
    assert repo.journal_problem and "dbvers fsck" in repo.journal_problem
    with repo.diff() as d:
        assert d.tables == ["orders"]
    assert len(repo.read_table("orders")) == 3
    for write in (lambda: repo.commit("x"), lambda: repo.checkout("HEAD", force=True),
                  lambda: repo.branch("b"), lambda: repo.gc()):
        with pytest.raises(CheckoutJournalError, match="delete"):
            write()
    assert store_files(store) == before
    journal.unlink()
    repo.commit("after")
    assert repo.fsck().ok


def test_damaged_checkout_journal_through_the_cli(repo: dbvers.Repo, db_path: Path) -> None:
    journal = db_path.parent / ".dbvers" / "CHECKOUT"
    journal.write_bytes(_journals(repo)["missing target"])
    execute(db_path, "UPDATE orders SET qty = 1")
    r = run_cli("--db", str(db_path), "fsck")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "CHECKOUT" in r.stdout + r.stderr
    r = run_cli("--db", str(db_path), "status")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "CHECKOUT" in r.stderr and "dbvers fsck" in r.stderr and "orders" in r.stdout
    msg = one_line_error(run_cli("--db", str(db_path), "commit", "-m", "x"))
    assert str(journal) in msg and "delete" in msg, msg


# -- minor: who holds the working database's lock -----------------------------------------


def test_database_locked_by_this_process_says_so(repo: dbvers.Repo, db_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook case: the user's own sqlite3 connection holds a write transaction."""
    execute(db_path, "PRAGMA journal_mode = WAL")
    repo.commit("wal", allow_empty=True)
    execute(db_path, "UPDATE orders SET qty = 99")
    repo.commit("99")
    monkeypatch.setenv("DBVERS_LOCK_TIMEOUT", "0.3")
    mine = sqlite3.connect(db_path, isolation_level=None)
    try:
        mine.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseLockedError) as exc:
            repo.checkout("HEAD~1")
        msg = str(exc.value)
        assert "locked by this process" in msg and "another process" not in msg, msg
        assert exc.value.holder == "process"
    finally:
        mine.execute("ROLLBACK")
        mine.close()
    repo.checkout("HEAD~1")


def test_database_locked_by_another_process_names_its_pid(repo: dbvers.Repo, db_path: Path, zygote: Zygote) -> None:
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('ready', flush=True); time.sleep(60)")
    proc = zygote.popen([sys.executable, "-c", code, str(db_path)])  # another process, forked
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        msg = one_line_error(run_cli("--db", str(db_path), "commit", "-m", "x", "--allow-empty",
                                     env={"DBVERS_LOCK_TIMEOUT": "0.3"}))
        assert f"locked by another process (pid {proc.pid})" in msg, msg
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
