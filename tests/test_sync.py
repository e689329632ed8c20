"""Push, fetch, pull and clone, end to end, on a directory remote and on S3 (moto's server).

Every test that takes ``remote`` runs on both backends. What a user sees: a clone
reproduces every commit exactly; a push sends only what the remote lacks and moves
the remote branch last; a non-fast-forward push is refused and leaves the remote as
it was; four clones pushing at once — one wins, the others are told to fetch;
tracking refs, ``status`` ahead/behind, ``branch -a``, ``log origin/main``.
"""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MOTO_BUCKET, dump_state, execute, moto_remote_url, run_cli

import dbvers
from dbvers import receive, snapshots
from dbvers.errors import (
    CorruptObjectError,
    NoUpstreamError,
    PushRejectedError,
    RemoteExistsError,
    RemoteNotFoundError,
    RepositoryExistsError,
    UnknownRemoteError,
    UsageError,
)
from dbvers.fsutil import TMP_PREFIX
from dbvers.remotes import make_remote


@dataclass(frozen=True)
class RemoteAt:
    url: str
    endpoint_url: str | None = None

    @property
    def options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}

    @property
    def cli_options(self) -> list[str]:
        return ["--endpoint-url", self.endpoint_url] if self.endpoint_url else []

    def backend(self):  # type: ignore[no-untyped-def]
        return make_remote(self.url, **self.options).check()


@pytest.fixture(params=["directory", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteAt:
    if request.param == "directory":
        return RemoteAt(str(tmp_path / "shared" / "remote"))
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return RemoteAt(moto_remote_url(), endpoint)


def make_db(path: Path, rows: int = 50) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, v, note TEXT); CREATE TABLE bag(x, y);")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, i * 1.5, f"row {i}") for i in range(rows)])
    conn.executemany("INSERT INTO bag VALUES (?, ?)", [(i % 3, b"\x00\xff") for i in range(10)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def origin(tmp_path: Path, remote: RemoteAt) -> dbvers.Repo:
    """A repository with three commits, pushed to *remote* as origin (upstream set)."""
    repo = dbvers.init(make_db(tmp_path / "a" / "data.db"))
    execute(repo.path, "UPDATE t SET v = NULL WHERE id = 3; INSERT INTO bag VALUES (7, 'seven')")
    repo.commit("second")
    execute(repo.path, "ALTER TABLE t ADD COLUMN extra; DELETE FROM t WHERE id > 40")
    repo.commit("schema change")
    repo.remote_add("origin", remote.url, **remote.options)
    repo.push(set_upstream=True)
    return repo


def clone_of(remote: RemoteAt, path: Path) -> dbvers.Repo:
    return dbvers.clone(remote.url, path, **remote.options)


def states(repo: dbvers.Repo) -> dict[str, object]:
    return {c.id: dump_state(repo.materialize(c.id)) for c in repo.log()}


def test_clone_reproduces_every_commit_exactly(origin: dbvers.Repo, remote: RemoteAt, tmp_path: Path) -> None:
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert [c.id for c in repo.log()] == [c.id for c in origin.log()]
    assert states(repo) == states(origin)
    assert dump_state(repo.path) == dump_state(origin.path)
    assert repo.head.branch == "main" and repo.status().clean
    assert repo.remotes()[0].url == make_remote(remote.url).url
    assert repo.status().tracking_line() == "Your branch is up to date with 'origin/main'"
    assert repo.fsck().ok


def test_incremental_push_sends_only_the_new_commit(origin: dbvers.Repo, remote: RemoteAt) -> None:
    execute(origin.path, "UPDATE t SET note = 'changed' WHERE id = 7")
    c = origin.commit("one row")
    assert origin.status().tracking_line() == \
        "Your branch is ahead of 'origin/main' by 1 commit ('dbvers push' publishes them)"
    res = origin.push()
    sent_expected = {c.id, *c.referenced_objects()} - {origin.log()[1].schema}  # the schema is unchanged
    assert res.objects == len(sent_expected)
    assert [(r.ref, r.status) for r in res.refs] == [("refs/heads/main", "fast-forward")]
    backend = remote.backend()
    assert backend.refs.read("refs/heads/main") == c.id
    assert all(backend.objects.has(o) for o in sent_expected)
    assert origin.push().objects == 0  # nothing more to send: up to date


def test_non_fast_forward_push_is_refused_and_pull_merges(origin: dbvers.Repo, remote: RemoteAt,
                                                          tmp_path: Path) -> None:
    other = clone_of(remote, tmp_path / "b" / "data.db")
    execute(other.path, "INSERT INTO t(id, v) VALUES (100, 1)")
    theirs = other.commit("theirs")
    other.push()
    execute(origin.path, "INSERT INTO t(id, v) VALUES (200, 2)")
    origin.commit("ours")
    with pytest.raises(PushRejectedError, match=r"non-fast-forward.*pull first") as info:
        origin.push()
    assert "\n" not in str(info.value)
    assert remote.backend().refs.read("refs/heads/main") == theirs.id  # the remote is untouched
    pulled = origin.pull()
    assert pulled.merge.commit is not None and len(pulled.merge.commit.parents) == 2
    rows = {r[0] for r in sqlite3.connect(origin.path).execute("SELECT id FROM t WHERE id >= 100")}
    assert rows == {100, 200}
    origin.push()
    other.pull()  # a fast-forward
    assert other.head.commit == origin.head.commit and dump_state(other.path) == dump_state(origin.path)


def test_force_with_lease_replaces_only_what_was_fetched(origin: dbvers.Repo, remote: RemoteAt,
                                                         tmp_path: Path) -> None:
    other = clone_of(remote, tmp_path / "b" / "data.db")
    first = origin.head.commit
    execute(origin.path, "DELETE FROM bag")
    origin.commit("to be replaced")
    origin.push()
    other.reset(first)  # other rewrites history from an older commit
    execute(other.path, "INSERT INTO bag VALUES (1, 1)")
    rewrite = other.commit("rewrite")
    with pytest.raises(PushRejectedError, match="stale info"):
        other.push(force_with_lease=True)  # its tracking ref predates the remote's move
    other.fetch()
    res = other.push(force_with_lease=True)
    assert res.refs[0].status == "forced" and remote.backend().refs.read("refs/heads/main") == rewrite.id


def test_four_clones_pushing_at_once_one_wins(origin: dbvers.Repo, remote: RemoteAt, tmp_path: Path) -> None:
    clones = [clone_of(remote, tmp_path / f"c{i}" / "data.db") for i in range(4)]
    mine = []
    for i, c in enumerate(clones):
        execute(c.path, f"INSERT INTO t(id, v) VALUES ({1000 + i}, {i}); ALTER TABLE t ADD COLUMN c{i}")
        mine.append(c.commit(f"clone {i}").id)  # a keyframe: the remote gets a record of it
    barrier = threading.Barrier(4)
    outcome: dict[int, str] = {}

    def push(i: int) -> None:
        barrier.wait()
        try:
            clones[i].push()
            outcome[i] = "won"
        except PushRejectedError as e:
            outcome[i] = str(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcome.items() if o == "won"]
    assert len(winners) == 1, outcome
    for i, o in outcome.items():
        if i not in winners:
            assert "fetch first" in o or "pull first" in o, o
    assert remote.backend().refs.read("refs/heads/main") == clones[winners[0]].head.commit
    # Records follow the refs that moved: the losers' uploads left no record of their commits.
    assert [c for c in mine if remote.backend().refs.keyframe(c)] == [mine[winners[0]]]


def test_fetch_moves_tracking_refs_and_tags(origin: dbvers.Repo, remote: RemoteAt, tmp_path: Path) -> None:
    other = clone_of(remote, tmp_path / "b" / "data.db")
    execute(origin.path, "UPDATE t SET v = 0")
    new = origin.commit("everything zero")
    origin.tag("v1")
    origin.branch("feature")
    origin.push(all=True)
    origin.push(tags=True)
    res = other.fetch()
    assert {(r.ref, r.status) for r in res.changed} == {
        ("refs/remotes/origin/main", "fast-forward"), ("refs/remotes/origin/feature", "new"),
        ("refs/tags/v1", "new")}
    assert other.resolve("origin/main") == new.id and other.tags() == {"v1": new.id}
    assert other.status().behind == 1 and other.status().ahead == 0
    assert other.diff("main", "origin/main").summary()["modified"].sum() > 0
    assert other.log("origin/main", n=1)[0].id == new.id
    assert other.fetch().changed == []  # nothing new


def test_keyframe_records_travel(remote: RemoteAt, tmp_path: Path) -> None:
    origin = dbvers.init(make_db(tmp_path / "a" / "data.db", rows=5000))
    origin.remote_add("origin", remote.url, **remote.options)
    execute(origin.path, "UPDATE t SET v = -1 WHERE id = 1")
    c = origin.commit("small")
    assert c.snapshot is None
    snap = origin.snapshot()  # a keyframe record for a commit without its own snapshot
    origin.push()
    assert remote.backend().refs.keyframe(c.id) == snap
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert repo.refs.keyframe(c.id) == snap and repo.objects.has(snap)


def test_push_records_every_snapshot_on_the_remote(origin: dbvers.Repo, remote: RemoteAt,
                                                   tmp_path: Path) -> None:
    """The snapshots commits carry get keyframe records on the remote too (a fetch lists them to
    start those downloads first); a local store keeps records only for ``dbvers snapshot``'s."""
    carried = {c.id: c.snapshot for c in origin.log() if c.snapshot}
    assert len(carried) >= 2  # the root and the schema change at least
    rem = remote.backend()
    assert {c: rem.refs.keyframe(c) for c in carried} == carried
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert repo.refs.keyframes() == {} and origin.refs.keyframes() == {}


@pytest.mark.parametrize("records", ["pushed", "none (an older remote)"])
def test_a_clone_decodes_its_snapshot_once(origin: dbvers.Repo, remote: RemoteAt, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, records: str,
                                           state_rebuilds: str) -> None:
    """The snapshot the checkout starts from is decoded as it is fetched, into the file the
    state is rebuilt in (its pages held in memory, or past the memory limit a file's own
    journal and page cache): never decoded again from the store, and nothing left behind."""
    if records != "pushed":
        rem = remote.backend()
        for commit in rem.refs.keyframes():
            rem.refs.delete_keyframe(commit)
    decoded_again: list[str] = []
    load = snapshots.load
    monkeypatch.setattr(snapshots, "load", lambda store, oid, *a, **k: decoded_again.append(oid) or load(
        store, oid, *a, **k))
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert decoded_again == []
    monkeypatch.undo()
    assert dump_state(repo.path) == dump_state(origin.path)
    assert states(repo) == states(origin)
    assert [p.name for p in repo.store_dir.rglob("*") if p.name.startswith(TMP_PREFIX)] == []
    assert repo.fsck().ok


def test_keyframe_records_of_lost_or_broken_histories_do_no_harm(origin: dbvers.Repo, remote: RemoteAt,
                                                                 tmp_path: Path) -> None:
    """Snapshot downloads start from the remote's records before the walk knows what it needs:
    a record of a history no branch holds any more, or naming an object that isn't there, costs
    nothing but that download (what is unreachable is left to gc) and fails nothing."""
    rem = remote.backend()
    origin.checkout("HEAD", create_branch="lost")
    execute(origin.path, "ALTER TABLE bag ADD COLUMN z")
    lost = origin.commit("a history deleted from the remote")
    origin.push("origin", "lost")
    origin.push("origin", "lost", delete=True)
    assert rem.refs.keyframe(lost.id) == lost.snapshot
    rem.refs.set_keyframe("ab" * 32, "cd" * 32)  # names nothing that exists
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    main = [c.id for c in origin.log("main")]
    assert [c.id for c in repo.log()] == main and not repo.objects.has(lost.id)
    assert dump_state(repo.path) == dump_state(origin.materialize(main[0]))
    assert states(repo) == {c: v for c, v in states(origin).items() if c in main}
    assert repo.fsck().ok
    # A fetch into a store with history reads only the records of what its walk brings.
    behind = tmp_path / "c" / "data.db"
    rem.refs.delete_keyframe(lost.id)  # (lets the clone below start without the lost snapshot)
    kept = clone_of(remote, behind)
    rem.refs.set_keyframe(lost.id, lost.snapshot)
    assert kept.fetch().objects == 0 and not kept.objects.has(lost.snapshot)


def test_a_clone_starts_its_snapshot_downloads_beside_the_walk(remote: RemoteAt, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshots are at the bottom of the history: a clone downloads them from the
    remote's keyframe records while it walks, and decodes the one its checkout starts from
    (not the newest snapshot, nor the only one) once."""
    origin = dbvers.init(make_db(tmp_path / "a" / "data.db", rows=5000))
    execute(origin.path, "ALTER TABLE t ADD COLUMN w")
    keyframe = origin.commit("schema change")
    for i in range(3):
        execute(origin.path, f"UPDATE t SET w = {i} WHERE id = {i}")
        assert origin.commit(f"small {i}").snapshot is None
    snaps = {c.snapshot for c in origin.log() if c.snapshot}
    assert len(snaps) == 2 and keyframe.snapshot in snaps
    origin.remote_add("origin", remote.url, **remote.options)
    origin.push()
    walk = receive.remote_commits

    def walk_once_the_snapshots_are_here(repo: dbvers.Repo, *args: object) -> object:
        deadline = time.monotonic() + 20
        while not all(repo.objects.has(s) for s in snaps):
            assert time.monotonic() < deadline, "the snapshot downloads waited for the walk"
            time.sleep(0.01)
        return walk(repo, *args)  # type: ignore[arg-type]

    decoded_again: list[str] = []
    load = snapshots.load
    monkeypatch.setattr(receive, "remote_commits", walk_once_the_snapshots_are_here)
    monkeypatch.setattr(snapshots, "load", lambda store, oid, *a, **k: decoded_again.append(oid) or load(
        store, oid, *a, **k))
    repo = clone_of(remote, tmp_path / "b" / "data.db")
    assert decoded_again == []
    monkeypatch.undo()
    assert dump_state(repo.path) == dump_state(origin.path) and repo.fsck().ok
    assert [p.name for p in repo.store_dir.rglob("*") if p.name.startswith(TMP_PREFIX)] == []


def test_a_snapshot_that_fails_its_check_leaves_no_decoded_file(origin: dbvers.Repo, tmp_path: Path) -> None:
    snap = next(c.snapshot for c in origin.log() if c.snapshot)
    with origin.objects.open_raw(snap) as raw:
        damaged = raw.read()[:-1] + b"\0"
    repo = dbvers.init(make_db(tmp_path / "x" / "data.db"))
    with pytest.raises(CorruptObjectError), repo.states.unpacking(snap) as body:
        repo.objects.put_raw(snap, io.BytesIO(damaged), body_to=body)
    assert [p.name for p in repo.store_dir.rglob("*") if p.name.startswith(TMP_PREFIX)] == []
    assert not repo.objects.has(snap)


def test_push_errors_are_one_line_and_change_nothing(origin: dbvers.Repo, remote: RemoteAt) -> None:
    with pytest.raises(UnknownRemoteError, match=r"no remote named 'nope'.*origin"):
        origin.push("nope")
    with pytest.raises(RemoteExistsError):
        origin.remote_add("origin", remote.url, **remote.options)
    origin.checkout(origin.head.commit or "")
    with pytest.raises(NoUpstreamError, match="HEAD is detached"):
        origin.push()
    with pytest.raises(NoUpstreamError, match="detached"):
        origin.pull()


def test_remote_rename_and_remove_carry_tracking_refs(origin: dbvers.Repo) -> None:
    origin.remote_rename("origin", "team")
    assert [r.name for r in origin.remotes()] == ["team"]
    assert origin.refs.list("refs/remotes/") == {"team/main": origin.head.commit}
    assert origin.status().upstream == "team/main"
    assert dbvers.open(origin.path).status().upstream == "team/main"  # written to the config file
    origin.remote_remove("team")
    assert origin.remotes() == [] and origin.refs.list("refs/remotes/") == {}
    assert origin.status().upstream is None


def test_clone_refuses_what_it_would_overwrite(origin: dbvers.Repo, remote: RemoteAt, tmp_path: Path) -> None:
    with pytest.raises(RepositoryExistsError, match="already tracks"):
        clone_of(remote, origin.path)
    with pytest.raises(UsageError, match="exists; a clone makes a new database"):
        dbvers.clone(remote.url, origin.path, store=tmp_path / "elsewhere", **remote.options)
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    with pytest.raises(RemoteNotFoundError, match="not a dbvers remote"):
        dbvers.clone(str(empty), tmp_path / "x" / "new.db")


def test_cli_sharing_end_to_end(remote: RemoteAt, tmp_path: Path) -> None:
    a = make_db(tmp_path / "a" / "data.db")
    assert run_cli("init", str(a), cwd=a.parent).returncode == 0
    r = run_cli("remote", "add", "origin", remote.url, *remote.cli_options, cwd=a.parent)
    assert r.returncode == 0, r.stderr
    r = run_cli("remote", "-v", cwd=a.parent)
    assert r.stdout.split()[:2] == ["origin", make_remote(remote.url).url] and (not remote.endpoint_url or remote.endpoint_url in r.stdout)
    r = run_cli("push", "-u", cwd=a.parent)
    assert r.returncode == 0 and "* [new branch]      main -> main" in r.stdout, r.stdout + r.stderr
    r = run_cli("clone", remote.url, str(tmp_path / "b") + "/", *remote.cli_options, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    b = next((tmp_path / "b").glob("*.db"))
    execute(b, "INSERT INTO t(id) VALUES (500)")
    assert run_cli("commit", "-m", "from b", cwd=b.parent).returncode == 0
    assert run_cli("push", cwd=b.parent).returncode == 0
    execute(a, "INSERT INTO t(id) VALUES (600)")
    run_cli("commit", "-m", "from a", cwd=a.parent)
    r = run_cli("push", cwd=a.parent)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "pull first" in r.stderr
    assert "[rejected]" in r.stdout
    r = run_cli("pull", cwd=a.parent)
    assert r.returncode == 0, r.stderr
    r = run_cli("status", cwd=a.parent)
    assert "ahead of 'origin/main' by 2 commits" in r.stdout
    r = run_cli("branch", "-a", cwd=a.parent)
    assert "remotes/origin/main" in r.stdout
    assert run_cli("push", cwd=a.parent).returncode == 0
    r = run_cli("fetch", cwd=b.parent)
    assert "main -> origin/main" in r.stdout
    r = run_cli("log", "--oneline", "origin/main", cwd=b.parent)
    assert "from a" in r.stdout
    r = run_cli("remote", "rename", "origin", "up", cwd=b.parent)
    assert r.returncode == 0 and run_cli("branch", "-r", cwd=b.parent).stdout.split()[0] == "up/main"
    assert run_cli("remote", "remove", "up", cwd=b.parent).returncode == 0
    r = run_cli("push", cwd=b.parent)
    assert r.returncode == 2 and "no remote named 'origin'" in r.stderr


def test_piped_output_has_no_progress_bar(origin: dbvers.Repo, remote: RemoteAt) -> None:
    execute(origin.path, "UPDATE t SET v = 9")
    origin.commit("nine")
    r = run_cli("push", cwd=origin.path.parent)
    assert r.returncode == 0 and "━" not in r.stdout and "pushing" not in r.stdout


class Recorder:
    """A Progress that keeps what it was told."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int, int]] = []
        self.advanced: list[int] = []
        self.finished = 0

    def start(self, label: str, objects: int, nbytes: int) -> None:
        self.started.append((label, objects, nbytes))

    def advance(self, nbytes: int) -> None:
        self.advanced.append(nbytes)

    def finish(self) -> None:
        self.finished += 1


def test_progress_ends_at_the_counts_the_summary_gives(origin: dbvers.Repo, remote: RemoteAt,
                                                      tmp_path: Path) -> None:
    other = clone_of(remote, tmp_path / "b" / "data.db")
    for i in range(2):
        execute(origin.path, f"UPDATE t SET v = {i}; INSERT INTO bag VALUES ({i}, 'x')")
        origin.commit(f"more {i}")
    pushed = Recorder()
    res = origin.push(progress=pushed)
    assert [s[1] for s in pushed.started] == [res.objects] == [len(pushed.advanced)]
    assert pushed.started[0][2] == sum(pushed.advanced) == res.bytes and pushed.finished == 1
    fetched = Recorder()
    res = other.fetch(progress=fetched)
    # The commits are stored after the downloads: the bar counts them too.
    assert [s[1] for s in fetched.started] == [res.objects] == [len(fetched.advanced)]
    assert sum(fetched.advanced) == res.bytes and fetched.finished == 1


def test_widget_progress_scales_its_units() -> None:
    from dbvers.render.progress import WidgetProgress

    bar = WidgetProgress()
    bar.start("pushing", 2, 1_300)
    bar.advance(1_000)
    bar.advance(300)
    assert bar.text == "2 of 2 objects, 1.3 KB of 1.3 KB"


def test_console_progress_shows_bytes_and_objects() -> None:
    import io

    from rich.console import Console

    from dbvers.render.progress import ConsoleProgress

    out = io.StringIO()
    bar = ConsoleProgress(Console(file=out, force_terminal=True, width=100))
    bar.start("pushing", 2, 3_000_000)
    bar.advance(1_000_000)
    bar.advance(2_000_000)
    bar.finish()
    text = out.getvalue()
    assert "pushing 2 objects" in text and "3.0" in text and "MB" in text


# -- S3 only: an endpoint that ignores conditional writes is refused at the first push -------------

def test_push_refuses_an_s3_endpoint_that_ignores_conditional_writes(tmp_path: Path, s3_endpoint: str) -> None:
    from dbvers.remotes.s3client import S3Connection

    url = moto_remote_url()
    repo = dbvers.init(make_db(tmp_path / "a" / "data.db"))
    # A region of its own gives this test its own cached boto3 client, which the push uses too.
    repo.remote_add("origin", url, endpoint_url=s3_endpoint, region="eu-north-1")
    client = S3Connection(MOTO_BUCKET, endpoint_url=s3_endpoint, region="eu-north-1").client

    def strip(request, **_):  # type: ignore[no-untyped-def]
        request.headers.pop("If-None-Match", None)

    client.meta.events.register("before-send.s3.PutObject", strip)
    try:
        with pytest.raises(dbvers.errors.ConditionalWritesUnsupportedError, match="If-None-Match"):
            repo.push()
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", strip)
    assert not make_remote(url, endpoint_url=s3_endpoint).exists()  # not made a remote
    assert repo.refs.list("refs/remotes/") == {}


def test_oversized_keys_on_an_s3_remote_are_refused_not_read_whole(tmp_path: Path, s3_endpoint: str) -> None:
    """A hostile or broken remote can't make a fetch read a huge ref or "commit" into memory."""
    import os

    from dbvers.errors import RemoteDamagedError
    from dbvers.remotes.layout import object_key

    at = RemoteAt(moto_remote_url(), s3_endpoint)
    repo = dbvers.init(make_db(tmp_path / "a" / "data.db"))
    repo.remote_add("origin", at.url, **at.options)
    repo.push()
    other = clone_of(at, tmp_path / "b" / "data.db")
    conn = at.backend().conn
    conn.put("refs/heads/big", b"0" * 200_000)  # a ref holds a line
    with pytest.raises(RemoteDamagedError, match="refs/heads/big holds more than the 4,096 bytes"):
        other.fetch()
    conn.delete("refs/heads/big")
    fake = "ab" * 32  # 9 MB of noise under a commit's id, which a ref names
    conn.put(object_key(fake), os.urandom(9 << 20))
    conn.put("refs/heads/noise", (fake + "\n").encode())
    with pytest.raises(RemoteDamagedError, match=f"object {fake[:12]} is corrupt"):
        other.fetch()
    assert other.refs.read("refs/remotes/origin/noise") is None and other.fsck().ok
    conn.delete("refs/heads/noise")
    # An oversized keyframe record, among others, is one unreadable record (ignored: records are
    # optional), not the failure of every clone, which reads them all.
    conn.put(f"refs/keyframes/{'cd' * 32}", b"0" * 200_000)
    conn.put(f"refs/keyframes/{'ef' * 32}", ("12" * 32 + "\n").encode())
    assert at.backend().refs.keyframes()[("cd" * 32)] == ""
    third = clone_of(at, tmp_path / "c" / "data.db")
    assert dump_state(third.path) == dump_state(repo.path)
