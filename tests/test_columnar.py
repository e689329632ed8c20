"""The columnar path of ``Diff.to_pandas``/``to_arrow`` (ADBC's SQLite driver straight into
Arrow) against the row-by-row path (apsw): the same DataFrames and Arrow tables, value
for value, type for type and row for row; and it steps aside whenever the driver would
change a value's type."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import execute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbvers
from dbvers import columnar, rowdiff
from dbvers import diff as diff_module
from dbvers.diff import Diff
from dbvers.errors import UsageError

pytestmark = pytest.mark.skipif(not columnar.available(), reason="adbc-driver-sqlite is not installed")


def cells(df: pd.DataFrame) -> list[Any]:
    """Every cell with its Python type, in row order, plus the dtypes: 1, 1.0, '1', b'1' and
    -0.0 all differ."""
    return [(str(df[c].dtype), [(type(v).__name__, repr(v)) for v in df[c].tolist()]) for c in df.columns]


def compare(d: Diff, table: str, *, columnar_expected: bool | None, **options: Any) -> pd.DataFrame:
    """Both paths give the same DataFrame and Arrow table; the columnar one was taken if expected."""
    fast = d.to_pandas(table, **options)
    taken = d.last_read
    fast_arrow = d.to_arrow(table, **options)
    assert d.last_read == taken
    if columnar_expected is not None:
        assert taken == ("columnar" if columnar_expected else "rows")
    real = columnar.available
    columnar.available = lambda: False  # type: ignore[assignment]
    try:
        slow, slow_arrow = d.to_pandas(table, **options), d.to_arrow(table, **options)
        assert d.last_read == "rows"
    finally:
        columnar.available = real  # type: ignore[assignment]
    assert cells(fast) == cells(slow)
    assert fast_arrow.schema == slow_arrow.schema
    assert fast_arrow.to_pylist() == slow_arrow.to_pylist()
    return fast


def two_commits(path: Path, ddl: str, before: list[tuple[Any, ...]],
                after: list[tuple[Any, ...]]) -> tuple[dbvers.Repo, str, str]:
    """A repository whose first commit holds *before* and second *after* in table t."""
    marks = ", ".join("?" * len(before[0]))
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    conn.executemany(f"INSERT INTO t VALUES ({marks})", before)
    conn.commit()
    conn.close()
    repo = dbvers.init(path)
    a = repo.resolve("HEAD")
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM t")
    conn.executemany(f"INSERT INTO t VALUES ({marks})", after)
    conn.commit()
    conn.close()
    return repo, a, repo.commit("after").id


# Declared type, values before, values after, whether the driver keeps every type.
VALUE_CASES = [
    ("INTEGER", [1, 2, None], [5, 2**62, -3], True),
    ("INTEGER", [1, 2, 3], [1.5, 2, 3], False),  # a real in an INTEGER column
    ("REAL", [1.5, -0.0, None], [2.25, 1e300, 0.1], True),
    ("REAL", [1.5, 2.5, 3.5], ["abc", 2.5, 3.5], False),  # text a REAL column couldn't convert
    ("TEXT", ["a", "zoë", None], ["", "日本", "x\ny"], True),
    ("TEXT", ["a", "b", "c"], [b"\x00\xff", "b", "c"], False),  # a blob in a TEXT column
    ("", [1, 2, 3], [4, None, -5], True),  # no affinity, integers only
    ("", [1, "x", 3], [2, "y", 3], False),  # no affinity, integers and text
    ("", [b"a", b"", None], [b"\x00", None, b"z"], True),  # blobs only
    ("BLOB", [1.5, 2.5, 3.5], [1.25, 2.5, 7.0], True),  # reals only
    ("TIMESTAMP", ["2024-01-01 00:00:00", None, "x"], ["2024-01-02", "y", "z"], True),  # NUMERIC: text
    ("NUMERIC", [1, 2, 3], [1.5, 2, 3], False),  # integers and reals
    ("INTEGER", [None, None, None], [None, None, None], True),  # all NULL: typed by declaration
    ("", [None, None, None], [None, None, None], True),
]


@pytest.mark.parametrize(("decl", "old", "new", "kept"), VALUE_CASES,
                         ids=[f"{c[0] or 'none'}-{i}" for i, c in enumerate(VALUE_CASES)])
def test_values_keep_their_types(tmp_path: Path, decl: str, old: list[Any], new: list[Any], kept: bool) -> None:
    # w changes in every row, so every row is in the diff whatever v does
    ddl = f"CREATE TABLE t(k INTEGER PRIMARY KEY, v {decl}, w TEXT);"
    before = [(i, v, "x") for i, v in enumerate(old)]
    after = [(i, v, "y") for i, v in enumerate(new)]
    repo, a, b = two_commits(tmp_path / "v.db", ddl, before, after)
    with repo.diff(a, b) as d:  # patch-guided: the keys come from the patches
        df = compare(d, "t", columnar_expected=kept)
        assert len(df) == len(old)
    execute(repo.path, "UPDATE t SET w = 'z'")
    with repo.diff(a) as d:  # full comparison against the working database
        compare(d, "t", columnar_expected=kept)


def test_many_columns_of_different_single_types(tmp_path: Path) -> None:
    # More columns than one 64-bit class mask holds, each with its own storage class:
    # every column must come back with its own type.
    kinds = [7, 2.5, "text", b"blob"] * 5
    cols = ", ".join(f"c{i}" for i in range(len(kinds)))
    ddl = f"CREATE TABLE t(k INTEGER PRIMARY KEY, {cols});"
    before = [(1, *kinds), (2, *kinds)]
    changed = [v + b"!" if isinstance(v, bytes) else v * 2 for v in kinds]
    after = [(1, *changed), (3, *kinds)]  # a row modified, one removed, one added
    repo, a, b = two_commits(tmp_path / "m.db", ddl, before, after)
    with repo.diff(a, b) as d:
        df = compare(d, "t", columnar_expected=True)
    assert sorted(df["diff_type"]) == ["added", "modified", "removed"]
    assert str(df["to_c0"].dtype) == "Int64" and str(df["to_c1"].dtype) == "Float64"
    assert str(df["to_c2"].dtype) == "string" and df["to_c3"].dtype == object


@pytest.mark.parametrize("ddl, before, after, kept", [
    ("CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER);", [("b", 1), ("a", 2)], [("b", 3), ("c", 4)], True),
    ("CREATE TABLE t(x TEXT, y INTEGER, v, PRIMARY KEY (y, x)) WITHOUT ROWID;",
     [("a", 1, 1), ("a", 2, 2), ("b", 1, 3)], [("a", 1, 9), ("b", 1, 3), ("c", 0, 5)], True),
    ("CREATE TABLE t(k BLOB PRIMARY KEY, v TEXT);", [(b"\x01", "a"), (b"\x00", "b")], [(b"\x01", "c"), (b"", "d")], True),
    ("CREATE TABLE t(k REAL PRIMARY KEY, v TEXT);", [(0.5, "a"), (-1.25, "b")], [(0.5, "c"), (2.0, "d")], True),
    ("CREATE TABLE t(k PRIMARY KEY, v TEXT);", [(1, "a"), ("x", "b")], [(1, "c"), ("x", "d")], False),  # mixed
    ("CREATE TABLE t(a TEXT, v INTEGER);", [("a", 1), ("b", 2)], [("a", 1), ("b", 5), ("c", 6)], True),  # rowid
], ids=["text", "composite", "blob", "real", "mixed-types", "rowid"])
def test_keys(tmp_path: Path, ddl: str, before: list[tuple[Any, ...]], after: list[tuple[Any, ...]],
              kept: bool) -> None:
    repo, a, b = two_commits(tmp_path / "k.db", ddl, before, after)
    with repo.diff(a, b) as d:
        assert d.hint is not None and d.hint.keyed(d.spec("t"))  # the patches' keys are looked up
        compare(d, "t", columnar_expected=kept)


def split_reads(monkeypatch: pytest.MonkeyPatch, workers: int) -> list[int]:
    """Make even small diffs split their reads across *workers*; returns, per read, how many
    queries it ran."""
    monkeypatch.setattr(diff_module, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(columnar, "workers", lambda: workers)
    counts: list[int] = []
    real_read = columnar.read

    def read(*args: Any, **kw: Any) -> Any:
        counts.append(len(args[2]))
        return real_read(*args, **kw)

    monkeypatch.setattr(columnar, "read", read)
    return counts


@pytest.fixture
def many(tmp_path: Path) -> tuple[dbvers.Repo, str, str]:
    before = [(i, f"n{i}", i * 0.5) for i in range(300)]
    after = [(i, f"n{i}" if i % 3 else f"m{i}", i * 0.5) for i in range(10, 330)]
    return two_commits(tmp_path / "p.db", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT, x REAL);", before, after)


def test_parallel_parts_concatenate_in_key_order(many: tuple[dbvers.Repo, str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    repo, a, b = many
    parts = split_reads(monkeypatch, 3)
    with repo.diff(a, b) as d:
        df = compare(d, "t", columnar_expected=True)
    assert parts[0] == 3
    keys = df["from_k"].fillna(df["to_k"]).tolist()
    assert keys == sorted(keys)  # key order, as the row-by-row path lists them
    assert df["diff_type"].value_counts().to_dict() == {"modified": 96, "removed": 10, "added": 30}


def test_where_limit_skinny(many: tuple[dbvers.Repo, str, str]) -> None:
    repo, a, b = many
    with repo.diff(a, b) as d:
        assert len(compare(d, "t", columnar_expected=True, where="to_k > 100")) == 66 + 30
        assert len(compare(d, "t", columnar_expected=True, limit=5)) == 5
        df = compare(d, "t", columnar_expected=True, skinny=True, where="diff_type = 'modified'")
        assert list(df.columns) == ["diff_type", "from_k", "to_k", "from_v", "to_v", "from_commit", "to_commit"]
        with pytest.raises(UsageError, match="bad --where expression for t"):
            d.to_pandas("t", where="no_such_column = 1")


def test_across_an_added_column(tmp_path: Path) -> None:
    p = tmp_path / "s.db"
    execute(p, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');")
    repo = dbvers.init(p)
    execute(p, "ALTER TABLE t ADD COLUMN n INTEGER; UPDATE t SET n = k * 10 WHERE k = 2;")
    with repo.diff() as d:
        df = compare(d, "t", columnar_expected=True)
    assert df["to_n"].tolist() == [20] and df["from_n"].isna().all()
    assert str(df["from_n"].dtype) == "Int64"


def test_more_rows_than_promised_is_refused(tmp_path: Path) -> None:
    # A second batch would be converted to the first batch's types: never accepted.
    p = tmp_path / "r.db"
    execute(p, "CREATE TABLE t(v); INSERT INTO t VALUES (1), ('two'), (3);")
    with pytest.raises(columnar.ColumnarError):
        columnar.read(p, {}, [("SELECT v FROM t", {})], 1)
    assert columnar.read(p, {}, [("SELECT v FROM t", {})], 3).column(0).to_pylist() == ["1", "two", "3"]


def test_reader_leaves_files_unchanged_and_unlocked(tmp_path: Path) -> None:
    p = tmp_path / "r.db"
    execute(p, "PRAGMA journal_mode = WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1);")
    before = p.read_bytes()
    writer = sqlite3.connect(p)
    writer.execute("BEGIN IMMEDIATE")  # another process could be writing: no lock is asked for
    try:
        sql = "SELECT v FROM main.t UNION ALL SELECT v FROM x.t"
        assert columnar.read(p, {"x": p}, [(sql, {})], 2).num_rows == 2
    finally:
        writer.rollback()
        writer.close()
    assert p.read_bytes() == before


sqlite_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, width=64),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    st.binary(max_size=8),
)
decls = st.sampled_from(["INTEGER", "REAL", "TEXT", "BLOB", "", "NUMERIC", "VARCHAR(3)", "DOUBLE"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(types=st.lists(decls, min_size=1, max_size=3),
       rows=st.lists(st.tuples(st.integers(0, 30), st.lists(sqlite_values, min_size=3, max_size=3)),
                     min_size=1, max_size=25),
       edits=st.lists(st.tuples(st.integers(0, 30), st.lists(sqlite_values, min_size=3, max_size=3)),
                      min_size=1, max_size=25),
       deletes=st.sets(st.integers(0, 30), max_size=5))
def test_any_values_read_alike(tmp_path_factory: pytest.TempPathFactory, types: list[str],
                               rows: list[tuple[int, list[Any]]], edits: list[tuple[int, list[Any]]],
                               deletes: set[int]) -> None:
    p = tmp_path_factory.mktemp("prop") / "h.db"
    cols = ", ".join(f"c{i} {t}" for i, t in enumerate(types))
    n = len(types)
    conn = sqlite3.connect(p)
    conn.execute(f"CREATE TABLE t(k INTEGER PRIMARY KEY, {cols})")
    marks = ", ".join("?" * (n + 1))
    conn.executemany(f"INSERT OR REPLACE INTO t VALUES ({marks})", [(k, *v[:n]) for k, v in rows])
    conn.commit()
    conn.close()
    repo = dbvers.init(p)
    a = repo.resolve("HEAD")
    conn = sqlite3.connect(p)
    conn.executemany(f"INSERT OR REPLACE INTO t VALUES ({marks})", [(k, *v[:n]) for k, v in edits])
    conn.executemany("DELETE FROM t WHERE k = ?", [(k,) for k in deletes])
    conn.commit()
    conn.close()
    with repo.diff(a) as d:
        compare(d, "t", columnar_expected=None)
    b = repo.commit("edits", allow_empty=True).id
    with repo.diff(a, b) as d:
        compare(d, "t", columnar_expected=None)


def test_wal_mode_database(tmp_path: Path) -> None:
    p = tmp_path / "w.db"
    execute(p, "PRAGMA journal_mode = WAL; CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);"
               "INSERT INTO t VALUES (1, 'a'), (2, 'b');")
    repo = dbvers.init(p)
    a = repo.resolve("HEAD")
    holder = sqlite3.connect(p)  # keeps the WAL file in place while the diff reads
    holder.executescript("UPDATE t SET v = 'c' WHERE k = 1; INSERT INTO t VALUES (3, 'd');")
    try:
        with repo.diff(a) as d:
            assert len(compare(d, "t", columnar_expected=True)) == 2
        b = repo.commit("wal").id
        with repo.diff(a, b) as d:
            assert len(compare(d, "t", columnar_expected=True)) == 2
    finally:
        holder.close()


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT, x REAL);",
    "CREATE TABLE t(k TEXT PRIMARY KEY, v TEXT, x REAL);",  # rowid table keyed on text: three arms
    "CREATE TABLE t(k, v TEXT, x REAL);",  # no key: rowids
], ids=["integer-key", "text-key", "rowid"])
def test_full_comparison_in_rowid_ranges(tmp_path: Path, ddl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "f.db"
    conn = sqlite3.connect(p)
    conn.executescript(ddl)
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, f"n{i}", i * 0.5) for i in range(300)])
    conn.commit()
    conn.close()
    repo = dbvers.init(p)
    execute(p, "UPDATE t SET v = v || '!' WHERE k % 3 = 0; DELETE FROM t WHERE k < 10;"
               "INSERT INTO t VALUES (1000, 'new', 1.5), (1001, 'new', NULL);")
    queries = split_reads(monkeypatch, 3)
    with repo.diff() as d:
        spec = d.spec("t")
        assert d.hint is None  # against the working database: compared in full
        arms = rowdiff.scanned_arms(spec)
        assert arms >= 2
        df = compare(d, "t", columnar_expected=True)
        assert queries[0] == 3 * arms
        kinds = df["diff_type"].value_counts().to_dict()
        c = d.count_kinds("t")  # counted by SQLite in one query
        assert (kinds.get("added"), kinds.get("modified"), kinds.get("removed")) == (c.inserts, c.updates, c.deletes)
        assert c.inserts == 2 and c.updates > 80 and c.deletes >= 2
        assert len(compare(d, "t", columnar_expected=True, where="diff_type <> 'modified'")) == c.inserts + c.deletes


def test_a_part_with_only_nulls_in_a_column_takes_the_others_type(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys 50..99 are all added: in that part every from_ column is NULL, and the
    # driver types an all-NULL column as int64; the table still reads in one piece.
    before = [(i, f"v{i}", i * 0.25, b"x") for i in range(50)]
    after = [(i, f"w{i}", i * 0.25, b"y") for i in range(100)]
    repo, a, b = two_commits(tmp_path / "n.db", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT, x REAL, y BLOB);",
                             before, after)
    parts = split_reads(monkeypatch, 2)
    with repo.diff(a, b) as d:
        df = compare(d, "t", columnar_expected=True)
    assert parts[0] == 2
    assert df["diff_type"].tolist() == ["modified"] * 50 + ["added"] * 50
    assert str(df["from_v"].dtype) == "string" and str(df["from_x"].dtype) == "Float64"


def test_paths_with_uri_characters(tmp_path: Path) -> None:
    d = tmp_path / "a #b?c%20d'e"
    d.mkdir()
    p = d / "x.db"
    execute(p, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');")
    repo = dbvers.init(p, store=d / "store #1?")
    a = repo.resolve("HEAD")
    execute(p, "UPDATE t SET v = 'b'")
    b = repo.commit("b").id
    with repo.diff(a, b) as diff:
        assert compare(diff, "t", columnar_expected=True)["to_v"].tolist() == ["b"]
