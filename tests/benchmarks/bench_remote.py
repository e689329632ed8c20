"""Remote benchmarks: push and clone through S3 (a moto server on 127.0.0.1) and a directory,
against boto3 / ``cp -r`` moving the same bytes in the same run.

A history of the benchmark database (tests/benchmarks/gen.py): one root snapshot, then
``--commits`` (20) commits of small changes (``--fraction`` of the rows each), with automatic
snapshots off so the history is exactly one keyframe plus patches. Measured (best of
``--repeat``, each on a fresh prefix / directory):

1. ``Repo.push`` of the whole history to a new ``s3://`` prefix (probe and remote creation
   included) vs boto3 ``upload_file`` of every file of the store's ``objects/`` directory
   (boto3's default ``TransferConfig``, a ``ThreadPoolExecutor`` of 8, the same client
   options as dbvers's). Target (issue 13): at most 1.3x.
2. ``dbvers.clone`` of that remote (a new database file and store, checked out) vs boto3
   ``download_file`` of every object key (8 threads). Target: at most 1.5x.
3. An incremental push of one small commit (a one-row UPDATE) in a warm process (the client
   already made). Target: at most 0.5 s on loopback. For the record, the same as a whole
   ``dbvers push`` process (boto3's import included).
4. The same for a directory remote: push vs ``cp -r objects/``, clone vs ``cp -r`` back, and
   an incremental push.

The server is its own process (``python -m moto.server``), with dummy credentials and no
instance metadata: nothing leaves the loopback interface.

Usage::

    .venv/bin/python tests/benchmarks/bench_remote.py --rows 100000 --repeat 1    # smoke run
    .venv/bin/python tests/benchmarks/bench_remote.py --rows 1000000 --repeat 3   # docs/benchmarks.md
    ... --profile push|clone|incremental   # cProfile of one dbvers operation (to stderr)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench_core import (
    SUBPROCESS_ENV,
    apply_policy,
    find_dbvers,
    fingerprint,
    fmt_b,
    fmt_s,
    parse_policy,
    ratio,
)
from gen import generate, mutate

import dbvers

BUCKET = "dbvers-bench"
PEER_THREADS = 8
ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def best_of(n: int, fn: Callable[[int], object]) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process *pid* has used so far (Linux's /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best_of_cpu(n: int, fn: Callable[[int], object], server_pid: int) -> tuple[float, float, float]:
    """(seconds, this process's CPU seconds, the server's; -1 when unknown) of the fastest of *n* runs.

    On a machine of two cores the client and the server share, what each side spends in CPU
    explains the wall-clock ratio better than the wall clock alone."""
    best: tuple[float, float, float] | None = None
    for i in range(n):
        s0, c0, t0 = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        fn(i)
        t, c, s1 = time.perf_counter() - t0, time.process_time() - c0, cpu_seconds(server_pid)
        run = (t, c, s1 - s0 if s0 is not None and s1 is not None else -1.0)
        if best is None or t < best[0]:
            best = run
    assert best is not None
    return best


# -- the server and the peer client -----------------------------------------------------------------

def start_listening(argv: Callable[[int], list[str]], failure: str, timeout: float,
                    **popen: Any) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server *argv(port)* on a free port of 127.0.0.1; (process, its URL) once it
    accepts connections, else SystemExit(*failure*)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(argv(port), **popen)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(failure) from None
            time.sleep(0.05)


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    os.environ.update(ENV)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    return start_listening(lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                           "moto's server did not start (is moto[server] installed?)", 60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_link(endpoint: str, rtt: float, mbps: float) -> tuple[subprocess.Popen[bytes], str]:
    """``slowlink.py`` (its own process) in front of *endpoint*: the URL both clients then use."""
    script = Path(__file__).with_name("slowlink.py")
    return start_listening(lambda port: [sys.executable, str(script), "--port", str(port), "--upstream",
                                         endpoint.removeprefix("http://"), "--rtt", str(rtt), "--mbps", str(mbps)],
                           "the slow link did not start", 30)


def peer_client(endpoint: str) -> Any:
    """A boto3 client with the options dbvers's own has (path style, no checksum trailers, a pool
    big enough for 8 threads of parallel multipart transfers), so only the transfer code differs."""
    import boto3
    import botocore.config

    cfg = botocore.config.Config(s3={"addressing_style": "path"}, max_pool_connections=32,
                                 request_checksum_calculation="when_required",
                                 response_checksum_validation="when_required")
    return boto3.client("s3", endpoint_url=endpoint, config=cfg)


def object_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "objects").rglob("*") if p.is_file())


def peer_upload(client: Any, files: list[Path], root: Path, prefix: str) -> None:
    def one(p: Path) -> None:
        client.upload_file(str(p), BUCKET, f"{prefix}/{p.relative_to(root).as_posix()}")
    with ThreadPoolExecutor(PEER_THREADS) as pool:
        list(pool.map(one, files))


def peer_download(client: Any, keys: list[str], prefix: str, dest: Path) -> None:
    def one(key: str) -> None:
        out = dest / key
        out.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, f"{prefix}/{key}", str(out))
    with ThreadPoolExecutor(PEER_THREADS) as pool:
        list(pool.map(one, keys))


# -- the history ------------------------------------------------------------------------------------

def build_history(work: Path, rows: int, commits: int, fraction: float) -> tuple[Path, dbvers.Repo]:
    """The history in ``work/src``; a pristine copy of it is kept in ``work/pristine-*`` and
    reused by a later run with the same ``--workdir`` and sizes (it takes minutes at 1M rows)."""
    pristine = work / f"pristine-{rows}-{commits}-{fraction}"
    if not (pristine / ".dbvers" / "config").is_file():
        shutil.rmtree(pristine, ignore_errors=True)
        pristine.mkdir()
        db = pristine / "bench.db"
        log(f"generating {rows:,} rows ...")
        generate(db, rows)
        repo = dbvers.init(db)
        apply_policy(repo.store_dir, parse_policy("root-only"))  # no automatic keyframes: one snapshot + patches
        repo = dbvers.open(db)
        for i in range(commits):
            mutate(db, fraction, seed=i + 1)
            repo.commit(f"step {i + 1}")
        log(f"history: {commits + 1} commits")
    for old in work.iterdir():  # what an earlier run left
        if not old.name.startswith("pristine-"):
            shutil.rmtree(old, ignore_errors=True)
    src = work / "src"
    shutil.copytree(pristine, src)
    db = src / "bench.db"
    return db, dbvers.open(db)


def one_row_update(db: Path, n: int) -> None:
    con = sqlite3.connect(db)
    con.execute("UPDATE orders SET note = ? WHERE id = 1", (f"incremental {n}",))
    con.commit()
    con.close()


def profiled(fn: Callable[[], object]) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(35)


# -- the measurements -------------------------------------------------------------------------------

def bench_s3(work: Path, db: Path, repo: dbvers.Repo, endpoint: str, repeat: int, dbv: list[str],
             profile: str | None, server_pid: int) -> dict[str, float]:
    client = peer_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    store = repo.store_dir
    files = object_files(store)
    keys = [p.relative_to(store).as_posix() for p in files]
    r: dict[str, float] = {"objects": len(files), "bytes": sum(p.stat().st_size for p in files)}
    # Warm dbvers's client (made once per process, like the peer's above).
    repo.remote_add("warm", f"s3://{BUCKET}/warm", endpoint_url=endpoint)
    names: list[str] = []

    def push(i: int) -> None:
        name = f"s3r{len(names)}"
        repo.remote_add(name, f"s3://{BUCKET}/{name}", endpoint_url=endpoint)
        names.append(name)
        repo.push(name)

    def upload(i: int) -> None:
        peer_upload(client, files, store, f"peer-up-{secrets.token_hex(4)}")

    log("S3: push vs upload_file ...")
    r["peer_upload"], r["peer_upload_cpu"], r["peer_upload_server_cpu"] = best_of_cpu(repeat, upload, server_pid)
    r["push"], r["push_cpu"], r["push_server_cpu"] = best_of_cpu(repeat, push, server_pid)
    url = f"s3://{BUCKET}/{names[0]}"

    def clone(i: int) -> None:
        dest = work / f"clone-s3-{secrets.token_hex(4)}"
        dbvers.clone(url, dest / "bench.db", endpoint_url=endpoint)

    def download(i: int) -> None:
        peer_download(client, keys, names[0], work / f"peer-down-{secrets.token_hex(4)}")

    log("S3: clone vs download_file ...")
    r["peer_download"], r["peer_download_cpu"], r["peer_download_server_cpu"] = best_of_cpu(
        repeat, download, server_pid)
    r["clone"], r["clone_cpu"], r["clone_server_cpu"] = best_of_cpu(repeat, clone, server_pid)
    clones = sorted(work.glob("clone-s3-*/bench.db"))
    if fingerprint(clones[0]) != fingerprint(db):
        raise SystemExit("the S3 clone differs from the original database")

    log("S3: incremental push of a one-row commit ...")
    counter = [0]

    def one_commit() -> None:
        counter[0] += 1
        one_row_update(db, counter[0])
        repo.commit(f"one row {counter[0]}")

    warm = []
    for _ in range(repeat):
        one_commit()
        t0 = time.perf_counter()
        repo.push(names[0])
        warm.append(time.perf_counter() - t0)
    r["incremental"] = min(warm)
    cli = []
    for _ in range(repeat):
        one_commit()
        t0 = time.perf_counter()
        subprocess.run([*dbv, "push", names[0]], cwd=db.parent, check=True, env={**SUBPROCESS_ENV, **ENV},
                       stdout=subprocess.DEVNULL)
        cli.append(time.perf_counter() - t0)
    r["incremental_cli"] = min(cli)
    if profile:
        log(f"cProfile of one S3 {profile}:")
        if profile == "push":
            profiled(lambda: push(0))
        elif profile == "clone":
            profiled(lambda: clone(0))
        else:
            one_commit()
            profiled(lambda: repo.push(names[0]))
    return r


def bench_dir(work: Path, db: Path, repo: dbvers.Repo, repeat: int) -> dict[str, float]:
    store = repo.store_dir
    r: dict[str, float] = {}
    dirs: list[Path] = []

    def push(i: int) -> None:
        d = work / f"dir-remote-{len(dirs)}"
        repo.remote_add(d.name, str(d))
        dirs.append(d)
        repo.push(d.name)

    def cp_up(i: int) -> None:
        d = work / f"cp-up-{secrets.token_hex(4)}"
        d.mkdir()
        subprocess.run(["cp", "-r", str(store / "objects"), str(d)], check=True)

    log("directory: push vs cp -r ...")
    r["cp_up"] = best_of(repeat, cp_up)
    r["push"] = best_of(repeat, push)

    def clone(i: int) -> None:
        dbvers.clone(str(dirs[0]), work / f"clone-dir-{secrets.token_hex(4)}" / "bench.db")

    def cp_down(i: int) -> None:
        d = work / f"cp-down-{secrets.token_hex(4)}"
        d.mkdir()
        subprocess.run(["cp", "-r", str(dirs[0] / "objects"), str(d)], check=True)

    log("directory: clone vs cp -r ...")
    r["cp_down"] = best_of(repeat, cp_down)
    r["clone"] = best_of(repeat, clone)
    times = []
    for i in range(repeat):
        one_row_update(db, 1000 + i)
        repo.commit(f"dir one row {i}")
        t0 = time.perf_counter()
        repo.push(dirs[0].name)
        times.append(time.perf_counter() - t0)
    r["incremental"] = min(times)
    return r


def _cpu_row(what: str, r: dict[str, float], ours: str, peer: str) -> str:
    def cpu(k: str) -> str:
        server = r[f"{k}_server_cpu"]
        return f"{r[f'{k}_cpu']:.2f} + {server:.2f}" if server >= 0 else f"{r[f'{k}_cpu']:.2f} + ?"
    total = r[f"{ours}_cpu"] + max(r[f"{ours}_server_cpu"], 0)
    peer_total = r[f"{peer}_cpu"] + max(r[f"{peer}_server_cpu"], 0)
    return (f"| CPU seconds of the fastest S3 {what}: client + moto server | {cpu(ours)} | {cpu(peer)} "
            f"| {ratio(total, peer_total):.2f}× | report | |")


def report(rows: int, s3: dict[str, float], d: dict[str, float] | None, argv: list[str]) -> str:
    ok = lambda good: "yes" if good else "**no**"  # noqa: E731
    up, down = ratio(s3["push"], s3["peer_upload"]), ratio(s3["clone"], s3["peer_download"])
    L = [
        f"{rows:,} rows; the store's objects: {int(s3['objects'])} files, {fmt_b(s3['bytes'])}. "
        f"Reproduce: `.venv/bin/python tests/benchmarks/bench_remote.py {' '.join(argv)}`",
        "",
        "| measurement | dbvers | peer | ratio | target | met |",
        "|---|---|---|---|---|---|",
        f"| S3 push of the whole history | `Repo.push` {fmt_s(s3['push'])} | boto3 `upload_file` × 8 threads "
        f"{fmt_s(s3['peer_upload'])} | {up:.2f}× | ≤ 1.3× | {ok(up <= 1.3)} |",
        f"| S3 clone | `dbvers.clone` {fmt_s(s3['clone'])} | boto3 `download_file` × 8 threads "
        f"{fmt_s(s3['peer_download'])} | {down:.2f}× | ≤ 1.5× | {ok(down <= 1.5)} |",
        f"| S3 incremental push, one-row commit, warm process | {fmt_s(s3['incremental'])} | | | ≤ 0.5 s "
        f"| {ok(s3['incremental'] <= 0.5)} |",
        f"| the same, a whole `dbvers push` process | {fmt_s(s3['incremental_cli'])} | | | report | |",
        _cpu_row("push", s3, "push", "peer_upload"),
        _cpu_row("clone", s3, "clone", "peer_download"),
    ]
    if d:
        L += [
            f"| directory push of the whole history | {fmt_s(d['push'])} | `cp -r objects` {fmt_s(d['cp_up'])} "
            f"| {ratio(d['push'], d['cp_up']):.2f}× | report | |",
            f"| directory clone | {fmt_s(d['clone'])} | `cp -r objects` {fmt_s(d['cp_down'])} "
            f"| {ratio(d['clone'], d['cp_down']):.2f}× | report | |",
            f"| directory incremental push, one-row commit | {fmt_s(d['incremental'])} | | | report | |",
        ]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--fraction", type=float, default=0.001, help="share of rows each commit changes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-dir", action="store_true", help="skip the directory remote")
    ap.add_argument("--profile", choices=["push", "clone", "incremental"],
                    help="also print a cProfile of one such operation")
    ap.add_argument("--rtt", type=float, help="put a slow link between the clients and the server: "
                    "this many milliseconds per connection (moto opens one per request)")
    ap.add_argument("--mbps", type=float, default=100.0, help="the slow link's megabytes a second, each way")
    ap.add_argument("--workdir", type=Path,
                    help="keep the files here and reuse the history on a rerun (default: a temp dir)")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dbvers-bench-remote-"))
    work.mkdir(parents=True, exist_ok=True)
    server, endpoint = start_moto()
    link, endpoint = start_link(endpoint, args.rtt, args.mbps) if args.rtt is not None else (None, endpoint)
    t0 = time.perf_counter()
    try:
        db, repo = build_history(work, args.rows, args.commits, args.fraction)
        s3 = bench_s3(work, db, repo, endpoint, args.repeat, find_dbvers(None), args.profile, server.pid)
        d = None if args.no_dir else bench_dir(work, db, repo, args.repeat)
    finally:
        for proc in (link, server):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    cmd = [f"--rows {args.rows}", f"--repeat {args.repeat}"]
    cmd += [f"--commits {args.commits}"] if args.commits != 20 else []
    cmd += [f"--fraction {args.fraction}"] if args.fraction != 0.001 else []
    cmd += [f"--rtt {args.rtt:g} --mbps {args.mbps:g}"] if args.rtt is not None else []
    print(report(args.rows, s3, d, cmd + (["--no-dir"] if args.no_dir else [])))
    print("\nraw seconds:", {k: round(v, 3) for k, v in {**s3, **{f"dir_{k}": v for k, v in (d or {}).items()}}
                             .items()})
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
