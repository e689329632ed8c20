"""A hypothesis state machine: random edits to a working database (stdlib sqlite3, as a
user's code would make them), random commits, branches, checkouts, resets and
restores; after every move of the working database its exact state must be the one
recorded when the target commit was made.

The model is ``{commit id: state}``, the state being ``dump_state`` (values with their
types, rowids, schema, header pragmas, sqlite_sequence). Caches are deleted now and
then, so states are rebuilt from snapshots and patchsets, and ``max_patch_ratio`` is
switched between tiny (every commit a keyframe) and huge (long patch chains).
"""

from __future__ import annotations

import configparser
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import dbvers
from dbvers.errors import DirtyWorkingDatabaseError, NothingToCommitError, RefExistsError

INF = float("inf")

SETUP = """
CREATE TABLE t_int(id INTEGER PRIMARY KEY, a, b TEXT, c REAL, d);
CREATE TABLE t_comp(k1 TEXT, k2 TEXT, v, w INTEGER, PRIMARY KEY (k1, k2));
CREATE TABLE t_wr(k, n INTEGER, v, PRIMARY KEY (k, n)) WITHOUT ROWID;
CREATE TABLE t_plain(x, y, z);
CREATE TABLE audit(n INTEGER PRIMARY KEY AUTOINCREMENT, what, v);
INSERT INTO t_int VALUES (1, 7, 'seven', 7.5, NULL), (2, 'x', NULL, NULL, x'00ff');
INSERT INTO t_comp VALUES ('a', 'b', 1, 2), ('a', NULL, 2.5, NULL);
INSERT INTO t_wr VALUES (7, 1, 'v'), ('k', 2, 2), (0.0, 3, NULL);
INSERT INTO t_plain VALUES (1, 2, 3), (NULL, 'y', x'');
"""
BASE_TABLES = ("t_int", "t_comp", "t_wr", "t_plain")
POOL_TABLES = ("x1", "x2", "x3 \"q\"")
COLUMN_POOL = ("c1", "ü c3", 'c"4', "_rowid_")
INDEX_POOL = ("i1", "i2")
VIEW_POOL = ("v1", "v2")
TRIGGER_POOL = ("trg1", "trg2")
BRANCH_POOL = ("b1", "b2", "feature/x")

SPECIAL: list[Any] = [
    None, 0, 1, -1, 7, 7.0, "7", b"7", 0.0, -0.0, 2**63 - 1, -(2**63), INF, -INF,
    "", b"", "zoë", "🦆 漢字", "a'b\"c", 1.5, 1e300, 5e-324, "\x00x",
]
values = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(-3, 3).flatmap(lambda i: st.sampled_from([i, float(i), str(i)])),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
    st.binary(max_size=6),
)
text_keys = st.sampled_from(["a", "b", "c", "é", "", "7"])
int_keys = st.one_of(st.integers(min_value=-3, max_value=12), st.sampled_from([2**62, -(2**62)]))
untyped_keys = st.sampled_from([7, 7.0, "7", 0.0, -0.0, 1, "a", b"a"])


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def audit_trigger(name: str, table: str, event: str) -> str:
    """An audit trigger: replaying a commit must not run it a second time."""
    return (
        f"CREATE TRIGGER {q(name)} AFTER {event} ON {q(table)} BEGIN "
        f"INSERT INTO audit(what, v) VALUES ('{event} {table}', (SELECT count(*) FROM {q(table)})); END"
    )


class TableShape:
    def __init__(self, name: str, cols: list[tuple[str, str, int]], without_rowid: bool) -> None:
        self.name = name
        self.cols = cols  # (name, declared type, pk index)
        self.without_rowid = without_rowid

    @property
    def pk(self) -> list[str]:
        return [c for c, _t, p in sorted(self.cols, key=lambda c: c[2]) if p]

    @property
    def key_expr(self) -> str:
        return ", ".join(q(c) for c in self.pk) if self.without_rowid else "rowid"

    def type_of(self, col: str) -> str:
        return next(t for c, t, _p in self.cols if c == col)

    def key_values(self, col: str) -> st.SearchStrategy[Any]:
        t = self.type_of(col).upper()
        base = int_keys if "INT" in t else text_keys if "TEXT" in t else untyped_keys
        if not self.without_rowid and len(self.pk) > 1:
            # NULLs are allowed in such keys (now and then: they force keyframes).
            return st.integers(0, 7).flatmap(lambda i: st.none() if i == 0 else base)
        return base


class DbversMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="dbvers-stateful-"))
        self.db = self.dir / "work.db"
        conn = sqlite3.connect(self.db)
        conn.executescript(SETUP)
        conn.execute(audit_trigger("trg1", "t_int", "INSERT"))
        conn.execute(audit_trigger("trg2", "t_plain", "DELETE"))
        conn.close()
        self.repo = dbvers.init(self.db)
        # Start with long patch chains (set_snapshot_policy switches policies later).
        self.set_snapshot_policy("1000000", "100000")
        head = self.repo.head.commit
        assert head is not None
        self.model: dict[str, dict[str, Any]] = {head: self.state()}
        self.head = head
        self.branch: str | None = "main"
        self.branches: dict[str, str] = {"main": head}
        self.commits = [head]

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------
    def shapes(self) -> dict[str, TableShape]:
        conn = sqlite3.connect(self.db)
        try:
            out = {}
            for name, kind, wr in conn.execute(
                "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'"
            ).fetchall():
                if kind != "table" or name.startswith("sqlite_"):
                    continue
                cols = [(r[1], r[2], r[5]) for r in conn.execute(f"PRAGMA table_info({q(name)})")]
                out[name] = TableShape(name, cols, bool(wr))
            return out
        finally:
            conn.close()

    def state(self) -> dict[str, Any]:
        return dump_state(self.db)

    def sql(self, stmt: str, params: tuple[Any, ...] = ()) -> bool:
        """Run one statement the way a user would; False if SQLite refused it."""
        conn = sqlite3.connect(self.db)
        try:
            conn.execute(stmt, params)
            conn.commit()
            return True
        except sqlite3.Error:
            conn.rollback()
            return False
        finally:
            conn.close()

    def dirty(self) -> bool:
        return self.state() != self.model[self.head]

    def check_working(self, oid: str, why: str) -> None:
        got = self.state()
        assert got == self.model[oid], f"{why}: working database != state of {oid[:10]}"

    def pick_table(self, data: st.DataObject, *, with_audit: bool = False) -> TableShape | None:
        shapes = self.shapes()
        names = sorted(n for n in shapes if with_audit or n != "audit")
        if not names:
            return None
        return shapes[data.draw(st.sampled_from(names), label="table")]

    def pick_row(self, data: st.DataObject, t: TableShape) -> str | None:
        """A WHERE clause selecting one existing row of *t*."""
        conn = sqlite3.connect(self.db)
        try:
            n = conn.execute(f"SELECT count(*) FROM {q(t.name)}").fetchone()[0]
        finally:
            conn.close()
        if not n:
            return None
        offset = data.draw(st.integers(0, n - 1), label="row")
        k = t.key_expr
        return f"({k}) IN (SELECT {k} FROM {q(t.name)} ORDER BY {k} LIMIT 1 OFFSET {offset})"

    # -- editing the working database ----------------------------------------
    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        """One change to the rows or the header (the rule run most often: hypothesis favours
        the first rule in its order, which puts rules with fewer arguments first)."""
        kind = data.draw(st.sampled_from(
            ["update", "retype", "insert", "retype", "delete_row", "delete_some", "move_rowid",
             "set_pragmas", "insert"]), label="edit")
        getattr(self, kind)(data)
        self.maybe_commit(data)

    def insert(self, data: st.DataObject) -> None:
        replace = data.draw(st.booleans(), label="or replace")
        t = self.pick_table(data)
        if t is None:
            return
        row = [
            data.draw(t.key_values(c) if p else values, label=c) for c, _t, p in t.cols
        ]
        cols = ", ".join(q(c) for c, _t, _p in t.cols)
        marks = ", ".join("?" * len(row))
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.sql(f"{verb} INTO {q(t.name)}({cols}) VALUES ({marks})", tuple(row))

    def update(self, data: st.DataObject) -> None:
        t = self.pick_table(data, with_audit=True)
        if t is None or not (where := self.pick_row(data, t)):
            return
        col, _typ, pk = data.draw(st.sampled_from(t.cols), label="column")
        value = data.draw(t.key_values(col) if pk else values, label="value")
        self.sql(f"UPDATE OR REPLACE {q(t.name)} SET {q(col)} = ? WHERE {where}", (value,))

    def retype(self, data: st.DataObject) -> None:
        """A change of type only: 7 -> 7.0 -> '7' -> x'37' and back, in an untyped column."""
        t = self.pick_table(data)
        if t is None:
            return
        untyped = [c for c, typ, _p in t.cols if typ == ""]
        if not untyped or not (where := self.pick_row(data, t)):
            return
        # Key columns twice: a key that changes type only (7 -> 7.0) is the hardest case.
        col = data.draw(st.sampled_from(untyped + [c for c in untyped if c in t.pk]), label="column")
        conn = sqlite3.connect(self.db)
        try:
            v = conn.execute(f"SELECT {q(col)} FROM {q(t.name)} WHERE {where}").fetchone()[0]
        finally:
            conn.close()
        candidates: list[Any] = []
        # Integer <-> real flips (equal to SQL, the hard case) weigh three times as much.
        if isinstance(v, bool | int):
            candidates = [str(v), str(v).encode()]
            if abs(v) < 2**53:
                candidates += [float(v)] * 3
        elif isinstance(v, float):
            candidates = [repr(v)]
            if abs(v) < 2**63 and v == int(v):
                candidates += [int(v)] * 3
            if v == 0:
                candidates += [-v] * 3  # 0.0 <-> -0.0
        elif isinstance(v, str):
            candidates = [v.encode()]
            if re.fullmatch(r"-?[0-9]{1,18}", v):
                candidates.append(int(v))
        elif isinstance(v, bytes):
            try:
                candidates = [v.decode()]
            except UnicodeDecodeError:
                candidates = [None]
        if candidates:
            new = data.draw(st.sampled_from(candidates), label="new value")
            self.sql(f"UPDATE OR REPLACE {q(t.name)} SET {q(col)} = ? WHERE {where}", (new,))

    def delete_row(self, data: st.DataObject) -> None:
        t = self.pick_table(data, with_audit=True)
        if t is not None and (where := self.pick_row(data, t)):
            self.sql(f"DELETE FROM {q(t.name)} WHERE {where}")

    def delete_some(self, data: st.DataObject) -> None:
        k = data.draw(st.integers(2, 4), label="modulus")
        j = data.draw(st.integers(0, 3), label="remainder")
        t = self.pick_table(data)
        if t is not None and not t.without_rowid:
            self.sql(f"DELETE FROM {q(t.name)} WHERE rowid % {k} = {j % k}")

    def move_rowid(self, data: st.DataObject) -> None:
        new_rowid = data.draw(st.integers(-1000, 1000), label="new rowid")
        t = self.pick_table(data)
        if t is not None and not t.pk and not t.without_rowid and (where := self.pick_row(data, t)):
            self.sql(f"UPDATE {q(t.name)} SET rowid = ? WHERE {where}", (new_rowid,))

    def set_pragmas(self, data: st.DataObject) -> None:
        version = data.draw(st.sampled_from([0, 1, 7, -1, 2**31 - 1]), label="user_version")
        app = data.draw(st.sampled_from([None, 0, 42]), label="application_id")
        self.sql(f"PRAGMA user_version = {version}")
        if app is not None:
            self.sql(f"PRAGMA application_id = {app}")

    # -- schema changes ------------------------------------------------------
    def names_of(self, kind: str) -> set[str]:
        conn = sqlite3.connect(self.db)
        try:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = ?", (kind,))}
        finally:
            conn.close()

    @rule(data=st.data(), what=st.sampled_from(
        ["table", "add_column", "drop_column", "rename_column", "index", "view", "trigger"]))
    def schema_change(self, data: st.DataObject, what: str) -> None:
        """One DDL statement (a single rule, so that data edits outnumber schema changes)."""
        getattr(self, f"ddl_{what}")(data)
        self.maybe_commit(data)

    def ddl_table(self, data: st.DataObject) -> None:
        """Create a table of one of five kinds, or drop or rename an existing one."""
        name = data.draw(st.sampled_from(POOL_TABLES), label="name")
        existing = self.names_of("table")
        if name in existing:
            free = [n for n in POOL_TABLES if n not in existing]
            if free and data.draw(st.booleans(), label="rename"):
                new = data.draw(st.sampled_from(free), label="new name")
                assert self.sql(f"ALTER TABLE {q(name)} RENAME TO {q(new)}")
            else:
                assert self.sql(f"DROP TABLE {q(name)}")
            return
        kind = data.draw(st.sampled_from(["intpk", "textpk", "untypedpk", "wr", "plain"]), label="kind")
        body = {
            "intpk": "id INTEGER PRIMARY KEY, a, b",
            "textpk": "k TEXT, j TEXT, a, PRIMARY KEY (k, j)",
            "untypedpk": "k PRIMARY KEY, a, b NUMERIC",
            "wr": "k TEXT PRIMARY KEY, a, b",
            "plain": "a, b, c",
        }[kind]
        suffix = " WITHOUT ROWID" if kind == "wr" else ""
        assert self.sql(f"CREATE TABLE {q(name)}({body}){suffix}")
        rows = data.draw(st.lists(st.tuples(st.integers(0, 5), values, values), max_size=4), label="rows")
        for i, a, b in rows:
            key: Any = {"intpk": i, "untypedpk": [7, 7.0, "7", i][i % 4]}.get(kind, str(i))
            self.sql(f"INSERT OR REPLACE INTO {q(name)} VALUES (?, ?, ?)", (key, a, b))

    def ddl_add_column(self, data: st.DataObject) -> None:
        t = self.pick_table(data)
        col = data.draw(st.sampled_from(COLUMN_POOL), label="column")
        typ = data.draw(st.sampled_from(["", "INTEGER", "TEXT", "REAL", "NUMERIC", "BLOB"]), label="type")
        default = data.draw(st.sampled_from(
            ["", " DEFAULT 0", " DEFAULT 'd'", " DEFAULT 1.5", " DEFAULT x'00'"]), label="default")
        if t is not None and col not in [c for c, _t, _p in t.cols]:
            assert self.sql(f"ALTER TABLE {q(t.name)} ADD COLUMN {q(col)} {typ}{default}")

    def ddl_drop_column(self, data: st.DataObject) -> None:
        t = self.pick_table(data)
        if t is not None:
            cols = [c for c, _t, p in t.cols if not p]
            if len(t.cols) > 1 and cols:
                col = data.draw(st.sampled_from(cols), label="column")
                self.sql(f"ALTER TABLE {q(t.name)} DROP COLUMN {q(col)}")  # refused if indexed

    def ddl_rename_column(self, data: st.DataObject) -> None:
        t = self.pick_table(data)
        new = data.draw(st.sampled_from(COLUMN_POOL), label="new name")
        if t is not None and new not in [c for c, _t, _p in t.cols]:
            col = data.draw(st.sampled_from([c for c, _t, _p in t.cols]), label="column")
            assert self.sql(f"ALTER TABLE {q(t.name)} RENAME COLUMN {q(col)} TO {q(new)}")

    def ddl_index(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(INDEX_POOL), label="name")
        if name in self.names_of("index"):
            assert self.sql(f"DROP INDEX {q(name)}")
            return
        t = self.pick_table(data)
        if t is not None:
            col = data.draw(st.sampled_from([c for c, _t, _p in t.cols]), label="column")
            kind = "UNIQUE INDEX" if data.draw(st.booleans(), label="unique") else "INDEX"
            self.sql(f"CREATE {kind} {q(name)} ON {q(t.name)}({q(col)})")  # UNIQUE may be refused

    def ddl_view(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(VIEW_POOL), label="name")
        if name in self.names_of("view"):
            assert self.sql(f"DROP VIEW {q(name)}")
        else:
            table = data.draw(st.sampled_from(BASE_TABLES), label="table")
            assert self.sql(f"CREATE VIEW {q(name)} AS SELECT count(*) AS n FROM {q(table)}")

    def ddl_trigger(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(TRIGGER_POOL), label="name")
        if name in self.names_of("trigger"):
            assert self.sql(f"DROP TRIGGER {q(name)}")
            return
        table = data.draw(st.sampled_from(BASE_TABLES), label="table")
        event = data.draw(st.sampled_from(["INSERT", "UPDATE", "DELETE"]), label="event")
        assert self.sql(audit_trigger(name, table, event))

    # -- the repository --------------------------------------------------------
    @rule(allow_empty=st.sampled_from([False, False, False, True]),
          message=st.sampled_from(["edit", "zoë ✓", "two\nlines"]), rebuild=st.booleans())
    def commit(self, allow_empty: bool, message: str, rebuild: bool) -> None:
        self.do_commit(allow_empty, message, rebuild)

    def maybe_commit(self, data: st.DataObject) -> None:
        """Commit right after an edit now and then, so histories get long."""
        if data.draw(st.integers(0, 2), label="commit now") == 0:
            self.do_commit(False, "edit", data.draw(st.booleans(), label="rebuild"))

    def do_commit(self, allow_empty: bool, message: str, rebuild: bool) -> None:
        """Commit; with *rebuild*, then rebuild the new commit from the store alone and compare.

        The copy a commit diffs becomes its cache, so without *rebuild* a wrong
        patchset would only show up when a later checkout replays it.
        """
        before = self.state()
        if before == self.model[self.head] and not allow_empty:
            with pytest.raises(NothingToCommitError):
                self.repo.commit(message)
            return
        c = self.repo.commit(message, allow_empty=allow_empty)
        assert c.parents == (self.head,)
        assert self.state() == before, "commit changed the working database"
        self.model[c.id] = before
        self.commits.append(c.id)
        self.head = c.id
        if self.branch is not None:
            self.branches[self.branch] = c.id
        assert self.repo.status().clean
        if rebuild:
            self.drop_caches()
            self.repo.restore(force=True)
            self.check_working(c.id, "commit rebuilt from snapshot + patchsets")

    @rule(rebuild=st.booleans())
    def status(self, rebuild: bool) -> None:
        if rebuild:  # compare against a base state rebuilt from the store
            self.drop_caches()
        st_ = self.repo.status()
        assert st_.head == self.head
        assert st_.clean == (not self.dirty()), st_

    def _target(self, data: st.DataObject) -> str:
        refs = list(self.commits) + sorted(self.branches)
        return data.draw(st.sampled_from(refs), label="ref")

    @rule(data=st.data(), force=st.booleans(), drop=st.booleans())
    def checkout(self, data: st.DataObject, force: bool, drop: bool) -> None:
        ref = self._target(data)
        if drop:  # rebuild from snapshots + patchsets
            self.drop_caches()
        oid = self.branches.get(ref, ref)
        if len(ref) == 64 and data.draw(st.booleans(), label="short id"):
            ref = ref[:12]
        before = self.state()
        if not force and oid != self.head and before != self.model[self.head]:
            with pytest.raises(DirtyWorkingDatabaseError):
                self.repo.checkout(ref)
            assert self.state() == before, "a refused checkout changed the working database"
            return
        self.repo.checkout(ref, force=force)
        self.branch = ref if ref in self.branches else None
        if oid == self.head and not force:
            assert self.state() == before, "checkout of HEAD's commit lost uncommitted changes"
        else:
            self.check_working(oid, f"checkout {ref} force={force}")
        self.head = oid

    @rule(data=st.data(), name=st.sampled_from(BRANCH_POOL), force=st.booleans(),
          drop=st.booleans())
    def checkout_new_branch(self, data: st.DataObject, name: str, force: bool, drop: bool) -> None:
        ref = self._target(data)
        if drop:
            self.drop_caches()
        oid = self.branches.get(ref, ref)
        if name in self.branches:
            with pytest.raises(RefExistsError):
                self.repo.checkout(ref, create_branch=name, force=force)
            return
        before = self.state()
        if not force and oid != self.head and before != self.model[self.head]:
            with pytest.raises(DirtyWorkingDatabaseError):
                self.repo.checkout(ref, create_branch=name)
            assert name not in self.repo.branches()
            return
        self.repo.checkout(ref, create_branch=name, force=force)
        self.branches[name] = oid
        self.branch = name
        if oid != self.head or force:
            self.check_working(oid, f"checkout -b {name} {ref}")
        else:
            assert self.state() == before, "checkout -b at HEAD's commit lost uncommitted changes"
        self.head = oid

    @rule(data=st.data(), name=st.sampled_from(BRANCH_POOL))
    def branch_at(self, data: st.DataObject, name: str) -> None:
        at = data.draw(st.sampled_from(self.commits), label="at")
        if name in self.branches:
            with pytest.raises(RefExistsError):
                self.repo.branch(name, at=at)
            return
        assert self.repo.branch(name, at=at) == at
        self.branches[name] = at

    @rule(data=st.data(), force=st.booleans(), drop=st.booleans())
    def reset(self, data: st.DataObject, force: bool, drop: bool) -> None:
        ref = self._target(data)
        if drop:
            self.drop_caches()
        oid = self.branches.get(ref, ref)
        before = self.state()
        if not force and before != self.model[self.head]:
            with pytest.raises(DirtyWorkingDatabaseError):
                self.repo.reset(ref)
            assert self.state() == before
            return
        assert self.repo.reset(ref, force=force) == oid
        if self.branch is not None:
            self.branches[self.branch] = oid
        self.head = oid
        self.check_working(oid, f"reset --hard {ref}")

    @rule(force=st.booleans())
    def restore(self, force: bool) -> None:
        before = self.state()
        if not force and before != self.model[self.head]:
            with pytest.raises(DirtyWorkingDatabaseError):
                self.repo.restore()
            assert self.state() == before, "a refused restore changed the working database"
            return
        self.repo.restore(force=force)
        self.check_working(self.head, "restore")

    def drop_caches(self) -> None:
        for p in self.repo.cache_dir.glob("*.db"):
            p.unlink()

    @rule(ratio=st.sampled_from(["0.000001", "1000000", "1000000", "0.5"]),
          max_commits=st.sampled_from(["2", "100000"]))
    def set_snapshot_policy(self, ratio: str, max_commits: str) -> None:
        cfg = configparser.ConfigParser()
        path = self.repo.store_dir / "config"
        cfg.read(path, encoding="utf-8")
        cfg["snapshot"]["max_patch_ratio"] = ratio
        cfg["snapshot"]["max_commits"] = max_commits
        with open(path, "w", encoding="utf-8") as f:
            cfg.write(f)
        self.repo = dbvers.open(self.db)  # a fresh Repo reads the new policy

    @precondition(lambda self: len(self.commits) > 1)
    @rule(data=st.data(), n=st.integers(1, 3))
    def rebuild_old_commits(self, data: st.DataObject, n: int) -> None:
        """Check out a few commits with no cache at all, then come back."""
        if self.dirty():
            self.repo.restore(force=True)
        picks = data.draw(st.lists(st.sampled_from(self.commits), min_size=n, max_size=n), label="commits")
        for oid in picks:
            self.drop_caches()
            self.repo.checkout(oid)
            self.check_working(oid, "checkout after deleting all caches")
        back = self.branch or self.head
        self.repo.checkout(back)
        self.check_working(self.head, "checkout back")

    @invariant()
    def refs_match_the_model(self) -> None:
        head = self.repo.head
        assert head.commit == self.head
        assert head.branch == self.branch
        assert self.repo.branches() == self.branches


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_stateful_short_histories() -> None:
    """Many short runs (about 1,200 steps in all)."""
    run_state_machine_as_test(DbversMachine, settings=SETTINGS)


@pytest.mark.slow
def test_stateful_long_histories() -> None:
    """Few long runs: long patch chains, many branches, caches rebuilt deep in history."""
    run_state_machine_as_test(
        DbversMachine, settings=settings(SETTINGS, max_examples=8, stateful_step_count=120)
    )
