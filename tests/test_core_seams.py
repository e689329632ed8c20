"""The core's seams (issue 11): merge commits, the public lock, the operation journal, and a
live Diff surviving every other command's recovery."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import dump_state, execute, run_cli

import dbvers
from dbvers.errors import RepositoryBusyError, UsageError

# -- commit(parents=...) --------------------------------------------------------------------


def test_two_parent_commit_is_written_and_read_back(repo: dbvers.Repo, db_path: Path) -> None:
    base = repo.resolve("HEAD")
    repo.branch("theirs")
    execute(db_path, "UPDATE orders SET qty = 7 WHERE id = 1")
    ours = repo.commit("ours").id
    repo.checkout("theirs")
    execute(db_path, "INSERT INTO orders VALUES (9, 'eve', 1, 2.0, NULL)")
    theirs = repo.commit("theirs").id
    repo.checkout("main")
    execute(db_path, "INSERT INTO orders VALUES (9, 'eve', 1, 2.0, NULL)")  # the merged state, by hand
    merged_state = dump_state(db_path)

    merge = repo.commit("Merge theirs", parents=["HEAD", "theirs"])
    assert merge.parents == (ours, theirs)
    assert repo.resolve("HEAD") == merge.id and repo.resolve("HEAD^2") == theirs
    again = dbvers.open(db_path)  # read back from the store, not this process's cache
    assert again.get_commit(merge.id).parents == (ours, theirs)
    assert {c.id for c in again.log()} == {merge.id, ours, theirs, base}
    assert again.reflog("main")[-1].message.startswith("commit (merge): ")
    assert again.status().clean
    # Its state is rebuilt from the store along the first parent, exactly.
    again.checkout("theirs")
    again.checkout("main")
    assert dump_state(db_path) == merged_state
    again.gc(prune="now")
    assert again.fsck().ok
    assert again.read_table("orders", at="HEAD^2")["id"].tolist() == [1, 2, 3, 9]


def test_a_merge_commit_of_an_unchanged_state_is_allowed_an_ordinary_one_not(
        repo: dbvers.Repo, db_path: Path) -> None:
    repo.branch("side")
    repo.checkout("side")
    execute(db_path, "DELETE FROM events")
    side = repo.commit("side").id
    repo.checkout("main")
    with pytest.raises(dbvers.DbversError, match="nothing to commit"):
        repo.commit("nothing")
    merge = repo.commit("Merge side, keeping ours", parents=["main", side])
    assert merge.parents[1] == side and not any(c.total for c in merge.counts.values())
    with pytest.raises(UsageError, match="same parent twice"):
        repo.commit("twice", parents=["HEAD", "HEAD"])


def test_explicit_no_parents_makes_a_root_commit(repo: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "UPDATE orders SET qty = 0")
    root = repo.commit("a new root", parents=[])
    assert root.parents == () and root.snapshot is not None
    assert repo.log()[-1].id == root.id and len(repo.log()) == 1


# -- locked(): the public lock -----------------------------------------------------------------


def test_locked_is_reentrant_and_makes_other_threads_wait(repo: dbvers.Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBVERS_LOCK_TIMEOUT", "0.2")
    assert repo.lock_timeout() == 0.2
    errors: list[BaseException] = []

    def other() -> None:
        try:
            repo.status()
        except BaseException as e:
            errors.append(e)

    with repo.locked(), repo.locked(write=False):
        repo.status()  # re-entrant in this thread
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], RepositoryBusyError)
    repo.status()


# -- the operation journal ------------------------------------------------------------------


def test_an_operation_state_outlives_its_move_and_recovery(repo: dbvers.Repo, db_path: Path) -> None:
    head = repo.resolve("HEAD")
    execute(db_path, "UPDATE orders SET qty = 3")
    other = repo.commit("other").id
    state = {"onto": head, "note": "a later operation's own record"}
    with repo.locked():
        repo.worktree.write_working(head, head=None, ref=("refs/heads/main", head), op="rebase", state=state)
        repo.worktree.apply_intent(None, ("refs/heads/main", head), "merge: test")
    op = dbvers.open(db_path).worktree.operation()
    assert op is not None and op.op == "rebase" and op.state == state and op.target is None
    run_cli("--db", str(db_path), "status")  # another process's recovery leaves it alone
    assert dbvers.open(db_path).worktree.operation() == op
    assert repo.resolve("HEAD") == head and repo.status().clean
    repo.worktree.end_operation()
    assert repo.worktree.operation() is None
    assert repo.checkout(other, force=True) == other


def test_a_journal_in_the_old_format_is_still_finished(repo: dbvers.Repo, db_path: Path) -> None:
    """A checkout killed after its copy by a dbvers writing the journal without an operation kind."""
    first = repo.resolve("HEAD")
    execute(db_path, "UPDATE orders SET qty = 3")
    second = repo.commit("second").id
    repo.checkout(first)  # detached at the first commit, the working database holds it
    (db_path.parent / ".dbvers" / "CHECKOUT").write_text(
        json.dumps({"target": first, "head": "ref: refs/heads/main\n", "ref": ["refs/heads/main", first]}))
    assert repo.status().clean  # its recovery finished the move
    assert repo.head.branch == "main" and repo.resolve("main") == first
    assert not (db_path.parent / ".dbvers" / "CHECKOUT").exists()
    assert repo.reflog("main")[-1].message == "recovered after interruption"
    assert second in {e.old for e in repo.reflog("main")}


# -- a live Diff survives any recovery (the cache/.tmp-* bug) --------------------------------


def test_live_diff_survives_a_recovery_that_finishes_a_killed_checkout(repo: dbvers.Repo, db_path: Path) -> None:
    first = repo.resolve("HEAD")
    execute(db_path, "DELETE FROM orders WHERE id = 2")
    d = repo.diff()
    before = d.to_pandas("orders")
    journal = db_path.parent / ".dbvers" / "CHECKOUT"
    for runner in ("this process", "another process"):
        journal.write_text(json.dumps({"op": "checkout", "target": first, "head": f"{first}\n", "ref": None}))
        if runner == "this process":
            dbvers.open(db_path).status()
        else:
            r = run_cli("--db", str(db_path), "status")
            assert r.returncode == 0, r.stderr
        assert not journal.exists()
        time.sleep(0.01)
        assert d.nbytes > 0 and d.to_pandas("orders").equals(before)
        with d.copy() as c:
            assert c.to_pandas("orders").equals(before)
    d.close()


# -- checkout's check of cached states --------------------------------------------------------


def test_a_cached_state_damaged_in_place_is_rebuilt_even_with_its_mtime_put_back(
        repo: dbvers.Repo, db_path: Path) -> None:
    v1, v1_state = repo.resolve("HEAD"), dump_state(db_path)
    execute(db_path, "UPDATE orders SET qty = 99")
    repo.commit("two")
    repo.checkout(v1)  # checks v1's cached state and remembers it sound
    repo.checkout("main")
    cached = repo.states.cache_path(v1)
    st = cached.stat()
    data = bytearray(cached.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\x5a" * (len(data) - page)  # every page but the first: the header looks whole
    cached.write_bytes(bytes(data))
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    repo.checkout(v1)
    assert dump_state(db_path) == v1_state
