"""Crash safety: a process killed with SIGKILL at any instant leaves a sound repository.

A child process (a script generated into tmp, using the ``dbvers`` Python API)
loops doing edits, commits, checkouts of earlier commits and branches, hard
resets, restores, snapshots and gc. The test kills it at random moments and
then checks the reliability rules of DESIGN.md §6: ``fsck`` passes, HEAD
resolves, ``status`` runs, and the working database holds exactly HEAD's
committed state or the uncommitted state the child wrote last — never a mix.

How the test knows which states are possible: before the child makes a state
visible in the working database it builds the same state in a scratch copy,
dumps it (``conftest.dump_state``), and stores the dump under ``states/`` and
its name in ``last``; only after ``Repo.commit`` returns does it append
``<commit id> <state>`` to ``commits.log``.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import random
import selectors
import shutil
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import conftest
import pytest
from conftest import ForkedChild, Zygote, dump_state, run_cli

import dbvers

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("DBVERS_CRASH_KILLS", "60"))
MIN_KILLS = min(KILLS, 50)
TIME_BUDGET = float(os.environ.get("DBVERS_CRASH_BUDGET", "75"))
MARKERS = ("START", "EDIT", "COMMIT", "RESTORE", "CHECKOUT", "BRANCH", "RESET", "SNAPSHOT", "GC")

CHILD = r'''
from __future__ import annotations

import hashlib
import math
import os
import pickle
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

import dbvers
from dbvers.errors import NothingToCommitError

DB = Path(sys.argv[1])
WORK = Path(sys.argv[2])
rng = random.Random(int(sys.argv[3]))
STATES = WORK / "states"
LOG = WORK / "commits.log"
SCRATCH = WORK / f"scratch-{os.getpid()}.db"

@@DUMP@@


def mark(what: str) -> None:
    sys.stdout.write(what + "\n")
    sys.stdout.flush()


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def record(db_file: Path) -> str:
    """Store the exact state of *db_file*; make it the 'last written' state."""
    data = pickle.dumps(dump_state(db_file))
    h = hashlib.sha256(data).hexdigest()
    p = STATES / f"{h}.pkl"
    if not p.exists():
        atomic_write(p, data)
    atomic_write(WORK / "last", h.encode())
    return h


def value() -> Any:
    k = rng.randrange(6)
    if k == 0:
        return None
    if k == 1:
        return rng.randint(-10**12, 10**12)
    if k == 2:
        return rng.random() * 1000
    if k == 3:
        return "".join(rng.choice("abcxyz é€") for _ in range(rng.randint(0, 40)))
    if k == 4:
        return rng.randbytes(rng.randint(0, 30))
    return str(rng.randint(0, 9))  # text that looks like a number


def plan(conn: sqlite3.Connection) -> list[tuple[str, tuple[Any, ...]]]:
    """A deterministic batch of statements for the current state."""
    ids = [r[0] for r in conn.execute("SELECT id FROM items")]
    log_rowids = [r[0] for r in conn.execute("SELECT rowid FROM log")]
    keys = [r[0] for r in conn.execute("SELECT k FROM kv")]
    ncols = len(conn.execute("PRAGMA table_info(items)").fetchall())
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    out: list[tuple[str, tuple[Any, ...]]] = []
    k = rng.random()
    if k < 0.05 and ncols < 9:
        out.append((f"ALTER TABLE items ADD COLUMN c{ncols} DEFAULT {rng.randint(0, 9)}", ()))
    elif k < 0.08:
        out.append((f"PRAGMA user_version = {rng.randint(0, 10**6)}", ()))
    elif k < 0.10:
        if "extra" in tables:
            out.append(("DROP TABLE extra", ()))
        else:
            out.append(("CREATE TABLE extra(a INTEGER PRIMARY KEY, b)", ()))
            out.append(("INSERT INTO extra(b) VALUES (?), (?)", (value(), value())))
    for _ in range(rng.randint(0, 6)):
        out.append(("INSERT INTO items(name, qty, price) VALUES (?, ?, ?)", (value(), value(), value())))
    for i in rng.sample(ids, min(len(ids), rng.randint(0, 6))):
        out.append(("UPDATE items SET qty = ?, name = ? WHERE id = ?", (value(), value(), i)))
    for i in rng.sample(ids, min(len(ids), rng.randint(0, 3))):
        out.append(("DELETE FROM items WHERE id = ?", (i,)))
    for _ in range(rng.randint(0, 3)):
        out.append(("INSERT INTO log VALUES (?, ?)", (value(), value())))
    for r in rng.sample(log_rowids, min(len(log_rowids), rng.randint(0, 2))):
        out.append(("UPDATE log SET payload = ? WHERE rowid = ?", (value(), r)))
    for r in rng.sample(log_rowids, min(len(log_rowids), rng.randint(0, 2))):
        out.append(("DELETE FROM log WHERE rowid = ?", (r,)))
    for _ in range(rng.randint(0, 3)):
        out.append(("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"k{rng.randint(0, 60)}", value())))
    for key in rng.sample(keys, min(len(keys), rng.randint(0, 2))):
        out.append(("DELETE FROM kv WHERE k = ?", (key,)))
    for _ in range(rng.randint(0, 2)):
        out.append(("INSERT INTO seq(v) VALUES (?)", (value(),)))
    if rng.random() < 0.2:
        out.append(("DELETE FROM seq WHERE id = (SELECT max(id) FROM seq)", ()))
    return out


def run(conn: sqlite3.Connection, stmts: list[tuple[str, tuple[Any, ...]]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for q, params in stmts:
        conn.execute(q, params)
    conn.execute("COMMIT")


def edit() -> str:
    """Change the working database; its new state is recorded before it becomes visible."""
    SCRATCH.unlink(missing_ok=True)
    src = sqlite3.connect(DB)
    dst = sqlite3.connect(SCRATCH, isolation_level=None)
    src.backup(dst)
    src.close()
    stmts = plan(dst)
    run(dst, stmts)
    dst.close()
    h = record(SCRATCH)
    SCRATCH.unlink()
    mark("EDIT")
    conn = sqlite3.connect(DB, isolation_level=None)
    try:
        run(conn, stmts)
    finally:
        conn.close()
    return h


def commit(h: str) -> None:
    mark("COMMIT")
    try:
        c = repo.commit(f"edit {h[:8]}")
    except NothingToCommitError:
        return
    with open(LOG, "a") as f:
        f.write(f"{c.id} {h}\n")


def logged() -> list[str]:
    out = []
    for line in LOG.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64 and len(parts[1]) == 64:
            out.append(parts[0])
    return out


mark("START")
repo = dbvers.open(DB)
if not repo.status().clean or rng.random() < 0.3:
    # A previous child was killed with changes not yet committed: keep or drop them.
    if rng.random() < 0.6:
        commit(record(DB))
    else:
        mark("RESTORE")
        repo.restore(force=True)
mark("READY")
while True:
    x = rng.random()
    if x < 0.42:
        commit(edit())
    elif x < 0.52:
        edit()
        mark("RESTORE")
        repo.restore(force=True)
    elif x < 0.67:
        mark("CHECKOUT")
        repo.checkout(rng.choice(logged()))
    elif x < 0.80:
        name = rng.choice(["main", "b1", "b2", "b3"])
        mark("BRANCH")
        if name in repo.branches():
            repo.checkout(name)
        else:
            repo.checkout("HEAD", create_branch=name)
    elif x < 0.92:
        target = rng.choice(repo.log("HEAD", n=6)).id
        mark("RESET")
        repo.reset(target, hard=True)
    elif x < 0.97:
        mark("SNAPSHOT")
        repo.snapshot()
    else:
        mark("GC")
        repo.gc()
'''


def _child_source() -> str:
    dump = inspect.getsource(conftest._exact) + "\n\n" + inspect.getsource(conftest.dump_state)
    return CHILD.replace("@@DUMP@@", dump)


def _make_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty, price REAL);
        CREATE TABLE log(kind, payload);
        CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
        CREATE INDEX items_name ON items(name);
        """
    )
    rng = random.Random(7)
    conn.executemany(
        "INSERT INTO items(name, qty, price) VALUES (?, ?, ?)",
        [(f"item {i} " + "x" * rng.randint(0, 200), rng.randint(0, 99), rng.random()) for i in range(400)],
    )
    conn.executemany("INSERT INTO log VALUES (?, ?)", [("e", i) for i in range(100)])
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [(f"k{i}", i) for i in range(40)])
    conn.executemany("INSERT INTO seq(v) VALUES (?)", [(i,) for i in range(10)])
    conn.commit()
    conn.close()


class _States:
    """The states the children wrote, and the commits they saw returned."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.states: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        for p in (self.work / "states").glob("*.pkl"):
            if p.stem not in self.states:
                self.states[p.stem] = pickle.loads(p.read_bytes())

    def last(self) -> dict[str, Any]:
        return self.states[(self.work / "last").read_text().strip()]

    def commits(self) -> dict[str, str]:
        out = {}
        for line in (self.work / "commits.log").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and len(parts[0]) == 64 and len(parts[1]) == 64:
                out[parts[0]] = parts[1]
        return out

    def known(self, state: dict[str, Any]) -> bool:
        return any(state == s for s in self.states.values())


def _state_of_commit(repo: dbvers.Repo, oid: str, tmp: Path) -> dict[str, Any]:
    copy = tmp / f"m-{oid[:12]}.db"
    shutil.copyfile(repo.materialize(oid), copy)
    try:
        return dump_state(copy)
    finally:
        copy.unlink()


def _kill_at_random_moment(proc: ForkedChild, rng: random.Random) -> str | None:
    """Wait for a chosen progress marker, sleep 0–300 ms, SIGKILL. Returns the last marker seen."""
    target = rng.choice(MARKERS)
    skip = rng.choice([0, 0, 0, 1, 2]) if target in ("EDIT", "COMMIT", "CHECKOUT") else 0
    delay = rng.uniform(0, rng.choice([0.004, 0.02, 0.08, 0.3]))
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 20  # for the child to start (a loaded CI machine is slow)
    last = None
    seen = 0
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(timeout=left):
                break
            line = proc.stdout.readline()
            if not line:  # the child died on its own
                return None
            last = line.strip()
            if last == target:
                if seen == skip:
                    break
                seen += 1
            if last == "READY":
                deadline = time.monotonic() + 0.5  # a rare marker: kill wherever the child is
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=10)
        # Drain the markers printed during the delay: the phase the kill landed in.
        for line in proc.stdout.read().splitlines():
            last = line.strip() or last
    finally:
        sel.close()
    return last


def test_sigkill_at_random_moments_leaves_a_sound_repository(tmp_path: Path, zygote: Zygote) -> None:
    db = tmp_path / "data.db"
    work = tmp_path / "work"
    (work / "states").mkdir(parents=True)
    _make_db(db)
    init_state = dump_state(db)
    data = pickle.dumps(init_state)
    h0 = hashlib.sha256(data).hexdigest()
    (work / "states" / f"{h0}.pkl").write_bytes(data)
    (work / "last").write_text(h0)
    repo = dbvers.init(db)
    (work / "commits.log").write_text(f"{repo.resolve('HEAD')} {h0}\n")

    child = tmp_path / "child.py"
    child.write_text(_child_source())
    seed = int(os.environ.get("DBVERS_CRASH_SEED", str(random.randrange(10**9))))
    print(f"crash loop seed {seed}")
    rng = random.Random(seed)
    known = _States(work)
    phases: Counter[str] = Counter()
    clean_states = 0
    child_time = fsck_time = 0.0
    start = time.monotonic()
    kills = 0
    while kills < KILLS and time.monotonic() - start < TIME_BUDGET:
        stderr_path = tmp_path / "child.err"
        with open(stderr_path, "w") as err:
            # A process of its own, forked with dbvers already imported (see conftest.Zygote).
            proc = zygote.popen([sys.executable, str(child), str(db), str(work), str(rng.randrange(10**9))],
                                stderr=err)
            t0 = time.monotonic()
            last = _kill_at_random_moment(proc, rng)
            child_time += time.monotonic() - t0
        if last is None:
            proc.wait(timeout=10)
            pytest.fail(
                f"child exited on its own (rc {proc.returncode}) after {kills} kills, seed {seed}:\n"
                + stderr_path.read_text()
            )
        kills += 1
        phases[last] += 1

        # The next dbvers call recovers whatever the killed one left half done.
        t0 = time.monotonic()
        repo = dbvers.open(db)
        report = repo.fsck()
        fsck_time += time.monotonic() - t0
        assert report.ok, f"fsck after kill {kills} (in {last}, seed {seed}): {report.problems}"
        status = repo.status()
        head = repo.resolve("HEAD")
        known.load()
        commits = known.commits()
        working = dump_state(db)
        head_state = _state_of_commit(repo, head, tmp_path)

        ctx = f"after kill {kills} (last marker {last}, seed {seed})"
        assert known.known(head_state), f"HEAD's state was never written by a child {ctx}"
        if head in commits:
            assert head_state == known.states[commits[head]], f"HEAD's commit holds a wrong state {ctx}"
        last_state = known.last()
        assert working in (head_state, last_state), (
            f"working database is neither HEAD's state nor the last state written {ctx}"
        )
        # The allowed set of the contract: any committed state or the pending pre-commit one.
        committed = [known.states[s] for s in commits.values()]
        assert working in (last_state, head_state) or working in committed
        assert status.clean == (working == head_state), (
            f"status says clean={status.clean} but the data {'equals' if working == head_state else 'differs from'} "
            f"HEAD's {ctx}"
        )
        clean_states += status.clean
        assert repo.head.commit == head

    elapsed = time.monotonic() - start
    print(f"{kills} kills in {elapsed:.1f}s (children {child_time:.1f}s, fsck {fsck_time:.1f}s); "
          f"last marker before the kill: {dict(phases)}; {clean_states} clean after recovery")
    assert kills >= MIN_KILLS, f"only {kills} kills fit in {TIME_BUDGET}s"
    assert len(phases) >= 4, f"kills landed in too few phases: {dict(phases)}"

    # Every commit a child saw returned still materializes to exactly the state it recorded.
    repo = dbvers.open(db)
    commits = known.commits()
    assert len(commits) > 10
    for oid, h in commits.items():
        assert _state_of_commit(repo, oid, tmp_path) == known.states[h], f"commit {oid[:12]}"
    # And the repository still works normally.
    repo.restore(force=True)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO items(name) VALUES ('after the crashes')")
    conn.commit()
    conn.close()
    c = repo.commit("after the crashes")
    first = next(iter(commits))
    repo.checkout(first, force=True)
    assert dump_state(db) == init_state
    repo.checkout(c.id)
    result = run_cli("--db", str(db), "fsck")
    assert result.returncode == 0, result.stdout + result.stderr
