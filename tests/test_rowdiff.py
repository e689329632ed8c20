"""The row-diff engine's records (what merge and revert consume) and the Diff views that
go through the display hook."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import apsw
import pytest

import dbvers
from dbvers import rowdiff


def _db(path: Path, script: str) -> Path:
    con = sqlite3.connect(path)
    con.executescript(script)
    con.close()
    return path


def _pair(tmp_path: Path, old: str, new: str) -> apsw.Connection:
    """Two states attached as the engine's default schemas (old = 'a', new = 'main')."""
    conn = apsw.Connection(str(_db(tmp_path / "new.db", new)))
    conn.execute("ATTACH ? AS a", (str(_db(tmp_path / "old.db", old)),))
    return conn


def test_row_changes_are_keyed_records_with_old_and_new_values(tmp_path: Path) -> None:
    conn = _pair(
        tmp_path,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, n);"
        "INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, n);"
        "INSERT INTO t VALUES (1, 'a', 1.0), (3, 'C', 3), (4, 'd', NULL);",
    )
    spec = rowdiff.table_specs(conn)["t"]
    got = sorted(rowdiff.row_changes(conn, spec), key=lambda c: c.key)
    assert [(c.kind, c.key) for c in got] == [("modified", (1,)), ("removed", (2,)), ("modified", (3,)),
                                              ("added", (4,))]
    one = got[0]  # 1 -> 1.0 differs: values compare with their SQLite type
    assert one.old == {"id": 1, "name": "a", "n": 1} and type(one.new["n"]) is float  # type: ignore[index]
    assert got[1].new is None and got[1].old == {"id": 2, "name": "b", "n": 2}
    assert got[3].old is None and got[3].new == {"id": 4, "name": "d", "n": None}
    assert all(rowdiff.identical(c.key[0], c.key[0]) for c in got)


def test_row_changes_between_any_two_attached_schemas(tmp_path: Path) -> None:
    """A merge attaches base, ours and theirs once and diffs base..ours and base..theirs."""
    conn = apsw.Connection(":memory:")
    for name, rows in (("base", "(1, 'x')"), ("ours", "(1, 'y')"), ("theirs", "(1, 'x'), (2, 'z')")):
        conn.execute("ATTACH ? AS " + name, (str(_db(tmp_path / f"{name}.db",
                                                    f"CREATE TABLE t(k PRIMARY KEY, v); INSERT INTO t VALUES {rows};")),))
    specs = rowdiff.table_specs(conn, "base", "ours")
    ours = list(rowdiff.row_changes(conn, specs["t"], old="base", new="ours"))
    theirs = list(rowdiff.row_changes(conn, rowdiff.table_specs(conn, "base", "theirs")["t"],
                                      old="base", new="theirs"))
    assert [(c.kind, c.key, c.new) for c in ours] == [("modified", (1,), {"k": 1, "v": "y"})]
    assert [(c.kind, c.key, c.new) for c in theirs] == [("added", (2,), {"k": 2, "v": "z"})]


def test_bag_changes_match_rows_by_value_not_rowid(tmp_path: Path) -> None:
    """A keyless table as a bag: a row moved to another rowid is no change; copies count."""
    conn = _pair(
        tmp_path,
        "CREATE TABLE log(msg, n); INSERT INTO log VALUES ('a', 1), ('b', 2), ('b', 2), ('c', 3);",
        "CREATE TABLE log(msg, n); INSERT INTO log VALUES ('c', 3), ('b', 2), ('a', 1.0), ('d', 4), ('d', 4);",
    )
    spec = rowdiff.table_specs(conn)["log"]
    got = sorted((c.kind, tuple((c.old or c.new or {}).items())) for c in rowdiff.bag_changes(conn, spec))
    assert got == [
        ("added", (("msg", "a"), ("n", 1.0))),
        ("added", (("msg", "d"), ("n", 4))),
        ("added", (("msg", "d"), ("n", 4))),
        ("removed", (("msg", "a"), ("n", 1))),
        ("removed", (("msg", "b"), ("n", 2))),
    ]
    by_rowid = list(rowdiff.row_changes(conn, spec))  # by rowid, the moved row 'c' differs
    assert any(c.old and c.old["msg"] == "c" for c in by_rowid)


def test_diff_views_go_through_the_display_hook(repo: dbvers.Repo, sql, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    sql(db_path, "INSERT INTO orders VALUES (99, 'new', 1, 1.5, NULL)")
    with repo.diff() as d:
        assert "orders" in str(d) and "new" in str(d)
        assert "<table" in d._repr_html_()
        root = repo.log()[-1]
        with repo.diff(root.id, root.id) as same, same.against_empty() as first:
            assert first.a_label == "(empty)" and first.b_commit == root.id
            assert set(first.tables) == set(first.specs)  # everything the root commit holds is added
            assert all(c.deletes == 0 and c.updates == 0 for c in first.counts().values())


def test_unknown_table_spec_is_one_clear_error(repo: dbvers.Repo) -> None:
    with repo.diff() as d, pytest.raises(dbvers.DbversError):
        d.spec("no_such_table")


def test_row_changes_look_up_only_the_keys_a_hint_names(tmp_path: Path) -> None:
    conn = _pair(tmp_path, "CREATE TABLE t(k INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
                 "CREATE TABLE t(k INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'A'), (2, 'B');")
    spec = rowdiff.table_specs(conn)["t"]
    narrowed = rowdiff.row_changes(conn, spec, hint=rowdiff.KeyHint({"t": {2}}, set()))
    assert [c.key for c in narrowed] == [(2,)]  # the hint says row 1 can't differ: not looked at
    assert list(rowdiff.row_changes(conn, spec, hint=rowdiff.KeyHint({}, set()))) == []
    assert len(list(rowdiff.row_changes(conn, spec, hint=rowdiff.KeyHint({}, {"t"})))) == 2
    assert not conn.execute("SELECT name FROM temp.sqlite_schema").fetchall()  # its key table is gone
