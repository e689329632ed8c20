"""The three-way merge engine on its own: base/ours/theirs files in, the merged file out."""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbvers.errors import MergeSchemaError
from dbvers.rowmerge import MergeOutcome, merge_states


def _db(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


def _merge(tmp: Path, base: str, ours: str, theirs: str) -> tuple[Path, MergeOutcome]:
    b = _db(tmp / "base.db", base)
    shutil.copy(b, tmp / "ours.db")
    shutil.copy(b, tmp / "theirs.db")
    _db(tmp / "ours.db", ours)
    _db(tmp / "theirs.db", theirs)
    out = tmp / "out.db"
    shutil.copy(tmp / "ours.db", out)
    return out, merge_states(out, b, tmp / "theirs.db")


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


BASE = """
CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c);
INSERT INTO t VALUES (1, 'a1', 'b1', 'c1'), (2, 'a2', 'b2', 'c2'), (3, 'a3', 'b3', 'c3');
"""


def test_one_side_changes_come_through(tmp_path: Path) -> None:
    out, res = _merge(tmp_path, BASE, "INSERT INTO t VALUES (4, 'o', 'o', 'o');",
                      "UPDATE t SET a = 'T' WHERE id = 2; DELETE FROM t WHERE id = 3; "
                      "INSERT INTO t VALUES (5, 't', 't', 't');")
    assert _rows(out, "SELECT * FROM t ORDER BY id") == [
        (1, "a1", "b1", "c1"), (2, "T", "b2", "c2"), (4, "o", "o", "o"), (5, "t", "t", "t")]
    assert res.conflict_counts == {}
    assert (res.tables["t"].inserted, res.tables["t"].updated, res.tables["t"].deleted) == (1, 1, 1)


def test_different_columns_of_one_row_both_apply(tmp_path: Path) -> None:
    out, res = _merge(tmp_path, BASE, "UPDATE t SET a = 'O' WHERE id = 1;", "UPDATE t SET b = 'T' WHERE id = 1;")
    assert _rows(out, "SELECT * FROM t WHERE id = 1") == [(1, "O", "T", "c1")]
    assert res.conflict_counts == {}


def test_same_change_on_both_sides_is_taken_once(tmp_path: Path) -> None:
    out, res = _merge(tmp_path, BASE, "UPDATE t SET a = 'X' WHERE id = 1; DELETE FROM t WHERE id = 2;",
                      "UPDATE t SET a = 'X' WHERE id = 1; DELETE FROM t WHERE id = 2;")
    assert _rows(out, "SELECT id, a FROM t ORDER BY id") == [(1, "X"), (3, "a3")]
    assert res.conflict_counts == {} and not res.changed


@pytest.mark.parametrize(("ours", "theirs", "kind"), [
    ("UPDATE t SET a = 'O' WHERE id = 1;", "UPDATE t SET a = 'T' WHERE id = 1;", "data"),
    ("DELETE FROM t WHERE id = 1;", "UPDATE t SET a = 'T' WHERE id = 1;", "delete-modify"),
    ("UPDATE t SET a = 'O' WHERE id = 1;", "DELETE FROM t WHERE id = 1;", "delete-modify"),
    ("INSERT INTO t VALUES (9, 'o', 1, 1);", "INSERT INTO t VALUES (9, 't', 1, 1);", "insert-insert"),
    # values compare with their type: 1, 1.0 and '1' are three different values
    ("UPDATE t SET a = 1 WHERE id = 1;", "UPDATE t SET a = 1.0 WHERE id = 1;", "data"),
    ("UPDATE t SET a = 1 WHERE id = 1;", "UPDATE t SET a = '1' WHERE id = 1;", "data"),
])
def test_conflicts_keep_ours(tmp_path: Path, ours: str, theirs: str, kind: str) -> None:
    out, res = _merge(tmp_path, BASE, ours, theirs)
    assert res.conflict_counts == {"t": 1}
    (c,) = res.tables["t"].conflicts
    assert c.kind == kind
    assert _rows(out, "SELECT * FROM t ORDER BY id") == _rows(tmp_path / "ours.db", "SELECT * FROM t ORDER BY id")


def test_conflict_rows_carry_base_ours_theirs(tmp_path: Path) -> None:
    _, res = _merge(tmp_path, BASE, "UPDATE t SET a = 'O' WHERE id = 2;", "UPDATE t SET a = 'T', c = 'T' WHERE id = 2;")
    (c,) = res.tables["t"].conflicts
    assert c.key == (2,)
    assert (c.base, c.ours, c.theirs) == ((2, "a2", "b2", "c2"), (2, "O", "b2", "c2"), (2, "T", "b2", "T"))
    assert res.tables["t"].columns == ("id", "a", "b", "c")


def test_keyless_tables_are_bags(tmp_path: Path) -> None:
    base = "CREATE TABLE log (msg, n); INSERT INTO log VALUES ('x', 1), ('x', 1), ('y', 2);"
    out, res = _merge(tmp_path, base,
                      "INSERT INTO log VALUES ('o', 0); DELETE FROM log WHERE msg = 'y';",
                      "INSERT INTO log VALUES ('t', 0); DELETE FROM log WHERE msg = 'y'; "
                      "DELETE FROM log WHERE rowid = (SELECT min(rowid) FROM log WHERE msg = 'x');")
    assert Counter(_rows(out, "SELECT msg, n FROM log")) == Counter([("x", 1), ("o", 0), ("t", 0)])
    assert res.conflict_counts == {}


def test_hidden_rowid_follows_theirs_insert(tmp_path: Path) -> None:
    base = "CREATE TABLE k (name TEXT PRIMARY KEY, v); INSERT INTO k VALUES ('a', 1);"
    out, _ = _merge(tmp_path, base, "", "INSERT INTO k (rowid, name, v) VALUES (77, 'b', 2);")
    assert _rows(out, "SELECT rowid, name, v FROM k ORDER BY name") == [(1, "a", 1), (77, "b", 2)]


def test_unique_violation_is_a_constraint_conflict(tmp_path: Path) -> None:
    base = "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE); INSERT INTO u VALUES (1, 'a@x');"
    out, res = _merge(tmp_path, base, "INSERT INTO u VALUES (2, 'same@x');", "INSERT INTO u VALUES (3, 'same@x');")
    (c,) = res.tables["u"].conflicts
    assert c.kind == "constraint" and "UNIQUE" in (c.constraint or "")
    assert _rows(out, "SELECT * FROM u ORDER BY id") == [(1, "a@x"), (2, "same@x")]


def test_foreign_key_broken_by_theirs_delete_is_a_conflict(tmp_path: Path) -> None:
    base = ("CREATE TABLE p (id INTEGER PRIMARY KEY, name); CREATE TABLE c (id INTEGER PRIMARY KEY, "
            "p INTEGER REFERENCES p(id)); INSERT INTO p VALUES (1, 'one'), (2, 'two');")
    out, res = _merge(tmp_path, base, "INSERT INTO c VALUES (10, 2);", "DELETE FROM p WHERE id = 2;")
    assert [c.kind for c in res.tables["p"].conflicts] == ["constraint"]
    assert "REFERENCES p" in (res.tables["p"].conflicts[0].constraint or "")
    assert _rows(out, "SELECT * FROM p ORDER BY id") == [(1, "one"), (2, "two")]
    assert _rows(out, "PRAGMA foreign_key_check") == []


def test_table_and_column_added_on_one_side_come_through(tmp_path: Path) -> None:
    out, res = _merge(tmp_path, BASE, "UPDATE t SET a = 'O' WHERE id = 1;",
                      "ALTER TABLE t ADD COLUMN d DEFAULT 0; UPDATE t SET d = id * 10; "
                      "CREATE TABLE n (x PRIMARY KEY); INSERT INTO n VALUES (1); CREATE INDEX t_b ON t(b);")
    assert _rows(out, "SELECT * FROM t ORDER BY id") == [
        (1, "O", "b1", "c1", 10), (2, "a2", "b2", "c2", 20), (3, "a3", "b3", "c3", 30)]
    assert _rows(out, "SELECT * FROM n") == [(1,)]
    assert ("t_b",) in _rows(out, "SELECT name FROM sqlite_schema WHERE type = 'index'")
    assert res.conflict_counts == {}


def test_column_added_on_our_side_keeps_theirs_rows(tmp_path: Path) -> None:
    out, _ = _merge(tmp_path, BASE, "ALTER TABLE t ADD COLUMN d DEFAULT 'dflt';",
                    "UPDATE t SET a = 'T' WHERE id = 2; INSERT INTO t VALUES (4, 'a4', 'b4', 'c4');")
    assert _rows(out, "SELECT id, a, d FROM t ORDER BY id") == [
        (1, "a1", "dflt"), (2, "T", "dflt"), (3, "a3", "dflt"), (4, "a4", "dflt")]


@pytest.mark.parametrize(("ours", "theirs", "what"), [
    ("ALTER TABLE t ADD COLUMN d INTEGER;", "ALTER TABLE t ADD COLUMN d TEXT;", "changed differently"),
    ("DROP TABLE t;", "UPDATE t SET a = 'T';", "dropped on our side"),
    ("UPDATE t SET c = 'O';", "ALTER TABLE t DROP COLUMN c;", "column c dropped"),
])
def test_schema_clashes_stop_the_merge_and_change_nothing(tmp_path: Path, ours: str, theirs: str, what: str) -> None:
    with pytest.raises(MergeSchemaError, match=what) as e:
        _merge(tmp_path, BASE, ours, theirs)
    assert e.value.clashes[0][0] == "t"
    assert (tmp_path / "out.db").read_bytes() == (tmp_path / "ours.db").read_bytes()


def test_invalid_utf8_and_blobs_merge_exactly(tmp_path: Path) -> None:
    out, res = _merge(tmp_path, BASE, "UPDATE t SET b = x'00ff' WHERE id = 1;",
                      "UPDATE t SET a = CAST(x'c328ff41' AS TEXT) WHERE id = 1;")
    assert _rows(out, "SELECT hex(a), typeof(a), hex(b), typeof(b) FROM t WHERE id = 1") == [
        ("C328FF41", "text", "00FF", "blob")]
    assert res.conflict_counts == {}


# -- properties -------------------------------------------------------------------

_edit = st.tuples(st.sampled_from(["update", "delete", "insert"]), st.integers(0, 29),
                  st.sampled_from(["a", "b"]), st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none()))


def _script(edits: list[tuple[str, int, str, Any]], ids: set[int]) -> tuple[str, list[Any]]:
    out: list[str] = []
    for op, i, col, v in edits:
        if op == "update":
            out.append(f"UPDATE t SET {col} = {_lit(v)} WHERE id = {i};")
        elif op == "delete":
            out.append(f"DELETE FROM t WHERE id = {i};")
        else:
            out.append(f"INSERT OR REPLACE INTO t (id, a, b) VALUES ({i + 100}, {_lit(v)}, {_lit(v)});")
        ids.add(i + 100 if op == "insert" else i)
    return "\n".join(out), []


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''").replace("\x00", "") + "'"
    return str(v)


PROP_BASE = "CREATE TABLE t (id INTEGER PRIMARY KEY, a, b);" + "".join(
    f"INSERT INTO t VALUES ({i}, {i}, 'b{i}');" for i in range(30))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ours=st.lists(_edit, max_size=8), theirs=st.lists(_edit, max_size=8))
def test_disjoint_edits_merge_to_the_union_whichever_side_merges(
        tmp_path_factory: pytest.TempPathFactory, ours: list[Any], theirs: list[Any]) -> None:
    o_ids: set[int] = set()
    o_sql, _ = _script(ours, o_ids)
    t_ids: set[int] = set()
    t_sql, _ = _script([e for e in theirs if (e[1] + 100 if e[0] == "insert" else e[1]) not in o_ids], t_ids)
    a = tmp_path_factory.mktemp("ab")
    b = tmp_path_factory.mktemp("ba")
    out_ab, res_ab = _merge(a, PROP_BASE, o_sql, t_sql)
    out_ba, res_ba = _merge(b, PROP_BASE, t_sql, o_sql)
    assert res_ab.conflict_counts == {} == res_ba.conflict_counts
    q = "SELECT id, a, typeof(a), b, typeof(b) FROM t ORDER BY id"
    merged = _rows(out_ab, q)
    assert merged == _rows(out_ba, q)
    # the union: each row is the side that touched it, or the base
    ours_rows = {r[0]: r for r in _rows(a / "ours.db", q)}
    theirs_rows = {r[0]: r for r in _rows(a / "theirs.db", q)}
    want = {r[0]: r for r in _rows(a / "base.db", q)}
    for ids, rows in ((o_ids, ours_rows), (t_ids, theirs_rows)):
        for i in ids:
            if i in rows:
                want[i] = rows[i]
            else:
                want.pop(i, None)
    assert merged == [want[i] for i in sorted(want)]
