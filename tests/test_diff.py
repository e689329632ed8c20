"""Repo.diff / Diff and Repo.history: the DataFrame contract, dtypes, rowid matching,
any two states (working database, branches, schema changes), and the two ways of
finding changed rows (patch-guided between commits, full comparison otherwise)."""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from conftest import dump_state, execute

import dbvers
from dbvers.diff import Diff
from dbvers.errors import DbversError, TableNotFoundError, UsageError

Sql = Callable[..., None]


def rows_of(d: Diff, table: str) -> list[dict[str, Any]]:
    """The changed rows as dicts, without the commit columns, in a stable order."""
    df = d.to_pandas(table).drop(columns=["from_commit", "to_commit"])
    recs = [{k: (None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()}
            for r in df.to_dict("records")]
    return sorted(recs, key=repr)


def by_kind(d: Diff, table: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"added": [], "modified": [], "removed": []}
    for r in rows_of(d, table):
        out[r["diff_type"]].append(r)
    return out


def full_diff(repo: dbvers.Repo, a: str | None, b: str | None) -> Diff:
    """The same diff as repo.diff(a, b) but always by full comparison (no patch hints)."""
    def side(ref: str | None) -> Path:
        if ref is None:
            return repo.path
        return repo.materialize(repo.resolve(ref))

    return Diff(side(a), side(b), a_label=str(a), b_label=str(b))


# -- the DataFrame shape ---------------------------------------------------------


def test_dataframe_columns_follow_dolt(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "UPDATE orders SET qty = 3 WHERE id = 1")
    head = repo.resolve("HEAD")
    with repo.diff() as d:
        df = d.to_pandas("orders")
        assert list(df.columns) == [
            "diff_type", "from_id", "to_id", "from_customer", "to_customer", "from_qty", "to_qty",
            "from_price", "to_price", "from_note", "to_note", "from_commit", "to_commit",
        ]
        assert df["diff_type"].tolist() == ["modified"]
        assert df["from_commit"].tolist() == [head]
        assert df["to_commit"].isna().all()  # the working database has no commit
        assert (df["from_qty"].iloc[0], df["to_qty"].iloc[0]) == (2, 3)


def test_key_columns_come_first(tmp_path: Path) -> None:
    p = tmp_path / "k.db"
    execute(p, """CREATE TABLE t(a TEXT, b INTEGER, c TEXT, v, PRIMARY KEY (c, a));
                  INSERT INTO t VALUES ('a', 1, 'c', 'v');""")
    repo = dbvers.init(p)
    execute(p, "UPDATE t SET b = 2")
    with repo.diff() as d:
        cols = list(d.to_pandas("t").columns)
    assert cols[:5] == ["diff_type", "from_c", "to_c", "from_a", "to_a"]  # primary-key order
    assert cols[5:9] == ["from_b", "to_b", "from_v", "to_v"]


def test_dtypes(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """
        UPDATE orders SET qty = NULL, note = x'0102' WHERE id = 1;
        UPDATE orders SET price = 21.5 WHERE id = 2;
        INSERT INTO orders VALUES (4, 'dee', 9, NULL, 'text note');
        UPDATE events SET payload = 'now text' WHERE rowid = 1;
    """)
    with repo.diff() as d:
        df = d.to_pandas("orders")
        assert str(df["from_id"].dtype) == "Int64" and str(df["to_id"].dtype) == "Int64"
        assert str(df["to_qty"].dtype) == "Int64"  # a NULL doesn't turn integers into floats
        assert str(df["to_price"].dtype) == "Float64"
        assert pd.api.types.is_string_dtype(df["to_customer"])
        assert pd.api.types.is_string_dtype(df["diff_type"])
        r = df.set_index("to_id")
        assert r.loc[1, "to_qty"] is pd.NA
        assert r.loc[1, "to_note"] == b"\x01\x02" and isinstance(r.loc[1, "to_note"], bytes)
        assert r.loc[2, "from_note"] == b"\x00\xff"  # BLOBs are bytes
        # note holds a BLOB and a TEXT on the to_ side: each value keeps its type
        assert df["to_note"].dtype == object
        assert {type(v) for v in df["to_note"] if v is not None} == {bytes, str}

        ev = d.to_pandas("events")
        # payload has no declared type: integer 1 before, text after; each side is typed by its values
        assert str(ev["from_payload"].dtype) == "Int64" and ev["from_payload"].tolist() == [1]
        assert pd.api.types.is_string_dtype(ev["to_payload"]) and ev["to_payload"].tolist() == ["now text"]


def test_mixed_types_keep_each_value(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """
        INSERT INTO events(rowid, kind, payload) VALUES (10, 'a', 7), (11, 'b', 7.0), (12, 'c', '7'),
                                                        (13, 'd', x'37'), (14, 'e', NULL);
    """)
    with repo.diff() as d:
        df = d.to_pandas("events").set_index("to_rowid")
        got = {k: df.loc[k, "to_payload"] for k in (10, 11, 12, 13, 14)}
        assert [type(got[k]) for k in (10, 11, 12, 13)] == [int, float, str, bytes]
        assert got[14] is None
        t = d.to_arrow("events")
        assert pa.types.is_union(t.schema.field("to_payload").type)
        values = dict(zip(t.column("to_rowid").to_pylist(), t.column("to_payload").to_pylist(), strict=True))
        assert [type(values[k]) for k in (10, 11, 12, 13)] == [int, float, str, bytes]


def test_type_only_change_is_a_change(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "UPDATE events SET payload = 1.0 WHERE rowid = 1")  # integer 1 -> real 1.0
    with repo.diff() as d:
        (row,) = rows_of(d, "events")
    assert row["diff_type"] == "modified"
    assert type(row["from_payload"]) is int and type(row["to_payload"]) is float


def test_all_null_column_typed_from_declaration(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "DELETE FROM orders WHERE id = 3")
    with repo.diff() as d:
        df = d.to_pandas("orders")
    assert str(df["to_qty"].dtype) == "Int64" and df["to_qty"].isna().all()
    assert str(df["to_price"].dtype) == "Float64"
    assert pd.api.types.is_string_dtype(df["to_customer"])


def test_key_change_is_removed_plus_added(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """UPDATE orders SET id = 100 WHERE id = 1;
                    UPDATE "odd name" SET k2 = 'z' WHERE "key part" = 'a';""")
    with repo.diff() as d:
        k = by_kind(d, "orders")
        assert [r["from_id"] for r in k["removed"]] == [1]
        assert [r["to_id"] for r in k["added"]] == [100]
        assert k["modified"] == []
        assert k["added"][0]["to_customer"] == "ann"
        o = by_kind(d, "odd name")
        assert [(r["from_key part"], r["from_k2"]) for r in o["removed"]] == [("a", "x")]
        assert [(r["to_key part"], r["to_k2"]) for r in o["added"]] == [("a", "z")]


def test_rowid_tables_matched_by_rowid(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    # events has no primary key: rows are matched by rowid.
    sql(db_path, """
        UPDATE events SET payload = 'changed' WHERE rowid = 2;    -- same rowid: modified
        DELETE FROM events WHERE rowid = 3;                       -- removed
        INSERT INTO events(rowid, kind, payload) VALUES (3, 'open', NULL);  -- same content, but
    """)
    # rowid 3 now holds the same values as before: not a change at all.
    sql(db_path, "DELETE FROM events WHERE rowid = 1; INSERT INTO events(rowid, kind, payload) VALUES (9, 'open', 1)")
    # rowid 1 moved to 9 with the same values: removed + added (a rowid is the row's identity)
    with repo.diff() as d:
        k = by_kind(d, "events")
    assert [(r["from_rowid"], r["to_rowid"], r["to_payload"]) for r in k["modified"]] == [(2, 2, "changed")]
    assert [r["from_rowid"] for r in k["removed"]] == [1]
    assert [(r["to_rowid"], r["to_kind"]) for r in k["added"]] == [(9, "open")]


def test_working_vs_head_and_labels(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    with repo.diff() as d:
        assert d.tables == [] and d.summary().empty
        assert (d.a_label, d.b_label) == ("HEAD", "working")
    sql(db_path, "INSERT INTO orders VALUES (4, 'dee', 1, 1.0, NULL)")
    with repo.diff() as d:
        assert d.tables == ["orders"]
        assert d.counts()["orders"].inserts == 1
    repo.commit("add dee")
    with repo.diff("HEAD~1") as d:  # a commit vs the working database
        assert d.tables == ["orders"]
    with repo.diff("HEAD~1", "HEAD") as d:
        assert d.b_commit == repo.resolve("HEAD") and d.a_commit == repo.resolve("HEAD~1")
        assert d.to_pandas("orders")["to_commit"].tolist() == [d.b_commit]
    with repo.diff("HEAD", "HEAD~1") as d:  # the other way round
        assert [r["diff_type"] for r in rows_of(d, "orders")] == ["removed"]


def test_unknown_table(repo: dbvers.Repo) -> None:
    with repo.diff() as d, pytest.raises(TableNotFoundError):
        d.to_pandas("nope")


def test_summary_columns(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """UPDATE orders SET qty = 9 WHERE id = 1; DELETE FROM orders WHERE id = 2;
                    INSERT INTO orders VALUES (7, 'g', 1, 1.0, NULL), (8, 'h', 1, 1.0, NULL);
                    CREATE TABLE fresh(x); INSERT INTO fresh VALUES (1);""")
    with repo.diff() as d:
        s = d.summary()
    assert list(s.columns) == ["table", "added", "modified", "removed", "schema_change"]
    assert [str(s[c].dtype) for c in ("added", "modified", "removed")] == ["int64"] * 3
    rows = {r["table"]: r for r in s.to_dict("records")}
    assert (rows["orders"]["added"], rows["orders"]["modified"], rows["orders"]["removed"]) == (2, 1, 1)
    assert rows["orders"]["schema_change"] == ""
    assert rows["fresh"]["schema_change"] == "created" and rows["fresh"]["added"] == 1


def test_to_arrow_same_columns_and_types(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "UPDATE orders SET qty = 4, price = 1.5 WHERE id = 3")
    with repo.diff() as d:
        t = d.to_arrow("orders")
        df = d.to_pandas("orders")
    assert t.column_names == list(df.columns)
    types = {f.name: f.type for f in t.schema}
    assert types["to_qty"] == pa.int64() and types["to_price"] == pa.float64()
    assert types["to_customer"] == pa.string() and types["from_commit"] == pa.string()
    assert t.num_rows == 1 and t.column("to_qty").to_pylist() == [4]


def test_where_limit_skinny(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "UPDATE orders SET qty = qty * 10; INSERT INTO orders VALUES (4, 'd', 1, 2.0, NULL)")
    with repo.diff() as d:
        assert len(d.to_pandas("orders", where="to_qty > 10")) == 2  # 20, 50 (not 10, not 1)
        assert len(d.to_pandas("orders", limit=2)) == 2
        skinny = d.to_pandas("orders", skinny=True, where="diff_type = 'modified'")
        assert list(skinny.columns) == ["diff_type", "from_id", "to_id", "from_qty", "to_qty",
                                        "from_commit", "to_commit"]
        with pytest.raises(UsageError):
            d.to_pandas("orders", where="no_such_column = 1")


# -- any two states ------------------------------------------------------------------


def test_refs_on_different_branches(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "UPDATE orders SET qty = 100 WHERE id = 1; INSERT INTO orders VALUES (5, 'main', 1, 1.0, NULL)")
    repo.commit("on main")
    repo.branch("feature", at="HEAD~1")
    repo.checkout("feature")
    sql(db_path, """UPDATE orders SET customer = 'feature' WHERE id = 2; DELETE FROM orders WHERE id = 3;
                    UPDATE events SET payload = 'f' WHERE rowid = 1;""")
    repo.commit("on feature")
    with repo.diff("main", "feature") as d, full_diff(repo, "main", "feature") as f:
        assert d.hint is not None  # found through the merge base's patches
        assert d.tables == f.tables == ["events", "orders"]
        for t in d.specs:
            assert rows_of(d, t) == rows_of(f, t)
        k = by_kind(d, "orders")
        assert [(r["from_id"], r["from_qty"], r["to_qty"]) for r in k["modified"] if r["from_id"] == 1] == [(1, 100, 2)]
        assert sorted(r["from_id"] for r in k["removed"]) == [3, 5]
        assert [(r["to_id"], r["to_customer"]) for r in k["modified"] if r["to_id"] == 2] == [(2, "feature")]


def test_patch_guided_diff_equals_full_comparison(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    """Over several commits, including a row changed back and forth, and a key inserted then deleted."""
    steps = [
        "UPDATE orders SET qty = 50 WHERE id = 1; INSERT INTO orders VALUES (10, 'tmp', 1, 1.0, NULL)",
        "UPDATE orders SET qty = 2 WHERE id = 1; DELETE FROM orders WHERE id = 10; UPDATE events SET kind = 'x'",
        """UPDATE "odd name" SET v = 3 WHERE k2 = 'x'; INSERT INTO events VALUES ('n', x'00');
           UPDATE orders SET note = 1.5 WHERE id = 2""",
        "DELETE FROM events WHERE rowid = 2; UPDATE orders SET price = 9.5 WHERE id = 3",
    ]
    for i, s in enumerate(steps):
        sql(db_path, s)
        repo.commit(f"step {i}")
    n = len(steps)
    for a, b in [(f"HEAD~{n}", "HEAD"), ("HEAD~2", "HEAD~1"), ("HEAD", f"HEAD~{n}"), (f"HEAD~{n}", "HEAD~2")]:
        with repo.diff(a, b) as d, full_diff(repo, a, b) as f:
            assert d.hint is not None
            assert d.tables == f.tables, (a, b)
            for t in d.specs:
                assert rows_of(d, t) == rows_of(f, t), (a, b, t)
                assert d.count_kinds(t) == f.count_kinds(t)
    with repo.diff(f"HEAD~{n}", "HEAD~2") as d:
        # id 1 went 2 -> 50 -> 2 and id 10 came and went: neither is a difference
        assert rows_of(d, "orders") == []


def test_patch_hint_falls_back_when_patches_cannot_tell(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "ALTER TABLE orders ADD COLUMN extra INTEGER")  # a keyframe: no patch
    repo.commit("schema")
    with repo.diff("HEAD~1", "HEAD") as d:
        assert d.hint is None
    sql(db_path, """CREATE TABLE np(k TEXT PRIMARY KEY, v); INSERT INTO np VALUES ('a', 1), (NULL, 2);""")
    repo.commit("np")
    sql(db_path, "UPDATE np SET v = 3 WHERE k IS NULL; UPDATE np SET v = 4 WHERE k = 'a'")
    repo.commit("null key row changed")  # sessions can't see NULL-key rows: the patch is partial
    with repo.diff("HEAD~1", "HEAD") as d:
        assert d.hint is not None and "np" in d.hint.unknown
        k = by_kind(d, "np")
        assert sorted((r["from_v"], r["to_v"]) for r in k["modified"]) == [(1, 4), (2, 3)]


def test_across_added_column(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """ALTER TABLE orders ADD COLUMN status TEXT;
                    UPDATE orders SET status = 'paid' WHERE id = 1;
                    UPDATE orders SET qty = 7 WHERE id = 2;""")
    repo.commit("add status")
    with repo.diff("HEAD~1", "HEAD") as d:
        spec = d.spec("orders")
        assert not spec.key_changed  # never a silent whole-table replace
        k = by_kind(d, "orders")
        assert k["added"] == [] and k["removed"] == []
        mods = {r["to_id"]: r for r in k["modified"]}
        assert set(mods) == {1, 2}  # row 3: status NULL on both sides, no change
        assert mods[1]["from_status"] is None and mods[1]["to_status"] == "paid"
        assert (mods[2]["from_qty"], mods[2]["to_qty"]) == (1, 7)
        changes = {(s.type, s.name, s.change): s.detail for s in d.schema_changes}
        assert changes == {("table", "orders", "altered"): "columns added: status"}
        assert d.summary().set_index("table").loc["orders", "schema_change"] == "altered (columns added: status)"


def test_across_dropped_and_renamed_columns(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """ALTER TABLE orders DROP COLUMN note;
                    UPDATE orders SET price = 0.5 WHERE id = 3;""")
    repo.commit("drop note")
    with repo.diff("HEAD~1", "HEAD") as d:
        (row,) = rows_of(d, "orders")  # compared on the shared columns only
        assert (row["to_id"], row["from_price"], row["to_price"]) == (3, 1.25, 0.5)
        assert row["from_note"] == "first" and row["to_note"] is None
        assert [str(s) for s in d.schema_changes] == ["table orders altered (columns dropped: note)"]
    sql(db_path, "ALTER TABLE orders RENAME COLUMN qty TO quantity; UPDATE orders SET quantity = 8 WHERE id = 1")
    repo.commit("rename")
    with repo.diff("HEAD~1", "HEAD") as d:
        (row,) = rows_of(d, "orders")  # a rename is compared as the same column
        assert (row["to_id"], row["from_quantity"], row["to_quantity"]) == (1, 2, 8)
        assert "from_qty" not in row
        assert [str(s) for s in d.schema_changes] == ["table orders altered (column qty renamed to quantity)"]


def test_schema_changes_list_everything(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """CREATE INDEX o_c ON orders(customer); CREATE VIEW v AS SELECT id FROM orders;
                    CREATE TRIGGER tr AFTER INSERT ON orders BEGIN SELECT 1; END;
                    CREATE TABLE doomed(x);""")
    repo.commit("objects")
    sql(db_path, """DROP INDEX o_c; CREATE INDEX o_c ON orders(customer, qty);
                    DROP VIEW v; DROP TRIGGER tr; CREATE TRIGGER tr2 AFTER DELETE ON orders BEGIN SELECT 2; END;
                    DROP TABLE doomed; CREATE TABLE born(y); DROP TABLE events;""")
    with repo.diff() as d:
        got = {(s.type, s.name, s.change) for s in d.schema_changes}
        assert got == {
            ("index", "o_c", "altered"), ("view", "v", "dropped"), ("trigger", "tr", "dropped"),
            ("trigger", "tr2", "created"), ("table", "doomed", "dropped"), ("table", "born", "created"),
            ("table", "events", "dropped"),
        }
        assert "born" in d.tables and "doomed" in d.tables
        k = by_kind(d, "events")  # a dropped table: every row removed
        assert len(k["removed"]) == 3 and not k["added"]
        assert d.summary().set_index("table").loc["events", "schema_change"] == "dropped"


def test_primary_key_change_is_whole_table_and_says_so(repo: dbvers.Repo, sql: Sql, db_path: Path, cli: Any) -> None:
    sql(db_path, """CREATE TABLE new_orders(id INTEGER, customer TEXT, qty INTEGER, price REAL, note,
                                            PRIMARY KEY (customer));
                    INSERT INTO new_orders SELECT * FROM orders; DROP TABLE orders;
                    ALTER TABLE new_orders RENAME TO orders;""")
    with repo.diff() as d:
        assert d.spec("orders").key_changed
        k = by_kind(d, "orders")
        assert len(k["removed"]) == 3 and len(k["added"]) == 3 and not k["modified"]
    out = cli("diff", "--table", "orders", cwd=db_path.parent).stdout
    assert "primary key changed" in out


def test_paths_with_uri_characters(tmp_path: Path) -> None:
    d = tmp_path / "a #b?c%20d"
    d.mkdir()
    p = d / "x.db"
    execute(p, "CREATE TABLE t(k INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'a')")
    repo = dbvers.init(p)
    execute(p, "UPDATE t SET v = 'b'")
    with repo.diff() as df:
        assert df.tables == ["t"]


def test_to_sql_round_trip(repo: dbvers.Repo, sql: Sql, db_path: Path, tmp_path: Path) -> None:
    a_state = tmp_path / "a.db"
    shutil.copy(db_path, a_state)
    sql(db_path, """UPDATE orders SET note = 'x''y', price = 1e300 WHERE id = 1; DELETE FROM orders WHERE id = 2;
                    INSERT INTO orders VALUES (9, NULL, -5, -0.5, x'');
                    ALTER TABLE orders ADD COLUMN extra REAL DEFAULT 2.5; UPDATE orders SET extra = NULL WHERE id = 3;
                    UPDATE "odd name" SET v = x'ff' WHERE k2 = 'y'; DELETE FROM events WHERE rowid = 1;
                    CREATE INDEX e_k ON events(kind); PRAGMA user_version = 3;""")
    with repo.diff() as d:
        stmts = list(d.to_sql())
    conn = sqlite3.connect(a_state)
    conn.executescript("BEGIN;\n" + "\n".join(stmts) + "\nCOMMIT;")
    conn.close()
    assert dump_state(a_state) == dump_state(db_path)


# -- history -------------------------------------------------------------------------


def test_history_single_key(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "UPDATE orders SET qty = 5 WHERE id = 1")
    m1 = repo.commit("qty 5").id
    sql(db_path, "UPDATE orders SET qty = 6 WHERE id = 2")
    repo.commit("other row")
    sql(db_path, "DELETE FROM orders WHERE id = 1")
    m3 = repo.commit("delete").id
    sql(db_path, "INSERT INTO orders VALUES (1, 'ann again', NULL, NULL, NULL)")
    m4 = repo.commit("back").id
    h = repo.history("orders", pk=1)
    assert list(h.columns[:5]) == ["commit_hash", "commit_date", "commit_author", "commit_message", "diff_type"]
    assert h["commit_hash"].tolist() == [m4, m3, m1, repo.log()[-1].id]
    assert h["diff_type"].tolist() == ["added", "removed", "modified", "added"]
    assert h["qty"].tolist()[1:3] == [5, 5]  # a removal shows the values before it
    assert h["customer"].iloc[0] == "ann again" and h["qty"].iloc[0] is pd.NA
    assert str(h["qty"].dtype) == "Int64"
    assert repo.history("orders", pk=99).empty


def test_history_composite_key(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, """UPDATE "odd name" SET v = 10 WHERE "key part" = 'b'""")
    repo.commit("b")
    sql(db_path, """UPDATE "odd name" SET v = 20 WHERE "key part" = 'a'""")
    repo.commit("a")
    h = repo.history("odd name", pk=("b", "y"))
    assert h["commit_message"].tolist() == ["b", "Initial commit"]
    assert h["v"].tolist() == [10, "two"]  # the value's type changed: each keeps its own
    h2 = repo.history("odd name", pk={"k2": "x", "key part": "a"})
    assert h2["commit_message"].tolist() == ["a", "Initial commit"]
    with pytest.raises(UsageError):
        repo.history("odd name", pk="a")


def test_history_key_declared_out_of_column_order(tmp_path: Path) -> None:
    p = tmp_path / "h.db"
    execute(p, "CREATE TABLE t(a TEXT, b INTEGER, v, PRIMARY KEY (b, a)); INSERT INTO t VALUES ('x', 1, 'one'), ('y', 2, 'two')")
    repo = dbvers.init(p)
    for stmt, msg in [("UPDATE t SET v = 'uno' WHERE a = 'x'", "m1"), ("DELETE FROM t WHERE a = 'x'", "m2"),
                      ("INSERT INTO t VALUES ('x', 1, 'again')", "m3"), ("UPDATE t SET v = 'dos' WHERE a = 'y'", "m4")]:
        execute(p, stmt)
        repo.commit(msg)
    h = repo.history("t", pk=(1, "x"))  # primary-key order: (b, a)
    assert h["commit_message"].tolist() == ["m3", "m2", "m1", "Initial commit"]
    assert h["diff_type"].tolist() == ["added", "removed", "modified", "added"]
    assert repo.history("t", pk={"a": "y", "b": 2})["commit_message"].tolist() == ["m4", "Initial commit"]


def test_history_rowid_table_and_errors(repo: dbvers.Repo, sql: Sql, db_path: Path) -> None:
    sql(db_path, "UPDATE events SET payload = 'p' WHERE rowid = 2")
    repo.commit("e")
    assert repo.history("events", pk=2)["commit_message"].tolist() == ["e", "Initial commit"]
    with pytest.raises(DbversError):
        repo.history("orders", pk=(1, 2))
