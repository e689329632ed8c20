"""Backup and restore benchmarks against ``tar`` measured in the same run.

For the benchmark database (tests/benchmarks/gen.py, 1M rows by default) under
dbvers (``dbvers init``: one root snapshot):

1. ``dbvers backup DIR`` (a whole process) vs ``tar czf OUT.tgz DB`` of the
   database file. Targets (issue 5): at least 3x faster, archive at most 1.1x
   the size of the ``.tgz``.
2. ``dbvers restore --from ARCHIVE --to NEW`` (a whole process: verify every
   checksum and object, rebuild, quick_check, install) vs ``tar xzf OUT.tgz``.
3. For orientation: ``dbvers backup --verify`` (adds integrity_check of every
   snapshot) and an incremental backup after a commit changing 1 % of the rows.

Every timing is the median of ``--repeats`` runs; the restored database is
compared row by row with the original.

Usage::

    .venv/bin/python tests/benchmarks/bench_backup.py                 # 1M rows
    .venv/bin/python tests/benchmarks/bench_backup.py --rows 100000 --repeats 1
    ... --write-docs   # replace the "## Backups" section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import (
    DOCS,
    DOCS_HEADER,
    dbvers_works,
    find_dbvers,
    fingerprint,
    fmt_b,
    fmt_s,
    fmt_x,
    median,
    ratio,
    timed,
)
from gen import generate, mutate

BEGIN = "<!-- bench_backup begin -->"
END = "<!-- bench_backup end -->"
SECTION = "## Backups"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def newest_archive(directory: Path) -> Path:
    return max(directory.glob("*.dbvers.tar"), key=lambda p: p.stat().st_mtime_ns)


def bench(rows: int, repeats: int, work: Path, dbvers: list[str]) -> dict[str, float]:
    src = work / "src"
    src.mkdir()
    db = src / "bench.db"
    log(f"generating {rows:,} rows ...")
    generate(db, rows)
    timed([*dbvers, "init", str(db)], cwd=src)
    r: dict[str, float] = {"db_bytes": db.stat().st_size}

    tgz = work / "bench.tgz"
    backups = work / "backups"
    t_tar, t_bk = [], []
    for i in range(repeats):
        log(f"backup round {i + 1}/{repeats}")
        tgz.unlink(missing_ok=True)
        t_tar.append(timed(["tar", "czf", str(tgz), "-C", str(src), db.name]))
        shutil.rmtree(backups, ignore_errors=True)
        t_bk.append(timed([*dbvers, "backup", str(backups)], cwd=src))
    archive = newest_archive(backups)
    r.update(
        tar_czf=median(t_tar),
        backup=median(t_bk),
        tgz_bytes=tgz.stat().st_size,
        archive_bytes=archive.stat().st_size,
    )

    t_untar, t_restore = [], []
    for i in range(repeats):
        log(f"restore round {i + 1}/{repeats}")
        out_tar = work / f"untar{i}"
        out_tar.mkdir()
        t_untar.append(timed(["tar", "xzf", str(tgz), "-C", str(out_tar)]))
        out = work / f"restore{i}"
        out.mkdir()
        t_restore.append(
            timed([*dbvers, "restore", "--from", str(archive), "--to", str(out / db.name)], cwd=out)
        )
        if i == 0:
            log("comparing the restored database with the original ...")
            if fingerprint(out / db.name) != fingerprint(db):
                raise SystemExit("restored database differs from the original")
        shutil.rmtree(out_tar)
        shutil.rmtree(out)
    r.update(tar_xzf=median(t_untar), restore=median(t_restore))

    log("verify ...")
    r["verify"] = timed([*dbvers, "backup", "--verify", str(archive)], cwd=src)
    log("1 % change, commit, incremental backup ...")
    mutate(db, 0.01, seed=1)
    timed([*dbvers, "commit", "-m", "1 %"], cwd=src)
    r["incremental"] = timed([*dbvers, "backup", "--incremental", str(backups)], cwd=src)
    r["incremental_bytes"] = newest_archive(backups).stat().st_size
    return r


def report(rows: int, r: dict[str, float], repeats: int, argv: list[str]) -> str:
    b_ratio = ratio(r["tar_czf"], r["backup"])
    s_ratio = ratio(r["archive_bytes"], r["tgz_bytes"])
    x_ratio = ratio(r["restore"], r["tar_xzf"])
    ok = lambda good: "yes" if good else "**no**"  # noqa: E731
    cmd = shlex.join([".venv/bin/python", "tests/benchmarks/bench_backup.py", *argv])
    L = [
        f"{rows:,} rows (`gen.py`), database file {fmt_b(r['db_bytes'])}; median of {repeats} runs; "
        f"{dt.date.today().isoformat()}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Reproduce: `{cmd}`",
        "",
        "| measurement | dbvers | peer | ratio | target | met |",
        "|---|---|---|---|---|---|",
        f"| full backup time | `dbvers backup` {fmt_s(r['backup'])} | `tar czf` {fmt_s(r['tar_czf'])} "
        f"| {fmt_x(b_ratio)} faster | ≥ 3× faster | {ok(b_ratio >= 3)} |",
        f"| archive size | {fmt_b(r['archive_bytes'])} | `.tgz` {fmt_b(r['tgz_bytes'])} "
        f"| {fmt_x(s_ratio)} | ≤ 1.1× | {ok(s_ratio <= 1.1)} |",
        f"| restore time | `dbvers restore --from` {fmt_s(r['restore'])} | `tar xzf` {fmt_s(r['tar_xzf'])} "
        f"| {fmt_x(x_ratio)} | report | |",
        "",
        f"For orientation: `dbvers backup --verify` of the archive (checksums, every object against "
        f"its id, `PRAGMA integrity_check` of the snapshot) {fmt_s(r['verify'])}; after a commit "
        f"changing 1 % of the rows, `dbvers backup --incremental` {fmt_s(r['incremental'])}, "
        f"{fmt_b(r['incremental_bytes'])}.",
        "",
        "The restore does more than `tar xzf`: it checks every member's checksum and every object "
        "against its id, rebuilds the state from the snapshot, runs `PRAGMA quick_check` and "
        "installs the file atomically (written, fsynced, renamed), and creates the store.",
    ]
    return "\n".join(L)


def write_docs(body: str, path: Path = DOCS) -> None:
    text = path.read_text() if path.exists() else DOCS_HEADER
    block = f"{BEGIN}\n{body.strip()}\n{END}"
    pat = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if pat.search(text):
        text = pat.sub(lambda _m: block, text)
    elif SECTION in text:
        i = text.index(SECTION) + len(SECTION)
        nl = text.find("\n\n", i)
        i = len(text) if nl < 0 else nl + 2
        text = text[:i] + block + "\n\n" + text[i:]
    else:
        text = (
            text.rstrip("\n") + f"\n\n{SECTION} (`tests/benchmarks/bench_backup.py`)\n\n"
            "Peers: `tar czf` / `tar xzf` of the database file.\n\n" + block + "\n"
        )
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--workdir", type=Path, help="keep the files here (default: a temp dir, removed)"
    )
    ap.add_argument(
        "--dbvers", help="the dbvers command to run (default: the one beside this Python)"
    )
    ap.add_argument(
        "--write-docs", action="store_true", help=f"replace the backup section of {DOCS}"
    )
    args = ap.parse_args(argv)
    dbvers = find_dbvers(args.dbvers)
    if not dbvers_works(dbvers) or not shutil.which("tar"):
        raise SystemExit("needs a working dbvers command and tar")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dbvers-bench-backup-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        r = bench(args.rows, args.repeats, work, dbvers)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    body = report(args.rows, r, args.repeats, [a for a in argv if a != "--write-docs"])
    print(body)
    if args.write_docs:
        write_docs(body)
        log(f"wrote {DOCS}")
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
