"""Checkout reproduces exactly what was committed: values with their types, rowids,
schema objects, header pragmas and sqlite_sequence, whatever path rebuilds the state
(base cache, snapshot plus patchsets, or a long chain of patchsets).

Every test records ``dump_state`` of the working database at each commit and then
checks out every commit (twice: from the caches, and after deleting them) and
compares the dump exactly.
"""

from __future__ import annotations

import configparser
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute

import dbvers

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
INF = float("inf")


class History:
    """A repository plus the exact state recorded at each of its commits."""

    def __init__(self, db: Path, setup: str | None = None, *, long_chains: bool = True) -> None:
        self.db = db
        if setup is not None:
            execute(db, setup)
        self.repo = dbvers.init(db)
        if long_chains:
            # Keyframes only where they are needed (root, schema changes, what patchsets
            # can't carry), so that checkouts without caches replay patchsets.
            self.repo = set_config(self.repo, "snapshot", max_patch_ratio="1000000",
                                   max_commits="100000")
        self.states: list[tuple[str, str, dict[str, Any]]] = []
        first = self.repo.head.commit
        assert first is not None
        self.states.append(("init", first, dump_state(db)))

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        execute(self.db, sql, params)

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn = sqlite3.connect(self.db)
        try:
            conn.executemany(sql, rows)
            conn.commit()
        finally:
            conn.close()

    def commit(self, message: str) -> dbvers.Commit:
        c = self.repo.commit(message)
        assert self.repo.head.commit == c.id
        # Committing never changes the working database.
        state = dump_state(self.db)
        self.states.append((message, c.id, state))
        return c

    def drop_caches(self) -> None:
        for p in self.repo.cache_dir.glob("*.db"):
            p.unlink()

    def verify(self, *, caches: bool = True, no_caches: bool = True) -> None:
        """Check out every recorded commit, in a scrambled order, and compare exactly."""
        passes = [False] * caches + [True] * no_caches
        order = self.states[::-1] + self.states[::2] + self.states[1::2]
        for drop in passes:
            for message, oid, state in order:
                if drop:
                    self.drop_caches()
                self.repo.checkout(oid, force=True)
                got = dump_state(self.db)
                assert got == state, f"checkout of {message!r} ({oid[:10]}) is not exact"
                assert self.repo.head.commit == oid
                assert self.repo.status().clean, message
        # Back to the newest state on the branch.
        self.repo.checkout("main", force=True)
        assert dump_state(self.db) == self.states[-1][2]


def set_config(repo: dbvers.Repo, section: str, **values: str) -> dbvers.Repo:
    cfg = configparser.ConfigParser()
    cfg.read(repo.store_dir / "config", encoding="utf-8")
    if not cfg.has_section(section):
        cfg.add_section(section)
    for k, v in values.items():
        cfg.set(section, k, v)
    with open(repo.store_dir / "config", "w", encoding="utf-8") as f:
        cfg.write(f)
    return dbvers.open(repo.path)


def changes_of(repo: dbvers.Repo, oid: str) -> list[str]:
    _, changes = repo.show(oid)
    return [str(s) for s in changes]


@pytest.fixture
def empty_db(tmp_path: Path, state_rebuilds: str) -> Path:
    """Every test here runs with states rebuilt in memory and in a file (see state_rebuilds)."""
    return tmp_path / "w.db"


# -- values and types --------------------------------------------------------


def test_type_only_changes_in_untyped_column(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v, w ANY, n NUMERIC);"
                          "INSERT INTO t VALUES (1, 7, 7, 7), (2, 'x', 1, 1), (3, 0, 0, 0);")
    h.run("UPDATE t SET v = 7.0 WHERE id = 1")  # integer -> real, equal under SQL =
    c = h.commit("7 -> 7.0")
    assert c.counts["t"].updates == 1
    h.run("UPDATE t SET v = '7' WHERE id = 1")  # real -> text
    h.commit("7.0 -> '7'")
    h.run("UPDATE t SET v = 7 WHERE id = 1")  # and back to integer
    h.commit("'7' -> 7")
    h.run("UPDATE t SET v = x'37' WHERE id = 1")  # text 7 vs blob 7
    h.commit("7 -> x'37'")
    h.run("UPDATE t SET v = '7' WHERE id = 1")
    h.commit("x'37' -> '7'")
    h.run("UPDATE t SET v = 0.0, w = 1.0 WHERE id = 3; UPDATE t SET w = 1.0 WHERE id = 2")
    h.commit("0 -> 0.0; 1 -> 1.0")
    h.run("UPDATE t SET v = 0, w = 1 WHERE id IN (2, 3)")
    h.commit("back again")
    h.verify()


def test_type_only_change_in_rowid_table_without_pk_and_without_rowid(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE r(a, b); INSERT INTO r VALUES (1, 2), (3, 4);"
                          "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
                          "INSERT INTO w VALUES ('a', 5), ('b', 6);")
    h.run("UPDATE r SET a = 1.0 WHERE b = 2; UPDATE w SET v = 5.0 WHERE k = 'a'")
    h.commit("int -> real")
    h.run("UPDATE r SET a = '1.0' WHERE b = 2; UPDATE w SET v = '5' WHERE k = 'a'")
    h.commit("real -> text")
    h.verify()


def test_special_values(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v);")
    values: list[Any] = [
        None, b"", "", b"\x00", "\x00", b"\x00\xff" * 100, INT64_MAX, INT64_MIN, INF, -INF,
        0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1, "zoë 🦆 漢字", "a\nb\tc", " ", 0, -1,
    ]
    h.many("INSERT INTO t(id, v) VALUES (?, ?)", list(enumerate(values)))
    h.commit("special values")
    # Rotate every value one place: each row changes value and usually type.
    rotated = values[1:] + values[:1]
    h.many("UPDATE t SET v = ? WHERE id = ?", [(v, i) for i, v in enumerate(rotated)])
    h.commit("rotated")
    # Empty string, NULL and empty blob are three different values.
    h.run("UPDATE t SET v = NULL WHERE v = ''")
    h.run("UPDATE t SET v = '' WHERE id = 0")
    h.commit("swap empties")
    h.run("DELETE FROM t WHERE id % 3 = 0")
    h.commit("delete some")
    h.many("INSERT INTO t(id, v) VALUES (?, ?)", [(100, INT64_MAX), (-5, -INF), (INT64_MAX, b"")])
    h.commit("insert extremes as keys")
    h.verify()


def test_negative_zero_is_kept(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v REAL, w);"
                          "INSERT INTO t VALUES (1, 0.0, 0.0);")
    h.run("UPDATE t SET v = -0.0, w = -0.0")
    h.commit("-0.0")
    h.verify()


def test_type_only_change_in_untyped_primary_key(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE p(k PRIMARY KEY, v);"
                          "CREATE TABLE q(k, n INTEGER, v, PRIMARY KEY (k, n)) WITHOUT ROWID;"
                          "INSERT INTO p VALUES (7, 'a'), (0.0, 'z'), ('x', 1);"
                          "INSERT INTO q VALUES (7, 1, 'a'), (0.0, 2, 'z');")
    # Keys equal to SQL but not in type: 7 -> 7.0 and 0.0 -> -0.0.
    h.run("UPDATE p SET k = 7.0 WHERE k = 7; UPDATE q SET k = 7.0 WHERE k = 7")
    c = h.commit("7 -> 7.0 in keys")
    assert c.counts["p"].total and c.counts["q"].total
    h.run("UPDATE p SET k = -0.0 WHERE v = 'z'; UPDATE q SET k = -0.0 WHERE n = 2;"
          "UPDATE p SET v = 2 WHERE k = 'x'")
    h.commit("0.0 -> -0.0 in keys, plus an ordinary update")
    h.run("UPDATE p SET k = 7 WHERE v = 'a'")
    h.commit("and back")
    h.verify()


# -- names ---------------------------------------------------------------------


def test_quoted_unicode_and_space_names(empty_db: Path) -> None:
    odd = '"my ""odd"" table"'  # the table  my "odd" table
    colq = '"col ""q"""'  # the column  col "q"
    h = History(
        empty_db,
        f"""
        CREATE TABLE {odd}({colq} INTEGER PRIMARY KEY, "ünï côdé" TEXT, "a b", [x]);
        CREATE TABLE "データ"("キー" TEXT PRIMARY KEY, "値") WITHOUT ROWID;
        CREATE TABLE "select"("from", "where");
        CREATE INDEX "idx ""q"" " ON {odd}("ünï côdé");
        INSERT INTO {odd} VALUES (1, 'é', 1, 2), (2, NULL, 'x', x'00');
        INSERT INTO "データ" VALUES ('一', 1), ('二', 2.5);
        INSERT INTO "select" VALUES ('a', 'b'), (NULL, 1);
        """,
    )
    h.run(f"""UPDATE {odd} SET "a b" = 1.0, [x] = 'y' WHERE {colq} = 1;
             INSERT INTO {odd} VALUES (3, 'ß', NULL, NULL);
             DELETE FROM "データ" WHERE "キー" = '一';
             UPDATE "データ" SET "値" = '2.5' WHERE "キー" = '二';
             INSERT INTO "データ" VALUES ('三', x'ff');
             UPDATE "select" SET "where" = 2 WHERE "from" IS NULL;
             DELETE FROM "select" WHERE "from" = 'a';""")
    c = h.commit("edit odd names")
    assert {'my "odd" table', "データ", "select"} <= set(c.counts)
    h.run(f"""ALTER TABLE {odd} ADD COLUMN "new ""col"" " DEFAULT 'd';""")
    h.commit("add quoted column")
    h.run(f"""ALTER TABLE {odd} RENAME COLUMN "a b" TO "a ""b"" ";""")
    h.commit("rename quoted column")
    h.run(f"""UPDATE {odd} SET "a ""b"" " = x'' WHERE {colq} = 2;""")
    h.commit("edit renamed quoted column")
    h.verify()


def test_column_literally_named_rowid(empty_db: Path) -> None:
    h = History(
        empty_db,
        """
        CREATE TABLE t(rowid TEXT, v);
        INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', 3);
        CREATE TABLE u(rowid, _rowid_, oid2, v);
        INSERT INTO u VALUES (10, 20, 30, 'x'), (10, 20, 30, 'y');
        """,
    )
    h.run("DELETE FROM t WHERE v = 2; UPDATE t SET rowid = 'z', v = 1.0 WHERE v = 1;"
          "INSERT INTO t VALUES ('d', 4); UPDATE u SET rowid = 11 WHERE v = 'x'")
    h.commit("edit tables with shadowed rowid names")
    h.run("DELETE FROM u WHERE v = 'y'; INSERT INTO u VALUES (1, 2, 3, 'z')")
    h.commit("more")
    h.verify()


# -- table kinds ---------------------------------------------------------------


def test_without_rowid_composite_key(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE w(a TEXT, b INTEGER, v, PRIMARY KEY (b, a)) WITHOUT ROWID;"
                          "INSERT INTO w VALUES ('x', 1, 1), ('y', 1, NULL), ('x', 2, 'v');")
    h.run("UPDATE w SET v = x'01' WHERE a = 'x' AND b = 1; DELETE FROM w WHERE b = 2;"
          "INSERT INTO w VALUES ('z', -9223372036854775808, 2.5)")
    h.commit("edit")
    h.run("UPDATE w SET b = 3 WHERE a = 'y'")  # key change = delete + insert
    h.commit("key change")
    h.verify()


def test_rowid_table_without_pk_keeps_rowids_and_gaps(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE r(a, b);")
    h.many("INSERT INTO r VALUES (?, ?)", [(i, f"v{i}") for i in range(20)])
    h.commit("twenty rows")
    h.run("DELETE FROM r WHERE a % 3 = 0")  # gaps
    h.commit("gaps")
    h.run("INSERT INTO r VALUES ('new', 1)")  # rowid after the gaps
    h.run("INSERT INTO r(rowid, a, b) VALUES (1000, 'far', 2), (-7, 'negative', 3)")
    h.commit("explicit rowids")
    h.run("UPDATE r SET rowid = 500 WHERE a = 'new'")  # rowid change
    h.run("UPDATE r SET a = 1.0 WHERE a = 1")
    h.commit("rowid moved")
    h.run("DELETE FROM r WHERE rowid = (SELECT max(rowid) FROM r)")
    h.commit("max rowid removed")
    assert [r[0] for r in sqlite3.connect(empty_db).execute("SELECT max(rowid) FROM r")] == [500]
    h.verify()


def test_hidden_rowid_of_table_with_text_primary_key(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE c(k TEXT PRIMARY KEY, v); INSERT INTO c VALUES ('a', 1), ('b', 2);")
    h.repo = set_config(h.repo, "snapshot", max_patch_ratio="1000000")
    h.run("INSERT INTO c VALUES ('aa', 3); DELETE FROM c WHERE k = 'b'")  # 'aa' gets rowid 3
    c = h.commit("insert, then delete the row with the highest rowid")
    assert c.snapshot is None
    # Replayed from the root snapshot, the patchset deletes 'b' first: 'aa' would get
    # rowid 2; the commit records 3 and the replay moves it there.
    assert c.rowids is not None
    h.verify(caches=False)


def test_hidden_rowids_survive_every_way_rows_come_and_go(empty_db: Path) -> None:
    h = History(empty_db, """
        CREATE TABLE c(k TEXT PRIMARY KEY, v);
        CREATE TABLE m(a BLOB, b REAL, v, PRIMARY KEY (a, b));
        INSERT INTO c VALUES ('a', 1), ('b', 2);
        INSERT INTO m VALUES (x'00', 0.5, 1), (x'01', -1.25, 2);
    """)
    # many inserts at once: a patchset lists them in its own order, not the order they came
    h.many("INSERT INTO c VALUES (?, ?)", [(f"k{i:03}", i) for i in range(200)])
    h.many("INSERT INTO m VALUES (?, ?, ?)", [(bytes([i % 7, i]), i / 3, i) for i in range(100)])
    first = h.commit("many inserts")
    assert first.rowids is not None and first.snapshot is None
    h.run("INSERT OR REPLACE INTO c VALUES ('a', 10)")  # same key, a new rowid: an update to a patchset
    h.run("UPDATE c SET k = 'zz' WHERE k = 'b'")  # a key change: removed and added
    h.run("DELETE FROM c WHERE k = 'k199'; INSERT INTO c VALUES ('late', 0)")
    h.commit("replace, rekey, delete the last and insert")
    h.run("INSERT INTO c(rowid, k, v) VALUES (-5, 'neg', 1), (9223372036854775807, 'top', 2)")
    h.commit("explicit rowids at both ends")
    h.run("INSERT INTO c VALUES ('after top', 3)")  # SQLite picks a random free rowid now
    h.run("UPDATE m SET v = v + 1 WHERE b > 10")  # updates alone keep rowids: nothing to record
    h.commit("a rowid past the top")
    assert h.repo.fsck().ok
    h.verify()


def test_renumbered_hidden_rowids_do_not_break_replay(empty_db: Path) -> None:
    # Setting the hidden rowid of a table keyed on other columns (or a VACUUM that
    # renumbers one) is no change a patchset sees, so a replayed state keeps the old
    # rowids, and a later insert's recorded rowid can be taken by another row.
    h = History(empty_db, "CREATE TABLE c(k TEXT PRIMARY KEY, v); INSERT INTO c VALUES ('a', 1), ('b', 2), ('c', 3);")
    h.run("DELETE FROM c WHERE k = 'a'; UPDATE c SET rowid = rowid - 1")  # b, c: rowids 2, 3 -> 1, 2
    h.commit("delete, renumber")
    h.run("INSERT INTO c VALUES ('d', 4)")  # rowid 3, where the replay keeps c
    last = h.commit("insert")
    h.drop_caches()
    h.repo.checkout(h.states[0][1], force=True)
    h.repo.checkout(last.id, force=True)  # rebuilt from the root snapshot and both patches
    conn = sqlite3.connect(empty_db)
    try:
        rows = conn.execute("SELECT rowid, k, v FROM c ORDER BY k").fetchall()
    finally:
        conn.close()
    assert [(k, v) for _, k, v in rows] == [("b", 2), ("c", 3), ("d", 4)]
    assert dict((k, r) for r, k, _ in rows)["d"] == 3  # the recorded rowid wins
    assert h.repo.fsck().ok


def test_rowid_fixups_are_kept_by_gc_and_backups(empty_db: Path, tmp_path: Path) -> None:
    h = History(empty_db, "CREATE TABLE c(k TEXT PRIMARY KEY, v); INSERT INTO c VALUES ('a', 1), ('b', 2);")
    h.run("INSERT INTO c VALUES ('aa', 3); DELETE FROM c WHERE k = 'b'")  # replayed bare: 'aa' at 2, not 3
    c = h.commit("fixups")
    assert c.rowids is not None and c.rowids in c.referenced_objects()
    h.repo.gc()
    assert h.repo.objects.has(c.rowids) and h.repo.fsck().ok
    info = h.repo.backup(tmp_path / "bk")
    (tmp_path / "r").mkdir()
    target = tmp_path / "r" / "restored.db"
    dbvers.restore(info.path, target, at=c.id)
    assert dump_state(target) == h.states[-1][2]


def test_integer_primary_key_rowid_gaps(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v);")
    h.many("INSERT INTO t(v) VALUES (?)", [(i,) for i in range(10)])
    h.commit("ten")
    h.run("DELETE FROM t WHERE id IN (3, 10)")
    h.commit("delete max and middle")
    h.run("INSERT INTO t(v) VALUES ('after')")
    h.commit("reuse")
    h.verify()


def test_autoincrement_sequences_restored_exactly(empty_db: Path) -> None:
    h = History(
        empty_db,
        """
        CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
        CREATE TABLE b(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
        INSERT INTO a(v) VALUES (1), (2), (3);
        """,
    )
    h.run("DELETE FROM a WHERE id = 3")  # sqlite_sequence still says 3
    h.run("INSERT INTO b(v) VALUES ('x')")
    h.commit("delete max id")
    h.run("INSERT INTO a(v) VALUES (4)")  # gets id 4, not 3
    h.commit("insert after delete")
    h.run("DELETE FROM a")  # only the sequence remembers 4
    h.commit("delete all")
    h.run("UPDATE sqlite_sequence SET seq = 100 WHERE name = 'a'")
    c = h.commit("sequence bumped by hand")
    assert ("a" in {s[1] for s in c.sequences})
    h.verify()
    # After checkout of every state the next AUTOINCREMENT id matches the original history.
    for _message, oid, state in h.states:
        h.repo.checkout(oid, force=True)
        seq = dict((r[1][1], r[2][1]) for r in state["tables"].get("sqlite_sequence", []))
        conn = sqlite3.connect(empty_db)
        try:
            conn.execute("INSERT INTO a(v) VALUES ('probe')")
            new_id = conn.execute("SELECT max(id) FROM a").fetchone()[0]
            conn.rollback()
        finally:
            conn.close()
        expected = max(seq.get("a", 0), *(r[1][1] for r in state["tables"]["a"]), 0) + 1
        assert new_id == expected


def test_sequence_only_change_is_committable_and_restored(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);"
                          "INSERT INTO a(v) VALUES (1);")
    h.run("UPDATE sqlite_sequence SET seq = 50")
    h.commit("only the sequence")
    h.verify()


def test_audit_trigger_does_not_double_insert(empty_db: Path) -> None:
    h = History(
        empty_db,
        """
        CREATE TABLE t(id INTEGER PRIMARY KEY, v);
        CREATE TABLE audit(n INTEGER PRIMARY KEY AUTOINCREMENT, op, id, v);
        CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
            INSERT INTO audit(op, id, v) VALUES ('ins', new.id, new.v);
        END;
        CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN
            INSERT INTO audit(op, id, v) VALUES ('upd', new.id, new.v);
        END;
        CREATE TRIGGER t_del AFTER DELETE ON t BEGIN
            INSERT INTO audit(op, id, v) VALUES ('del', old.id, old.v);
        END;
        CREATE TABLE log(msg);
        CREATE TRIGGER log_ins AFTER INSERT ON log BEGIN
            UPDATE t SET v = v || '!' WHERE id = 1;
        END;
        """,
    )
    h.run("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    h.commit("inserts")
    h.run("UPDATE t SET v = 'c' WHERE id = 2; DELETE FROM t WHERE id = 1;"
          "INSERT INTO t VALUES (1, 'z')")
    h.commit("update and delete")
    h.run("INSERT INTO log VALUES ('hello')")
    h.commit("trigger cascade")
    h.verify()
    last = h.states[-1][2]
    assert len(last["tables"]["audit"]) == 6


def test_foreign_keys(empty_db: Path) -> None:
    h = History(
        empty_db,
        """
        PRAGMA foreign_keys = ON;
        CREATE TABLE parent(id INTEGER PRIMARY KEY, name);
        CREATE TABLE child(id INTEGER PRIMARY KEY,
                           pid INTEGER REFERENCES parent(id) ON DELETE CASCADE, v);
        INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
        INSERT INTO child VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c');
        """,
    )
    conn = sqlite3.connect(empty_db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM parent WHERE id = 1")  # cascades to child 1 and 2
    conn.execute("INSERT INTO parent VALUES (3, 'p3')")
    conn.execute("INSERT INTO child VALUES (4, 3, 'd')")
    conn.commit()
    conn.close()
    h.commit("cascade delete")
    h.run("PRAGMA foreign_keys = ON; DELETE FROM child; DELETE FROM parent;")
    h.commit("empty")
    h.verify()
    for _message, oid, _state in h.states:
        h.repo.checkout(oid, force=True)
        conn = sqlite3.connect(empty_db)
        try:
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            conn.close()


def test_table_with_null_in_non_integer_primary_key(empty_db: Path) -> None:
    h = History(
        empty_db,
        """
        CREATE TABLE n(k TEXT PRIMARY KEY, v);
        INSERT INTO n VALUES ('a', 1), (NULL, 2), (NULL, 3);
        CREATE TABLE m(a, b, v, PRIMARY KEY (a, b));
        INSERT INTO m VALUES (1, NULL, 'x'), (NULL, NULL, 'y'), (1, 2, 'z');
        """,
    )
    h.run("UPDATE n SET v = 2.0 WHERE v = 2")
    h.commit("update a NULL-key row")
    h.run("DELETE FROM n WHERE v = 3; INSERT INTO n VALUES (NULL, 4)")
    h.run("UPDATE m SET v = 'yy' WHERE a IS NULL")
    h.commit("delete and insert NULL-key rows")
    h.run("UPDATE n SET k = 'b' WHERE v = 4; UPDATE m SET b = 5 WHERE a = 1 AND b IS NULL")
    h.commit("NULL key becomes non-NULL")
    h.run("UPDATE n SET k = NULL WHERE k = 'a'")
    h.commit("non-NULL key becomes NULL")
    h.run("UPDATE n SET v = 'plain' WHERE k = 'b'")
    h.commit("plain change beside NULL-key rows")
    h.verify()


# -- schema changes ------------------------------------------------------------


def test_schema_changes_are_committed_listed_and_checked_out(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b);"
                          "INSERT INTO t VALUES (1, 'x', 1), (2, 'y', 2);")
    expected: list[tuple[str, str]] = []

    def step(sql: str, message: str, change: str) -> None:
        h.run(sql)
        c = h.commit(message)
        assert c.snapshot is not None, f"{message}: a schema change makes a keyframe"
        lines = changes_of(h.repo, c.id)
        assert any(line.startswith(change) for line in lines), (message, lines)
        expected.append((c.id, change))

    step("CREATE TABLE u(k TEXT PRIMARY KEY, v); INSERT INTO u VALUES ('a', 1)",
         "create table", "table u created")
    step("ALTER TABLE t ADD COLUMN c DEFAULT 5", "add column", "table t altered")
    assert "columns added: c" in changes_of(h.repo, h.states[-1][1])[0]
    step("UPDATE t SET c = 6.0 WHERE id = 2; ALTER TABLE t RENAME COLUMN a TO aa",
         "rename column", "table t altered")
    assert "column a renamed to aa" in changes_of(h.repo, h.states[-1][1])[0]
    step("ALTER TABLE t DROP COLUMN b", "drop column", "table t altered")
    assert "columns dropped: b" in changes_of(h.repo, h.states[-1][1])[0]
    step("CREATE INDEX t_aa ON t(aa)", "create index", "index t_aa created")
    step("CREATE UNIQUE INDEX u_v ON u(v) WHERE v IS NOT NULL", "create partial index",
         "index u_v created")
    step("CREATE VIEW big AS SELECT * FROM t WHERE c > 5", "create view", "view big created")
    step("CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN UPDATE u SET v = v + 1; END",
         "create trigger", "trigger t_ins created")
    step("INSERT INTO t(aa, c) VALUES ('z', 9); DROP TRIGGER t_ins", "drop trigger",
         "trigger t_ins dropped")
    step("DROP VIEW big", "drop view", "view big dropped")
    step("DROP INDEX t_aa", "drop index", "index t_aa dropped")
    step("ALTER TABLE u RENAME TO u2", "rename table", "table u2 created")
    step("DROP TABLE u2", "drop table", "table u2 dropped")
    step("CREATE TABLE t_new(id INTEGER PRIMARY KEY, aa, c);"
         "INSERT INTO t_new SELECT id, aa, c FROM t; DROP TABLE t; ALTER TABLE t_new RENAME TO t",
         "rebuild table", "table t altered")
    h.verify()


def test_schema_change_and_data_change_in_one_commit(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, a);"
                          "INSERT INTO t VALUES (1, 1), (2, 2);")
    h.run("ALTER TABLE t ADD COLUMN b; UPDATE t SET b = a * 1.0, a = 'x' WHERE id = 1;"
          "DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (3, 3, 3)")
    c = h.commit("both")
    assert c.counts["t"].total > 0
    h.run("UPDATE t SET b = 1 WHERE id = 1")  # 1.0 -> 1 right after the schema change
    h.commit("type-only after schema change")
    h.verify()


def test_user_version_and_application_id_are_versioned(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(v); INSERT INTO t VALUES (1);")
    h.run("PRAGMA user_version = 7")
    c = h.commit("user_version 7")
    assert c.pragmas["user_version"] == 7
    h.run("PRAGMA user_version = -1; PRAGMA application_id = 1234")
    h.commit("negative user_version and application_id")
    h.run("PRAGMA user_version = 0; INSERT INTO t VALUES (2)")
    h.commit("back to 0 with data")
    h.verify()


def test_pragma_only_change_makes_status_dirty(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(v);")
    h.run("PRAGMA user_version = 3")
    st = h.repo.status()
    assert not st.clean
    assert st.pragmas_changed == {"user_version": (0, 3)}


# -- virtual tables ------------------------------------------------------------


def _has_fts5() -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE f USING fts5(x)")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


@pytest.mark.skipif(not _has_fts5(), reason="stdlib sqlite3 built without FTS5")
def test_fts5_virtual_table_kept_exactly_through_snapshots(empty_db: Path) -> None:
    def search(query: str) -> list[str]:
        conn = sqlite3.connect(empty_db)
        try:
            conn.execute("INSERT INTO search(search) VALUES ('integrity-check')")
            return sorted(r[0] for r in conn.execute(
                "SELECT title FROM search WHERE search MATCH ?", (query,)))
        finally:
            conn.close()

    h = History(
        empty_db,
        """
        CREATE TABLE docs(id INTEGER PRIMARY KEY, body);
        CREATE VIRTUAL TABLE search USING fts5(title, body);
        INSERT INTO search VALUES ('one', 'the quick brown fox'), ('two', 'lazy dog');
        INSERT INTO docs VALUES (1, 'a');
        """,
    )
    st = h.repo.status()
    assert "search" in st.changes.untracked
    assert st.clean
    query = "fox OR dog OR alles"
    found = {h.states[0][1]: search(query)}
    # A change only inside the virtual table is seen and committed through a snapshot.
    h.run("INSERT INTO search VALUES ('three', 'zoë über alles')")
    assert not h.repo.status().clean
    c = h.commit("fts insert")
    assert c.snapshot is not None
    found[c.id] = search(query)
    h.run("DELETE FROM search WHERE title = 'one'; UPDATE docs SET body = 'b'")
    c = h.commit("fts delete and ordinary update")
    assert c.snapshot is not None
    found[c.id] = search(query)
    h.run("UPDATE search SET body = 'black cat' WHERE title = 'two'")
    c = h.commit("fts update")
    assert c.snapshot is not None
    found[c.id] = search(query)
    h.run("UPDATE docs SET body = 'c'")
    c = h.commit("ordinary update only")
    found[c.id] = search(query)
    assert "search" in h.repo.status().changes.untracked
    assert "search" in h.repo.status().to_json()["untracked"]
    assert len(set(map(tuple, found.values()))) == 4
    h.verify()
    for _message, oid, _state in h.states:
        h.drop_caches()
        h.repo.checkout(oid, force=True)
        assert search(query) == found[oid]


# -- replay paths --------------------------------------------------------------


def test_long_patch_chain_replays_exactly(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE r(a, b);"
                          "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;")
    h.repo = set_config(h.repo, "snapshot", max_patch_ratio="1000000", max_commits="100000")
    vals: list[Any] = [1, 1.0, "1", b"1", None, INT64_MAX, -INF, "ü"]
    for i in range(40):
        v = vals[i % len(vals)]
        h.run("INSERT INTO t(v) VALUES (?)", (v,))
        h.run("UPDATE t SET v = ? WHERE id = 1", (vals[(i + 3) % len(vals)],))
        h.run("INSERT INTO r VALUES (?, ?)", (i, v))
        if i % 4 == 3:
            h.run("DELETE FROM r WHERE rowid = (SELECT min(rowid) FROM r)")
        h.run("INSERT OR REPLACE INTO w VALUES (?, ?)", (f"k{i % 7}", v))
        if i % 10 == 9:
            h.run("PRAGMA user_version = ?".replace("?", str(i)))
        h.commit(f"step {i}")
    chain = [h.repo.get_commit(oid) for _m, oid, _s in h.states[1:]]
    assert all(c.snapshot is None and c.patch for c in chain), "expected one long patch chain"
    h.drop_caches()
    # The newest commit, from nothing but the root snapshot and 40 patchsets.
    h.repo.checkout(h.states[1][1], force=True)
    h.drop_caches()
    h.repo.checkout("main", force=True)
    assert dump_state(empty_db) == h.states[-1][2]
    h.verify(caches=False)


def test_tiny_patch_ratio_makes_every_commit_a_keyframe(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v);")
    h.repo = set_config(h.repo, "snapshot", max_patch_ratio="0.0000001")
    for i in range(5):
        h.run("INSERT INTO t VALUES (?, ?)", (i, i * 1.5))
        c = h.commit(f"step {i}")
        assert c.snapshot is not None
    h.verify()


def test_max_commits_bound_makes_keyframes(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v);")
    h.repo = set_config(h.repo, "snapshot", max_patch_ratio="1000000", max_commits="3")
    snaps = []
    for i in range(9):
        h.run("INSERT INTO t VALUES (?, ?)", (i, str(i)))
        snaps.append(h.commit(f"step {i}").snapshot is not None)
    assert any(snaps) and not all(snaps)
    h.verify(caches=False)


def test_checkout_after_deleting_all_caches(db_path: Path) -> None:
    h = History(db_path)
    h.run("UPDATE orders SET qty = qty + 1; DELETE FROM events WHERE kind = 'close';"
          "INSERT INTO \"odd name\" VALUES ('c', 'z', 3.0)")
    h.commit("edits")
    h.run("UPDATE orders SET note = 'n' WHERE id = 1")
    h.commit("more")
    h.drop_caches()
    assert not list(h.repo.cache_dir.glob("*.db"))
    h.repo.checkout(h.states[0][1], force=True)
    assert dump_state(db_path) == h.states[0][2]
    # A fresh Repo object (nothing in memory) rebuilds from the store alone.
    h.drop_caches()
    fresh = dbvers.open(db_path)
    fresh.checkout("main", force=True)
    assert dump_state(db_path) == h.states[-1][2]
    h.verify()


def test_branches_keep_their_own_exact_states(empty_db: Path) -> None:
    h = History(empty_db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
                          "INSERT INTO t VALUES (1, 1);")
    h.repo.checkout("main", create_branch="idea")
    h.run("UPDATE t SET v = 1.0")
    h.commit("idea: real")
    h.repo.checkout("main")
    assert dump_state(empty_db) == h.states[0][2]
    h.run("UPDATE t SET v = '1'")
    h.commit("main: text")
    h.repo.checkout("idea")
    assert dump_state(empty_db) == h.states[1][2]
    h.repo.reset(h.states[0][1])
    assert dump_state(empty_db) == h.states[0][2]
    assert h.repo.branches()["idea"] == h.states[0][1]
    h.repo.checkout("main")
    assert dump_state(empty_db) == h.states[2][2]


def test_changes_only_a_keyframe_can_carry_block_checkout_and_reset(empty_db: Path) -> None:
    from dbvers.errors import DirtyWorkingDatabaseError

    setup = "CREATE TABLE n(a TEXT, b TEXT, v, PRIMARY KEY (a, b)); INSERT INTO n VALUES ('x', NULL, 1);"
    if _has_fts5():
        setup += "CREATE VIRTUAL TABLE s USING fts5(body); INSERT INTO s VALUES ('hello');"
    h = History(empty_db, setup)
    h.run("INSERT INTO n VALUES ('y', 'y', 1)")
    h.commit("second")
    edits = ["INSERT INTO n VALUES ('x', NULL, 2)", "UPDATE n SET v = 1.0 WHERE b IS NULL"]
    if _has_fts5():
        edits.append("INSERT INTO s VALUES ('world')")
    for edit in edits:
        h.run(edit)
        dirty = dump_state(empty_db)
        st = h.repo.status()
        assert not st.clean, edit
        assert st.dirty_tables, edit
        with pytest.raises(DirtyWorkingDatabaseError):
            h.repo.checkout(h.states[0][1])
        with pytest.raises(DirtyWorkingDatabaseError):
            h.repo.reset(h.states[0][1])
        with pytest.raises(DirtyWorkingDatabaseError):
            h.repo.restore()
        assert dump_state(empty_db) == dirty, f"uncommitted {edit!r} was lost"
        h.repo.restore(force=True)
        assert dump_state(empty_db) == h.states[-1][2]
