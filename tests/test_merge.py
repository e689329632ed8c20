"""Merge, revert and cherry-pick through the Python API: the user-visible rules of issue 12."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import dbvers
from dbvers.errors import (
    ConflictsRemainError,
    DirtyWorkingDatabaseError,
    MergeInProgressError,
    NoMergeInProgressError,
)


def _sql(db: Path, script: str) -> None:
    con = sqlite3.connect(db)
    con.executescript(script)
    con.commit()
    con.close()


def _rows(db: Path, sql: str = "SELECT * FROM t ORDER BY id") -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def branched(tmp_path: Path) -> tuple[dbvers.Repo, Path]:
    """main and feature, both from a base commit of t(id, a, b)."""
    db = tmp_path / "data.db"
    _sql(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, a, b);"
             "INSERT INTO t VALUES (1, 'a1', 'b1'), (2, 'a2', 'b2'), (3, 'a3', 'b3');")
    repo = dbvers.init(db)
    repo.branch("feature")
    return repo, db


def _on(repo: dbvers.Repo, db: Path, branch: str, script: str, msg: str) -> None:
    repo.checkout(branch)
    _sql(db, script)
    repo.commit(msg)


def test_fast_forward_and_up_to_date(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F' WHERE id = 1;", "feature edit")
    repo.checkout("main")
    res = repo.merge("feature")
    assert res.fast_forward and repo.resolve("main") == repo.resolve("feature")
    assert _rows(db)[0] == (1, "F", "b1")
    assert repo.merge("feature").up_to_date


def test_three_way_merge_commits_with_two_parents(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F' WHERE id = 1; INSERT INTO t VALUES (9, 'f', 'f');", "feature")
    _on(repo, db, "main", "UPDATE t SET b = 'M' WHERE id = 1; DELETE FROM t WHERE id = 3;", "main")
    main_tip, feature_tip = repo.resolve("main"), repo.resolve("feature")
    res = repo.merge("feature")
    assert not res.fast_forward and res.conflicts == {} and res.commit is not None
    assert list(res.commit.parents) == [main_tip, feature_tip]
    assert _rows(db) == [(1, "F", "M"), (2, "a2", "b2"), (9, "f", "f")]
    assert repo.status().clean
    # the merge commit's state checks out exactly
    repo.checkout(main_tip)
    repo.checkout("main")
    assert _rows(db) == [(1, "F", "M"), (2, "a2", "b2"), (9, "f", "f")]


def test_conflict_flow_resolve_continue(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F' WHERE id IN (1, 2); UPDATE t SET b = 'F' WHERE id = 3;", "f")
    _on(repo, db, "main", "UPDATE t SET a = 'M' WHERE id IN (1, 2);", "m")
    res = repo.merge("feature")
    assert res.conflicts == {"t": 2} and res.commit is None
    # ours in conflicting rows, theirs' clean change applied
    assert _rows(db) == [(1, "M", "b1"), (2, "M", "b2"), (3, "a3", "F")]
    frames = repo.conflicts()
    assert set(frames["t"]["id"]) == {1, 2}
    assert list(frames["t"]["their_a"]) == ["F", "F"]
    with pytest.raises(ConflictsRemainError):
        repo.merge_continue()
    with pytest.raises(MergeInProgressError):
        repo.checkout("feature")
    assert repo.resolve_conflicts("theirs", ["t"], where="id = 1") == 1
    assert repo.resolve_conflicts("ours") == 1
    c = repo.merge_continue()
    assert len(c.parents) == 2
    assert _rows(db) == [(1, "F", "b1"), (2, "M", "b2"), (3, "a3", "F")]
    with pytest.raises(NoMergeInProgressError):
        repo.merge_abort()


def test_abort_restores_ours_exactly(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F';", "f")
    _on(repo, db, "main", "UPDATE t SET a = 'M' WHERE id = 1; INSERT INTO t VALUES (5, 'm', x'00ff');", "m")
    before = _rows(db, "SELECT id, a, typeof(a), hex(b) FROM t ORDER BY id")
    head = repo.resolve("HEAD")
    repo.merge("feature")
    repo.merge_abort()
    assert _rows(db, "SELECT id, a, typeof(a), hex(b) FROM t ORDER BY id") == before
    assert repo.resolve("HEAD") == head and repo.status().clean


def test_refusals_change_nothing(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F';", "f")
    _on(repo, db, "main", "UPDATE t SET b = 'M';", "m")
    _sql(db, "UPDATE t SET a = 'dirty' WHERE id = 2;")
    with pytest.raises(DirtyWorkingDatabaseError):
        repo.merge("feature")
    assert _rows(db)[1] == (2, "dirty", "M")
    with pytest.raises(dbvers.DbversError, match=r"unknown revision|no branch"):
        repo.merge("nope")


def test_no_commit_then_continue(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F' WHERE id = 1;", "f")
    _on(repo, db, "main", "UPDATE t SET b = 'M' WHERE id = 2;", "m")
    res = repo.merge("feature", commit=False)
    assert res.commit is None and res.conflicts == {}
    c = repo.merge_continue(message="merged by hand")
    assert c.message == "merged by hand" and len(c.parents) == 2


def test_revert_and_cherry_pick(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "main", "UPDATE t SET a = 'X' WHERE id = 1;", "set x")
    x = repo.resolve("HEAD")
    _sql(db, "UPDATE t SET b = 'Y' WHERE id = 2;")
    repo.commit("set y")
    r = repo.revert(x)
    assert r.commit is not None and r.commit.message.startswith('Revert "set x"')
    assert _rows(db)[:2] == [(1, "a1", "b1"), (2, "a2", "Y")]
    rr = repo.revert("HEAD")  # revert of the revert brings x back
    assert rr.commit is not None and _rows(db)[0] == (1, "X", "b1")
    _on(repo, db, "feature", "INSERT INTO t VALUES (7, 'picked', NULL);", "pick me")
    pick = repo.resolve("feature")
    repo.checkout("main")
    cp = repo.cherry_pick(pick)
    assert cp.commit is not None and cp.commit.message == "pick me"
    assert (7, "picked", None) in _rows(db)
    assert list(cp.commit.parents) == [rr.commit.id]


def test_status_names_the_merge_and_its_conflicts(branched: tuple[dbvers.Repo, Path]) -> None:
    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F' WHERE id = 1;", "f")
    _on(repo, db, "main", "UPDATE t SET a = 'M' WHERE id = 1;", "m")
    repo.merge("feature")
    st = repo.status()
    assert (st.operation, st.conflicts) == ("merge", {"t": 1})
    assert "merge in progress: 1 conflicting row in t" in str(st)
    assert st.to_json()["conflicts"] == {"t": 1}
    repo.resolve_conflicts("ours")
    assert "no conflicts left" in str(repo.status())
    c = repo.commit("done by commit")  # a plain commit concludes the merge, like git's
    assert len(c.parents) == 2 and repo.status().operation is None


def test_conflicts_widget_takes_sides_and_continues(branched: tuple[dbvers.Repo, Path]) -> None:
    from dbvers.render.conflictview import ConflictsView

    repo, db = branched
    _on(repo, db, "feature", "UPDATE t SET a = 'F' WHERE id IN (1, 2, 3);", "f")
    _on(repo, db, "main", "UPDATE t SET a = 'M' WHERE id IN (1, 2, 3);", "m")
    repo.merge("feature")
    view = ConflictsView(repo)
    assert view.continue_button.disabled and len(view.tabs.children) == 1
    cid = int(repo.conflicts()["t"].iloc[0]["conflict_id"])
    assert view.take("theirs", "t", cid) == 1
    assert view.take("ours", "t") == 2
    assert not view.continue_button.disabled
    view.continue_button.click()
    assert "committed" in view.message.value and repo.operation() is None
    assert sorted(r[1] for r in _rows(db)) == ["F", "M", "M"]
    assert view.continue_button.disabled  # nothing in progress any more
