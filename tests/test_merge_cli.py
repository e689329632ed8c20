"""merge, conflicts, resolve, revert and cherry-pick through the command line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
from conftest import one_line_error, run_cli


def _sql(db: Path, script: str) -> None:
    con = sqlite3.connect(db)
    con.executescript(script)
    con.commit()
    con.close()


def _rows(db: Path) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT * FROM t ORDER BY id").fetchall()
    finally:
        con.close()


def _diverged(tmp: Path) -> Path:
    db = tmp / "data.db"
    _sql(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, a, b);"
             "INSERT INTO t VALUES (1, 'a1', 'b1'), (2, 'a2', 'b2'), (3, 'a3', 'b3');")
    for args in (["init", str(db)], ["--db", str(db), "checkout", "-b", "feature"]):
        assert run_cli(*args).returncode == 0
    _sql(db, "UPDATE t SET a = 'F' WHERE id IN (1, 2); UPDATE t SET b = 'F' WHERE id = 3;")
    assert run_cli("--db", str(db), "commit", "-m", "feature work").returncode == 0
    assert run_cli("--db", str(db), "checkout", "main").returncode == 0
    _sql(db, "UPDATE t SET a = 'M' WHERE id = 1;")
    assert run_cli("--db", str(db), "commit", "-m", "main work").returncode == 0
    return db


def test_merge_with_a_conflict_end_to_end(tmp_path: Path) -> None:
    db = _diverged(tmp_path)
    r = run_cli("--db", str(db), "merge", "feature")
    assert r.returncode == 1, r.stderr
    assert "CONFLICT: 1 row in t" in r.stdout and "dbvers merge --continue" in r.stdout
    assert "merge in progress: 1 conflicting row in t" in run_cli("--db", str(db), "status").stdout
    r = run_cli("--db", str(db), "conflicts", "--format", "json")
    (row,) = json.loads(r.stdout)["t"]
    assert (row["id"], row["base_a"], row["our_a"], row["their_a"], row["conflict"]) == (1, "a1", "M", "F", "data")
    shown = run_cli("--db", str(db), "conflicts").stdout
    assert "#1 data at id=1" in shown and "theirs" in shown and "F" in shown
    text = tmp_path / "c.txt"  # -o without a machine format: the text view, as diff -o does
    assert run_cli("--db", str(db), "conflicts", "-o", str(text)).returncode == 0
    assert "#1 data at id=1" in text.read_text()
    assert run_cli("--db", str(db), "conflicts", "--format", "table", "-o", str(text)).returncode == 0
    assert "#1 data at id=1" in text.read_text()
    out = tmp_path / "c.parquet"
    assert run_cli("--db", str(db), "conflicts", "--format", "parquet", "-o", str(out)).returncode == 0
    assert list(pd.read_parquet(out)["their_a"]) == ["F"]
    assert "1 conflicts remain" in one_line_error(run_cli("--db", str(db), "merge", "--continue"))
    assert "a merge is in progress" in one_line_error(run_cli("--db", str(db), "checkout", "feature"))
    r = run_cli("--db", str(db), "resolve", "--theirs", "t", "--where", "id = 1")
    assert r.returncode == 0 and "no conflicts left" in r.stdout
    r = run_cli("--db", str(db), "merge", "--continue")
    assert r.returncode == 0, r.stderr
    assert _rows(db) == [(1, "F", "b1"), (2, "F", "b2"), (3, "a3", "F")]
    log = json.loads(run_cli("--db", str(db), "log", "-n", "1", "--format", "json").stdout)
    assert len(log[0]["parents"]) == 2
    lines = run_cli("--db", str(db), "log", "--graph").stdout.splitlines()
    assert lines[0].startswith("* ") and "(HEAD -> main)" in lines[0]
    assert [ln.split()[0:2] for ln in lines[1:3]] == [["*", "|"], ["|", "*"]], lines
    assert "feature work" in lines[2] and lines[3].startswith("* ") and len(lines[3].split()[0]) == 1


def test_merge_abort_and_refusals(tmp_path: Path) -> None:
    db = _diverged(tmp_path)
    before = _rows(db)
    assert "no merge, revert or cherry-pick is in progress" in one_line_error(
        run_cli("--db", str(db), "merge", "--abort"))
    assert "unknown revision" in one_line_error(run_cli("--db", str(db), "merge", "nope"))
    assert run_cli("--db", str(db), "merge", "feature").returncode == 1
    assert "a merge is in progress" in one_line_error(run_cli("--db", str(db), "merge", "feature"))
    r = run_cli("--db", str(db), "merge", "--abort")
    assert r.returncode == 0 and _rows(db) == before
    _sql(db, "UPDATE t SET b = 'dirty' WHERE id = 2;")
    assert "uncommitted changes in t would be lost by merge" in one_line_error(
        run_cli("--db", str(db), "merge", "feature"))
    assert "give a revision" in one_line_error(run_cli("--db", str(db), "merge"))


def test_fast_forward_revert_and_cherry_pick(tmp_path: Path) -> None:
    db = _diverged(tmp_path)
    assert run_cli("--db", str(db), "checkout", "-b", "later").returncode == 0
    _sql(db, "INSERT INTO t VALUES (4, 'x', 'y');")
    assert run_cli("--db", str(db), "commit", "-m", "add 4").returncode == 0
    assert run_cli("--db", str(db), "checkout", "main").returncode == 0
    r = run_cli("--db", str(db), "merge", "later")
    assert r.returncode == 0 and "Fast-forward" in r.stdout
    assert "Already up to date." in run_cli("--db", str(db), "merge", "later").stdout
    r = run_cli("--db", str(db), "revert", "HEAD")
    assert r.returncode == 0 and 'Revert "add 4"' in r.stdout
    assert (4, "x", "y") not in _rows(db)
    r = run_cli("--db", str(db), "cherry-pick", "later")
    assert r.returncode == 0 and (4, "x", "y") in _rows(db)
    assert "is a root commit" in one_line_error(run_cli("--db", str(db), "revert", "main~4"))
