"""A guided tour of dbvers on a small shop database.

Run it with ``python -m dbvers.demo [--dir DIR]``. It builds ``shop.db`` from the
CSV files bundled in ``dbvers/sample_data`` (with pandas ``to_sql``), then drives
the real ``dbvers`` command line, printing every command before its output, while
editing the database the way an analyst would: with pandas and ``sqlite3``.

The demo never imports the dbvers core: everything goes through the CLI in a
child process, exactly as a user would type it. It exits non-zero as soon as a
step fails.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from contextlib import closing
from importlib import resources
from pathlib import Path

import pandas as pd

DB_NAME = "shop.db"

SCHEMA = """
CREATE TABLE products (
    sku      TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    category TEXT NOT NULL,
    price    REAL NOT NULL
);
CREATE TABLE customers (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL,
    city  TEXT,
    email TEXT
);
CREATE TABLE orders (
    order_id    INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    sku         TEXT NOT NULL,
    qty         INTEGER NOT NULL,
    ordered_at  TEXT NOT NULL
);
"""


def shell_join(args: tuple[str, ...] | list[str]) -> str:
    """Quote arguments the way people type them: ``commit -m "Fix a price"``."""
    out = []
    for arg in args:
        if shlex.quote(arg) == arg:
            out.append(arg)
        elif not any(c in arg for c in '"$`\\!'):
            out.append(f'"{arg}"')
        else:
            out.append(shlex.quote(arg))
    return " ".join(out)


class DemoFailed(Exception):
    """A step of the demo did not do what it should."""


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.db = workdir / DB_NAME
        self.step_no = 0
        # Make the child process import this very copy of dbvers, even when the
        # demo runs from a source checkout that is not installed.
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONIOENCODING", "utf-8")
        self.env = env

    # -- output helpers -------------------------------------------------------

    def section(self, title: str) -> None:
        self.step_no += 1
        line = f"{self.step_no}. {title}"
        print(f"\n{line}\n{'-' * len(line)}", flush=True)

    def say(self, text: str) -> None:
        print(textwrap.fill(text, width=88), flush=True)

    def code(self, source: str) -> None:
        """Print the Python an analyst would run (the demo runs the same thing)."""
        for line in textwrap.dedent(source).strip("\n").splitlines():
            print(f">>> {line}" if line and not line.startswith(" ") else f"... {line}")
        sys.stdout.flush()

    def table(self, df: pd.DataFrame) -> None:
        text = df.to_string(index=False, float_format=lambda v: f"{v:.2f}")
        print(textwrap.indent(text, "    "), flush=True)

    # -- running things -------------------------------------------------------

    def dbvers(self, *args: str) -> subprocess.CompletedProcess:
        print(f"\n$ dbvers {shell_join(args)}", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "dbvers", *args],
            cwd=self.dir,
            env=self.env,
            check=False,
        )
        sys.stdout.flush()
        if proc.returncode != 0:
            raise DemoFailed(f"`dbvers {shell_join(args)}` exited with status {proc.returncode}")
        return proc

    def connect(self) -> closing[sqlite3.Connection]:
        return closing(sqlite3.connect(self.db))

    def query(self, sql: str) -> pd.DataFrame:
        with self.connect() as con:
            return pd.read_sql_query(sql, con)

    def execute(self, sql: str, params: tuple = ()) -> int:
        with self.connect() as con, con:
            return con.execute(sql, params).rowcount

    # -- the tour -------------------------------------------------------------

    def build_database(self) -> None:
        self.section(f"Build {DB_NAME} from the bundled CSV files")
        data = resources.files("dbvers") / "sample_data"
        frames = {}
        for name in ("products", "customers", "orders"):
            with resources.as_file(data / f"{name}.csv") as path:
                frames[name] = pd.read_csv(path, keep_default_na=False, na_values={"email": [""]})
        with self.connect() as con:
            con.executescript(SCHEMA)
            for name, df in frames.items():
                df.to_sql(name, con, if_exists="append", index=False)
            con.commit()
        self.code(
            """
            products = pd.read_csv("products.csv")   # and customers, orders
            products.to_sql("products", con, if_exists="append", index=False)
            """
        )
        counts = pd.DataFrame({"table": list(frames), "rows": [len(df) for df in frames.values()]})
        self.table(counts)
        self.say(f"Working in {self.dir}")

    def start_tracking(self) -> None:
        self.section("Put the database under version control")
        self.dbvers("init", DB_NAME, "-m", "Import shop data")
        self.dbvers("status")

    def fix_price(self) -> None:
        self.section("Fix a price with sqlite3")
        self.say("The hand grinder was imported at 6.50; it costs 65.00.")
        self.code(
            """
            con = sqlite3.connect("shop.db")
            con.execute("UPDATE products SET price = 65.0 WHERE sku = 'EQP-003'")
            con.commit()
            """
        )
        n = self.execute("UPDATE products SET price = 65.0 WHERE sku = 'EQP-003'")
        if n != 1:
            raise DemoFailed(f"expected to update 1 product, updated {n}")
        self.dbvers("status")
        self.dbvers("commit", "-m", "Fix hand grinder price")

    def delete_test_orders(self) -> None:
        self.section("Delete test orders")
        self.code(
            """
            con.execute("DELETE FROM orders WHERE customer_id = 0")
            con.commit()
            """
        )
        n = self.execute("DELETE FROM orders WHERE customer_id = 0")
        self.say(f"({n} test orders deleted)")
        if n == 0:
            raise DemoFailed("expected some test orders to delete")
        self.dbvers("status")
        self.dbvers("commit", "-m", "Remove test orders")

    def add_column(self) -> None:
        self.section("Change the schema: add a column")
        self.code(
            """
            con.execute("ALTER TABLE products ADD COLUMN discontinued INTEGER NOT NULL DEFAULT 0")
            con.execute("UPDATE products SET discontinued = 1 WHERE sku IN ('MUG-005', 'SNK-004')")
            con.commit()
            """
        )
        with self.connect() as con, con:
            con.execute("ALTER TABLE products ADD COLUMN discontinued INTEGER NOT NULL DEFAULT 0")
            con.execute("UPDATE products SET discontinued = 1 WHERE sku IN ('MUG-005', 'SNK-004')")
        self.dbvers("status")
        self.dbvers("commit", "-m", "Add products.discontinued")

    def insert_orders(self) -> None:
        self.section("Append new orders with pandas")
        new = pd.DataFrame(
            {
                "order_id": [1906, 1907, 1908, 1909],
                "customer_id": [7, 42, 42, 103],
                "sku": ["COF-006", "EQP-003", "EQP-007", "TEA-005"],
                "qty": [2, 1, 1, 3],
                "ordered_at": [
                    "2024-03-21 09:12:00",
                    "2024-03-21 10:03:00",
                    "2024-03-21 10:03:30",
                    "2024-03-21 11:47:00",
                ],
            }
        )
        self.code(
            """
            new_orders = pd.DataFrame({...})   # 4 orders from this morning
            new_orders.to_sql("orders", con, if_exists="append", index=False)
            """
        )
        with self.connect() as con:
            new.to_sql("orders", con, if_exists="append", index=False)
            con.commit()
        self.table(new)
        self.dbvers("status")
        self.dbvers("commit", "-m", "Add orders of 2024-03-21")

    def history(self) -> None:
        self.section("Look at the history")
        self.dbvers("log")
        self.dbvers("log", "--oneline")
        self.dbvers("show", "HEAD")

    def coffee_prices(self) -> pd.DataFrame:
        return self.query(
            "SELECT sku, name, price FROM products WHERE category = 'Coffee' ORDER BY sku"
        )

    def branch_experiment(self) -> None:
        self.section("Try an idea on a branch")
        on_main = self.coffee_prices()
        self.dbvers("branch", "experiment")
        self.dbvers("checkout", "experiment")
        self.say("On the branch, raise every coffee price by 10% (computed in pandas):")
        self.code(
            """
            products = pd.read_sql_query("SELECT sku, price FROM products", con)
            coffee = products[products.sku.str.startswith("COF")]
            new_prices = (coffee.price * 1.10).round(2)
            con.executemany("UPDATE products SET price = ? WHERE sku = ?",
                            zip(new_prices, coffee.sku))
            con.commit()
            """
        )
        products = self.query("SELECT sku, price FROM products")
        coffee = products[products.sku.str.startswith("COF")]
        new_prices = (coffee.price * 1.10).round(2)
        with self.connect() as con, con:
            con.executemany(
                "UPDATE products SET price = ? WHERE sku = ?",
                zip(new_prices.tolist(), coffee.sku.tolist(), strict=True),
            )
        self.dbvers("status")
        self.dbvers("commit", "-m", "Experiment: coffee prices +10%")
        on_experiment = self.coffee_prices()
        self.say("Coffee prices on 'experiment':")
        self.show_coffee_query(on_experiment)
        if on_experiment["price"].tolist() == on_main["price"].tolist():
            raise DemoFailed("the experiment did not change the coffee prices")

        self.section("Go back to main")
        self.dbvers("checkout", "main")
        back = self.coffee_prices()
        self.say("Coffee prices in shop.db after `checkout main` — as they were on main:")
        self.show_coffee_query(back)
        if not back.equals(on_main):
            raise DemoFailed("after `checkout main` the coffee prices differ from main's")
        self.say("(same as before the experiment)")

        self.section("Branches and tags")
        self.dbvers("checkout", "experiment")
        if not self.coffee_prices().equals(on_experiment):
            raise DemoFailed("after `checkout experiment` the experiment's prices are missing")
        self.dbvers("branch")
        self.dbvers("tag", "v1", "main")
        self.dbvers("log", "--oneline", "v1")
        self.on_experiment = on_experiment

    def merge_experiment(self) -> None:
        self.section("Bring the experiment back: merge")
        self.dbvers("checkout", "main")
        self.say("Meanwhile on main, the tea prices change too:")
        self.code(
            """
            con.execute("UPDATE products SET price = round(price * 0.95, 2) WHERE category = 'Tea'")
            con.commit()
            """
        )
        with self.connect() as con, con:
            con.execute("UPDATE products SET price = round(price * 0.95, 2) WHERE category = 'Tea'")
        self.dbvers("commit", "-m", "Tea prices -5%")
        tea = self.query("SELECT sku, price FROM products WHERE category = 'Tea' ORDER BY sku")
        self.say("Both branches changed other rows, so the merge takes both, cell by cell:")
        self.dbvers("merge", "experiment", "-m", "Merge the coffee experiment")
        if not self.coffee_prices().equals(self.on_experiment):
            raise DemoFailed("after the merge main lacks the experiment's coffee prices")
        if not self.query("SELECT sku, price FROM products WHERE category = 'Tea' ORDER BY sku").equals(tea):
            raise DemoFailed("the merge lost main's tea prices")
        self.dbvers("log", "--oneline", "-n", "4")
        self.dbvers("status")

    def share(self) -> None:
        self.section("Share it: push, clone, pull")
        self.say("A remote is a directory (a NAS, a USB disk) or an S3 bucket. Push main there, and a")
        self.say("colleague clones it: a database and its whole history.")
        self.dbvers("remote", "add", "origin", "shared-remote")
        self.dbvers("push", "-u")
        self.dbvers("clone", "shared-remote", "colleague/shop.db")
        colleague = self.dir / "colleague" / DB_NAME
        with closing(sqlite3.connect(colleague)) as con, con:
            con.execute("UPDATE products SET price = 70 WHERE sku = 'EQP-003'")
        self.say("The colleague reprices the hand grinder, commits and pushes; we pull it in:")
        self.dbvers("--db", str(colleague), "commit", "-m", "Hand grinder at 70")
        self.dbvers("--db", str(colleague), "push")
        self.dbvers("pull")
        if self.query("SELECT price FROM products WHERE sku = 'EQP-003'").iloc[0, 0] != 70:
            raise DemoFailed("after `pull` the colleague's price is missing")
        self.dbvers("log", "--oneline", "-n", "2")

    def show_coffee_query(self, df: pd.DataFrame) -> None:
        self.code(
            """
            pd.read_sql_query("SELECT sku, name, price FROM products "
                              "WHERE category = 'Coffee' ORDER BY sku", con)
            """
        )
        self.table(df)

    def run(self) -> None:
        self.build_database()
        self.start_tracking()
        self.fix_price()
        self.delete_test_orders()
        self.add_column()
        self.insert_orders()
        self.history()
        self.branch_experiment()
        self.merge_experiment()
        self.share()
        print(
            f"\nDone. The demo repository is in {self.dir}\n"
            f"Look around:  cd {shlex.quote(str(self.dir))} && dbvers log --oneline",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dbvers.demo",
        description="A guided tour of dbvers on a small shop database.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="directory to build the demo in (default: a fresh temporary directory)",
    )
    args = parser.parse_args(argv)

    if args.dir is None:
        workdir = Path(tempfile.mkdtemp(prefix="dbvers-demo-"))
    else:
        workdir = args.dir.resolve()
        if (workdir / DB_NAME).exists() or (workdir / ".dbvers").exists():
            print(
                f"dbvers demo: {workdir} already holds a demo; pick an empty directory",
                file=sys.stderr,
            )
            return 2
        workdir.mkdir(parents=True, exist_ok=True)

    try:
        Demo(workdir).run()
    except DemoFailed as exc:
        sys.stdout.flush()
        print(f"\ndbvers demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
