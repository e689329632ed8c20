"""The planner's statistics (sqlite_stat*, from ANALYZE / PRAGMA optimize) never keep a
repository dirty and never force a keyframe; ``[stats] version = true`` versions them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dbvers
from tests.conftest import dump_state, execute, run_cli


def _analyze(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("ANALYZE")
        conn.execute("PRAGMA optimize")
        conn.commit()
    finally:
        conn.close()


def _stats(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT * FROM sqlite_stat1").fetchall(), key=repr)
    finally:
        conn.close()


def test_analyze_alone_is_not_a_change(repo: dbvers.Repo, db_path: Path) -> None:
    _analyze(db_path)  # orders/events have no index: sqlite_stat1 rows with a NULL idx
    assert repo.status().clean
    r = run_cli("diff", "--exit-code", cwd=db_path.parent)
    assert r.returncode == 0, r.stdout
    r = run_cli("commit", "-m", "stats only", cwd=db_path.parent)
    assert r.returncode == 2 and "nothing to commit" in r.stderr


def _no_ratio_keyframes(repo: dbvers.Repo) -> dbvers.Repo:
    cfg = repo.store_dir / "config"
    cfg.write_text(cfg.read_text().replace("max_patch_ratio = 0.05", "max_patch_ratio = 1000"))
    return dbvers.open(repo.path)


def test_commit_after_analyze_is_a_patch_and_stays_clean(repo: dbvers.Repo, db_path: Path) -> None:
    repo = _no_ratio_keyframes(repo)
    execute(db_path, "INSERT INTO orders VALUES (10, 'cy', 1, 2.0, NULL)")
    _analyze(db_path)
    c = repo.commit("rows and stats")
    assert c.snapshot is None  # statistics alone never make a keyframe
    assert repo.status().clean
    execute(db_path, "VACUUM")  # a new file: status does a full comparison
    assert repo.status().clean
    st = run_cli("status", cwd=db_path.parent)
    assert "sqlite_stat" not in st.stdout and "nothing to commit" in st.stdout
    execute(db_path, "INSERT INTO orders VALUES (11, 'dee', 1, 2.0, NULL)")
    _analyze(db_path)
    repo.commit("more")
    assert repo.status().clean
    # checkout and reset work (they refused while the repository looked dirty)
    want = dump_state(db_path)
    assert run_cli("checkout", "HEAD~2", cwd=db_path.parent).returncode == 0
    assert repo.status().clean
    assert run_cli("checkout", "main", cwd=db_path.parent).returncode == 0
    got = dump_state(db_path)
    for t in ("orders", "events", "odd name"):
        assert got["tables"][t] == want["tables"][t]
    assert run_cli("reset", "--hard", "HEAD~1", cwd=db_path.parent).returncode == 0
    assert repo.status().clean


def test_version_stats_switch(repo: dbvers.Repo, db_path: Path) -> None:
    with open(repo.store_dir / "config", "a") as f:
        f.write("\n[stats]\nversion = true\n")
    repo = dbvers.open(db_path)
    _analyze(db_path)
    st = repo.status()
    assert not st.clean
    c = repo.commit("stats")
    assert c.snapshot is not None  # a new table in the schema
    execute(db_path, "VACUUM")
    assert repo.status().clean  # NULL idx rows compare equal
    execute(db_path, "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 50) "
            "INSERT INTO orders SELECT v + 100, 'x', 1, 1.0, NULL FROM n")
    _analyze(db_path)
    want = _stats(db_path)
    c2 = repo.commit("new stats")
    assert c2.snapshot is not None  # kept exactly, through a keyframe
    assert repo.status().clean
    repo.checkout("HEAD~1")
    assert _stats(db_path) != want
    repo.checkout("main")
    assert _stats(db_path) == want
    # a store whose commits recorded statistics still checks out once the switch is off
    (repo.store_dir / "config").write_text(
        (repo.store_dir / "config").read_text().replace("version = true", "version = false")
    )
    repo = dbvers.open(db_path)
    assert repo.status().clean
    repo.checkout("HEAD~1")
    repo.checkout("main")
    assert _stats(db_path) == want
