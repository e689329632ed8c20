"""A push, fetch or clone SIGKILLed at random instants leaves both sides valid, and a rerun completes.

Valid means: every ref on the remote (and every local ref) points to a complete
history — each commit it reaches, and each object those commits need, is there
and matches its id — and the local store passes fsck. The child process imports
dbvers first and waits for "go", so the kill lands inside the transfer, not in
Python's start-up. The kill instants are fractions of an uninterrupted run of the
same operation timed just before (a fixed delay would let a fast machine finish
every run before its kill, and the test would prove nothing).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import dump_state, execute, moto_remote_url
from test_sync import RemoteAt, make_db

import dbvers
from dbvers import graph
from dbvers.errors import RepositoryExistsError
from dbvers.remotes import make_remote

CHILD = r"""
import sys, dbvers
import boto3  # imported before "ready": a kill must land in the transfer, not in this import
repo = dbvers.open(sys.argv[1])
action, remote = sys.argv[2], sys.argv[3]
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
if action == "push":
    repo.push(remote, all=True)
elif action == "fetch":
    repo.fetch(remote)
print("done", flush=True)
"""

CLONE_CHILD = r"""
import sys, dbvers
import boto3  # (as above)
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
dbvers.clone(sys.argv[1], sys.argv[2], endpoint_url=sys.argv[3] or None)
print("done", flush=True)
"""


@pytest.fixture(params=["directory", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteAt:
    if request.param == "directory":
        return RemoteAt(str(tmp_path / "remote"))
    return RemoteAt(moto_remote_url(), request.getfixturevalue("s3_endpoint"))


def history(path: Path, commits: int) -> dbvers.Repo:
    repo = dbvers.init(make_db(path, rows=2000))
    for i in range(commits):
        execute(repo.path, f"UPDATE t SET v = {i} WHERE id % 97 = {i}; INSERT INTO bag VALUES ({i}, {i})")
        repo.commit(f"commit {i}")
        if i == commits // 2:
            repo.branch("side")
    return repo


def assert_complete(objects, refs: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Every ref reaches only commits that are there, each with every object it needs."""
    reach = graph.walk(objects, refs)
    assert not reach.damaged, reach.problems
    for c in reach.commits.values():
        for oid, kind in c.typed_references():
            assert objects.verify(oid) == kind


def remote_refs(backend) -> dict[str, str]:  # type: ignore[no-untyped-def]
    refs = {v: f"refs/heads/{k}" for k, v in backend.refs.list("refs/heads/").items()}
    refs.update({v: f"refs/tags/{k}" for k, v in backend.refs.list("refs/tags/").items()})
    return refs


def run_child(args: list[str], kill_after: float | None = None) -> tuple[bool, float]:
    """Run a child, let it start, SIGKILL it *kill_after* seconds into the work (or let it finish).

    Returns whether it finished, and how long its work took (from "go" to "done").
    """
    child = subprocess.Popen([sys.executable, "-c", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "ready\n"
    child.stdin.write("go\n")
    child.stdin.flush()
    start = time.perf_counter()
    if kill_after is None:
        done = child.stdout.readline() == "done\n"
        elapsed = time.perf_counter() - start
        child.communicate(timeout=60)
        assert done and child.returncode == 0, "the uninterrupted run failed"
        return True, elapsed
    time.sleep(kill_after)
    child.kill()
    out, _ = child.communicate(timeout=60)
    return "done" in out, time.perf_counter() - start


def kill_instants(full_run: float, count: int, rng: random.Random) -> list[float]:
    """*count* instants spread over an uninterrupted run's duration, earliest first.

    The first lands in the first 1/(count+1) of a run that still has everything to
    do, so at least one kill is inside the transfer however fast the machine is.
    """
    return [full_run * (i + rng.random()) / (count + 1) for i in range(count)]


def test_push_killed_at_random_instants_leaves_the_remote_consistent(remote: RemoteAt, tmp_path: Path) -> None:
    repo = history(tmp_path / "a" / "data.db", 12)
    repo.remote_add("origin", remote.url, **remote.options)
    repo.remote_add("calibration", str(tmp_path / "calibration") if remote.endpoint_url is None
                    else moto_remote_url(), **remote.options)
    _, full_run = run_child([CHILD, str(repo.path), "push", "calibration"])
    rng = random.Random(7)
    finished = 0
    for instant in kill_instants(full_run, 5, rng):
        finished += run_child([CHILD, str(repo.path), "push", "origin"], instant)[0]
        backend = make_remote(remote.url, **remote.options)
        if backend.exists():
            assert_complete(backend.objects, remote_refs(backend))
        assert repo.fsck().ok
    assert finished < 5  # at least one kill landed inside the push (else this test proves nothing)
    repo.push(all=True)  # a rerun completes
    backend = make_remote(remote.url, **remote.options).check()
    assert backend.refs.read("refs/heads/main") == repo.head.commit
    assert backend.refs.read("refs/heads/side") == repo.branches()["side"]
    assert_complete(backend.objects, remote_refs(backend))
    clone = dbvers.clone(remote.url, tmp_path / "b" / "data.db", **remote.options)
    assert [c.id for c in clone.log()] == [c.id for c in repo.log()]


def test_fetch_and_clone_killed_at_random_instants_leave_the_local_store_valid(remote: RemoteAt,
                                                                               tmp_path: Path) -> None:
    repo = history(tmp_path / "a" / "data.db", 12)
    repo.remote_add("origin", remote.url, **remote.options)
    first = repo.log()[-1].id
    other = dbvers.init(make_db(tmp_path / "b" / "data.db", rows=1))
    other.remote_add("origin", remote.url, **remote.options)
    repo.push(all=True)
    calibration = dbvers.init(make_db(tmp_path / "calibration" / "data.db", rows=1))
    calibration.remote_add("origin", remote.url, **remote.options)
    _, full_run = run_child([CHILD, str(calibration.path), "fetch", "origin"])
    rng = random.Random(11)
    finished = 0
    for instant in kill_instants(full_run, 4, rng):
        finished += run_child([CHILD, str(other.path), "fetch", "origin"], instant)[0]
        assert other.fsck().ok
        assert_complete(other.objects, {v: k for k, v in other.refs.list("refs/remotes/").items()})
    assert finished < 4  # at least one kill landed inside a fetch
    res = other.fetch()
    assert other.refs.read("refs/remotes/origin/main") == repo.head.commit and res.rejected == []
    assert other.objects.has(first)
    target = tmp_path / "c" / "data.db"
    clone_args = [CLONE_CHILD, remote.url, str(target), remote.endpoint_url or ""]
    _, full_run = run_child([*clone_args[:2], str(tmp_path / "calibration-clone" / "data.db"), *clone_args[3:]])
    for instant in kill_instants(full_run, 3, rng):
        if run_child(clone_args, instant)[0]:
            break
        # A killed clone leaves nothing, or a store whose next command (this rerun) finishes it.
    try:
        clone = dbvers.clone(remote.url, target, **remote.options)
    except RepositoryExistsError:  # a killed child had finished (its journal gone) before it died
        clone = dbvers.open(target)
    assert clone.head.commit == repo.head.commit and clone.status().clean and clone.fsck().ok


# -- network faults on S3: retried, never misreported --------------------------------------------

@pytest.fixture
def proxy(s3_endpoint: str):  # type: ignore[no-untyped-def]
    from faultproxy import FaultProxy

    p = FaultProxy(s3_endpoint).start()
    yield p
    p.stop()


def test_s3_transfers_cut_off_midway_are_retried_and_never_misreported(proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = moto_remote_url()
    repo = history(tmp_path / "a" / "data.db", 3)
    # An error answer (the marker's 404) reset halfway through its body.
    marker = proxy.add("GET", r"dbvers-remote\.json", "reset")
    repo.remote_add("origin", url, endpoint_url=proxy.url)
    assert marker.fired == 1
    # The ref's PUT takes effect but its answer is lost: the retried PUT meets its own write.
    lost = proxy.add("PUT", r"/refs/heads/main$", "lost")
    res = repo.push(set_upstream=True)
    assert lost.fired == 1 and res.rejected == [] and res.refs[0].status == "new"
    assert repo.status().tracking_line() == "Your branch is up to date with 'origin/main'"
    # Downloads reset or cut short mid-body: the tip's pack read whole in the walk (read again),
    # the snapshot streamed into the store (picked up where it stopped, a ranged GET), and a
    # ref's body cut short: all read again, none blamed on the remote.
    snap = repo.get_commit(repo.log()[-1].id).snapshot or ""
    faults = [proxy.add("GET", f"{snap[2:]}$", "reset"), proxy.add("GET", f"{snap[2:]}$", "truncate"),
              proxy.add("GET", r"/packs/", "reset"), proxy.add("GET", r"/packs/", "truncate"),
              proxy.add("GET", r"/refs/heads/main$", "truncate")]
    clone = dbvers.clone(url, tmp_path / "b" / "data.db", endpoint_url=proxy.url)
    assert [f.fired for f in faults] == [1, 1, 1, 1, 1]
    assert sum(p.endswith(snap[2:]) for p in proxy.ranged) == 2  # picked up where it stopped, twice
    assert clone.head.commit == repo.head.commit and clone.fsck().ok
    for c in repo.log():  # every commit exactly as pushed
        assert dump_state(clone.materialize(c.id)) == dump_state(repo.materialize(c.id)), c.message
