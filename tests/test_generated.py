"""Tables with generated columns (VIRTUAL and STORED): every operation works, and checkout
reproduces them exactly (SQLite recomputes the generated values; dbvers never writes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

import dbvers
from tests.conftest import dump_state, execute, run_cli

SCHEMA = """
CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b INT GENERATED ALWAYS AS (a * 2) VIRTUAL,
               c TEXT GENERATED ALWAYS AS ('x' || a) STORED, d);
CREATE TABLE k(a, b AS (a + 1));
CREATE TABLE w(p TEXT, q INT, g AS (p || q) STORED, v, PRIMARY KEY (p, q)) WITHOUT ROWID;
CREATE TABLE h(name TEXT PRIMARY KEY, n REAL, twice AS (n * 2));
INSERT INTO t(id, a, d) VALUES (1, 1, 7), (2, 2, 0.0), (3, 3, 'z');
INSERT INTO k(a) VALUES (5), (6);
INSERT INTO w(p, q, v) VALUES ('a', 1, 'one'), ('b', 2, NULL);
INSERT INTO h VALUES ('x', 1.5), ('y', 2.5);
"""

EDITS = [
    "UPDATE t SET a = 10 WHERE id = 1; INSERT INTO t(id, a) VALUES (4, 4); DELETE FROM t WHERE id = 3",
    "UPDATE k SET a = 50 WHERE a = 5; INSERT INTO k(a) VALUES (7)",
    "UPDATE w SET v = 'uno' WHERE p = 'a'; DELETE FROM w WHERE p = 'b'; INSERT INTO w(p, q) VALUES ('c', 3)",
    "UPDATE t SET d = 7.0 WHERE id = 1; UPDATE t SET d = -0.0 WHERE id = 2",  # type and sign only
    "UPDATE h SET n = 9.0 WHERE name = 'x'; INSERT OR REPLACE INTO h VALUES ('y', 3.5)",
]


@pytest.fixture
def gen_db(tmp_path: Path, state_rebuilds: str) -> Path:
    p = tmp_path / "gen.db"
    execute(p, SCHEMA)
    return p


def _patch_only(repo: dbvers.Repo) -> dbvers.Repo:
    cfg = repo.store_dir / "config"
    cfg.write_text(cfg.read_text().replace("max_patch_ratio = 0.05", "max_patch_ratio = 1000"))
    return dbvers.open(repo.path)


def test_edits_commit_as_patches_and_check_out_exactly(gen_db: Path) -> None:
    repo = _patch_only(dbvers.init(gen_db))
    states = [(repo.head.commit, dump_state(gen_db))]
    for sql in EDITS:
        execute(gen_db, sql)
        st = repo.status()
        assert not st.clean
        c = repo.commit(sql[:30])
        assert c.snapshot is None  # a patchset carries it
        assert repo.status().clean
        states.append((repo.head.commit, dump_state(gen_db)))
    counts = [c.counts for c in reversed(repo.log())][1:]
    assert counts[3] == {"t": dbvers.TableCounts(0, 2, 0)}
    for oid, want in states:
        repo.checkout(oid)
        assert dump_state(gen_db) == want
        assert repo.status().clean
    repo.checkout("main")
    d = repo.diff("HEAD~5", "HEAD").to_pandas("t")
    assert set(d["diff_type"]) == {"added", "modified", "removed"}
    assert d.loc[d["to_id"] == 1, "to_b"].tolist() == [20]


def test_cli_on_generated_columns(gen_db: Path) -> None:
    assert run_cli("init", str(gen_db), cwd=gen_db.parent).returncode == 0
    execute(gen_db, EDITS[0])
    for args in (["status"], ["diff"], ["diff", "--stat"], ["commit", "-m", "edit"],
                 ["checkout", "HEAD~1"], ["checkout", "main"], ["reset", "--hard", "HEAD"],
                 ["log"], ["show"]):
        r = run_cli(*args, cwd=gen_db.parent)
        assert r.returncode == 0, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_merge_computes_stored_columns_with_the_users_sqlite(tmp_path: Path) -> None:
    """A merge writes theirs' rows with apsw's SQLite, which spells a REAL as text with 17
    digits; the merged state's STORED generated columns are the user's SQLite's (15 digits)."""
    import sqlite3

    db = tmp_path / "m.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, c, g AS (c || '') STORED); INSERT INTO t(id, c) VALUES (1, 1)")
    repo = dbvers.init(db)
    repo.branch("theirs")
    repo.checkout("theirs")
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO t(id, c) VALUES (2, ?)", (4.1903411858200894e-119,))
    conn.commit()
    conn.close()
    repo.commit("a real")
    want = dump_state(db)["tables"]["t"]
    repo.checkout("main")
    execute(db, "INSERT INTO t(id, c) VALUES (3, 'x')")
    repo.commit("ours")
    repo.merge("theirs")
    got = dump_state(db)["tables"]["t"]
    assert want[1] in got and want[1][-1] == ("text", "4.19034118582009e-119")
