"""Merges through the repository are symmetric: disjoint edits on two branches merge to the same
data whichever side merges which, and equal the union of both sides' edits. The history's patches
steer which rows are compared (cost follows the change), so this also holds that path to the
full comparison's answer."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbvers

BASE = ("CREATE TABLE t (id INTEGER PRIMARY KEY, a, b); CREATE TABLE k (name TEXT PRIMARY KEY, v);"
        "CREATE TABLE bag (x, y);"
        + "".join(f"INSERT INTO t VALUES ({i}, {i}, 'b{i}'); INSERT INTO k VALUES ('n{i}', {i});"
                  f"INSERT INTO bag VALUES ({i % 3}, 'y');" for i in range(20)))

edit = st.tuples(st.sampled_from(["upd", "del", "ins", "kupd", "bag+", "bag-"]), st.integers(0, 19),
                 st.one_of(st.integers(-2, 2), st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=2), st.none()))


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''").replace("\x00", "") + "'"
    return repr(v) if isinstance(v, float) else str(v)


def _script(edits: list[tuple[str, int, Any]], side: int) -> str:
    out = []
    for op, i, v in edits:
        out.append({
            "upd": f"UPDATE t SET a = {_lit(v)} WHERE id = {i};",
            "del": f"DELETE FROM t WHERE id = {i};",
            "ins": f"INSERT OR REPLACE INTO t VALUES ({100 * side + i}, {_lit(v)}, NULL);",
            "kupd": f"UPDATE k SET v = {_lit(v)} WHERE name = 'n{i}';",
            "bag+": f"INSERT INTO bag VALUES ({_lit(v)}, {side});",
            "bag-": f"DELETE FROM bag WHERE rowid = (SELECT min(rowid) FROM bag WHERE x = {i % 3} AND y = 'y');",
        }[op])
    return "\n".join(out)


def _touched(edits: list[tuple[str, int, Any]]) -> set[tuple[str, int]]:
    return {("t" if op in ("upd", "del") else op, i) for op, i, _ in edits}


def _merged(tmp: Path, first: str, second: str) -> dict[str, Any]:
    db = tmp / "data.db"
    con = sqlite3.connect(db)
    con.executescript(BASE)
    con.close()
    repo = dbvers.init(db)
    repo.branch("other")
    for branch, script in (("other", second), ("main", first)):
        repo.checkout(branch)
        con = sqlite3.connect(db)
        con.executescript(script)
        con.commit()
        con.close()
        repo.commit(f"{branch} edits", allow_empty=True)
    res = repo.merge("other")
    assert res.conflicts == {}, res.conflicts
    con = sqlite3.connect(db)
    try:
        return {
            "t": con.execute("SELECT id, a, typeof(a), b FROM t ORDER BY id").fetchall(),
            "k": con.execute("SELECT name, v, typeof(v) FROM k ORDER BY name").fetchall(),
            "bag": Counter(con.execute("SELECT x, typeof(x), y FROM bag").fetchall()),
        }
    finally:
        con.close()


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ours=st.lists(edit, max_size=6), theirs=st.lists(edit, max_size=6))
def test_merge_is_symmetric_for_disjoint_edits(tmp_path_factory: Any, ours: list[Any], theirs: list[Any]) -> None:
    taken = _touched(ours)
    theirs = [e for e in theirs if (("t" if e[0] in ("upd", "del") else e[0]), e[1]) not in taken]
    a = _merged(tmp_path_factory.mktemp("ab"), _script(ours, 1), _script(theirs, 2))
    b = _merged(tmp_path_factory.mktemp("ba"), _script(theirs, 2), _script(ours, 1))
    assert a == b
