"""Every change commit would record is visible in diff, and --exit-code agrees with status:
virtual tables' contents (FTS5) and header pragmas included."""

from __future__ import annotations

from pathlib import Path

import pytest

import dbvers
from tests.conftest import execute, run_cli


@pytest.fixture
def fts_repo(db_path: Path) -> dbvers.Repo:
    execute(db_path, "CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO docs VALUES ('hello')")
    return dbvers.init(db_path)


@pytest.mark.parametrize(
    ("sql", "shown"),
    [
        ("INSERT INTO docs VALUES ('world')", "docs: contents changed"),
        ("DELETE FROM docs", "docs: contents changed"),
        ("PRAGMA user_version = 7", "PRAGMA user_version: 0 → 7"),
        ("PRAGMA application_id = 42", "PRAGMA application_id: 0 → 42"),
    ],
)
def test_change_without_rows_is_visible(fts_repo: dbvers.Repo, db_path: Path, sql: str, shown: str) -> None:
    assert run_cli("diff", "--exit-code", cwd=db_path.parent).returncode == 0
    execute(db_path, sql)
    assert not fts_repo.status().clean
    for args in (["diff"], ["diff", "--stat"]):
        r = run_cli(*args, "--exit-code", cwd=db_path.parent)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert shown in r.stdout
    r = run_cli("diff", "--format", "json", "--exit-code", cwd=db_path.parent)
    assert r.returncode == 1
    assert fts_repo.diff().changed
    fts_repo.commit("change")
    assert fts_repo.diff("HEAD~1", "HEAD").changed
    assert shown in run_cli("diff", "HEAD~1", "HEAD", cwd=db_path.parent).stdout
    assert not fts_repo.diff().changed
    assert run_cli("diff", "--exit-code", cwd=db_path.parent).returncode == 0
