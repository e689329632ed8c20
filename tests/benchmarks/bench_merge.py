"""Merge benchmark: the three-way merge engine against ``sqldiff --changeset`` in the same run.

Two branches of the core benchmark's database (tests/benchmarks/gen.py) each change
1 % of the rows (different random rows: a few may collide and become conflicts).
Measured:

1. the merge (copy ours to a private file, then ``rowmerge.merge_states``) vs
   ``sqldiff --changeset OUT BASE THEIRS`` — the cost of finding one side's changes.
   Target (issue 12): at most 2x sqldiff at 1M rows.
2. a merge with 1,000 conflicting rows: the engine's time, its conflict count, and
   ``Repo.conflicts()`` (target: at most 1 s).
3. ``--repo``: the whole ``Repo.merge`` (materializing base and theirs, merging, installing the
   result in the working database, the merge commit) on the same two branches.

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

from dbvers.conflicts import ConflictFile
from dbvers.conflicts import write as write_conflicts
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
        write_conflicts(tmp / "conflicts.db", result["outcome"])  # type: ignore[arg-type]
        t0 = time.perf_counter()
        frames = ConflictFile(tmp / "conflicts.db").frames()
        t_frames = time.perf_counter() - t0
        print(f"{rows:>9} rows  1,000 conflicting rows: merge {t_conf:.2f} s, {n} conflicts, "
              f"conflicts as DataFrames {t_frames:.2f} s ({sum(len(f) for f in frames.values())} rows)")


def bench_repo(rows: int) -> None:
    import dbvers

    with tempfile.TemporaryDirectory(prefix="bench-merge-repo-") as d:
        tmp = Path(d)
        db = tmp / "data.db"
        generate(db, rows, seed=0)
        repo = dbvers.init(db)
        top = sqlite3.connect(db).execute("SELECT max(id) FROM orders").fetchone()[0]
        repo.branch("theirs")
        repo.checkout("theirs")
        mutate(db, 0.01, seed=2)
        con = sqlite3.connect(db)
        con.execute("UPDATE orders SET id = id + 1000000000 WHERE id > ?", (top,))
        con.commit()
        con.close()
        repo.commit("theirs: 1%")
        repo.checkout("main")
        mutate(db, 0.01, seed=1)
        repo.commit("ours: 1%")
        repo.materialize(repo.resolve("theirs"))  # both tips cached, as after working on them
        t0 = time.perf_counter()
        res = repo.merge("theirs")
        t_merge = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames = repo.conflicts() if res.conflicts else {}
        t_conf = time.perf_counter() - t0
        base = repo.materialize(res.base) if res.base else None
        t0 = time.perf_counter()
        subprocess.run(["sqldiff", "--changeset", str(tmp / "cs.bin"), str(base),
                        str(repo.materialize(repo.resolve("theirs")))], check=True)
        t_sqldiff = time.perf_counter() - t0
        n = sum(len(f) for f in frames.values())
        print(f"{rows:>9} rows  Repo.merge end to end: {t_merge:.2f} s, sqldiff {t_sqldiff:.2f} s, "
              f"ratio {t_merge / t_sqldiff:.2f}x, {n} conflicts, conflicts() {t_conf:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repo", action="store_true", help="also time Repo.merge end to end")
    args = ap.parse_args()
    for rows in args.rows:
        bench(rows, args.repeat)
        if args.repo:
            bench_repo(rows)


if __name__ == "__main__":
    main()
