"""A randomized round trip (issue 10, "Done when"): random schemas with odd names, generated
columns (VIRTUAL and STORED), NULL keys, text that isn't UTF-8, BLOBs and ±inf/-0.0; a few
commits of random inserts, updates (type-only ones too: 7 -> 7.0, 0.0 -> -0.0) and deletes.

Then every commit checks out exactly (``dump_state``, generated columns included, and a clean
status), and the diff of each pair of consecutive commits (and first -> last) reports exactly the
rows that changed: the same keys as added/modified/removed as the two states say, every from_/to_
value with its SQLite type, and the same counts in ``summary()`` and in the commit's counts.

The oracle knows nothing of dbvers: it reads both states with the stdlib sqlite3 module and
matches rows the way SQL does (the integer key, the rowid of a keyless table, else the primary
key compared with ``IS``, so 7 and 7.0 are one key; a key holding a NULL identifies no row, so
such a row matches only at its own rowid). The generator keeps keys holding a NULL unique on each
side, so that a diff's rows (which don't show the hidden rowid) are told apart by their keys.
"""

from __future__ import annotations

import configparser
import math
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import dump_state, execute, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbvers
from dbvers.errors import NothingToCommitError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
INF = float("inf")

# Text that isn't UTF-8 goes into every kind of table, and diffs holding it are checked
# (test_commit_of_invalid_utf8_text_in_keyed_rowid_table, test_diff_of_invalid_utf8_text).
INVALID_UTF8_WORKS = True
# A generated column that turns a REAL into text (hex(), length(), || '') is computed by
# apsw's SQLite (3.54: 17 significant digits) where a diff reads a VIRTUAL one, while the
# user's SQLite (stdlib, 3.40: 15 digits) computes it in their database: the guide's "What is
# versioned" says so (test_diff_of_virtual_generated_column_is_computed_by_dbvers_sqlite).
# STORED ones are the user's SQLite's everywhere (test_stored_generated_real_as_text_checks_out_
# exactly). While False, VIRTUAL generated expressions don't turn REALs into text.
REAL_AS_TEXT_AGREES = False
# A diff of a table with generated columns reports wrong values and types (the generated
# values, and base values beside them): see test_diff_of_generated_column_is_exact. While
# False, such tables' diffs are checked only for their counts (checkout is checked fully).
GENERATED_DIFF_EXACT = True
# Rows whose key holds a NULL are matched on the rowid by commit, on the key by the diff: a key
# changed in place is one update to commit but one removed and one added row to the diff (and a
# NULL-keyed row deleted and another inserted the other way round): see
# test_commit_counts_of_null_key_change_agree_with_diff. While False, commit counts of such a
# table are not compared in such a commit.
NULL_KEY_COUNTS_AGREE = True
# An INSERT OR REPLACE in a rowid table keyed on other columns gives the row a new rowid: commit
# counts and the diff agree on it (test_hidden_rowid_move_alone_is_no_change). While False, commit
# counts of such a table are not compared in a commit that made such a replace. (A replace that
# leaves every value as it was moves only the hidden rowid, which dbvers doesn't version, so the
# generator makes none: Work.run(values_change=True).)
REPLACE_COUNTS_AGREE = True
# Diff.to_sql gives a replaced row the new rowid B has (test_to_sql_keeps_rowid_of_replaced_row).
# While False, to_sql's result is compared without those hidden rowids when such a replace happened.
TO_SQL_KEEPS_HIDDEN_ROWIDS = True
# A column named "commit" is generated too (test_diff_of_column_named_commit): dbvers's own
# columns give way (issue 10 item 9).
COMMIT_COLUMN_WORKS = True

TABLE_NAMES = ["t", 'odd "name"', "tåble ü", "commit", "from_x", "diff_type", "with space", "select"]
COLUMN_NAMES = ["a", "b c", 'q"t', "ünï 漢", "from_x", "to_x", "diff_type", "commit", "author",
                "message", "timestamp", "it's", "rowid", "[br]", "x.y", "order"]
if not COMMIT_COLUMN_WORKS:
    COLUMN_NAMES.remove("commit")
AFFINITIES = ["INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC", "", "VARCHAR(3)", "DOUBLE", "INT8"]
KINDS = ["ipk", "comp", "nullpk", "keyless", "wr"]


def text(b: bytes) -> str:
    """SQLite text with exactly these bytes, as Python sees it (surrogateescape)."""
    return b.decode("utf-8", "surrogateescape")


BAD = [text(b"\xc3\x28\xff\x41"), text(b"\xff"), text(b"ok\xe2\x82"), text(b"\xed\xa0\x80")]
SPECIAL: list[Any] = [
    None, 0, 1, -1, 7, 7.0, 0.0, -0.0, INT64_MAX, INT64_MIN, INF, -INF, 5e-324, 1e308, -1e-300,
    2.5, 2.0**53, 2**53 + 1, "", "7", "7.0", "1e3", "\x00a", "\x1b[31mred\r", "tab\tnl\n\x7f", "zoë",
    "🦆", *BAD, b"", b"\x00", b"\xff\xfe", b"7",
]
values = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(-3, 3).flatmap(lambda i: st.sampled_from([i, float(i), str(i)])),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.floats(allow_nan=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=5),
    st.binary(max_size=5).map(text),  # any bytes as text: often not UTF-8
    st.binary(max_size=5),
)
text_keys = st.sampled_from(["a", "b", "", "é", "7", BAD[0], BAD[1], "x y"])
untyped_keys = st.sampled_from([7, 7.0, "7", 0.0, -0.0, 1, "a", b"a", INF, BAD[1]])
int_keys = st.one_of(st.integers(-3, 20), st.sampled_from([INT64_MAX, INT64_MIN]))


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(v: Any) -> tuple[str, tuple[Any, ...]]:
    """SQL for *v* and its parameters: text and blobs as hex literals (so the bytes are exact,
    valid UTF-8 or not), numbers bound as parameters (so -0.0, ±inf and int64's ends are too)."""
    if v is None:
        return "NULL", ()
    if isinstance(v, str):
        return f"CAST(X'{v.encode('utf-8', 'surrogateescape').hex()}' AS TEXT)", ()
    if isinstance(v, bytes):
        return f"X'{v.hex()}'", ()
    return "?", (v,)


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    conn.text_factory = text
    return conn


# -- typed values --------------------------------------------------------------------------
Typed = tuple[str, Any]


def typed(v: Any) -> Typed:
    """A value with its SQLite storage class: 7, 7.0 and '7' differ, so do 0.0 and -0.0."""
    if v is None:
        return ("null", None)
    if isinstance(v, bool):
        raise AssertionError(f"a bool is no SQLite value: {v!r}")
    if isinstance(v, int):
        return ("integer", v)
    if isinstance(v, float):
        if math.isnan(v):
            return ("null", None)  # pandas' missing value in a float column
        # hex() is exact and keeps the sign of zero ('-0x0.0p+0' iff math.copysign(1, v) < 0)
        return ("real", v.hex())
    if isinstance(v, str):
        return ("text", v)
    if isinstance(v, bytes):
        return ("blob", v)
    raise AssertionError(f"unexpected value {v!r} of type {type(v)}")


def cell(v: Any) -> Typed:
    """A DataFrame cell back as a typed SQLite value (Int64 -> int, Float64 -> float, NA -> NULL)."""
    import numpy as np
    import pandas as pd

    if v is pd.NA or v is None:
        return ("null", None)
    if isinstance(v, np.bool_):
        raise AssertionError(f"a bool is no SQLite value: {v!r}")
    if isinstance(v, np.integer):
        return ("integer", int(v))
    if isinstance(v, np.floating):
        return typed(float(v))
    return typed(v)


def norm_key(t: Typed) -> tuple[Any, ...]:
    """A key value as SQL's ``IS`` compares it: 7 = 7.0 and 0.0 = -0.0, text and blobs apart."""
    kind, v = t
    if kind == "integer":
        return ("num", Fraction(v))
    if kind == "real":
        f = float.fromhex(v)
        return ("num", Fraction(f)) if math.isfinite(f) else ("num", v)
    return (kind, v)


def is_bad_text(t: Typed) -> bool:
    if t[0] != "text":
        return False
    try:
        t[1].encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- schemas ---------------------------------------------------------------------------------
@dataclass
class Table:
    name: str
    kind: str
    keys: list[tuple[str, str]]  # (name, declared type)
    cols: list[tuple[str, str]]  # value columns
    gen: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, type, expr, VIRTUAL|STORED

    @property
    def bad_text(self) -> bool:
        """Whether text that isn't UTF-8 goes into this table (see INVALID_UTF8_WORKS)."""
        return INVALID_UTF8_WORKS or self.kind not in ("comp", "nullpk")

    def values(self, s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return s if self.bad_text else s.filter(lambda v: not is_bad_text(typed(v)))

    @property
    def rowid_table(self) -> bool:
        return self.kind != "wr"

    @property
    def all_names(self) -> list[str]:
        return [n for n, _ in self.keys] + [n for n, _ in self.cols] + [g[0] for g in self.gen]

    @property
    def rowid(self) -> str:
        """A name of the rowid that no column hides."""
        return next(n for n in ("rowid", "_rowid_", "oid") if n not in self.all_names)

    def create_sql(self) -> str:
        defs = []
        for i, (n, t) in enumerate(self.keys):
            if self.kind == "ipk":
                defs.append(f"{q(n)} INTEGER PRIMARY KEY")
            elif self.kind == "nullpk":
                defs.append(f"{q(n)} {t} PRIMARY KEY")
            else:
                defs.append(f"{q(n)} {t}".rstrip())
            del i
        defs += [f"{q(n)} {t}".rstrip() for n, t in self.cols]
        defs += [f"{q(n)} {t} GENERATED ALWAYS AS ({e}) {how}".replace("  ", " ") for n, t, e, how in self.gen]
        if self.kind in ("comp", "wr"):
            defs.append("PRIMARY KEY (" + ", ".join(q(n) for n, _ in self.keys) + ")")
        return (f"CREATE TABLE {q(self.name)}(" + ", ".join(defs) + ")"
                + (" WITHOUT ROWID" if self.kind == "wr" else ""))

    def key_values(self, i: int) -> st.SearchStrategy[Any]:
        decl = self.keys[i][1]
        if self.kind == "ipk":
            return st.one_of(st.none(), int_keys)
        base = self.values(text_keys) if "TEXT" in decl else int_keys if "INT" in decl else self.values(untyped_keys)
        if self.kind == "wr":
            return base  # NOT NULL in a WITHOUT ROWID table's key
        return st.integers(0, 4).flatmap(lambda n: st.none() if n == 0 else base)

    def identity_exprs(self) -> list[str]:
        """How a row is named in SQL (for picking one)."""
        return [q(n) for n, _ in self.keys] if self.kind == "wr" else [self.rowid]


@st.composite
def tables(draw: Callable[..., Any], name: str) -> Table:
    kind = draw(st.sampled_from(KINDS), label="kind")
    names = draw(st.lists(st.sampled_from(COLUMN_NAMES), min_size=4, max_size=7, unique=True))
    nkeys = {"ipk": 1, "nullpk": 1, "keyless": 0, "comp": 2, "wr": draw(st.integers(1, 2))}[kind]
    key_names, rest = names[:nkeys], names[nkeys:]
    if kind == "ipk":
        keys = [(key_names[0], "INTEGER")]
    elif kind == "nullpk":
        keys = [(key_names[0], draw(st.sampled_from(["TEXT", "", "REAL", "NUMERIC"])))]
    elif kind == "comp":
        keys = [(n, "TEXT") for n in key_names]
    else:
        keys = [(n, draw(st.sampled_from(["TEXT", "INTEGER", ""]))) for n in key_names]
    ngen = draw(st.integers(0, 2))
    gen_names = [n for n in rest[1:] if n != "rowid"][:ngen]
    cols = [(n, draw(st.sampled_from(AFFINITIES))) for n in rest if n not in gen_names]
    gen = []
    for i, g in enumerate(gen_names):
        src = q(draw(st.sampled_from([n for n, _ in [*keys, *cols]])))
        exprs = [f"hex({src})", f"typeof({src})", f"coalesce({src}, -0.0)", f"length({src})"]
        if INVALID_UTF8_WORKS or kind not in ("comp", "nullpk"):
            exprs.append(f"{src} || ''")  # a blob's bytes as text: often not UTF-8
        expr = draw(st.sampled_from(exprs))
        decl = draw(st.sampled_from(["", "TEXT", "INTEGER", "REAL"]))
        how = "VIRTUAL" if i == 0 else "STORED"
        if len(gen_names) == 1:
            how = draw(st.sampled_from(["VIRTUAL", "STORED"]))
        if (not REAL_AS_TEXT_AGREES and how == "VIRTUAL" and "typeof" not in expr
                and ("coalesce" not in expr or decl == "TEXT")):
            # these turn a REAL into text, which two SQLite versions spell differently
            expr = f"CASE WHEN typeof({src}) = 'real' THEN 'real' ELSE {expr} END"
        gen.append((g, decl, expr, how))
    return Table(name, kind, keys, cols, gen)


# -- the working database ----------------------------------------------------------------------
class Work:
    def __init__(self, db: Path, schema: list[Table]) -> None:
        self.db = db
        self.schema = schema
        self.replaced: set[str] = set()  # tables an INSERT OR REPLACE changed, this batch

    def run(self, sql: str, params: tuple[Any, ...], t: Table, values_change: bool = False) -> bool:
        """One statement in its own transaction; False (rolled back) if SQLite refused it or it
        made two keys holding a NULL equal, or with *values_change* if it left every row's values
        as they were (it moved a hidden rowid only)."""
        conn = connect(self.db)
        try:
            rows = f"SELECT * FROM {q(t.name)}"
            before = sorted(map(repr, conn.execute(rows))) if values_change else None
            conn.execute(sql, params)
            if before is not None and sorted(map(repr, conn.execute(rows))) == before:
                conn.rollback()
                return False
            if t.kind in ("comp", "nullpk"):
                keys = ", ".join(q(n) for n, _ in t.keys)
                if conn.execute(f"SELECT 1 FROM {q(t.name)} GROUP BY {keys} HAVING count(*) > 1").fetchone():
                    conn.rollback()
                    return False
            conn.commit()
            return True
        except sqlite3.Error:
            conn.rollback()
            return False
        finally:
            conn.close()

    def pick_row(self, data: st.DataObject, t: Table) -> str | None:
        """A WHERE clause for one existing row of *t*."""
        conn = connect(self.db)
        try:
            n = conn.execute(f"SELECT count(*) FROM {q(t.name)}").fetchone()[0]
        finally:
            conn.close()
        if not n:
            return None
        k = ", ".join(t.identity_exprs())
        off = data.draw(st.integers(0, n - 1), label="row")
        return f"({k}) IN (SELECT {k} FROM {q(t.name)} ORDER BY {k} LIMIT 1 OFFSET {off})"

    def insert(self, data: st.DataObject, t: Table, verb: str = "INSERT") -> bool:
        names, vals = [], []
        for i, (n, _) in enumerate(t.keys):
            names.append(n)
            vals.append(data.draw(t.key_values(i), label="key"))
        for n, _ in t.cols:
            if data.draw(st.integers(0, 5), label="set?"):
                names.append(n)
                vals.append(data.draw(t.values(values), label="value"))
        sqls, params = zip(*(literal(v) for v in vals), strict=True) if vals else ((), ())
        cols = ", ".join(q(n) for n in names)
        sql = (f"{verb} INTO {q(t.name)}({cols}) VALUES ({', '.join(sqls)})" if names
               else f"{verb} INTO {q(t.name)} DEFAULT VALUES")
        return self.run(sql, tuple(p for ps in params for p in ps), t, values_change=verb != "INSERT")

    def update(self, data: st.DataObject, t: Table) -> None:
        where = self.pick_row(data, t)
        if where is None:
            return
        settable = [*(n for n, _ in t.cols), *(n for n, _ in t.keys if data.draw(st.integers(0, 3)) == 0)]
        if not settable:
            return
        cols = data.draw(st.lists(st.sampled_from(settable), min_size=1, max_size=2, unique=True))
        sets, params = [], []
        for c in cols:
            i = next((i for i, (n, _) in enumerate(t.keys) if n == c), None)
            v = data.draw(t.values(values) if i is None else t.key_values(i), label="value")
            s, p = literal(v)
            sets.append(f"{q(c)} = {s}")
            params += p
        self.run(f"UPDATE {q(t.name)} SET {', '.join(sets)} WHERE {where}", tuple(params), t)

    def retype(self, data: st.DataObject, t: Table) -> None:
        """An update that changes a value's type or sign only: 7 <-> 7.0, 0.0 <-> -0.0."""
        where = self.pick_row(data, t)
        candidates = [n for n, _ in [*t.cols, *t.keys]]
        if where is None or not candidates:
            return
        c = data.draw(st.sampled_from(candidates), label="column")
        conn = connect(self.db)
        try:
            v = conn.execute(f"SELECT {q(c)} FROM {q(t.name)} WHERE {where}").fetchone()[0]
        finally:
            conn.close()
        if isinstance(v, int) and abs(v) <= 2**53:
            new: Any = float(v)
        elif isinstance(v, float) and v == 0.0:
            new = -v
        elif isinstance(v, float) and v.is_integer() and abs(v) <= 2**53:
            new = int(v)
        else:
            return
        self.run(f"UPDATE {q(t.name)} SET {q(c)} = ? WHERE {where}", (new,), t)

    def replace(self, data: st.DataObject, t: Table) -> None:
        """INSERT OR REPLACE: a row of a rowid table keyed on other columns gets a new rowid."""
        if self.insert(data, t, "INSERT OR REPLACE"):
            self.replaced.add(t.name)

    def move(self, data: st.DataObject, t: Table) -> None:
        """A new rowid for a row of a keyless table (another row) or a new integer key. (Not for
        a rowid table keyed on other columns: the guide says dbvers doesn't record that.)"""
        where = self.pick_row(data, t)
        if where is not None and t.kind in ("keyless", "ipk"):
            new = data.draw(st.one_of(st.integers(-3, 30), st.sampled_from([INT64_MAX, INT64_MIN])))
            self.run(f"UPDATE {q(t.name)} SET {t.rowid} = ? WHERE {where}", (new,), t)

    def delete(self, data: st.DataObject, t: Table) -> None:
        where = self.pick_row(data, t)
        if where is not None:
            self.run(f"DELETE FROM {q(t.name)} WHERE {where}", (), t)

    def batch(self, data: st.DataObject, n_min: int = 1) -> None:
        self.replaced = set()
        for _ in range(data.draw(st.integers(n_min, 7), label="ops")):
            t = data.draw(st.sampled_from(self.schema), label="table")
            op = data.draw(st.sampled_from(["insert", "insert", "update", "retype", "delete", "replace", "move"]),
                           label="op")
            getattr(self, op)(data, t)


# -- the oracle ------------------------------------------------------------------------------------
Rows = dict[tuple[Any, ...], dict[str, Typed]]


def output_columns(t: Table) -> list[str]:
    """The table's columns as a diff names them: the key first (the rowid for a keyless table)."""
    first = [n for n, _ in t.keys] if t.kind != "keyless" else [t.rowid]
    return first + [n for n in t.all_names if n not in first]


def read_rows(db: Path, t: Table) -> Rows:
    """Every row of *t* by identity, each column (generated ones too) with its type."""
    cols = output_columns(t)
    conn = connect(db)
    try:
        names = [r[1] for r in conn.execute(f"PRAGMA table_xinfo({q(t.name)})") if r[6] in (0, 2, 3)]
        assert sorted(names) == sorted(t.all_names)
        sel = ", ".join(n if t.kind == "keyless" and n == t.rowid else q(n) for n in cols)
        out: Rows = {}
        for rowid, *r in conn.execute(f"SELECT {t.rowid if t.rowid_table else 'NULL'}, {sel} FROM {q(t.name)}"):
            row = {c: typed(v) for c, v in zip(cols, r, strict=True)}
            ident = identity(t, row, rowid)
            assert ident not in out, f"two rows of {t.name} have the key {ident}"
            out[ident] = row
        return out
    finally:
        conn.close()


def identity(t: Table, row: dict[str, Typed], rowid: int | None = None) -> tuple[Any, ...]:
    """The key as SQL compares it; with *rowid*, a key holding NULL gets the rowid after it: such
    a key identifies no row (NULLs are distinct), a row holding one is itself only at its rowid."""
    first = [n for n, _ in t.keys] if t.kind != "keyless" else [t.rowid]
    key = tuple(norm_key(row[n]) for n in first)
    if rowid is not None and t.kind in ("comp", "nullpk") and ("null", None) in key:
        return (*key, ("rowid", rowid))
    return key


def diff_identity(k: tuple[Any, ...]) -> tuple[Any, ...]:
    """*k* without the rowid ``identity`` puts after a key holding NULL (a diff doesn't show the
    hidden rowid; the generator keeps such keys unique on each side, so this stays unique)."""
    return k[:-1] if k and k[-1][0] == "rowid" else k


@dataclass
class Expected:
    added: Rows
    removed: Rows
    modified: dict[tuple[Any, ...], tuple[dict[str, Typed], dict[str, Typed]]]

    @property
    def counts(self) -> dbvers.TableCounts:
        return dbvers.TableCounts(len(self.added), len(self.modified), len(self.removed))

    def rows(self) -> list[dict[str, Typed]]:
        return [*self.added.values(), *self.removed.values(), *(r for pair in self.modified.values() for r in pair)]


def expected(a: Rows, b: Rows) -> Expected:
    return Expected(
        added={diff_identity(k): b[k] for k in b.keys() - a.keys()},
        removed={diff_identity(k): a[k] for k in a.keys() - b.keys()},
        modified={diff_identity(k): (a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k]},
    )


NULL_ROW: Callable[[list[str]], dict[str, Typed]] = lambda cols: {c: ("null", None) for c in cols}  # noqa: E731


def check_table_diff(d: Any, t: Table, want: Expected, label: str) -> None:
    cols = output_columns(t)
    df = d.to_pandas(t.name)
    wanted = ["diff_type", *(f"{s}_{c}" for c in cols for s in ("from", "to"))]
    names = list(df.columns)
    # dbvers's own columns (the commits) come after the table's; a table column named like one
    # of them is issue 10 item 9 (test_diff_column_named_commit), so find the table's by position.
    assert sorted(names[:len(wanted)]) == sorted(wanted), (label, names)
    pos = {n: i for i, n in enumerate(names[:len(wanted)])}
    got: dict[tuple[str, tuple[Any, ...]], tuple[dict[str, Typed], dict[str, Typed]]] = {}
    columns = {n: df.iloc[:, i].tolist() for n, i in pos.items()}
    for r in range(len(df)):
        kind = columns["diff_type"][r]
        old = {c: cell(columns[f"from_{c}"][r]) for c in cols}
        new = {c: cell(columns[f"to_{c}"][r]) for c in cols}
        ident = identity(t, old if kind == "removed" else new)
        assert (kind, ident) not in got, f"{label}: {kind} {ident} reported twice"
        got[(kind, ident)] = (old, new)
    want_keys = ({("added", k) for k in want.added} | {("removed", k) for k in want.removed}
                 | {("modified", k) for k in want.modified})
    assert set(got) == want_keys, (
        f"{label}: keys reported {sorted(got, key=repr)} != changed {sorted(want_keys, key=repr)}"
        f" in {t.create_sql()}: {want} {got}")
    for (kind, k), (old, new) in got.items():
        if kind == "added":
            assert (old, new) == (NULL_ROW(cols), want.added[k]), (label, kind, k, old, new, want.added[k])
        elif kind == "removed":
            assert (old, new) == (want.removed[k], NULL_ROW(cols)), (label, kind, k, old, new, want.removed[k])
        else:
            assert (old, new) == want.modified[k], (label, kind, k, old, new, want.modified[k])


def state_diff(want: dict[str, Any], got: dict[str, Any]) -> str:
    """What differs between two dumps, briefly."""
    out = []
    for part in ("schema", "pragmas"):
        if want[part] != got[part]:
            out.append(f"{part}: {want[part]!r} != {got[part]!r}")
    for t in sorted(set(want["tables"]) | set(got["tables"])):
        w, g = want["tables"].get(t, []), got["tables"].get(t, [])
        if w != g:
            out.append(f"{t!r}: missing {[r for r in w if r not in g]!r}, extra {[r for r in g if r not in w]!r}")
    return "; ".join(out)


def set_config(repo: dbvers.Repo, section: str, **values: str) -> dbvers.Repo:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(repo.store_dir / "config", encoding="utf-8")
    if not cfg.has_section(section):
        cfg.add_section(section)
    for k, v in values.items():
        cfg.set(section, k, v)
    with open(repo.store_dir / "config", "w", encoding="utf-8") as f:
        cfg.write(f)
    return dbvers.open(repo.path)


def roundtrip(data: st.DataObject) -> None:
    n_tables = data.draw(st.integers(1, 3), label="tables")
    tnames = data.draw(st.lists(st.sampled_from(TABLE_NAMES), min_size=n_tables, max_size=n_tables, unique=True))
    schema = [data.draw(tables(n), label="table") for n in tnames]
    tmp = Path(tempfile.mkdtemp(prefix="dbvers-roundtrip-"))
    try:
        db = tmp / "work.db"
        execute(db, ";\n".join(t.create_sql() for t in schema))
        work = Work(db, schema)
        work.batch(data)
        repo = dbvers.init(db)
        if data.draw(st.booleans(), label="long chains"):
            # keyframes only where needed, so checkouts replay patchsets
            repo = set_config(repo, "snapshot", max_patch_ratio="1000000", max_commits="100000")
        first = repo.head.commit
        assert first is not None
        states = [(first, dump_state(db), {t.name: read_rows(db, t) for t in schema}, None)]
        replaced: dict[str, set[str]] = {}
        for i in range(data.draw(st.integers(2, 4), label="commits")):
            work.batch(data)
            c = repo.commit(f"step {i}", allow_empty=True)
            replaced[c.id] = work.replaced
            assert repo.status().clean, f"step {i}: dirty right after its commit"
            states.append((c.id, dump_state(db), {t.name: read_rows(db, t) for t in schema}, c))

        # every commit checks out exactly, from caches and (now and then) without them
        copies: dict[str, Path] = {}
        for oid, want, _, _ in [*states[::-1], *states[::2]]:
            if data.draw(st.booleans(), label="drop caches"):
                for p in repo.cache_dir.glob("*.db"):
                    p.unlink()
            repo.checkout(oid)
            got = dump_state(db)
            assert got == want, f"checkout of {oid[:10]} is not exact: {state_diff(want, got)}"
            assert repo.status().clean, f"dirty after checkout of {oid[:10]}"
            copies[oid] = tmp / f"{oid}.db"  # a copy for to_sql to start from (sqlite3's backup)
            with sqlite3.connect(db) as src, sqlite3.connect(copies[oid]) as dst:
                src.backup(dst)
            src.close()
            dst.close()

        pairs = [(states[i], states[i + 1]) for i in range(len(states) - 1)]
        pairs.append((states[0], states[-1]))
        for a_state, b_state in pairs:
            (a_id, _, a_rows, _), (b_id, _, b_rows, c) = a_state, b_state
            consecutive = c is not None and c.parents == (a_id,)
            wants = {t.name: expected(a_rows[t.name], b_rows[t.name]) for t in schema}
            span = states[states.index(a_state):states.index(b_state) + 1]
            if not INVALID_UTF8_WORKS and any(
                is_bad_text(v) for s in span for rows in s[2].values() for r in rows.values() for v in r.values()
            ):
                continue  # issue 10 item 2: test_diff_of_invalid_utf8_text
            label = f"diff {a_id[:8]}..{b_id[:8]}"
            with repo.diff(a_id, b_id) as d:
                # the SQL that turns A into B does
                script = "BEGIN;\n" + "\n".join(d.to_sql()) + "\nCOMMIT;\n"
                target = tmp / "to_sql.db"
                shutil.copy(copies[a_id], target)
                conn = sqlite3.connect(target)
                conn.executescript(script)
                conn.close()
                got_rows = {t.name: read_rows(target, t) for t in schema}
                assert got_rows == b_rows, f"{label}: to_sql gives other rows"
                moved = any(t.kind in ("comp", "nullpk") and t.name in replaced.get(s[0], ())
                            for s in span for t in schema)
                if TO_SQL_KEEPS_HIDDEN_ROWIDS or not moved:  # test_to_sql_keeps_rowid_of_replaced_row
                    got = dump_state(target)
                    assert got == b_state[1], f"{label}: to_sql: {state_diff(b_state[1], got)}"
                target.unlink()
                summary = {r["table"]: dbvers.TableCounts(r["added"], r["modified"], r["removed"])
                           for r in d.summary().to_dict("records")}
                for t in schema:
                    want = wants[t.name]
                    if GENERATED_DIFF_EXACT or not t.gen:
                        check_table_diff(d, t, want, f"{label} {t.name!r}")
                    assert summary.get(t.name, dbvers.TableCounts()) == want.counts, (label, t.name, "summary")
                    null_key_moved = any(("null", None) in k for k in [*want.added, *want.removed, *want.modified])
                    if not NULL_KEY_COUNTS_AGREE and t.kind in ("comp", "nullpk") and null_key_moved:
                        consecutive = False  # test_commit_counts_of_null_key_change_agree_with_diff
                    if not REPLACE_COUNTS_AGREE and t.kind in ("comp", "nullpk") and t.name in replaced[b_id]:
                        consecutive = False  # test_commit_counts_of_replace_agree_with_diff
                    if consecutive:
                        assert c.counts.get(t.name, dbvers.TableCounts()) == want.counts, (label, t.name, "commit", c.counts.get(t.name), want.counts, t.kind, want)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SETTINGS: dict[str, Any] = {
    # The same examples on every run: CI must not go red by chance. Longer hunts (a seed of
    # their own, max_examples in the hundreds) are run by hand.
    "derandomize": True,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}


@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_commit_checkout_diff_roundtrip(data: st.DataObject) -> None:
    roundtrip(data)


# -- bugs the property test found (it avoids each narrowly while its flag above is False) ------
def test_diff_shows_type_and_sign_only_changes(tmp_path: Path) -> None:
    """Found by the property test: rows are matched with SQL's '=', so a key changed in type
    only (1 -> 1.0) or in sign only (0.0 -> -0.0) was invisible to the diff, and so was a
    0.0 -> -0.0 value, though commit records (and counts) all three."""
    db = tmp_path / "z.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, c); INSERT INTO t VALUES (1, 0.0);"
                "CREATE TABLE k(k PRIMARY KEY, v); INSERT INTO k VALUES (1, 'x'), (0.0, 'y')")
    repo = dbvers.init(db)
    execute(db, "UPDATE t SET c = -0.0; UPDATE k SET k = 1.0 WHERE k = 1; UPDATE k SET k = -0.0 WHERE k = 0")
    c = repo.commit("type and sign")
    assert c.counts == {"k": dbvers.TableCounts(0, 2, 0), "t": dbvers.TableCounts(0, 1, 0)}
    with repo.diff("HEAD~1", "HEAD") as d:
        assert d.counts() == c.counts
        got = {r["table"]: (r["added"], r["modified"], r["removed"]) for r in d.summary().to_dict("records")}
        assert got == {"k": (0, 2, 0), "t": (0, 1, 0)}
        t = d.to_pandas("t")
        assert [typed(v) for v in t["to_c"]] == [typed(-0.0)]
        k = d.to_pandas("k").sort_values("to_v")
        assert [(cell(a), cell(b)) for a, b in zip(k["from_k"], k["to_k"], strict=True)] == [
            (typed(1), typed(1.0)), (typed(0.0), typed(-0.0))]
        script = "\n".join(d.to_sql(["t", "k"]))
    want = dump_state(db)
    repo.checkout("HEAD~1")
    execute(db, script)  # the SQL that turns A into B does, type and sign included
    assert dump_state(db) == want


def test_diff_of_virtual_generated_column_is_computed_by_dbvers_sqlite(tmp_path: Path) -> None:
    """The contract of the guide's "What is versioned": a VIRTUAL generated column is computed
    whenever it is read, so a diff shows it as dbvers's SQLite (apsw's) computes it from the
    committed stored columns, which differs from the user's SQLite (the sqlite3 module's) only
    where SQLite versions differ: a REAL turned into text has 17 significant digits in apsw's
    SQLite (3.54), 15 in 3.40. The stored values, the status and checkouts are exact."""
    db = tmp_path / "g.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, c, g AS (length(c)) VIRTUAL);"
                "INSERT INTO t(id, c) VALUES (1, 1)")
    repo = dbvers.init(db)
    real = -6.263246677018408e209
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO t(id, c) VALUES (2, ?), (3, 'abc')", (real,))
    conn.commit()
    conn.close()
    repo.commit("real")
    want = dump_state(db)
    ours = sqlite3.connect(":memory:").execute("SELECT length(?)", (real,)).fetchone()[0]
    theirs = apsw.Connection(":memory:").execute("SELECT length(?)", (real,)).fetchone()[0]
    df = repo.diff("HEAD~1", "HEAD").to_pandas("t").sort_values("to_id")
    assert [cell(v) for v in df["to_c"]] == [typed(real), typed("abc")]  # the stored column: exact
    assert df["to_g"].tolist() == [theirs, 3]  # computed: by dbvers's SQLite
    if (sqlite3.sqlite_version, apsw.sqlite_lib_version()) == ("3.40.1", "3.54.1"):
        assert (ours, theirs) == (22, 24)  # (the difference the guide describes)
    assert repo.status().clean
    repo.checkout("HEAD~1")
    repo.checkout("main")
    assert dump_state(db) == want


def test_commit_of_invalid_utf8_text_in_keyed_rowid_table(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    execute(db, "CREATE TABLE t(k TEXT PRIMARY KEY, v)")
    repo = dbvers.init(db)
    execute(db, "INSERT INTO t VALUES ('a', CAST(x'c328ff41' AS TEXT))")
    repo.commit("bad text")
    want = dump_state(db)
    repo.checkout("HEAD~1")
    repo.checkout("main")
    assert dump_state(db) == want


def test_diff_of_invalid_utf8_text(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    repo = dbvers.init(db)
    execute(db, "INSERT INTO t VALUES (1, CAST(x'c328ff41' AS TEXT))")
    repo.commit("bad text")
    df = repo.diff("HEAD~1", "HEAD").to_pandas("t")
    assert [v.encode("utf-8", "surrogateescape") for v in df["to_v"]] == [b"\xc3\x28\xff\x41"]


def test_diff_of_column_named_commit(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    execute(db, 'CREATE TABLE t(id INTEGER PRIMARY KEY, "commit")')
    repo = dbvers.init(db)
    execute(db, "INSERT INTO t VALUES (1, 'x')")
    repo.commit("row")
    df = repo.diff("HEAD~1", "HEAD").to_pandas("t")
    assert df.columns.is_unique
    assert df.iloc[:, :5].columns.tolist() == ["diff_type", "from_id", "to_id", "from_commit", "to_commit"]
    assert df.iloc[0, 4] == "x"


def test_stored_generated_real_as_text_checks_out_exactly(tmp_path: Path) -> None:
    """Found by the property test: checkout replays patches with apsw's SQLite (3.54), which
    computed a STORED generated column turning a REAL into text with 17 digits
    ('4.1903411858200894e-119') where the user's (the sqlite3 module's, 3.40) stored 15
    ('4.19034118582009e-119'). A replayed state's STORED columns are now computed by the user's
    SQLite, without firing triggers; a diff shows them as the state holds them."""
    db = tmp_path / "s.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, c, g AS (c || '') STORED); INSERT INTO t(id, c) VALUES (1, 1);"
                "CREATE TABLE log(n); CREATE TRIGGER t_up AFTER UPDATE ON t BEGIN INSERT INTO log VALUES (1); END;"
                "CREATE TRIGGER t_in AFTER INSERT ON t BEGIN INSERT INTO log VALUES (2); END")
    repo = set_config(dbvers.init(db), "snapshot", max_patch_ratio="1000000", max_commits="100000")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE t SET c = ? WHERE id = 1", (4.1903411858200894e-119,))
    conn.execute("INSERT INTO t(id, c) VALUES (2, ?)", (-6.263246677018408e209,))
    conn.commit()
    conn.close()
    repo.commit("reals")
    want = dump_state(db)
    assert want["tables"]["t"][0][-1] == ("text", "4.19034118582009e-119")
    repo.checkout("HEAD~1")
    for p in repo.cache_dir.glob("*.db"):
        p.unlink()
    repo.checkout("main")
    assert dump_state(db) == want
    assert repo.status().clean
    with repo.diff("HEAD~1", "HEAD") as d:
        assert d.to_pandas("t")["to_g"].tolist() == ["4.19034118582009e-119", "-6.26324667701841e+209"]


@pytest.mark.parametrize(("change", "want"), [
    # a key holding NULL changed in place: like any key change, the old key removed, the new added
    ("UPDATE t SET k2 = 'b' WHERE k2 = 'a'", dbvers.TableCounts(1, 0, 1)),
    ("UPDATE t SET k1 = 'x' WHERE k2 = 'a'", dbvers.TableCounts(1, 0, 1)),
    ("UPDATE t SET v = 2 WHERE k2 = 'a'", dbvers.TableCounts(0, 1, 0)),
    # NULLs are distinct in a key: a second (NULL, 'a') is a row of its own
    ("INSERT INTO t VALUES (NULL, 'a', 1)", dbvers.TableCounts(1, 0, 0)),
    # deleted and inserted again (a new rowid), with the same values or not: such a key
    # identifies no row (NULLs are distinct), so this is one row removed and another added
    ("DELETE FROM t WHERE k2 = 'a'; INSERT INTO t VALUES (NULL, 'a', 5)", dbvers.TableCounts(1, 0, 1)),
    ("DELETE FROM t WHERE k2 = 'a'; INSERT INTO t VALUES (NULL, 'a', 1)", dbvers.TableCounts(1, 0, 1)),
])
def test_commit_counts_of_null_key_change_agree_with_diff(tmp_path: Path, change: str,
                                                          want: dbvers.TableCounts) -> None:
    """Found by the property test: rows whose key holds a NULL were matched on their rowid by
    commit and on their key by the diff. Both now take such a row to be the same row only at
    its own rowid with the same key (the guide's "Tables without a primary key")."""
    db = tmp_path / "n.db"
    execute(db, "CREATE TABLE t(k1 TEXT, k2 TEXT, v, PRIMARY KEY (k1, k2));"
                "INSERT INTO t VALUES (NULL, 'a', 1), ('z', 'z', 9)")  # the second keeps rowids from being reused
    repo = set_config(dbvers.init(db), "snapshot", max_patch_ratio="1000000", max_commits="100000")
    execute(db, change)
    assert repo.status().changes.counts == {"t": want}
    c = repo.commit("key moved")
    assert c.counts == {"t": want}
    with repo.diff("HEAD~1", "HEAD") as d:
        assert d.counts() == c.counts
        assert d.summary()[["added", "modified", "removed"]].values.tolist() == [[want.inserts, want.updates, want.deletes]]
    state = dump_state(db)
    repo.checkout("HEAD~1")
    repo.checkout("main")
    assert dump_state(db) == state


@pytest.mark.parametrize("move", [
    "INSERT OR REPLACE INTO t VALUES ('a', 'x', 1)",  # the same values at a new rowid
    "DELETE FROM t WHERE k1 = 'a'; INSERT INTO t VALUES ('a', 'x', 1)",
])
def test_hidden_rowid_move_alone_is_no_change(tmp_path: Path, move: str) -> None:
    """A row of a rowid table keyed on other columns that gets a new hidden rowid and keeps
    every value is no change (the guide's "What is versioned"): status is clean, commit has
    nothing to commit, the diff is empty and --exit-code says so; beside a real change the
    commit counts what the diff shows. (The xfail this replaces: commit and diff disagreed.)"""
    db = tmp_path / "r.db"
    execute(db, "CREATE TABLE t(k1 TEXT, k2 TEXT, v, PRIMARY KEY (k1, k2)); CREATE TABLE u(x);"
                "INSERT INTO t VALUES ('a', 'x', 1), ('b', 'y', 2), (NULL, 'n', 2)")
    repo = dbvers.init(db)
    execute(db, move)
    assert repo.status().clean
    with pytest.raises(NothingToCommitError):
        repo.commit("same rows, new rowids")
    with repo.diff() as d:
        assert d.tables == [] and d.counts() == {}
    assert run_cli("diff", "--exit-code", cwd=tmp_path).returncode == 0
    execute(db, "INSERT INTO u VALUES (1); UPDATE t SET v = 3 WHERE k1 = 'b'")
    c = repo.commit("and a real change")
    assert c.counts == {"t": dbvers.TableCounts(0, 1, 0), "u": dbvers.TableCounts(1, 0, 0)}
    with repo.diff("HEAD~1", "HEAD") as d:
        assert d.counts() == c.counts


def test_to_sql_keeps_rowid_of_replaced_row(tmp_path: Path) -> None:
    """Found by the property test: to_sql updated a replaced row in place, so it kept A's
    hidden rowid, not the one INSERT OR REPLACE gave it in B (which checkout restores)."""
    db = tmp_path / "r.db"
    execute(db, "CREATE TABLE t(k TEXT PRIMARY KEY, v); INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', 3)")
    repo = dbvers.init(db)
    execute(db, "INSERT OR REPLACE INTO t VALUES ('a', 10); DELETE FROM t WHERE k = 'c';"
                "INSERT OR REPLACE INTO t VALUES ('b', 20)")
    repo.commit("new values, new rowids")
    want = dump_state(db)
    with repo.diff("HEAD~1", "HEAD") as d:
        script = "\n".join(d.to_sql(["t"]))
    repo.checkout("HEAD~1")
    execute(db, script)
    assert dump_state(db) == want


def test_to_sql_of_text_with_nul(tmp_path: Path) -> None:
    """Found by the property test: to_sql wrote text holding a NUL as a quoted literal, which
    SQLite ends at the NUL (and Python's executescript refuses)."""
    db = tmp_path / "n.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    repo = dbvers.init(db)
    execute(db, "INSERT INTO t VALUES (1, CAST(x'610062' AS TEXT))")
    repo.commit("nul")
    want = dump_state(db)
    with repo.diff("HEAD~1", "HEAD") as d:
        script = "\n".join(d.to_sql(["t"]))
    repo.checkout("HEAD~1")
    execute(db, script)
    assert dump_state(db) == want


@pytest.mark.parametrize("keys", [("7", b"a"), (2**60 + 1, 0.5)])
def test_diff_of_keys_of_mixed_types(tmp_path: Path, keys: tuple[Any, Any]) -> None:
    """Found by the property test: a diff between commits looks the patches' keys up through an
    Arrow table, which turned text '7' beside a blob key into the blob b'7', so the row with that
    key was missing from to_pandas. (An integer beside a real must not become a double either.)"""
    db = tmp_path / "k.db"
    execute(db, "CREATE TABLE t(a PRIMARY KEY, v) WITHOUT ROWID; INSERT INTO t VALUES (0, 0); CREATE TABLE u(x)")
    repo = dbvers.init(db)
    execute(db, "INSERT INTO u VALUES (1)")
    repo.commit("a patch before, so the diff reads the keys from the patches")
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO t VALUES (?, 1)", [(k,) for k in keys])
    conn.commit()
    conn.close()
    repo.commit("keys of two types")
    with repo.diff("HEAD~1", "HEAD") as d:
        assert sorted(map(repr, d.to_pandas("t")["to_a"].tolist())) == sorted(map(repr, keys))
