"""Values and DataFrames in output (issue 10): text that isn't UTF-8, control characters,
column names that collide with dbvers's own, exact dtypes, and short reprs."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import execute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbvers

Cli = Callable[..., subprocess.CompletedProcess[str]]

# -- text that isn't UTF-8 (item 2) ---------------------------------------------------

BAD = b"\xc3(\xffA"  # an invalid continuation, a byte that is never UTF-8, then 'A'
BAD2 = b"\xff"


def raw(data: bytes) -> str:
    """What dbvers gives for TEXT holding *data*: surrogate escapes for bytes that aren't UTF-8."""
    return data.decode("utf-8", "surrogateescape")


def raw_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (rowid first where there is one, sorted), each value with its
    SQLite type, text as its bytes."""
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    try:
        out = {}
        for name, wr in conn.execute("SELECT name, wr FROM pragma_table_list WHERE schema = 'main' "
                                     "AND type = 'table' AND name NOT LIKE 'sqlite%'").fetchall():
            name = name.decode()
            q = '"' + name.replace('"', '""') + '"'
            cols = ["rowid"] if not wr else []
            cols += ['"' + r[1].decode().replace('"', '""') + '"' for r in conn.execute(f"PRAGMA table_info({q})")]
            sel = ", ".join(f"{c}, typeof({c})" for c in cols)
            out[name] = sorted(conn.execute(f"SELECT {sel} FROM {q}").fetchall(), key=repr)
        return out
    finally:
        conn.close()


@pytest.fixture
def bad_text(tmp_path: Path) -> dbvers.Repo:
    """Two commits: the second adds and changes TEXT values (and a TEXT key) that aren't UTF-8."""
    p = tmp_path / "bad.db"
    execute(p, """
        CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, n INTEGER, m);
        INSERT INTO t VALUES (1, 'ok', NULL, 1), (2, 'x', 5, 2);
        CREATE TABLE k(name TEXT PRIMARY KEY, v);  -- a rowid table keyed on text
        INSERT INTO k VALUES ('a', 1);
        CREATE TABLE w(name TEXT PRIMARY KEY, v) WITHOUT ROWID;
        INSERT INTO w VALUES ('a', 1);
    """)
    repo = dbvers.init(p)
    execute(p, f"""
        INSERT INTO t VALUES (3, CAST(x'{BAD.hex()}' AS TEXT), 7, CAST(x'{BAD2.hex()}' AS TEXT));
        UPDATE t SET s = CAST(x'{BAD2.hex()}' AS TEXT) WHERE id = 2;
        INSERT INTO k VALUES (CAST(x'{BAD.hex()}' AS TEXT), 2);
        UPDATE k SET v = CAST(x'{BAD2.hex()}' AS TEXT) WHERE name = 'a';
        INSERT INTO w VALUES (CAST(x'{BAD.hex()}' AS TEXT), 2);
    """)
    repo.commit("bad text")
    return repo


@pytest.mark.parametrize("working", [False, True])
def test_invalid_utf8_to_pandas_is_lossless(bad_text: dbvers.Repo, working: bool) -> None:
    repo = bad_text
    if working:  # the same change, against the working database (no patches to guide it)
        repo.reset("HEAD~1", hard=False)
    with repo.diff("HEAD~1" if not working else "HEAD", None if working else "HEAD") as d:
        df = d.to_pandas("t").set_index("to_id")
        assert df.loc[3, "to_s"] == raw(BAD) and df.loc[3, "to_s"].encode("utf-8", "surrogateescape") == BAD
        assert df.loc[2, "to_s"] == raw(BAD2) and df.loc[2, "from_s"] == "x"
        assert df.loc[3, "to_m"] == raw(BAD2)
        assert str(df["to_n"].dtype) == "Int64"
        k = d.to_pandas("k")
        assert set(k["to_name"]) == {"a", raw(BAD)}
        assert raw(BAD2) in set(k["to_v"])
        assert d.to_pandas("w")["to_name"].tolist() == [raw(BAD)]
        tbl = d.to_arrow("t")
        assert tbl.num_rows == 2
        assert d.counts()["t"].total == 2


def test_invalid_utf8_read_table_and_history(bad_text: dbvers.Repo) -> None:
    t = bad_text.read_table("t").set_index("id")
    assert t.loc[3, "s"].encode("utf-8", "surrogateescape") == BAD
    assert t.loc[2, "s"] == raw(BAD2) and t.loc[1, "s"] == "ok"
    assert bad_text.read_table("t", at=None).equals(bad_text.read_table("t"))
    h = bad_text.history("t", 2)
    assert h["s"].tolist() == [raw(BAD2), "x"]
    assert bad_text.history("t", 3)["s"].tolist() == [raw(BAD)]
    # the key as dbvers gave it finds the row
    assert bad_text.history("k", raw(BAD))["v"].tolist() == [2]
    assert bad_text.history("w", raw(BAD))["diff_type"].tolist() == ["added"]


def test_invalid_utf8_sql_round_trips(bad_text: dbvers.Repo, tmp_path: Path) -> None:
    a = tmp_path / "a.db"
    shutil.copy(bad_text.materialize(bad_text.resolve("HEAD~1")), a)
    with bad_text.diff("HEAD~1", "HEAD") as d:
        stmts = list(d.to_sql())
    assert f"CAST(x'{BAD.hex()}' AS TEXT)" in "\n".join(stmts)
    conn = sqlite3.connect(a)
    conn.executescript("BEGIN;\n" + "\n".join(stmts) + "\nCOMMIT;")
    conn.close()
    assert raw_dump(a) == raw_dump(bad_text.path)


def test_invalid_utf8_every_cli_format(cli: Cli, bad_text: dbvers.Repo, tmp_path: Path) -> None:
    cwd = bad_text.path.parent
    rng = ("HEAD~1", "HEAD")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        r = cli(*args, cwd=cwd)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stdout, r.stderr)
        return r

    text = run("diff", *rng).stdout
    assert "s: 'x' → '\\xff'" in text and "s='\\xc3(\\xffA'" in text  # escaped, never the raw bytes
    assert "\udcff" not in text and "\ufffd" not in text
    assert " t | +1 ~1 -0" in run("diff", "--stat", *rng).stdout
    doc = json.loads(run("diff", "--format", "json", *rng).stdout)
    added = next(r for r in doc["t"] if r["diff_type"] == "added")
    assert base64.b64decode(added["to_s"]["$text_bytes"]) == BAD
    out = tmp_path / "d.csv"
    run("diff", "--format", "csv", "--table", "t", "-o", str(out), *rng)
    with open(out, encoding="utf-8", errors="surrogateescape", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["to_s"] for r in rows if r["table"] == "t"} == {raw(BAD), raw(BAD2)}
    # to stdout: the same bytes
    r = subprocess.run([*_cli_prefix(), "diff", "--format", "csv", "--table", "t", *rng], cwd=cwd,
                       capture_output=True)
    assert r.returncode == 0 and BAD in r.stdout, r.stderr
    pq_dir = tmp_path / "pq"
    run("diff", "--format", "parquet", "-o", str(pq_dir), *rng)
    col = pq.read_table(pq_dir / "t.parquet").column("to_s").to_pylist()
    assert {"text_bytes": BAD, "integer": None, "real": None, "text": None, "blob": None} in col
    sql_out = run("diff", "--format", "sql", *rng).stdout
    assert f"CAST(x'{BAD.hex()}' AS TEXT)" in sql_out
    run("diff", "--format", "sql", "--table", "t", *rng)
    for cmd in (["status"], ["log"], ["show"]):
        run(*cmd)


def _cli_prefix() -> list[str]:
    import sys

    return [sys.executable, "-m", "dbvers"]


def test_invalid_utf8_notebook_views(bad_text: dbvers.Repo) -> None:
    pytest.importorskip("ipywidgets")
    with bad_text.diff("HEAD~1", "HEAD") as d:
        html = d._repr_html_()
        assert "\\xc3(\\xffA" in html
        html.encode("utf-8")  # a notebook must be able to send it
        view = d.widget(namespace={})
        static = view.static_html()
        assert "\\xff" in static
        static.encode("utf-8")
        from dbvers.render.html import diff_text

        diff_text(d).encode("utf-8")
        pane = view.pane("t")
        pane.export.click()  # the button a user presses
        assert raw(BAD) in set(view.namespace[pane.export_name.value]["to_s"])


def test_display_escapes_bytes_that_are_not_utf8() -> None:
    from dbvers.render.text import safe_text

    assert safe_text(raw(BAD)) == "\\xc3(\\xffA"
    assert safe_text("zoë") == "zoë"  # valid text is shown as is
    assert safe_text(raw(b"\\\xff")) == "\\\\\\xff"  # a backslash is doubled once anything is escaped
    assert safe_text("C:\\dir") == "C:\\dir"


def test_frame_helpers_never_drop_raw_text() -> None:
    from dbvers.frames import rows_frame

    df = rows_frame(["a"], [(raw(BAD),), ("x",), (None,)], ["TEXT"])
    assert df["a"].tolist()[:2] == [raw(BAD), "x"]
    assert isinstance(df, pd.DataFrame)


# -- control characters in human output (item 13) -----------------------------------

EVIL = "\x1b[31mred\rX\x07\x9b2J\u202e"  # colour, overwrite, bell, C1 CSI, bidi override
EVIL_SHOWN = "\\x1b[31mred\\rX\\x07\\u009b2J\\u202e"
CONTROL = __import__("re").compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")  # all but \t and \n


@pytest.fixture
def evil(tmp_path: Path) -> dbvers.Repo:
    """A table whose name, a column name and values hold control characters; a commit
    message and author too."""
    p = tmp_path / "evil.db"
    execute(p, "CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO plain VALUES (1, 'a');")
    repo = dbvers.init(p)
    conn = sqlite3.connect(p)
    q = '"' + ("tab" + EVIL).replace('"', '""') + '"'
    conn.execute(f'CREATE TABLE {q}(id INTEGER PRIMARY KEY, "c{EVIL}" TEXT)')
    conn.execute(f"INSERT INTO {q} VALUES (1, ?)", (EVIL + "\tend",))
    conn.execute("UPDATE plain SET v = ? WHERE id = 1", (EVIL,))
    conn.commit()
    conn.close()
    repo.commit(f"msg {EVIL}\n\nbody {EVIL}", author=f"Eve {EVIL}")
    conn = sqlite3.connect(p)
    conn.execute("UPDATE plain SET v = ? WHERE id = 1", ("b" + EVIL,))
    conn.commit()
    conn.close()
    return repo


def _no_control(text: str) -> None:
    bad = CONTROL.search(text)
    assert bad is None, f"raw {bad.group()!r} in {text!r}"


def test_cli_human_output_escapes_control_characters(cli: Cli, evil: dbvers.Repo) -> None:
    cwd = evil.path.parent
    outs = {}
    for args in (["diff", "HEAD~1", "HEAD"], ["diff"], ["diff", "--stat", "HEAD~1", "HEAD"], ["status"],
                 ["log"], ["log", "--oneline"], ["show"]):
        r = cli(*args, cwd=cwd)
        assert r.returncode == 0, (args, r.stderr)
        _no_control(r.stdout)
        outs[" ".join(args)] = r.stdout
    assert f"'{EVIL_SHOWN}\\tend'" in outs["diff HEAD~1 HEAD"]
    assert f"tab{EVIL_SHOWN}" in outs["diff HEAD~1 HEAD"] and f"c{EVIL_SHOWN}=" in outs["diff HEAD~1 HEAD"]
    assert f"tab{EVIL_SHOWN}" in outs["diff --stat HEAD~1 HEAD"]
    assert f"'b{EVIL_SHOWN}'" in outs["diff"]
    assert f"msg {EVIL_SHOWN}" in outs["log --oneline"]
    assert f"body {EVIL_SHOWN}" in outs["show"] and f"Eve {EVIL_SHOWN}" in outs["show"]
    assert "plain" in outs["status"]
    r = cli("commit", "-m", f"again {EVIL}", cwd=cwd)
    assert r.returncode == 0 and f"again {EVIL_SHOWN}" in r.stdout
    _no_control(r.stdout)
    r = cli("reset", "--hard", "HEAD~1", cwd=cwd)
    assert r.returncode == 0 and f"msg {EVIL_SHOWN}" in r.stdout, r.stderr
    _no_control(r.stdout)


def test_notebook_views_escape_control_characters(evil: dbvers.Repo) -> None:
    pytest.importorskip("ipywidgets")
    from dbvers.render.html import commit_text, diff_text, log_html
    from dbvers.render.widgets import LogView

    with evil.diff("HEAD~1", "HEAD") as d:
        for text in (d._repr_html_(), d.widget(namespace={}).static_html(), diff_text(d, colour=False)):
            _no_control(text.replace("\x1b[0m", ""))
            assert EVIL_SHOWN in text
        view = d.widget(namespace={})
        for title in view.tabs.titles:
            _no_control(title)
    c = evil.log()[0]
    for text in (c._repr_html_(), log_html(evil.log(), evil), commit_text(c)):
        _no_control(text)
        assert f"msg {EVIL_SHOWN}" in text
    lv = LogView(evil, namespace={})
    for label, _ in lv.select.options:
        _no_control(label)
    _no_control(lv.details.value)
    lv.close()


# -- column names that collide with dbvers's own (item 9) ------------------------------

COLLIDING = ["commit", "author", "message", "timestamp", "diff_type", "commit_hash", "commit_message",
             "from_x", "to_x", "x"]


@pytest.fixture
def colliding(tmp_path: Path) -> dbvers.Repo:
    p = tmp_path / "c.db"
    cols = ", ".join(f'"{c}" TEXT' for c in COLLIDING)
    execute(p, f"CREATE TABLE t(id INTEGER PRIMARY KEY, {cols});"
               f"INSERT INTO t VALUES (1, {', '.join(repr('v_' + c) for c in COLLIDING)});")
    repo = dbvers.init(p, message="first")
    execute(p, "UPDATE t SET \"commit\" = 'c2', author = 'a2', message = 'm2', diff_type = 'd2', "
               "commit_hash = 'h2', x = 'x2' WHERE id = 1")
    repo.commit("second")
    return repo


def test_history_keeps_metadata_and_every_row_value(colliding: dbvers.Repo) -> None:
    h = colliding.history("t", 1)
    assert not h.columns.duplicated().any()
    assert list(h.columns[:5]) == ["dbvers_commit_hash", "commit_date", "commit_author", "dbvers_commit_message",
                                   "dbvers_diff_type"]
    assert h["dbvers_commit_hash"].tolist() == [c.id for c in colliding.log()]
    assert h["dbvers_commit_message"].tolist() == ["second", "first"]
    assert h["dbvers_diff_type"].tolist() == ["modified", "added"]
    assert h["commit_author"].tolist() == [c.author for c in colliding.log()]
    assert h["commit"].tolist() == ["c2", "v_commit"] and h["author"].tolist() == ["a2", "v_author"]
    assert h["message"].tolist() == ["m2", "v_message"] and h["timestamp"].tolist() == ["v_timestamp"] * 2
    assert h["diff_type"].tolist() == ["d2", "v_diff_type"] and h["commit_hash"].tolist() == ["h2", "v_commit_hash"]
    assert h["x"].tolist() == ["x2", "v_x"] and h["from_x"].tolist() == ["v_from_x"] * 2


def test_plain_history_columns(repo: dbvers.Repo) -> None:
    h = repo.history("orders", 1)
    assert list(h.columns) == ["commit_hash", "commit_date", "commit_author", "commit_message", "diff_type",
                               "id", "customer", "qty", "price", "note"]


def test_diff_frames_have_unique_columns_and_lose_nothing(colliding: dbvers.Repo) -> None:
    with colliding.diff("HEAD~1", "HEAD") as d:
        for table in (d.to_pandas("t"), d.to_pandas("t", skinny=True)):
            assert not table.columns.duplicated().any()
            row = table.iloc[0]
            assert (row["from_commit"], row["to_commit"]) == ("v_commit", "c2")
            assert (row["dbvers_from_commit"], row["dbvers_to_commit"]) == (d.a_commit, d.b_commit)
            assert (row["from_diff_type"], row["to_diff_type"]) == ("v_diff_type", "d2")
            assert row["diff_type"] == "modified"
            assert (row["from_x"], row["to_x"]) == ("v_x", "x2")
            if "from_from_x" in table:  # (skinny leaves out unchanged columns)
                assert (row["from_from_x"], row["to_to_x"]) == ("v_from_x", "v_to_x")
        tbl = d.to_arrow("t")
        assert len(set(tbl.column_names)) == tbl.num_columns
        assert tbl.column("dbvers_to_commit").to_pylist() == [d.b_commit]
        assert d.to_pandas("t", where="to_commit = 'c2'").shape[0] == 1  # where= names the data's columns


# -- exact dtypes everywhere a DataFrame is returned (item 11) ---------------------------

BIG = 9007199254740993  # 2**53 + 1: a float64 can't hold it


@pytest.fixture
def typed(tmp_path: Path) -> dbvers.Repo:
    p = tmp_path / "typed.db"
    execute(p, f"""
        CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, r REAL, s TEXT, b BLOB, anything, never INTEGER);
        INSERT INTO t VALUES (1, {BIG}, 0.5, 'a', x'00ff', 1, NULL), (2, NULL, NULL, NULL, NULL, 'one', NULL),
                             (3, -{BIG}, -0.0, 'zoë', x'', 2.5, NULL);
        CREATE TABLE empty(id INTEGER PRIMARY KEY, v TEXT);
    """)
    return dbvers.init(p)


@pytest.mark.parametrize("at", ["HEAD", None])
def test_read_table_dtypes_are_exact(typed: dbvers.Repo, at: str | None) -> None:
    df = typed.read_table("t", at=at)
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        "id": "Int64", "n": "Int64", "r": "Float64", "s": "string", "b": "object", "anything": "object",
        "never": "Int64"}
    assert df["n"].tolist()[0] == BIG and df["n"].tolist()[2] == -BIG and df["n"].iloc[1] is pd.NA
    assert df["b"].tolist() == [b"\x00\xff", None, b""]
    assert df["anything"].tolist() == [1, "one", 2.5]
    e = typed.read_table("empty")
    assert e.empty and list(e.columns) == ["id", "v"] and str(e["v"].dtype) == "string"


def test_history_dtypes_are_exact(typed: dbvers.Repo) -> None:
    execute(typed.path, "UPDATE t SET n = NULL WHERE id = 1")
    typed.commit("null")
    h = typed.history("t", 1)
    assert str(h["n"].dtype) == "Int64" and h["n"].tolist()[1] == BIG and h["n"].iloc[0] is pd.NA
    assert str(h["never"].dtype) == "Int64"  # NULL in every version: typed by its declaration
    assert str(h["commit_hash"].dtype) == "string"


# -- short reprs, readable str and HTML (item 4) -----------------------------------------


def test_reprs_stay_short_after_a_big_update(tmp_path: Path) -> None:
    p = tmp_path / "big.db"
    execute(p, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) "
               "INSERT INTO t SELECT i, printf('%040d', i) FROM n;")
    repo = dbvers.init(p)
    execute(p, "UPDATE t SET v = v || 'changed'")
    st = repo.status()
    assert len(st.changes.patchset or b"") > 500_000  # the field that used to be printed
    for obj in (st, st.changes):
        assert len(repr(obj)) < 200, repr(obj)[:300]
    assert repr(st) == "<dbvers.Status main: 1 table(s) +0 ~30000 -0, 0 schema change(s)>"
    text = str(st)
    assert "On branch main" in text and "~30000" in text and len(text) < 1000
    assert "~30,000" in st._repr_html_() and len(st._repr_html_()) < 5000
    c = repo.commit("x" * 5000)
    assert len(repr(c)) < 200 and repr(c).startswith(f"<dbvers.Commit {c.short_id} 'xxx")
    assert "~30000" in repr(c)
    assert c.id in str(c) and "Author:" in str(c)
    log = repo.log()
    assert len(repr(log)) < 300 and repr(log).startswith("<dbvers.CommitLog 2 commit(s): ")
    assert "Initial commit" in str(log)
    with repo.diff("HEAD~1", "HEAD") as d:
        assert len(repr(d)) < 200
        s = str(d)
        assert s.startswith("diff HEAD~1..HEAD") and len(s.splitlines()) < 40
    clean = repo.status()
    assert repr(clean) == "<dbvers.Status main: clean>" and "nothing to commit" in str(clean)


# -- a randomized round trip (items 2, 9, 11) ----------------------------------------------

_value = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, width=64),
    st.text(max_size=6, alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    st.builds(lambda b: ("raw", b), st.binary(max_size=6)),  # TEXT holding these bytes
    st.binary(max_size=6),
)
_rows = st.dictionaries(st.integers(min_value=1, max_value=12), st.tuples(_value, _value, _value), max_size=8)
# column names that collide with dbvers's own
_COLS = ("commit", "diff_type", "message")


def _oracle(path: Path) -> dict[int, tuple[Any, ...]]:
    """The table as the standard library reads it, text decoded the way dbvers promises."""
    conn = sqlite3.connect(path)
    conn.text_factory = raw
    try:
        return {r[0]: tuple(r[1:]) for r in conn.execute('SELECT id, "commit", diff_type, message FROM t')}
    finally:
        conn.close()


def _exact(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float):
        return ("real", v.hex())
    return (type(v).__name__, v)


def _norm(rows: dict[int, tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    return {k: tuple(map(_exact, v)) for k, v in rows.items()}


def _write(path: Path, rows: dict[int, tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM t")
    for k, vals in rows.items():
        marks = ["CAST(? AS TEXT)" if isinstance(v, tuple) else "?" for v in vals]
        conn.execute(f"INSERT INTO t VALUES (?, {', '.join(marks)})",
                     (k, *[v[1] if isinstance(v, tuple) else v for v in vals]))
    conn.commit()
    conn.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(before=_rows, after=_rows)
def test_values_round_trip_through_commit_checkout_diff_and_frames(
        tmp_path_factory: pytest.TempPathFactory, before: dict[int, tuple[Any, ...]],
        after: dict[int, tuple[Any, ...]]) -> None:
    d = tmp_path_factory.mktemp("rt")
    p = d / "rt.db"
    execute(p, 'CREATE TABLE t(id INTEGER PRIMARY KEY, "commit" TEXT, diff_type, message REAL)')
    _write(p, before)
    repo = dbvers.init(p)
    a = _oracle(p)
    _write(p, after)
    b = _oracle(p)
    repo.commit("after", allow_empty=True)
    for at, want in (("HEAD~1", a), ("HEAD", b)):
        df = repo.read_table("t", at=at)
        got = {int(r[0]): tuple(r[1:]) for r in zip(*(df[c].tolist() for c in df.columns), strict=True)}
        assert _norm(got) == _norm(want)
    with repo.diff("HEAD~1", "HEAD") as diff:
        df = diff.to_pandas("t")
        assert not df.columns.duplicated().any()
        for _, r in df.iterrows():
            key = r["from_id"] if r["diff_type"] == "removed" else r["to_id"]
            if r["diff_type"] != "added":
                assert tuple(_exact(r[f"from_{c}"]) for c in _COLS) == tuple(map(_exact, a[key]))
            if r["diff_type"] != "removed":
                assert tuple(_exact(r[f"to_{c}"]) for c in _COLS) == tuple(map(_exact, b[key]))
        na, nb = _norm(a), _norm(b)
        changed = {k for k in a.keys() | b.keys() if na.get(k) != nb.get(k)}
        assert set(df["to_id"].dropna().tolist()) | set(df["from_id"].dropna().tolist()) == changed
        stmts = list(diff.to_sql())
    copy = d / "copy.db"
    shutil.copy(repo.materialize(repo.resolve("HEAD~1")), copy)
    conn = sqlite3.connect(copy)
    conn.executescript("BEGIN;\n" + "\n".join(stmts) + "\nCOMMIT;")
    conn.close()
    assert _norm(_oracle(copy)) == _norm(b)
    repo.checkout("HEAD~1")
    assert _norm(_oracle(p)) == _norm(a)
    repo.checkout("main")
    assert _norm(_oracle(p)) == _norm(b)
