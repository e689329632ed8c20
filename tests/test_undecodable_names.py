"""Tables whose name (or a column's) isn't valid UTF-8 (issue 10 item 2's names): legal in SQLite,
but no statement can name them (both SQLite libraries take SQL as UTF-8). Every command gives
one line naming the table with its bytes escaped, changes nothing, and never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import execute, one_line_error, run_cli

import dbvers
from dbvers.errors import UndecodableSchemaError

NAME = b"t\xc3(\xffA"  # not UTF-8: \xc3 starts a sequence '(' can't continue, \xff never occurs
SHOWN = r"t\xc3(\xffA"


def rename_raw(db: Path, table: str, name: bytes, column: bytes | None = None) -> None:
    """Give *table* the name *name* (and its column v the name *column*) in sqlite_schema, as
    a tool writing raw bytes would (SQLite's writable_schema; the file stays sound)."""
    col = b'"' + column + b'"' if column else b"v"
    sql = b'CREATE TABLE "' + name + b'"(id INTEGER PRIMARY KEY, ' + col + b")"
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET name = CAST(? AS TEXT), tbl_name = CAST(? AS TEXT), "
                     "sql = CAST(? AS TEXT) WHERE name = ?", (name, name, sql, table))
        conn.commit()
    finally:
        conn.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    db = tmp_path / "u.db"
    execute(db, "CREATE TABLE ok(id INTEGER PRIMARY KEY, v); INSERT INTO ok VALUES (1, 'a');"
                "CREATE TABLE bad(id INTEGER PRIMARY KEY, v); INSERT INTO bad VALUES (1, 'x')")
    return db


def test_init_refuses_naming_the_table_and_creates_nothing(work: Path) -> None:
    rename_raw(work, "bad", NAME)
    line = one_line_error(run_cli("init", str(work), cwd=work.parent))
    assert f"table '{SHOWN}' has a name that is not valid UTF-8" in line
    assert not (work.parent / ".dbvers").exists()
    with pytest.raises(UndecodableSchemaError) as e:
        dbvers.init(work)
    assert e.value.name.encode("utf-8", "surrogateescape") == NAME  # lossless
    assert (e.value.kind, e.value.part) == ("table", "name")


@pytest.mark.parametrize("column", [None, b"v\xff"])
def test_every_command_gives_one_line_and_changes_nothing(work: Path, column: bytes | None) -> None:
    repo = dbvers.init(work)
    execute(work, "UPDATE ok SET v = 'b'")
    repo.commit("b")
    if column:
        rename_raw(work, "bad", b"bad", column)  # a good table name, a column name that isn't UTF-8
        shown, part = "table 'bad' has SQL", "sql"
    else:
        rename_raw(work, "bad", NAME)
        shown, part = f"table '{SHOWN}' has a name", "name"
    before = work.read_bytes()  # (no statement can read the table: compare the file)
    head = repo.head.commit
    for args in (["status"], ["commit", "-m", "x"], ["diff"], ["diff", "--stat"], ["diff", "--exit-code"],
                 ["diff", "--format", "csv"], ["checkout", "HEAD~1"], ["reset", "--hard", "HEAD~1"]):
        line = one_line_error(run_cli(*args, cwd=work.parent))
        assert shown in line and "not valid UTF-8" in line, (args, line)
    for call in (repo.status, lambda: repo.commit("x"), lambda: repo.diff().counts(),
                 lambda: repo.checkout("HEAD~1")):
        with pytest.raises(UndecodableSchemaError) as e:
            call()
        assert e.value.part == part
    assert dbvers.open(work).head.commit == head
    assert work.read_bytes() == before
    # history stays readable, and --force puts a committed state back (the table is uncommitted)
    assert run_cli("log", "--oneline", cwd=work.parent).returncode == 0
    assert run_cli("diff", "HEAD~1", "HEAD", "--stat", cwd=work.parent).returncode == 0
    assert run_cli("checkout", "--force", "HEAD~1", cwd=work.parent).returncode == 0
    assert dbvers.open(work).status().clean
