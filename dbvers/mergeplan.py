"""The schema half of a three-way merge (L2): what happens to each table, index, trigger and view,
decided before a row is written, and the private copies that give the row merge one shape.

:func:`plan` compares the three schemas (base, ours = ``main``, theirs) of a connection that has
them attached and returns a :class:`Plan`, or raises :class:`~dbvers.errors.MergeSchemaError`
naming every clash; :func:`conformed` makes the private databases the plan asks for (a side's
rows in another side's schema of the same table: a column added reads as its default).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import apsw

from .changes import TableInfo, attach, classify_tables, detach, is_stats_table, open_private, quote
from .errors import MergeSchemaError


def stored(info: TableInfo) -> tuple[str, ...]:
    """The columns a merge reads and writes: generated ones are SQLite's to compute."""
    return tuple(c for c in info.columns if c not in info.generated)


# -- the schema plan ----------------------------------------------------------


@dataclass
class Entry:
    type: str
    name: str
    tbl_name: str
    sql: str | None


def read_entries(conn: apsw.Connection, db: str) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for kind, name, tbl, sql in conn.execute(
        f"SELECT type, name, tbl_name, sql FROM {quote(db)}.sqlite_schema"
    ):
        if name.startswith("sqlite_") or is_stats_table(tbl):
            continue  # internal objects, autoindexes and planner statistics
        out[name] = Entry(kind, name, tbl, sql)
    return out


@dataclass
class Plan:
    """How each table is merged, decided before anything is written."""

    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # table -> (base src, theirs src)
    take: list[str] = field(default_factory=list)  # tables theirs added: copied whole
    drop: list[str] = field(default_factory=list)  # tables theirs dropped, unchanged by ours
    rebuild: list[str] = field(default_factory=list)  # ours' rows moved into theirs' new schema
    conform: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # source -> [(table, schema of)]
    objects: dict[str, tuple[Entry | None, Entry | None]] = field(default_factory=dict)  # name -> (now, wanted)


class Planner:
    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.b, self.o, self.t = (read_entries(conn, db) for db in ("base", "main", "theirs"))
        self.sets = {db: classify_tables(conn, db) for db in ("base", "main", "theirs")}
        self.clashes: list[tuple[str, str]] = []
        self.plan = Plan()

    def sql(self, side: dict[str, Entry], name: str) -> str | None:
        e = side.get(name)
        return e.sql if e else None

    def run(self) -> Plan:
        tables = {n for side in (self.b, self.o, self.t) for n, e in side.items() if e.type == "table"}
        for name in sorted(tables):
            self.table(name)
        self.others()
        if self.clashes:
            raise MergeSchemaError(self.clashes)
        return self.plan

    def table(self, name: str) -> None:
        b, o, t = (self.sql(s, name) for s in (self.b, self.o, self.t))
        if b == o == t and any(name in self.sets[db].opaque for db in ("main", "theirs")):
            self.shadow(name)
        elif o == t:
            if o is not None and self.keyed_or_bag(name):
                self.rows(name, base_src="base" if b == o else self.conformed("base", name, "main"))
        elif t == b:  # only ours changed this table's schema
            if o is None:
                if self.data_differs("theirs", name):
                    self.clash(name, "dropped on our side, changed on theirs")
            elif self.keyed_or_bag(name) and self.drops_ok(name, dropped_by="main", other="theirs"):
                self.rows(name, base_src=self.conformed("base", name, "main"),
                          theirs_src=self.conformed("theirs", name, "main"))
        elif o == b:  # only theirs changed it
            if t is None:
                if self.data_differs("main", name):
                    self.clash(name, "dropped on their side, changed on ours")
                else:
                    self.plan.drop.append(name)
            elif b is None:
                self.plan.take.append(name)
            elif self.keyed_or_bag(name) and self.drops_ok(name, dropped_by="theirs", other="main"):
                self.plan.rebuild.append(name)
                self.conformed("main", name, "theirs")
                self.rows(name, base_src=self.conformed("base", name, "theirs"))
        else:
            what = "added with different definitions" if b is None else "changed differently on both sides"
            self.clash(name, f"schema {what}")

    def keyed_or_bag(self, name: str) -> bool:
        # A virtual table's rows live in its shadow tables, merged by ``shadow``.
        return any(name in self.sets[db].tracked for db in ("main", "theirs"))

    def shadow(self, name: str) -> None:
        """A virtual table's shadow table holds an index, not rows a user wrote: it can't be
        merged cell by cell, only taken whole from the one side that changed it."""
        if self.data_differs("theirs", name):
            if self.data_differs("main", name):
                self.clash(name, "virtual table data changed on both sides")
            else:
                self.plan.take.append(name)

    def rows(self, name: str, *, base_src: str, theirs_src: str = "theirs") -> None:
        if name in self.b or base_src != "base":
            self.plan.rows[name] = (base_src, theirs_src)
        else:
            self.plan.rows[name] = ("", theirs_src)  # both added the same table: an empty base

    def conformed(self, src: str, name: str, shape_of: str) -> str:
        """The name of the private database that will hold ``src``'s rows of ``name`` in
        ``shape_of``'s schema (filled by ``conform`` when the plan runs)."""
        if self.pk(src, name) != self.pk(shape_of, name) and self.has(src, name):
            self.clash(name, "primary key changed")
        self.plan.conform.setdefault(src, []).append((name, shape_of))
        return "conf_" + src

    def has(self, db: str, name: str) -> bool:
        return name in self.sets[db].tracked or name in self.sets[db].opaque

    def info(self, db: str, name: str) -> TableInfo | None:
        s = self.sets[db]
        return s.tracked.get(name) or s.opaque.get(name)

    def pk(self, db: str, name: str) -> tuple[str, ...]:
        info = self.info(db, name)
        return info.pk if info else ()

    def drops_ok(self, name: str, *, dropped_by: str, other: str) -> bool:
        """A column one side dropped must not hold changes from the other side."""
        base, new = self.info("base", name), self.info(dropped_by, name)
        if base is None or new is None:
            return True
        gone = [c for c in base.columns if c not in new.columns and c not in base.generated]
        if gone and self.data_differs(other, name, columns=gone):
            self.clash(name, f"column {', '.join(gone)} dropped on one side, changed on the other")
            return False
        return True

    def data_differs(self, db: str, name: str, columns: Sequence[str] | None = None) -> bool:
        base, new = self.info("base", name), self.info(db, name)
        if base is None or new is None:
            return (base is None) != (new is None)
        cols = [quote(c) for c in (columns or [c for c in base.columns if c in new.columns
                                                 and c not in base.generated])]
        if not cols:
            return False
        key = [quote(c) for c in base.pk] or [base.rowid_name]
        sel = ", ".join(key + cols)
        t = quote(name)
        for a, b in ((db, "base"), ("base", db)):
            q = f"SELECT {sel} FROM {quote(a)}.{t} EXCEPT SELECT {sel} FROM {quote(b)}.{t} LIMIT 1"
            if self.conn.execute(q).fetchone() is not None:
                return True
        return False

    def others(self) -> None:
        """Indexes, triggers and views: three-way on their SQL, by name."""
        names = {n for side in (self.b, self.o, self.t) for n, e in side.items() if e.type != "table"}
        rebuilt = set(self.plan.rebuild) | set(self.plan.take)
        for name in sorted(names):
            b, o, t = (s.get(name) for s in (self.b, self.o, self.t))
            bs, os_, ts = (e.sql if e else None for e in (b, o, t))
            if os_ == ts or ts == bs:
                wanted = o
            elif os_ == bs:
                wanted = t
            else:
                self.clash(name, f"{(o or t or b).type} changed differently on both sides")  # type: ignore[union-attr]
                continue
            on = (wanted or o or t or b).tbl_name  # type: ignore[union-attr]
            if wanted is not o or (on in rebuilt and wanted is not None):
                self.plan.objects[name] = (o, wanted)

    def clash(self, name: str, what: str) -> None:
        self.clashes.append((name, what))



def plan(conn: apsw.Connection) -> Plan:
    """The plan for merging ``theirs`` into ``main`` against ``base`` (all attached to *conn*)."""
    return Planner(conn).run()


@contextlib.contextmanager
def conformed(conn: apsw.Connection, plan: Plan, where: Path) -> Iterator[None]:
    """Private databases holding a side's rows in another side's schema of the same table:
    the comparisons then see one shape (a column added reads as its default)."""
    made: list[tuple[str, str]] = []
    try:
        for src, tables in sorted(plan.conform.items()):
            fd, tmp = tempfile.mkstemp(prefix=".tmp-merge-", suffix=".db", dir=where)
            os.close(fd)
            made.append(("conf_" + src, tmp))
            side = open_private(tmp)
            try:
                attach(side, _file_of(conn, src), "src")
                for table, shape_of in tables:
                    _conform_one(conn, side, src, table, shape_of)
            finally:
                side.close()
            attach(conn, tmp, "conf_" + src)
        yield
    finally:
        for schema, tmp in made:
            with contextlib.suppress(apsw.Error):
                detach(conn, schema)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _file_of(conn: apsw.Connection, db: str) -> str:
    return conn.db_filename(db)


def _conform_one(conn: apsw.Connection, side: apsw.Connection, src: str, table: str, shape_of: str) -> None:
    sql = conn.execute(
        f"SELECT sql FROM {quote(shape_of)}.sqlite_schema WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()[0]
    side.execute(sql)
    target = stored(classify_tables(side).tracked[table])
    have = classify_tables(conn, src).tracked.get(table)
    if have is None:
        return  # the source side has no such table: conformed, it is empty
    common = [c for c in target if c in have.columns and c not in have.generated]
    rowid = [] if have.without_rowid or not common else [have.rowid_name]
    cols = ", ".join(quote(c) for c in rowid + common)
    side.execute(f"INSERT INTO main.{quote(table)} ({cols}) SELECT {cols} FROM src.{quote(table)}")
