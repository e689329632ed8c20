"""The diff engine against an independent oracle, on random pairs of databases.

* ``sqldiff --changeset`` (SQLite's own tool) and dbvers must describe the same row
  changes, for every table sqldiff supports (tables with a primary key), through
  both of dbvers's ways of finding them: a full comparison of two files
  (``Diff``) and the patch-guided one between two commits (``Repo.diff``).
* Applying ``Diff.to_sql()`` (what ``dbvers diff --format sql`` writes) to a copy
  of A must give B exactly, schema changes included.

Values are of every storage class. Changes of type only (7 -> 7.0, 0.0 -> -0.0)
are left out of the sqldiff comparison: sqldiff compares with SQL equality and
cannot see them (dbvers does; see test_diff.py).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import dump_state
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dbvers
from dbvers.diff import Diff

SQLDIFF = shutil.which("sqldiff")

SCHEMA = """
CREATE TABLE ti(id INTEGER PRIMARY KEY, a, b TEXT, c REAL, d BLOB);
CREATE TABLE tc(k1 TEXT NOT NULL, k2 TEXT NOT NULL, v, w INTEGER, PRIMARY KEY (k1, k2));
CREATE TABLE tw(k TEXT PRIMARY KEY, n INTEGER, v) WITHOUT ROWID;
CREATE TABLE tn(x, y TEXT);
"""
# table -> (key columns, other columns)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ti": (("id",), ("a", "b", "c", "d")),
    "tc": (("k1", "k2"), ("v", "w")),
    "tw": (("k",), ("n", "v")),
    "tn": (("rowid",), ("x", "y")),
}
WITH_PK = ("ti", "tc", "tw")  # sqldiff --changeset leaves tables without a primary key out

floats = st.floats(allow_nan=False, allow_infinity=True, width=64).filter(
    lambda f: not (f == 0 and math.copysign(1, f) < 0))
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=3),
    floats,
    texts,
    st.binary(max_size=8),
)
key_text = st.text(alphabet="abcxyz€ '\"", min_size=0, max_size=3)


def key_strategy(table: str) -> st.SearchStrategy[tuple[Any, ...]]:
    if table == "ti":
        return st.tuples(st.integers(min_value=-5, max_value=40))
    if table == "tc":
        return st.tuples(key_text, key_text)
    if table == "tw":
        return st.tuples(key_text)
    return st.tuples(st.integers(min_value=1, max_value=40))  # tn: the rowid


def rows(table: str) -> st.SearchStrategy[dict[tuple[Any, ...], tuple[Any, ...]]]:
    return st.dictionaries(key_strategy(table), st.tuples(*[values] * len(TABLES[table][1])), max_size=10)


def insert(conn: sqlite3.Connection, table: str, key: tuple[Any, ...], vals: tuple[Any, ...]) -> None:
    keys, cols = TABLES[table]
    names = ", ".join((*keys, *cols))
    marks = ", ".join("?" * (len(keys) + len(cols)))
    conn.execute(f"INSERT INTO {table}({names}) VALUES ({marks})", (*key, *vals))


@st.composite
def db_pair(draw: st.DrawFn, schema_changes: bool = False) -> tuple[list[Any], list[Any], list[str]]:
    """A's rows, then B as operations on A (so unchanged rows keep their rowids), then DDL."""
    a = {t: draw(rows(t)) for t in TABLES}
    ops: list[Any] = []
    for t in TABLES:
        existing = list(a[t])
        ncols = len(TABLES[t][1])
        for key in existing:
            what = draw(st.sampled_from(["keep", "keep", "update", "delete"]))
            if what == "update":
                cols = draw(st.lists(st.integers(0, ncols - 1), min_size=1, max_size=ncols, unique=True))
                ops.append(("update", t, key, {c: draw(values) for c in cols}))
            elif what == "delete":
                ops.append(("delete", t, key))
        # new keys never reuse one of A's: a re-inserted key would get another rowid
        new = draw(rows(t))
        for key, vals in new.items():
            if key not in a[t]:
                ops.append(("insert", t, key, vals))
        if t != "tn" and existing and draw(st.booleans()):
            key = draw(st.sampled_from(existing))
            newkey = draw(key_strategy(t))
            if newkey not in a[t] and newkey not in new:
                ops.append(("rekey", t, key, newkey))
    ddl: list[str] = []
    if schema_changes:
        options = [
            "ALTER TABLE ti ADD COLUMN e INTEGER",
            "ALTER TABLE ti ADD COLUMN f TEXT DEFAULT 'dflt, with comma'",
            "ALTER TABLE tc ADD COLUMN extra REAL NOT NULL DEFAULT 1.5",
            "ALTER TABLE ti DROP COLUMN b",
            "ALTER TABLE tw RENAME COLUMN n TO n2",
            "ALTER TABLE tn ADD COLUMN z",
            "DROP TABLE tn",
            "CREATE TABLE fresh(p INTEGER PRIMARY KEY, q); INSERT INTO fresh VALUES (1, 'x'), (2, x'00')",
            "CREATE INDEX ti_a ON ti(a)",
            "CREATE VIEW vi AS SELECT id, a FROM ti",
            "CREATE TRIGGER trg AFTER INSERT ON tw BEGIN UPDATE tw SET v = 'trig' WHERE k = new.k; END",
            "CREATE TABLE tw2(k TEXT, n INTEGER, v, PRIMARY KEY (n)) WITHOUT ROWID; "
            "INSERT OR IGNORE INTO tw2 SELECT k, coalesce(n, 0), v FROM tw; DROP TABLE tw; "
            "ALTER TABLE tw2 RENAME TO tw",
            "PRAGMA user_version = 5",
        ]
        ddl = draw(st.lists(st.sampled_from(options), max_size=4, unique=True))
    return [a], ops, ddl


def build(base: Path, spec: tuple[list[Any], list[Any], list[str]]) -> tuple[Path, Path]:
    (a_rows,), ops, ddl = spec
    a, b = base / "a.db", base / "b.db"
    conn = sqlite3.connect(a)
    conn.executescript(SCHEMA)
    for t, rs in a_rows.items():
        for key, vals in rs.items():
            insert(conn, t, key, vals)
    conn.commit()
    conn.close()
    shutil.copy(a, b)
    conn = sqlite3.connect(b)
    for op in ops:
        kind, t, key = op[:3]
        keys, cols = TABLES[t]
        cond = " AND ".join(f"{k} IS ?" for k in keys)
        if kind == "delete":
            conn.execute(f"DELETE FROM {t} WHERE {cond}", key)
        elif kind == "update":
            sets = ", ".join(f"{cols[c]} = ?" for c in op[3])
            conn.execute(f"UPDATE {t} SET {sets} WHERE {cond}", (*op[3].values(), *key))
        elif kind == "insert":
            insert(conn, t, key, op[3])
        else:
            sets = ", ".join(f"{k} = ?" for k in keys)
            conn.execute(f"UPDATE {t} SET {sets} WHERE {cond}", (*op[3], *key))
    conn.commit()
    for stmt in ddl:
        # options that clash (a column renamed, then used) leave B as far as they got
        with contextlib.suppress(sqlite3.Error):
            conn.executescript(stmt)
    conn.commit()
    conn.close()
    return a, b


def no_type_only_changes(a: Path, b: Path) -> bool:
    """Whether some row differs only in the type of a value (sqldiff can't see those)."""
    conn = sqlite3.connect(a)
    conn.execute("ATTACH ? AS b", (str(b),))
    try:
        for t in WITH_PK:
            keys, cols = TABLES[t]
            match = " AND ".join(f"o.{k} = n.{k}" for k in keys)
            cond = " OR ".join(f"(o.{c} = n.{c} AND typeof(o.{c}) <> typeof(n.{c}))" for c in cols)
            if conn.execute(f"SELECT 1 FROM main.{t} o JOIN b.{t} n ON {match} WHERE {cond}").fetchone():
                return False
    finally:
        conn.close()
    return True


def exact(v: Any) -> Any:
    return (type(v).__name__, v.hex() if isinstance(v, float) else v)


Change = tuple[str, str, tuple[Any, ...], tuple[Any, ...]]


def from_changeset(data: bytes) -> set[Change]:
    out: set[Change] = set()
    for c in apsw.Changeset.iter(data):
        pk = sorted(c.pk_columns)
        if c.op == "INSERT":
            out.add((c.name, "added", tuple(exact(c.new[i]) for i in pk), tuple(map(exact, c.new))))
        elif c.op == "DELETE":
            out.add((c.name, "removed", tuple(exact(c.old[i]) for i in pk), tuple(map(exact, c.old))))
        else:
            changed = tuple((i, exact(c.old[i]), exact(c.new[i])) for i in range(len(c.new))
                            if c.new[i] is not apsw.no_change)
            out.add((c.name, "modified", tuple(exact(c.old[i]) for i in pk), changed))
    return out


def from_diff(d: Diff) -> set[Change]:
    """The same shape from dbvers's rows (columns in table order, key in column order)."""
    out: set[Change] = set()
    for t in WITH_PK:
        spec = d.spec(t)
        keys, cols = TABLES[t]
        order = [*keys, *cols]  # the tables' column order
        names = spec.output_columns
        for row in d.iter_rows(t):
            r = dict(zip(names, row, strict=True))
            kind = r["diff_type"]
            side = "to_" if kind == "added" else "from_"
            key = tuple(exact(r[side + k]) for k in order if k in keys)
            if kind == "modified":
                changed = tuple((i, exact(r["from_" + c]), exact(r["to_" + c])) for i, c in enumerate(order)
                                if r["from_" + c] != r["to_" + c] or type(r["from_" + c]) is not type(r["to_" + c]))
                out.add((t, kind, key, changed))
            else:
                out.add((t, kind, key, tuple(exact(r[side + c]) for c in order)))
    return out


def sqldiff_changes(a: Path, b: Path, base: Path) -> set[Change]:
    assert SQLDIFF is not None
    out = base / "changeset"
    subprocess.run([SQLDIFF, "--changeset", str(out), str(a), str(b)], check=True, capture_output=True)
    changes = from_changeset(out.read_bytes())
    return {c for c in changes if c[0] in WITH_PK}


@pytest.mark.skipif(SQLDIFF is None, reason="sqldiff (Debian's sqlite3-tools) is not installed")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(db_pair())
def test_same_changes_as_sqldiff(pair: tuple[list[Any], list[Any], list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        a, b = build(base, pair)
        assume(no_type_only_changes(a, b))
        want = sqldiff_changes(a, b, base)
        with Diff(a, b, a_label="A", b_label="B", workdir=base) as d:
            assert from_diff(d) == want
        # the patch-guided path: A and B as two commits of a repository
        work = base / "repo"
        work.mkdir()
        db = work / "data.db"
        shutil.copy(a, db)
        repo = dbvers.init(db)
        shutil.copy(b, db)
        repo.commit("B", allow_empty=True)
        with repo.diff("HEAD~1", "HEAD") as d:
            assert d.hint is not None
            assert from_diff(d) == want
            counts = d.counts()
        for t in WITH_PK:
            c = counts.get(t)
            kinds = [x[1] for x in want if x[0] == t]
            got = (c.inserts, c.updates, c.deletes) if c else (0, 0, 0)
            assert got == (kinds.count("added"), kinds.count("modified"), kinds.count("removed"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(db_pair(), db_pair(schema_changes=True)))
def test_sql_output_turns_a_into_b(pair: tuple[list[Any], list[Any], list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        a, b = build(base, pair)
        with Diff(a, b, a_label="A", b_label="B", workdir=base) as d:
            script = "BEGIN;\n" + "\n".join(d.to_sql()) + "\nCOMMIT;\n"
        target = base / "a2.db"
        shutil.copy(a, target)
        conn = sqlite3.connect(target)
        conn.executescript(script)
        conn.close()
        assert dump_state(target) == dump_state(b), script
