"""Deterministic generator and mutator of the benchmark database.

The database has three tables, sized as shares of the requested total row count:

* ``orders``    (50 %) -- ``INTEGER PRIMARY KEY`` (rowid alias)
* ``inventory`` (30 %) -- composite TEXT primary key ``(region, sku)``, small BLOB column
* ``events``    (20 %) -- no primary key at all (plain rowid table)

Columns mix ints, reals, text, NULLs and (in ``inventory``) a small blob.

Only the standard library's ``sqlite3`` module touches the file (dbvers's
two-library rule: the working database belongs to ``sqlite3``). numpy, which
pandas brings along, makes generating a million rows take a couple of seconds.

Usage::

    python tests/benchmarks/gen.py OUT.db --rows 1000000 [--seed 0]
    python tests/benchmarks/gen.py OUT.db --mutate 0.01 --seed 1
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import time
from dataclasses import dataclass, field

import numpy as np

SHARES = {"orders": 0.5, "inventory": 0.3, "events": 0.2}

REGIONS = [
    "ap-east",
    "ap-south",
    "ap-southeast",
    "ca-central",
    "eu-central",
    "eu-north",
    "eu-south",
    "eu-west",
    "me-central",
    "sa-east",
    "us-east",
    "us-west",
]
STATUSES = ["new", "paid", "packed", "shipped", "delivered", "returned", "cancelled"]
KINDS = ["click", "view", "purchase", "signup", "login", "logout", "search", "error"]
WORDS = [
    "alpha",
    "bolt",
    "cable",
    "drill",
    "engine",
    "filter",
    "gasket",
    "hinge",
    "inlet",
    "joint",
    "kettle",
    "lamp",
    "motor",
    "nozzle",
    "outlet",
    "pump",
    "quartz",
    "relay",
    "sensor",
    "tube",
    "valve",
    "washer",
    "yoke",
    "zinc",
    "bracket",
    "clamp",
    "spring",
]
NOTES = [
    "leave at the door",
    "call before delivery",
    "gift wrap please",
    "fragile",
    "second attempt",
    "customer asked for invoice",
    "priority",
    "address corrected",
]

SCHEMA = """
CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    order_date  TEXT NOT NULL,
    amount      REAL NOT NULL,
    quantity    INTEGER NOT NULL,
    status      TEXT NOT NULL,
    discount    REAL,
    note        TEXT
);
CREATE TABLE inventory (
    region      TEXT NOT NULL,
    sku         TEXT NOT NULL,
    name        TEXT NOT NULL,
    qty         INTEGER NOT NULL,
    unit_price  REAL NOT NULL,
    updated_at  TEXT NOT NULL,
    thumb       BLOB,
    PRIMARY KEY (region, sku)
);
CREATE TABLE events (
    ts          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     INTEGER,
    value       REAL,
    payload     TEXT
);
"""

EPOCH = np.datetime64("2023-01-01T00:00:00", "s")


def table_sizes(rows: int) -> dict[str, int]:
    """Rows per table for a total of ``rows`` (the shares add up exactly)."""
    sizes = {t: int(rows * s) for t, s in SHARES.items()}
    sizes["orders"] += rows - sum(sizes.values())
    return sizes


def _dates(rng: np.random.Generator, n: int, seconds: int = 2 * 365 * 86400) -> list[str]:
    stamps = EPOCH + rng.integers(0, seconds, n).astype("timedelta64[s]")
    return np.datetime_as_string(stamps).tolist()


def _maybe_null(rng: np.random.Generator, values: list, null_share: float) -> list:
    mask = rng.random(len(values)) < null_share
    return [None if m else v for v, m in zip(values, mask.tolist(), strict=True)]


def _orders(rng: np.random.Generator, n: int) -> list[tuple]:
    customer = rng.integers(1, max(2, n // 8), n).tolist()
    dates = _dates(rng, n)
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2).tolist()
    qty = rng.integers(1, 20, n).tolist()
    status = [STATUSES[i] for i in rng.integers(0, len(STATUSES), n).tolist()]
    discount = _maybe_null(rng, np.round(rng.random(n) * 0.3, 3).tolist(), 0.7)
    note = _maybe_null(rng, [NOTES[i] for i in rng.integers(0, len(NOTES), n).tolist()], 0.8)
    return list(zip(customer, dates, amount, qty, status, discount, note, strict=True))


def _name(a: int, b: int) -> str:
    return f"{WORDS[a]} {WORDS[b]}"


def _inventory(rng: np.random.Generator, n: int) -> list[tuple]:
    # unique (region, sku) pairs, inserted in shuffled order so that rowid order
    # and primary-key order differ, as they do in real tables
    order = rng.permutation(n).tolist()
    nr = len(REGIONS)
    keys = [(REGIONS[i % nr], f"SKU-{i // nr:07d}") for i in order]
    words = rng.integers(0, len(WORDS), (n, 2)).tolist()
    names = [_name(a, b) for a, b in words]
    qty = rng.integers(0, 5000, n).tolist()
    price = np.round(rng.lognormal(2.0, 1.2, n), 2).tolist()
    updated = _dates(rng, n)
    lengths = rng.integers(16, 65, n).tolist()
    pool = rng.bytes(64 * n)
    thumbs = [pool[64 * i : 64 * i + ln] for i, ln in enumerate(lengths)]
    thumbs = _maybe_null(rng, thumbs, 0.5)
    return [
        (r, s, nm, q, p, u, t)
        for (r, s), nm, q, p, u, t in zip(keys, names, qty, price, updated, thumbs, strict=True)
    ]


def _events(rng: np.random.Generator, n: int) -> list[tuple]:
    ts = _dates(rng, n, seconds=90 * 86400)
    kind = [KINDS[i] for i in rng.integers(0, len(KINDS), n).tolist()]
    user = _maybe_null(rng, rng.integers(1, 50_000, n).tolist(), 0.05)
    value = _maybe_null(rng, np.round(rng.normal(100, 30, n), 4).tolist(), 0.3)
    pages = rng.integers(0, 500, n).tolist()
    payload = _maybe_null(rng, [f'{{"page": "/p/{p}", "v": 2}}' for p in pages], 0.4)
    return list(zip(ts, kind, user, value, payload, strict=True))


INSERT = {
    "orders": "INSERT INTO orders (customer_id, order_date, amount, quantity, status, discount, note)"
    " VALUES (?,?,?,?,?,?,?)",
    "inventory": "INSERT OR IGNORE INTO inventory VALUES (?,?,?,?,?,?,?)",
    "events": "INSERT INTO events VALUES (?,?,?,?,?)",
}
MAKERS = {"orders": _orders, "inventory": _inventory, "events": _events}


def generate(path: str | os.PathLike, rows: int, seed: int = 0) -> dict[str, int]:
    """Create a fresh database at ``path`` with ``rows`` rows in total.

    Deterministic for a given (rows, seed). Returns the rows per table.
    """
    path = os.fspath(path)
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    rng = np.random.default_rng(seed)
    sizes = table_sizes(rows)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.executescript(SCHEMA)
        con.execute("BEGIN")
        for table, n in sizes.items():
            con.executemany(INSERT[table], MAKERS[table](rng, n))
        con.execute("COMMIT")
        con.execute("PRAGMA journal_mode=DELETE")
    finally:
        con.close()
    return sizes


@dataclass
class MutationStats:
    updated: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.updated.values()) + sum(self.inserted.values()) + sum(self.deleted.values())


def mutate(
    path: str | os.PathLike,
    fraction: float = 0.01,
    seed: int = 1,
    mix: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> MutationStats:
    """Change about ``fraction`` of all rows in place, in one transaction.

    ``mix`` is the share of (updates, inserts, deletes). Changes are spread over the
    three tables in proportion to their sizes; updated and deleted rows are
    distinct. Deterministic for a given database state and seed.
    """
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    stats = MutationStats()
    con = sqlite3.connect(os.fspath(path), isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SHARES}
        total = sum(counts.values())
        for table in SHARES:
            n_change = round(total * fraction * counts[table] / total) if total else 0
            n_upd = round(n_change * mix[0])
            n_ins = round(n_change * mix[1])
            n_del = max(0, n_change - n_upd - n_ins)
            rowids = [r for (r,) in con.execute(f"SELECT rowid FROM {table}")]
            n_upd = min(n_upd, len(rowids))
            n_del = min(n_del, len(rowids) - n_upd)
            picked = rnd.sample(rowids, n_upd + n_del)
            upd, dele = picked[:n_upd], picked[n_upd:]
            _update(con, table, upd, rng, rnd)
            con.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(r,) for r in dele])
            new_rows = MAKERS[table](rng, n_ins)
            if table == "inventory":
                # fresh keys that cannot collide with generated ones
                new_rows = [
                    (row[0], f"NEW-{seed:05d}-{i:07d}", *row[2:]) for i, row in enumerate(new_rows)
                ]
            con.executemany(INSERT[table], new_rows)
            stats.updated[table] = len(upd)
            stats.deleted[table] = len(dele)
            stats.inserted[table] = n_ins
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return stats


def _update(con: sqlite3.Connection, table: str, rowids: list[int], rng, rnd: random.Random):
    n = len(rowids)
    if not n:
        return
    if table == "orders":
        amount = np.round(rng.lognormal(3.5, 1.0, n), 2).tolist()
        status = [rnd.choice(STATUSES) for _ in range(n)]
        note = [rnd.choice([*NOTES, None, None]) for _ in range(n)]
        con.executemany(
            "UPDATE orders SET amount = ?, status = ?, note = ? WHERE rowid = ?",
            zip(amount, status, note, rowids, strict=True),
        )
    elif table == "inventory":
        qty = rng.integers(0, 5000, n).tolist()
        price = np.round(rng.lognormal(2.0, 1.2, n), 2).tolist()
        updated = _dates(rng, n, seconds=3 * 365 * 86400)
        thumbs = [
            rnd.randbytes(rnd.randint(16, 64)) if rnd.random() < 0.1 else None for _ in range(n)
        ]
        con.executemany(
            "UPDATE inventory SET qty = ?, unit_price = ?, updated_at = ?,"
            " thumb = coalesce(?, thumb) WHERE rowid = ?",
            zip(qty, price, updated, thumbs, rowids, strict=True),
        )
    else:
        value = np.round(rng.normal(100, 30, n), 4).tolist()
        payload = [rnd.choice([None, '{"page": "/p/edited", "v": 3}']) for _ in range(n)]
        con.executemany(
            "UPDATE events SET value = ?, payload = ? WHERE rowid = ?",
            zip(value, payload, rowids, strict=True),
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("db", help="database file to create (or to mutate with --mutate)")
    ap.add_argument("--rows", type=int, default=100_000, help="total rows over the three tables")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--mutate",
        type=float,
        metavar="FRACTION",
        help="change this share of rows of an existing database instead of creating one",
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.mutate is not None:
        stats = mutate(args.db, args.mutate, args.seed)
        print(
            f"changed {stats.total} rows: updated={stats.updated} inserted={stats.inserted} "
            f"deleted={stats.deleted}"
        )
    else:
        sizes = generate(args.db, args.rows, args.seed)
        print(
            f"wrote {sum(sizes.values())} rows {sizes} to {args.db} "
            f"({os.path.getsize(args.db):,} bytes)"
        )
    print(f"in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
