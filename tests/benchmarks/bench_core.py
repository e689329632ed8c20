"""Core benchmarks of dbvers against peers measured in the same run.

Three measurements per database size (DESIGN.md section 7), all reported as
ratios to a peer timed on the same machine in the same run:

1. ``dbvers commit`` (a whole process) vs ``sqldiff --changeset OUT OLD NEW`` on the
   same pair of database states. Target: at most 1.5x sqldiff at 1M rows.
2. ``dbvers checkout <commit>`` of a commit 10 commits past its snapshot vs ``cp`` of
   the database file, and how it moves with the snapshot policy
   (``[snapshot] max_commits`` / ``max_patch_ratio`` in ``.dbvers/config``).
3. Store size (``.dbvers``, apparent bytes as ``du -sb``) after N commits vs the
   database file and vs a git repository holding the same N+1 file versions after
   ``git gc --aggressive``.

The database (tests/benchmarks/gen.py) has three tables: INTEGER PRIMARY KEY,
composite TEXT primary key, and no primary key. Every step changes 1 % of the rows
(60 % updates, 20 % inserts, 20 % deletes).

Each snapshot policy is a separate repository fed the same sequence of database
versions. The first policy's run is the one paired with sqldiff and git.

Usage::

    .venv/bin/python tests/benchmarks/bench_core.py --rows 100000 1000000 --commits 20
    .venv/bin/python tests/benchmarks/bench_core.py --rows 100000 --commits 5 --quick
    .venv/bin/python tests/benchmarks/bench_core.py --rows 100000 --peers-only
    ... --write-docs   # replace this size's section in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen import generate, mutate, table_sizes

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
HUGE_COMMITS = "1000000000"
HUGE_RATIO = "1000000000"
CHECKOUT_DISTANCE = 10
FULL_POLICIES = ["default", "root-only", "max_commits=10", "max_commits=5", "max_patch_ratio=0.1"]
QUICK_POLICIES = ["default", "root-only", "max_commits=5"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUBPROCESS_ENV = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
# how a checked-out state is compared with the version it should equal: tables
# with a primary key by key, the table without one as a bag of rows
FINGERPRINT_ORDER = {
    "orders": "id",
    "inventory": "region, sku",
    "events": "ts, kind, user_id, value, payload",
}


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers


def run(cmd: list[str], cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``cmd``; return (wall seconds, completed process). Raise on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, env=SUBPROCESS_ENV)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-3000:]
        raise BenchError(f"`{shlex.join(cmd)}` (cwd={cwd}) exited {proc.returncode}:\n{err}")
    return elapsed, proc


def timed(cmd: list[str], cwd: Path | None = None) -> float:
    return run(cmd, cwd)[0]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def tree_bytes(path: Path) -> int:
    """Apparent size of a file or directory tree (what ``du -sb`` prints)."""
    if path.is_file():
        return path.stat().st_size
    total = path.lstat().st_size if path.exists() else 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def du_bytes(path: Path) -> int:
    """``du -sb PATH`` (falls back to a Python walk where du lacks -b)."""
    try:
        out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return tree_bytes(path)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_b(n: float) -> str:
    if n != n:
        return "n/a"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_x(ratio: float) -> str:
    return "n/a" if ratio != ratio else f"{ratio:.2f}×"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def fingerprint(path: Path) -> str:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        h = hashlib.sha256()
        for table, order in FINGERPRINT_ORDER.items():
            h.update(table.encode())
            cur = con.execute(f"SELECT * FROM {table} ORDER BY {order}")
            while rows := cur.fetchmany(50_000):
                h.update(repr(rows).encode())
        return h.hexdigest()
    finally:
        con.close()


def find_dbvers(explicit: str | None) -> list[str]:
    if explicit:
        return shlex.split(explicit)
    beside = Path(sys.executable).parent / "dbvers"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dbvers")
    if found:
        return [found]
    return [sys.executable, "-m", "dbvers"]


def dbvers_works(cmd: list[str]) -> bool:
    try:
        proc = subprocess.run([*cmd, "--help"], capture_output=True, env=SUBPROCESS_ENV, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


# --------------------------------------------------------------------------- policies


def parse_policy(spec: str) -> dict[str, str] | None:
    """``default`` -> None (leave init's config alone); ``root-only`` -> never
    snapshot automatically; ``max_commits=5[,max_patch_ratio=0.1]`` -> those bounds,
    the bound not named disabled."""
    if spec == "default":
        return None
    values = {"max_commits": HUGE_COMMITS, "max_patch_ratio": HUGE_RATIO}
    if spec == "root-only":
        return values
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in values:
            raise argparse.ArgumentTypeError(f"bad policy {spec!r}")
        float(value)  # validate
        values[key] = value.strip()
    return values


def read_policy(store: Path) -> str:
    cfg = configparser.ConfigParser()
    cfg.read(store / "config")
    if not cfg.has_section("snapshot"):
        return "(no [snapshot] section)"
    off = {HUGE_COMMITS, HUGE_RATIO}
    return ", ".join(f"{k}={'off' if v in off else v}" for k, v in cfg.items("snapshot"))


def apply_policy(store: Path, values: dict[str, str] | None) -> str:
    if values is not None:
        cfg = configparser.ConfigParser()
        cfg.read(store / "config")
        if not cfg.has_section("snapshot"):
            cfg.add_section("snapshot")
        for k, v in values.items():
            cfg.set("snapshot", k, v)
        with open(store / "config", "w") as f:
            cfg.write(f)
    return read_policy(store)


# --------------------------------------------------------------------------- dbvers


class Dbvers:
    def __init__(self, cmd: list[str]):
        self.cmd = cmd

    def __call__(self, *args: str, cwd: Path) -> tuple[float, str]:
        seconds, proc = run([*self.cmd, *args], cwd=cwd)
        return seconds, ANSI.sub("", proc.stdout.decode(errors="replace"))

    def log_ids(self, cwd: Path) -> list[tuple[str, str]]:
        """(short id, message) pairs, oldest first."""
        _, out = self("log", "--oneline", cwd=cwd)
        pairs = []
        for line in out.splitlines():
            line = line.strip()
            if line:
                cid, _, msg = line.partition(" ")
                pairs.append((cid, msg.strip()))
        return pairs[::-1]

    def snapshot_count(self, cwd: Path) -> int | None:
        """Commits carrying a snapshot, if ``log --format json`` says so (best effort)."""
        for args in (("log", "--format", "json"), ("--format", "json", "log")):
            try:
                _, out = self(*args, cwd=cwd)
                data = json.loads(out)
            except (BenchError, ValueError):
                continue
            if isinstance(data, dict):
                data = data.get("commits", [])
            if not isinstance(data, list) or not data or not isinstance(data[0], dict):
                continue
            key = next((k for k in data[0] if k in ("snapshot", "snapshot_id")), None)
            if key is None:
                key = next((k for k in data[0] if "snapshot" in k), None)
            if key is None:
                return None
            return sum(1 for c in data if c.get(key))
        return None

    def current_branch(self, cwd: Path, store: Path) -> str:
        head = store / "HEAD"
        try:
            text = head.read_text().strip()
            if text.startswith("ref: refs/heads/"):
                return text.removeprefix("ref: refs/heads/")
        except OSError:
            pass
        try:
            _, out = self("branch", cwd=cwd)
            for line in out.splitlines():
                if line.strip().startswith("*"):
                    return line.strip().lstrip("*").split()[0]
        except BenchError:
            pass
        return "main"


# --------------------------------------------------------------------------- results


@dataclass
class PolicyRun:
    policy: str
    config: str = ""
    init_s: float = float("nan")
    commit_s: list[float] = field(default_factory=list)
    store_growth: list[int] = field(default_factory=list)
    store_bytes: int = 0
    store_breakdown: dict[str, int] = field(default_factory=dict)
    snapshots: int | None = None
    target_index: int = 0
    other_label: str = ""
    checkout_target_s: list[float] = field(default_factory=list)
    checkout_other_s: list[float] = field(default_factory=list)
    checkout_ok: bool | None = None


@dataclass
class SizeResult:
    rows: int
    commits: int
    fraction: float
    tables: dict[str, int]
    db_bytes_initial: int = 0
    db_bytes_final: int = 0
    changed_rows: list[int] = field(default_factory=list)
    sqldiff_s: list[float] = field(default_factory=list)
    changeset_bytes: list[int] = field(default_factory=list)
    git_commit_s: list[float] = field(default_factory=list)
    git_gc: str = ""
    git_gc_s: float = float("nan")
    git_bytes: int = 0
    cp_s: list[float] = field(default_factory=list)
    runs: list[PolicyRun] = field(default_factory=list)
    wall_s: float = 0.0
    load: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- benchmark


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_size(args, rows: int, dbv: Dbvers | None, base: Path) -> SizeResult:
    t_start = time.perf_counter()
    res = SizeResult(rows, args.commits, args.fraction, table_sizes(rows))
    root = base / f"rows-{rows}"
    if root.exists():
        shutil.rmtree(root)
    versions = root / "versions"
    versions.mkdir(parents=True)
    vpath = [versions / f"v{i:03d}.db" for i in range(args.commits + 1)]

    log(f"{rows:,} rows: generating")
    generate(vpath[0], rows, seed=args.seed)
    res.db_bytes_initial = vpath[0].stat().st_size

    # git peer
    gitdir = root / "git"
    gitdir.mkdir()
    git = [
        "git",
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "-c",
        "gc.auto=0",
        "-c",
        "core.autocrlf=false",
    ]
    run([*git, "init", "-q"], cwd=gitdir)

    def git_add(version: Path, i: int) -> float:
        shutil.copyfile(version, gitdir / "data.db")
        t = timed([*git, "add", "data.db"], cwd=gitdir)
        return t + timed([*git, "commit", "-q", "-m", f"version {i}"], cwd=gitdir)

    git_add(vpath[0], 0)

    for p_index, spec in enumerate(args.policies):
        first = p_index == 0
        pr = PolicyRun(spec)
        res.runs.append(pr)
        rundir = root / f"run-{p_index}"
        rundir.mkdir()
        work = rundir / "data.db"
        shutil.copyfile(vpath[0], work)
        store = rundir / ".dbvers"
        if dbv is not None:
            log(f"{rows:,} rows, policy {spec}: init")
            pr.init_s, _ = dbv("init", "data.db", cwd=rundir)
            pr.config = apply_policy(store, parse_policy(spec))
        before = tree_bytes(store) if dbv is not None else 0

        for i in range(1, args.commits + 1):
            if first:
                stats = mutate(work, args.fraction, seed=args.seed * 100_003 + i)
                res.changed_rows.append(stats.total)
                shutil.copyfile(work, vpath[i])
            else:
                shutil.copyfile(vpath[i], work)
            t_commit = t_diff = None
            # alternate who goes first so neither always gets the warmer cache
            order = ("sqldiff", "dbvers") if i % 2 else ("dbvers", "sqldiff")
            for who in order:
                if who == "sqldiff" and first:
                    out = rundir / "changeset.bin"
                    t_diff = timed(
                        [args.sqldiff, "--changeset", str(out), str(vpath[i - 1]), str(work)]
                    )
                    res.changeset_bytes.append(out.stat().st_size)
                elif who == "dbvers" and dbv is not None:
                    t_commit, _ = dbv("commit", "-m", f"bench step {i}", cwd=rundir)
            if t_diff is not None:
                res.sqldiff_s.append(t_diff)
            if t_commit is not None:
                pr.commit_s.append(t_commit)
                after = tree_bytes(store)
                pr.store_growth.append(after - before)
                before = after
            res.load.append(os.getloadavg()[0])
            if first:
                res.git_commit_s.append(git_add(vpath[i], i))
            log(
                f"{rows:,} rows, policy {spec}: step {i}/{args.commits}"
                + (f" commit {fmt_s(t_commit)}" if t_commit is not None else "")
                + (f" sqldiff {fmt_s(t_diff)}" if t_diff is not None else "")
            )

        if first:
            res.db_bytes_final = vpath[-1].stat().st_size
            res.git_gc = "git gc --aggressive" if args.git_gc == "aggressive" else "git gc"
            log(f"{rows:,} rows: {res.git_gc}")
            gc_cmd = [*git, "gc", "-q"] + (["--aggressive"] if args.git_gc == "aggressive" else [])
            res.git_gc_s = timed(gc_cmd, cwd=gitdir)
            res.git_bytes = du_bytes(gitdir / ".git")
            shutil.rmtree(gitdir)
            src = vpath[min(CHECKOUT_DISTANCE, args.commits)]
            for _ in range(max(5, args.repeats)):
                dst = rundir / "cp-copy.db"
                dst.unlink(missing_ok=True)
                res.cp_s.append(timed(["cp", str(src), str(dst)]))
                dst.unlink()

        if dbv is None:
            continue

        pr.store_bytes = du_bytes(store)
        pr.store_breakdown = {p.name: tree_bytes(p) for p in sorted(store.iterdir())}
        pr.snapshots = dbv.snapshot_count(rundir)

        # checkout of the commit CHECKOUT_DISTANCE commits past the root snapshot, from
        # the tip and back to it (when the target is the tip itself: from the root and back)
        ids = dbv.log_ids(rundir)
        if len(ids) != args.commits + 1:
            raise BenchError(f"expected {args.commits + 1} commits in the log, got {len(ids)}")
        pr.target_index = min(CHECKOUT_DISTANCE, args.commits)
        branch = dbv.current_branch(rundir, store)
        if pr.target_index == args.commits:
            target, other = branch, ids[0][0]
            pr.other_label = "#0 (root)"
            dbv("checkout", other, cwd=rundir)
        else:
            target, other = ids[pr.target_index][0], branch
            pr.other_label = f"#{args.commits} (tip)"
        for rep in range(args.repeats):
            t, _ = dbv("checkout", target, cwd=rundir)
            pr.checkout_target_s.append(t)
            if rep == 0:
                pr.checkout_ok = fingerprint(work) == fingerprint(vpath[pr.target_index])
                if not pr.checkout_ok:
                    log(
                        f"WARNING: checkout of commit {pr.target_index} does not match version "
                        f"{pr.target_index} (policy {spec})"
                    )
            t, _ = dbv("checkout", other, cwd=rundir)
            pr.checkout_other_s.append(t)
        log(
            f"{rows:,} rows, policy {spec}: checkout #{pr.target_index} "
            f"{fmt_s(median(pr.checkout_target_s))}, {pr.other_label} "
            f"{fmt_s(median(pr.checkout_other_s))}, "
            f"store {fmt_b(pr.store_bytes)}, snapshots {pr.snapshots}"
        )
        if not args.keep:
            shutil.rmtree(rundir)

    if not args.keep:
        shutil.rmtree(root)
    res.wall_s = time.perf_counter() - t_start
    return res


# --------------------------------------------------------------------------- report


def reproduce_command(args) -> str:
    cmd = [
        ".venv/bin/python",
        "tests/benchmarks/bench_core.py",
        "--rows",
        *map(str, args.rows),
        "--commits",
        str(args.commits),
    ]
    if args.quick:
        cmd.append("--quick")
    if args.fraction != 0.01:
        cmd += ["--fraction", str(args.fraction)]
    if args.seed != 0:
        cmd += ["--seed", str(args.seed)]
    if args.policies_given:
        cmd += ["--policies", *args.policies]
    if args.git_gc_given:
        cmd += ["--git-gc", args.git_gc]
    if args.peers_only:
        cmd.append("--peers-only")
    return shlex.join(cmd)


def environment(dbv: Dbvers | None, sqldiff: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        sqlite_cli = subprocess.run(
            ["sqlite3", "--version"], capture_output=True, text=True
        ).stdout.split()[0]
    except (OSError, IndexError):
        sqlite_cli = "?"
    try:
        rev = (
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            or "?"
        )
    except OSError:
        rev = "?"
    try:
        import apsw

        apsw_sqlite = apsw.sqlite_lib_version()
    except ImportError:
        apsw_sqlite = "?"
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"sqldiff `{sqldiff}` (SQLite {sqlite_cli}), stdlib sqlite3 {sqlite3.sqlite_version}, "
        f"apsw SQLite {apsw_sqlite}, dbvers at `{rev}`"
        + ("" if dbv is not None else " (dbvers not run: --peers-only)")
    )


def render(res: SizeResult, args, env: str) -> str:
    n = res.commits
    tables = ", ".join(f"{t} {c:,}" for t, c in res.tables.items())
    L = [
        f"### {res.rows:,} rows, {n} commits of {res.fraction:.0%} changes",
        "",
        f"Tables: {tables} (INTEGER PRIMARY KEY / composite TEXT key / no key). "
        f"Rows changed per step: median {median(res.changed_rows):,.0f} "
        "(60 % updates, 20 % inserts, 20 % deletes). "
        f"Database file {fmt_b(res.db_bytes_initial)} at the start, "
        f"{fmt_b(res.db_bytes_final)} at the end.",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {env}; "
        f"run took {res.wall_s / 60:.1f} min; 1-minute load average during the steps "
        f"{min(res.load, default=0):.1f}–{max(res.load, default=0):.1f}.",
        "",
        "```",
        reproduce_command(args),
        "```",
        "",
    ]
    headline = res.runs[0] if res.runs and res.runs[0].commit_s else None
    diff_med = median(res.sqldiff_s)

    L += [
        "**1. Commit vs `sqldiff --changeset`** (each step is a new pair of states; one timing "
        "per step, median over the steps; each dbvers commit is a whole process)",
        "",
        "| command | median | mean | ratio to sqldiff (median) |",
        "|---|---:|---:|---:|",
        f"| `sqldiff --changeset OUT OLD NEW` | {fmt_s(diff_med)} | "
        f"{fmt_s(statistics.fmean(res.sqldiff_s)) if res.sqldiff_s else 'n/a'} | 1.00× |",
    ]
    for pr in res.runs:
        if pr.commit_s:
            L.append(
                f"| `dbvers commit`, policy {pr.policy} | {fmt_s(median(pr.commit_s))} | "
                f"{fmt_s(statistics.fmean(pr.commit_s))} | "
                f"{fmt_x(ratio(median(pr.commit_s), diff_med))} |"
            )
    L.append(
        f"| `git add` + `git commit` of the file (for scale) | {fmt_s(median(res.git_commit_s))} "
        f"| {fmt_s(statistics.fmean(res.git_commit_s)) if res.git_commit_s else 'n/a'} | "
        f"{fmt_x(ratio(median(res.git_commit_s), diff_med))} |"
    )
    L += [
        "",
        f"sqldiff changeset per step: median {fmt_b(median(res.changeset_bytes))}"
        + (
            f"; `.dbvers` growth per commit (policy {headline.policy}): median "
            f"{fmt_b(median(headline.store_growth))}"
            if headline
            else ""
        )
        + ".",
        "",
    ]

    cp_med = median(res.cp_s)
    other_label = next(
        (p.other_label for p in res.runs if p.other_label),
        f"#{n} (tip)" if n > CHECKOUT_DISTANCE else "#0 (root)",
    )
    L += [
        f"**2. Checkout vs `cp`** (`cp` of the database file: {fmt_s(cp_med)}, median of "
        f"{len(res.cp_s)}). Checkout of commit #{min(CHECKOUT_DISTANCE, n)} (root = #0, "
        f"which always has a snapshot), then of {other_label}, in turn; median of "
        f"{args.repeats}.",
        "",
        "| snapshot policy | `[snapshot]` config | snapshots | commit median | "
        f"checkout #{min(CHECKOUT_DISTANCE, n)} | ratio to cp | checkout {other_label} | "
        "ratio to cp | `.dbvers` size |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pr in res.runs:
        if not pr.commit_s:
            continue
        mark = "" if pr.checkout_ok in (True, None) else " ⚠ content mismatch"
        t_med, tip_med = median(pr.checkout_target_s), median(pr.checkout_other_s)
        L.append(
            f"| {pr.policy} | {pr.config} | "
            f"{'n/a' if pr.snapshots is None else pr.snapshots} | "
            f"{fmt_s(median(pr.commit_s))} | {fmt_s(t_med)}{mark} | "
            f"{fmt_x(ratio(t_med, cp_med))} | {fmt_s(tip_med)} | "
            f"{fmt_x(ratio(tip_med, cp_med))} | {fmt_b(pr.store_bytes)} |"
        )
    L.append("")

    L += [
        f"**3. Store size after {n} commits** (apparent bytes, `du -sb`)",
        "",
        "| what | bytes | ratio to db file | ratio to git |",
        "|---|---:|---:|---:|",
        f"| database file (last version) | {res.db_bytes_final:,} | 1.00× | "
        f"{fmt_x(ratio(res.db_bytes_final, res.git_bytes))} |",
        f"| git repo, {n + 1} versions of the file, after `{res.git_gc}` "
        f"({fmt_s(res.git_gc_s)}) | {res.git_bytes:,} | "
        f"{fmt_x(ratio(res.git_bytes, res.db_bytes_final))} | 1.00× |",
    ]
    for pr in res.runs:
        if pr.commit_s:
            L.append(
                f"| `.dbvers`, policy {pr.policy} | {pr.store_bytes:,} | "
                f"{fmt_x(ratio(pr.store_bytes, res.db_bytes_final))} | "
                f"{fmt_x(ratio(pr.store_bytes, res.git_bytes))} |"
            )
    for pr in res.runs:
        cache = pr.store_breakdown.get("cache")
        if pr.commit_s and cache is not None:
            lean = pr.store_bytes - cache
            L.append(
                f"| `.dbvers` without `cache/` (rebuildable), policy {pr.policy} | {lean:,} | "
                f"{fmt_x(ratio(lean, res.db_bytes_final))} | {fmt_x(ratio(lean, res.git_bytes))} |"
            )
    if headline and headline.store_breakdown:
        parts = ", ".join(f"`{k}` {fmt_b(v)}" for k, v in headline.store_breakdown.items())
        L += ["", f"`.dbvers` contents, policy {headline.policy}: {parts}."]
    L.append("")

    if headline:
        root_only = next((p for p in res.runs if p.policy == "root-only" and p.commit_s), None)
        c_ratio = ratio(median(headline.commit_s), diff_med)
        verdict = ""
        if res.rows >= 1_000_000:
            verdict = " — target ≤ 1.5×: " + ("met" if c_ratio <= 1.5 else "**missed**")
        L += [
            "Summary:",
            "",
            f"- commit / sqldiff: {fmt_x(c_ratio)} (policy {headline.policy}){verdict}",
        ]
        if root_only:
            L.append(
                f"- checkout of a commit {root_only.target_index} past its snapshot / cp: "
                f"{fmt_x(ratio(median(root_only.checkout_target_s), cp_med))} "
                "(policy root-only)"
            )
        L.append(
            f"- store / db file: {fmt_x(ratio(headline.store_bytes, res.db_bytes_final))}; "
            f"store / git: {fmt_x(ratio(headline.store_bytes, res.git_bytes))} "
            f"(policy {headline.policy})"
        )
        L.append("")
    return "\n".join(L)


DOCS_HEADER = """# Benchmarks

Ratios against peers timed in the same run on the same machine (DESIGN.md section 7);
absolute times are for orientation only.

"""
CORE_HEADER = """## Core: commit, checkout, store size (`tests/benchmarks/bench_core.py`)

Peers: `sqldiff --changeset` (SQLite's own diff) for commit, `cp` of the database file
(the physical limit) for checkout, git holding every version of the file for storage.
See `tests/benchmarks/README.md` for how to run.

"""


def write_docs(sections: dict[int, str], path: Path = DOCS) -> None:
    text = path.read_text() if path.exists() else DOCS_HEADER
    if "## Core: commit, checkout, store size" not in text:
        text = text.rstrip("\n") + "\n\n" + CORE_HEADER
    for rows, body in sections.items():
        begin = f"<!-- bench_core rows={rows} begin -->"
        end = f"<!-- bench_core rows={rows} end -->"
        block = f"{begin}\n{body.strip()}\n{end}"
        pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if pat.search(text):
            text = pat.sub(lambda _m, b=block: b, text)
        else:
            # keep the sizes in ascending order inside the core section
            later = [
                m
                for m in re.finditer(r"<!-- bench_core rows=(\d+) begin -->", text)
                if int(m.group(1)) > rows
            ]
            ends = list(re.finditer(r"<!-- bench_core rows=\d+ end -->\n?", text))
            if later:
                i = later[0].start()
                text = text[:i] + block + "\n\n" + text[i:]
            elif ends:  # after the last section of this script, before anything else
                i = ends[-1].end()
                text = text[:i].rstrip("\n") + "\n\n" + block + "\n" + text[i:]
            elif CORE_HEADER in text:
                i = text.index(CORE_HEADER) + len(CORE_HEADER)
                text = text[:i] + block + "\n\n" + text[i:]
            else:
                text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="total rows of the generated database; one benchmark per value",
    )
    ap.add_argument("--commits", type=int, default=20, help="commits after the initial one")
    ap.add_argument("--fraction", type=float, default=0.01, help="share of rows changed per step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--workdir",
        type=Path,
        help="where to build the databases and repositories (default: a temp dir)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the working files")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 repeat instead of 3, fewer snapshot policies, plain git gc",
    )
    ap.add_argument(
        "--policies",
        nargs="+",
        metavar="POLICY",
        help="snapshot policies, each a repository of its own: default (as init "
        "writes it), root-only, max_commits=N, max_patch_ratio=X, or both "
        "joined by a comma; the first is the one paired with sqldiff "
        f"(default: {' '.join(FULL_POLICIES)}; --quick: {' '.join(QUICK_POLICIES)})",
    )
    ap.add_argument(
        "--git-gc",
        choices=["aggressive", "plain"],
        help="git gc --aggressive (default) or plain git gc (default with --quick)",
    )
    ap.add_argument("--repeats", type=int, help="repeats of cp and checkout (default 3, quick 1)")
    ap.add_argument(
        "--dbvers",
        help="command that runs dbvers (default: the venv's console "
        "script, PATH, else python -m dbvers)",
    )
    ap.add_argument("--sqldiff", default=shutil.which("sqldiff") or "/usr/bin/sqldiff")
    ap.add_argument(
        "--peers-only",
        action="store_true",
        help="measure only generator, sqldiff, cp and git (dbvers not needed)",
    )
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help=f"replace this size's section in {DOCS.relative_to(REPO_ROOT)}",
    )
    args = ap.parse_args(argv)
    args.policies_given = args.policies is not None
    args.git_gc_given = args.git_gc is not None
    if args.policies is None:
        args.policies = QUICK_POLICIES if args.quick else FULL_POLICIES
    for spec in args.policies:
        try:
            parse_policy(spec)
        except (argparse.ArgumentTypeError, ValueError):
            ap.error(f"bad policy {spec!r}")
    if args.git_gc is None:
        args.git_gc = "plain" if args.quick else "aggressive"
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.peers_only:
        args.policies = args.policies[:1]
    if args.commits < 1:
        ap.error("--commits must be at least 1")
    if not Path(args.sqldiff).exists():
        ap.error(f"sqldiff not found at {args.sqldiff} (Debian: apt-get install sqlite3-tools)")

    dbv = None
    if not args.peers_only:
        cmd = find_dbvers(args.dbvers)
        if not dbvers_works(cmd):
            ap.error(
                f"`{shlex.join(cmd)} --help` fails; install dbvers (pip install -e .) "
                "or pass --dbvers CMD, or --peers-only"
            )
        dbv = Dbvers(cmd)
        log(f"dbvers: {shlex.join(cmd)}")

    env = environment(dbv, args.sqldiff)
    made_tmp = args.workdir is None
    if made_tmp:
        base = Path(tempfile.mkdtemp(prefix="dbvers-bench-"))
    else:
        base = args.workdir.resolve()
        base.mkdir(parents=True, exist_ok=True)
    sections: dict[int, str] = {}
    try:
        for rows in args.rows:
            res = bench_size(args, rows, dbv, base)
            sections[rows] = render(res, args, env)
            print(sections[rows], flush=True)
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    finally:
        if made_tmp and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        elif args.keep:
            log(f"working files kept in {base}")
    if args.write_docs:
        if args.peers_only:
            log("not writing docs for a --peers-only run")
        else:
            write_docs(sections)
            log(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
