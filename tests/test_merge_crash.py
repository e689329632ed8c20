"""A merge killed at any instant: the store passes fsck and the working database is ours, the
merged state (ours in the conflicting rows), or the resolved one — never a mix.

A child process loops: merge (conflicts) → resolve --theirs → continue, or → abort, then a
hard reset back to ours; the test SIGKILLs it at random moments and checks what is left.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from conftest import Zygote, dump_state

import dbvers

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("DBVERS_MERGE_KILLS", "16"))

CHILD = r"""
import sys
import dbvers

repo = dbvers.open(sys.argv[1])
ours = sys.argv[2]
print("READY", flush=True)
n = 0
while True:
    n += 1
    print("MERGE", flush=True)
    repo.merge("feature")
    if n % 3 == 0:
        print("ABORT", flush=True)
        repo.merge_abort()
    else:
        print("RESOLVE", flush=True)
        repo.resolve_conflicts("theirs")
        print("CONTINUE", flush=True)
        repo.merge_continue()
    print("RESET", flush=True)
    repo.reset(ours, hard=True)
"""


def _sql(db: Path, script: str) -> None:
    con = sqlite3.connect(db)
    con.executescript(script)
    con.commit()
    con.close()


def test_sigkill_during_merge_resolve_continue_abort(tmp_path: Path, zygote: Zygote) -> None:
    db = tmp_path / "data.db"
    _sql(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, a, b);" + "".join(
        f"INSERT INTO t VALUES ({i}, 'a{i}', 'b{i}');" for i in range(200)))
    repo = dbvers.init(db)
    repo.branch("feature")
    repo.checkout("feature")
    _sql(db, "UPDATE t SET a = 'F' WHERE id < 20; UPDATE t SET b = 'F' WHERE id >= 150;")
    repo.commit("feature")
    repo.checkout("main")
    _sql(db, "UPDATE t SET a = 'M' WHERE id < 10; DELETE FROM t WHERE id BETWEEN 100 AND 110;")
    repo.commit("main")
    ours = repo.resolve("HEAD")
    allowed = [dump_state(db)]
    repo.merge("feature")
    allowed.append(dump_state(db))  # merged, ours in the 10 conflicting rows
    repo.resolve_conflicts("theirs")
    allowed.append(dump_state(db))
    repo.merge_abort()
    assert dump_state(db) == allowed[0]

    rng = random.Random(7)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    seen: set[str] = set()
    for _ in range(KILLS):
        # A process of its own, forked with dbvers already imported (see conftest.Zygote).
        child = zygote.popen([sys.executable, str(script), str(db), ours])
        # Killed at a random instant of its loop, timed from when it is ready. The child
        # starts with pandas imported (the first merge used to spend a second importing it,
        # and most kills landed there); 0.75 s spans a few rounds of the loop.
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.strip() == "READY", first + (child.stderr.read() if child.stderr else "")
        time.sleep(rng.uniform(0.0, 0.75))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        assert "Traceback" not in err, err
        seen.update(out.split())
        journal = db.parent / ".dbvers" / "CHECKOUT"
        left = (journal.read_text() if journal.exists() else None,
                sorted(p.name for p in (db.parent / ".dbvers").iterdir() if p.name.startswith("MERGE")),
                out.split()[-3:], allowed.index(dump_state(db)) if dump_state(db) in allowed else None)
        repo = dbvers.open(db)
        assert repo.fsck().ok, repo.fsck().problems
        state = dump_state(db)
        assert state in allowed, "the working database is a mix of states"
        op = repo.operation()
        if op is not None:  # a merge left in progress is whole: abort puts ours back exactly
            assert state in allowed[1:]
            repo.merge_abort()
        elif state != allowed[0]:
            # No operation left: the merge was concluded (HEAD is its commit, holding the state).
            head = repo.resolve("HEAD")
            assert head != ours and repo.get_commit(head).parents[0] == ours, (allowed.index(state), left)
        repo.reset(ours, hard=True)
        assert dump_state(db) == allowed[0]
    assert {"MERGE", "RESOLVE", "CONTINUE"} <= seen, seen


class Killed(BaseException):
    """Stands for SIGKILL inside a call: nothing after it runs, no handler catches it."""


def test_abort_killed_before_its_copy_committed_leaves_the_merge_in_progress(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "data.db"
    _sql(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, a); INSERT INTO t VALUES (1, 'x'), (2, 'y');")
    repo = dbvers.init(db)
    repo.branch("feature")
    repo.checkout("feature")
    _sql(db, "UPDATE t SET a = 'F' WHERE id = 1; UPDATE t SET a = 'G' WHERE id = 2")
    repo.commit("feature")
    repo.checkout("main")
    _sql(db, "UPDATE t SET a = 'M' WHERE id = 1")
    ours = repo.commit("main").id
    ours_state = dump_state(db)
    repo.merge("feature")  # a conflict on row 1, row 2 merged
    merged = dump_state(db)

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed

    from dbvers import sqlio

    with monkeypatch.context() as m:
        m.setattr(sqlio, "copy_in", killed)
        with pytest.raises(Killed):
            repo.merge_abort()
    # The next command's recovery: the abort never wrote ours back, so the merge is still
    # in progress (it used to be forgotten, leaving its rows as uncommitted changes).
    repo = dbvers.open(db)
    assert repo.operation() is not None and dump_state(db) == merged
    assert repo.resolve("HEAD") == ours
    repo.merge_abort()  # and aborting again finishes the job
    assert repo.operation() is None and dump_state(db) == ours_state and repo.status().clean
