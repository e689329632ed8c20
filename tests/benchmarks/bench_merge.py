"""Merge benchmark: the three-way merge engine against ``sqldiff --changeset`` in the same run.

Two branches of the core benchmark's database (tests/benchmarks/gen.py) each change
1 % of the rows (different random rows: a few may collide and become conflicts).
Measured:

1. the merge (copy ours to a private file, then ``rowmerge.merge_states``) vs
   ``sqldiff --changeset OUT BASE THEIRS`` — the cost of finding one side's changes.
   Target (issue 12): at most 2x sqldiff at 1M rows.
2. a merge with 1,000 conflicting rows: the engine's time and its conflict count.

Usage::

    .venv/bin/python tests/benchmarks/bench_merge.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from gen import generate, mutate

from dbvers.rowmerge import merge_states


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(rows: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as d:
        tmp = Path(d)
        base, ours, theirs, out = (tmp / f"{n}.db" for n in ("base", "ours", "theirs", "out"))
        generate(base, rows, seed=0)
        shutil.copy(base, ours)
        shutil.copy(base, theirs)
        mutate(ours, 0.01, seed=1)
        mutate(theirs, 0.01, seed=2)
        # Both sides append orders with the next free ids, which would be insert-insert
        # conflicts (as in git, two commits can't both create one key): theirs' new ids move up.
        con = sqlite3.connect(theirs)
        top = sqlite3.connect(base).execute("SELECT max(id) FROM orders").fetchone()[0]
        con.execute("UPDATE orders SET id = id + 1000000000 WHERE id > ?", (top,))
        con.commit()
        con.close()

        def sqldiff() -> None:
            subprocess.run(["sqldiff", "--changeset", str(tmp / "cs.bin"), str(base), str(theirs)], check=True)

        result: dict[str, object] = {}

        def merge() -> None:
            shutil.copy(ours, out)
            result["outcome"] = merge_states(out, base, theirs)

        t_sqldiff = best_of(repeat, sqldiff)
        t_merge = best_of(repeat, merge)
        outcome = result["outcome"]
        print(f"{rows:>9} rows  1%+1% disjoint-ish: merge {t_merge:.2f} s, sqldiff {t_sqldiff:.2f} s, "
              f"ratio {t_merge / t_sqldiff:.2f}x, conflicts {outcome.conflict_counts}")  # type: ignore[attr-defined]

        # 1,000 conflicting rows: both sides set different values on the same orders rows
        shutil.copy(base, ours)
        shutil.copy(base, theirs)
        for path, value in ((ours, "ours"), (theirs, "theirs")):
            con = sqlite3.connect(path)
            con.execute("UPDATE orders SET note = ? WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT 1000)",
                        (value,))
            con.commit()
            con.close()
        t_conf = best_of(repeat, merge)
        n = sum(result["outcome"].conflict_counts.values())  # type: ignore[attr-defined]
        print(f"{rows:>9} rows  1,000 conflicting rows: merge {t_conf:.2f} s, {n} conflicts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for rows in args.rows:
        bench(rows, args.repeat)


if __name__ == "__main__":
    main()
