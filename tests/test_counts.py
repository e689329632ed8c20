"""Row counts agree everywhere (status, commit, log, show, diff --stat) and count data that
changed: a pure column rename changes no row; a changed row with a NULL key counts once."""

from __future__ import annotations

from pathlib import Path

import dbvers
from tests.conftest import execute, run_cli


def _stat_counts(db: Path, a: str, b: str | None = None) -> dict[str, list[int]]:
    """diff --stat's counts, through the API (the CLI prints the same summary)."""
    summary = dbvers.open(db).diff(a, b).summary()
    return {r.table: [int(r.added), int(r.modified), int(r.removed)] for r in summary.itertuples()}


def test_rename_column_is_a_schema_change_with_no_row_changes(repo: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "ALTER TABLE orders RENAME COLUMN customer TO client")
    st = repo.status()
    assert st.changes.counts.get("orders", dbvers.TableCounts()).total == 0
    r = run_cli("status", cwd=db_path.parent)
    assert "~3" not in r.stdout and "customer" in r.stdout  # the schema line names the rename
    c = repo.commit("rename")
    assert c.counts.get("orders", dbvers.TableCounts()).total == 0
    show = run_cli("show", "HEAD", cwd=db_path.parent).stdout
    assert "~3" not in show
    assert _stat_counts(db_path, "HEAD~1", "HEAD").get("orders", [0, 0, 0]) == [0, 0, 0]
    # a rename plus a real edit counts the edit only, the same everywhere
    execute(db_path, "ALTER TABLE orders RENAME COLUMN client TO buyer; UPDATE orders SET buyer = 'q' WHERE id = 2")
    assert repo.status().changes.counts["orders"] == dbvers.TableCounts(0, 1, 0)
    c = repo.commit("rename and edit")
    assert c.counts["orders"] == dbvers.TableCounts(0, 1, 0)
    assert _stat_counts(db_path, "HEAD~1", "HEAD")["orders"] == [0, 1, 0]
    h = repo.history("orders", 2)
    assert len(h) >= 1


def test_changed_row_with_null_key_counts_once(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    execute(db, "CREATE TABLE t(k TEXT PRIMARY KEY, v); INSERT INTO t VALUES (NULL, 1), ('a', 2), (NULL, 3)")
    repo = dbvers.init(db)
    execute(db, "UPDATE t SET v = 10 WHERE v = 1")
    assert repo.status().changes.counts["t"] == dbvers.TableCounts(0, 1, 0)
    execute(db, "INSERT INTO t VALUES (NULL, 4); DELETE FROM t WHERE v = 3")
    assert repo.status().changes.counts["t"] == dbvers.TableCounts(1, 1, 1)
    c = repo.commit("null keys")
    assert c.counts["t"] == dbvers.TableCounts(1, 1, 1)
