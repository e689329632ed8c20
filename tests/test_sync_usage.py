"""Sharing as a new user meets it at the command line: git's defaults and wording, options
never silently dropped, one-line errors that say what to do. Found by trying every documented
command and flag; a directory remote (the behaviour is the backends' common code).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import execute, run_cli
from test_sync import make_db

import dbvers


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Path, Path]:
    """A repository (its folder) whose main is pushed to a directory remote, upstream set."""
    a = make_db(tmp_path / "a" / "data.db")
    remote = tmp_path / "remote"
    assert run_cli("init", str(a), cwd=a.parent).returncode == 0
    assert run_cli("remote", "add", "origin", str(remote), cwd=a.parent).returncode == 0
    r = run_cli("push", "-u", cwd=a.parent)
    assert r.returncode == 0, r.stderr
    return a.parent, remote


def refused(r) -> str:  # type: ignore[no-untyped-def]
    """The one error line of a refused command (exit 2)."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("dbvers: error: "), r.stderr
    return str(r.stderr)


def test_status_says_when_the_upstream_is_gone(shared: tuple[Path, Path]) -> None:
    work, remote = shared
    assert run_cli("checkout", "-b", "feat", cwd=work).returncode == 0
    assert run_cli("push", "-u", cwd=work).returncode == 0
    (remote / "refs" / "heads" / "feat").unlink()  # deleted on the remote by someone else
    r = run_cli("fetch", "--prune", cwd=work)
    assert "[deleted]" in r.stdout
    r = run_cli("status", cwd=work)
    assert "Your branch is based on 'origin/feat', but the upstream is gone" in r.stdout
    st = json.loads(run_cli("status", "--format", "json", cwd=work).stdout)
    assert (st["upstream"], st["upstream_gone"], st["ahead"], st["behind"]) == ("origin/feat", True, 0, 0)


def test_status_json_carries_upstream_ahead_and_behind(shared: tuple[Path, Path]) -> None:
    work, _ = shared
    execute(work / "data.db", "INSERT INTO t(id) VALUES (900)")
    assert run_cli("commit", "-m", "local", cwd=work).returncode == 0
    st = json.loads(run_cli("status", "--format", "json", cwd=work).stdout)
    assert (st["upstream"], st["upstream_gone"], st["ahead"], st["behind"]) == ("origin/main", False, 1, 0)


def test_a_remote_that_vanished_is_not_created_again_by_push(shared: tuple[Path, Path], tmp_path: Path) -> None:
    work, remote = shared
    remote.rename(tmp_path / "unmounted")  # the NAS is not mounted today
    execute(work / "data.db", "INSERT INTO t(id) VALUES (901)")
    run_cli("commit", "-m", "while away", cwd=work)
    err = refused(run_cli("push", cwd=work))
    assert "is gone" in err and "check the path" in err
    assert not remote.exists()  # no new, empty remote split off from the team's
    # Removing the remote (and its tracking branches) is the way to start afresh there.
    assert run_cli("remote", "remove", "origin", cwd=work).returncode == 0
    assert run_cli("remote", "add", "origin", str(remote), cwd=work).returncode == 0
    assert run_cli("push", "-u", cwd=work).returncode == 0 and remote.is_dir()


@pytest.mark.parametrize("argv, says", [
    (["push", "-u", "--tags"], "-u makes a branch track"),
    (["push", "origin", "v1", "-u"], "-u makes a branch track"),
    (["branch", "-a", "-r"], "give one of them"),
    (["remote", "-v", "add", "x", "/tmp/x"], "takes no -v"),
    (["push", "--force"], "unrecognized arguments: --force"),  # not an abbreviation of --force-with-lease
    (["fetch", "--pr"], "unrecognized arguments: --pr"),
])
def test_options_that_would_be_dropped_are_refused(shared: tuple[Path, Path], argv: list[str], says: str) -> None:
    work, remote = shared
    assert run_cli("tag", "v1", cwd=work).returncode == 0
    before = sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*"))
    err = refused(run_cli(*argv, cwd=work))
    assert says in err
    assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*")) == before


def test_unrecognized_arguments_name_the_command_and_its_help(shared: tuple[Path, Path]) -> None:
    work, _ = shared
    err = refused(run_cli("push", "--bogus", cwd=work))
    assert err == "dbvers: error: push: unrecognized arguments: --bogus; see 'dbvers push --help'\n"
    err = refused(run_cli("remote", "add", "x", cwd=work))
    assert err.startswith("dbvers: error: remote add: ") and "see 'dbvers remote add --help'" in err


def test_clone_refuses_db_given_as_global_option(shared: tuple[Path, Path], tmp_path: Path) -> None:
    _, remote = shared
    err = refused(run_cli("--db", "foo.db", "clone", str(remote), "bar.db", cwd=tmp_path))
    assert "DB_PATH" in err and not (tmp_path / "bar.db").exists() and not (tmp_path / "foo.db").exists()


def test_clone_without_db_path_refuses_a_folder_of_that_name(shared: tuple[Path, Path], tmp_path: Path) -> None:
    _, remote = shared
    here = tmp_path / "here"
    (here / "remote.db").mkdir(parents=True)
    err = refused(run_cli("clone", str(remote), cwd=here))
    assert "is a directory" in err and list((here / "remote.db").iterdir()) == []


def test_remote_tracking_branches_can_be_deleted_and_not_shadowed(shared: tuple[Path, Path]) -> None:
    work, _ = shared
    for argv in (["branch", "origin/main"], ["checkout", "-b", "origin/main"]):
        assert "would hide the remote-tracking branch 'origin/main'" in refused(run_cli(*argv, cwd=work))
    assert run_cli("branch", "origin-main", cwd=work).returncode == 0  # no slash: nothing hidden
    r = run_cli("branch", "-r", "-d", "origin/main", cwd=work)
    assert r.returncode == 0 and "Deleted remote-tracking branch origin/main" in r.stdout, r.stderr
    assert "origin/main" not in run_cli("branch", "-r", cwd=work).stdout
    assert run_cli("fetch", cwd=work).returncode == 0  # the next fetch brings it back
    assert "origin/main" in run_cli("branch", "-r", cwd=work).stdout


def test_pull_with_uncommitted_changes_is_refused_before_fetching(shared: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    work, remote = shared
    other = dbvers.clone(str(remote), tmp_path / "b" / "data.db")
    execute(other.path, "INSERT INTO t(id) VALUES (902)")
    other.commit("theirs")
    other.push()
    repo = dbvers.open(work / "data.db")
    tracked = repo.refs.read("refs/remotes/origin/main")
    execute(work / "data.db", "UPDATE t SET v = 0 WHERE id = 1")  # not committed
    err = refused(run_cli("pull", cwd=work))
    assert "would be lost by pull" in err
    assert repo.refs.read("refs/remotes/origin/main") == tracked  # nothing was fetched either


def test_status_during_a_merge_does_not_advise_pull(shared: tuple[Path, Path], tmp_path: Path) -> None:
    work, remote = shared
    other = dbvers.clone(str(remote), tmp_path / "b" / "data.db")
    execute(other.path, "UPDATE t SET v = 'theirs' WHERE id = 1")
    other.commit("theirs")
    other.push()
    execute(work / "data.db", "UPDATE t SET v = 'ours' WHERE id = 1")
    run_cli("commit", "-m", "ours", cwd=work)
    r = run_cli("pull", cwd=work)
    assert r.returncode == 1  # stopped on the conflict
    out = run_cli("status", cwd=work).stdout
    assert "have diverged: ahead 1, behind 1" in out and "'dbvers pull'" not in out


def test_a_relative_directory_remote_is_stored_without_dot_dot(shared: tuple[Path, Path]) -> None:
    work, remote = shared
    rel = f"../{remote.name}/../{remote.name}"
    assert run_cli("remote", "add", "again", rel, cwd=work).returncode == 0
    r = run_cli("remote", "-v", cwd=work)
    assert ["again", str(remote)] in [line.split() for line in r.stdout.splitlines()] and ".." not in r.stdout


@pytest.mark.parametrize("argv, says", [
    (["remote", "remove", "nosuch"], "'dbvers remote' lists them"),
    (["remote", "rename", "origin", "origin"], "give a new one"),
])
def test_remote_errors_say_what_to_do(shared: tuple[Path, Path], argv: list[str], says: str) -> None:
    work, _ = shared
    assert says in refused(run_cli(*argv, cwd=work))


def test_a_remote_path_that_is_a_file_says_to_give_a_directory(shared: tuple[Path, Path], tmp_path: Path) -> None:
    work, _ = shared
    f = tmp_path / "afile"
    f.write_text("x")
    assert "give a directory path" in refused(run_cli("remote", "add", "f", str(f), cwd=work))


def _remote_object(remote: Path, oid: str) -> Path:
    return remote / "objects" / oid[:2] / oid[2:]


def test_damage_on_the_remote_is_blamed_on_the_remote(shared: tuple[Path, Path], tmp_path: Path) -> None:
    work, remote = shared
    other = dbvers.clone(str(remote), tmp_path / "b" / "data.db")
    execute(work / "data.db", "UPDATE t SET note = 'new' WHERE id = 2")
    c = dbvers.open(work / "data.db").commit("to be damaged")
    assert run_cli("push", cwd=work).returncode == 0
    shutil.rmtree(remote / "packs")  # as an older dbvers left it: the loose objects are what a fetch reads
    patch = _remote_object(remote, c.patch or "")
    good = patch.read_bytes()
    patch.write_bytes(good[:-9] + bytes(b ^ 0xFF for b in good[-9:]))  # bit rot on the NAS
    before = other.refs.read("refs/remotes/origin/main")
    err = refused(run_cli("fetch", cwd=other.path.parent))
    assert f"remote {remote}: is damaged: object {c.patch[:12]} is corrupt" in err  # type: ignore[index]
    assert "Repair the remote" in err and "dbvers fsck" not in err
    assert other.refs.read("refs/remotes/origin/main") == before and other.fsck().ok
    patch.write_bytes(good)
    (remote / "refs" / "heads" / "main").write_text("not a commit id\n")  # a hand edit gone wrong
    err = refused(run_cli("fetch", cwd=other.path.parent))
    assert "is damaged: its refs/heads/main" in err and "dbvers fsck" not in err
    err = refused(run_cli("clone", str(remote), str(tmp_path / "c" / "data.db"), cwd=tmp_path))
    assert "is damaged" in err and not (tmp_path / "c").exists()


@pytest.mark.parametrize("kind", ["fifo", "endless", "folder"])
def test_a_remote_marker_that_is_no_file_is_refused_at_once(shared: tuple[Path, Path], tmp_path: Path,
                                                            kind: str) -> None:
    import os

    _, remote = shared
    marker = remote / "dbvers-remote.json"
    marker.unlink()
    if kind == "fifo":
        os.mkfifo(marker)  # a read of it would wait for a writer forever
    elif kind == "endless":
        marker.symlink_to("/dev/zero")  # a read of it would never end
    else:
        marker.mkdir()
    err = refused(run_cli("clone", str(remote), str(tmp_path / "c" / "data.db"), cwd=tmp_path))
    assert "dbvers-remote.json is not a regular file" in err and not (tmp_path / "c").exists()


def test_a_push_sweeps_what_killed_pushes_left_on_a_directory_remote(shared: tuple[Path, Path]) -> None:
    from dbvers.fsutil import owner_tag, temp_path

    work, remote = shared
    host = owner_tag().split(".")[0]  # this host's tag, with a pid that is long gone
    dead = remote / "objects" / f".tmp-{host}.4000000000.1-upload"
    mine = temp_path(remote / "objects")  # a live process's (this one's): never touched
    dead.write_bytes(b"half an object")
    foreign = remote / "objects" / ".tmp-o0badc0de.12.3-upload"  # another machine's, recent: kept
    foreign.write_bytes(b"x")
    execute(work / "data.db", "INSERT INTO t(id) VALUES (903)")
    run_cli("commit", "-m", "more", cwd=work)
    assert run_cli("push", cwd=work).returncode == 0
    assert mine.exists() and foreign.exists() and not dead.exists()


def test_a_url_with_a_newline_is_refused(shared: tuple[Path, Path]) -> None:
    work, _ = shared
    assert "control character" in refused(run_cli("remote", "add", "x", "/tmp/q\nb", cwd=work))


def test_force_with_lease_never_moves_a_tag_on_the_remote(shared: tuple[Path, Path]) -> None:
    work, remote = shared
    assert run_cli("tag", "v1", cwd=work).returncode == 0
    assert run_cli("push", "--tags", cwd=work).returncode == 0
    first = (remote / "refs" / "tags" / "v1").read_text()
    execute(work / "data.db", "INSERT INTO t(id) VALUES (904)")
    run_cli("commit", "-m", "later", cwd=work)
    assert run_cli("tag", "-f", "v1", cwd=work).returncode == 0  # moved here
    r = run_cli("push", "--tags", "--force-with-lease", cwd=work)
    assert "the tag already exists on the remote" in refused(r)
    assert (remote / "refs" / "tags" / "v1").read_text() == first


def test_push_delete_removes_a_remote_branch_but_not_the_default_one(shared: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    work, remote = shared
    assert run_cli("checkout", "-b", "feat", cwd=work).returncode == 0
    assert run_cli("push", "-u", cwd=work).returncode == 0
    other = dbvers.clone(str(remote), tmp_path / "b" / "data.db")
    assert "feat" in other.refs.list("refs/remotes/origin/")
    r = run_cli("push", "--delete", "feat", cwd=work)  # the default remote's
    assert r.returncode == 0 and "[deleted]" in r.stdout and "feat" in r.stdout, r.stderr
    assert not (remote / "refs" / "heads" / "feat").exists()
    assert "origin/feat" not in run_cli("branch", "-r", cwd=work).stdout
    # The branch here stays, and its upstream is gone; others see it go at their next prune.
    assert "the upstream is gone" in run_cli("status", cwd=work).stdout
    assert "[deleted]" in run_cli("fetch", "--prune", cwd=other.path.parent).stdout
    assert "the default branch of remote 'origin'" in refused(run_cli("push", "origin", "--delete", "main", cwd=work))
    assert "has no branch 'nosuch'" in refused(run_cli("push", "origin", "--delete", "nosuch", cwd=work))
    assert "takes one BRANCH" in refused(run_cli("push", "--delete", "x", "--all", cwd=work))
    assert (remote / "refs" / "heads" / "main").exists()


def test_a_deleted_branchs_kept_reflog_does_not_block_a_new_name(shared: tuple[Path, Path]) -> None:
    work, _ = shared
    for first, second in (("a/b", "a"), ("c", "c/d")):
        assert run_cli("branch", first, cwd=work).returncode == 0
        assert run_cli("branch", "-d", first, cwd=work).returncode == 0  # its reflog is kept
        r = run_cli("branch", second, cwd=work)
        assert r.returncode == 0, r.stderr
    assert run_cli("branch", "-d", "a", cwd=work).returncode == 0
    assert run_cli("checkout", "-b", "a/x", cwd=work).returncode == 0  # the move's own checks agree
    # A live branch still stands in the way, with the usual message.
    assert "is in the way" in refused(run_cli("branch", "a", cwd=work))


def test_a_branch_replaced_by_its_parent_name_on_the_remote(shared: tuple[Path, Path], tmp_path: Path) -> None:
    """feat/x deleted on the remote and feat pushed: clones that had origin/feat/x still fetch."""
    work, remote = shared
    assert run_cli("branch", "feat/x", cwd=work).returncode == 0
    assert run_cli("push", "origin", "feat/x", cwd=work).returncode == 0
    other = dbvers.clone(str(remote), tmp_path / "b" / "data.db")
    assert "feat/x" in other.refs.list("refs/remotes/origin/")
    assert run_cli("push", "--delete", "feat/x", cwd=work).returncode == 0  # its reflog stays there
    assert run_cli("branch", "-d", "feat/x", cwd=work).returncode == 0
    assert run_cli("branch", "feat", cwd=work).returncode == 0
    r = run_cli("push", "origin", "feat", cwd=work)
    assert r.returncode == 0, r.stderr  # the remote's dead reflog gave way too
    execute(work / "data.db", "INSERT INTO t(id) VALUES (905)")
    run_cli("commit", "-m", "on main", cwd=work)
    assert run_cli("push", cwd=work).returncode == 0
    # Without --prune: main still moves, feat is refused with what to do; pull still works.
    r = run_cli("fetch", cwd=other.path.parent)
    assert "could not update refs/remotes/origin/feat" in refused(r)  # exit 2, after it moved the rest
    assert "main -> origin/main" in r.stdout
    assert "[rejected]" in r.stdout and "fetch --prune origin" in r.stdout
    r = run_cli("pull", cwd=other.path.parent)
    assert r.returncode == 0, r.stderr
    r = run_cli("fetch", "--prune", cwd=other.path.parent)
    assert r.returncode == 0 and "[deleted]" in r.stdout and "[new branch]" in r.stdout, r.stdout
    assert set(other.refs.list("refs/remotes/origin/")) == {"main", "feat"}


def test_push_that_moved_the_remote_but_not_the_tracking_ref_warns(shared: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    work, remote = shared
    assert run_cli("branch", "q/x", cwd=work).returncode == 0
    assert run_cli("push", "origin", "q/x", cwd=work).returncode == 0
    other = dbvers.clone(str(remote), tmp_path / "b" / "data.db")
    assert run_cli("push", "--delete", "q/x", cwd=work).returncode == 0
    assert run_cli("branch", "q", cwd=other.path.parent).returncode == 0
    r = run_cli("push", "origin", "q", cwd=other.path.parent)  # origin/q/x still here
    assert r.returncode == 0 and "[new branch]" in r.stdout, r.stderr
    assert r.stderr.count("\n") == 1 and "pushed, but refs/remotes/origin/q can't be set here" in r.stderr
    assert (remote / "refs" / "heads" / "q").is_file()


def test_a_remote_ref_in_the_way_is_named_with_what_to_do(shared: tuple[Path, Path], tmp_path: Path) -> None:
    work, remote = shared
    assert run_cli("branch", "r/x", cwd=work).returncode == 0
    assert run_cli("push", "origin", "r/x", cwd=work).returncode == 0
    fresh = tmp_path / "fresh"
    db = make_db(fresh / "data.db")
    dbvers.init(db)
    assert run_cli("remote", "add", "origin", str(remote), cwd=fresh).returncode == 0
    assert run_cli("fetch", cwd=fresh).returncode == 0
    run_cli("branch", "r", "origin/main", cwd=fresh)
    r = run_cli("push", "origin", "r", cwd=fresh)
    assert r.returncode == 2 and "the remote's refs/heads/r/x is in the way" in r.stdout, r.stdout + r.stderr
    assert "push origin --delete r/x" in r.stdout


@pytest.mark.parametrize("when", ["before the refs move", "while it downloads"])
def test_a_gc_beside_a_fetch_never_leaves_a_tracking_ref_to_nothing(shared: tuple[Path, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     when: str) -> None:
    """The fetch finds an old history here that no ref reaches (the tip itself, or the parent
    of what it brings) and relies on it; a gc (past its grace period) runs beside it."""
    import threading

    work, remote = shared
    assert run_cli("checkout", "-b", "feat", cwd=work).returncode == 0
    execute(work / "data.db", "INSERT INTO t(id) VALUES (906)")
    old = dbvers.open(work / "data.db").commit("on feat")
    assert run_cli("push", "origin", "feat", cwd=work).returncode == 0
    other = dbvers.clone(str(remote), tmp_path / "b" / "data.db")
    other.delete_branch("origin/feat", remote=True)
    here = other.path.parent
    assert run_cli("reflog", "expire", "--all", "--expire-unreachable", "now", cwd=here).returncode == 0
    for p in (other.store_dir / "objects").rglob("*"):
        if p.is_file():
            os.utime(p, (1e9, 1e9))  # years old: past any grace period
    tip = old
    if when == "while it downloads":  # the remote moves on: the fetch brings a child of `old`
        execute(work / "data.db", "INSERT INTO t(id) VALUES (907)")
        tip = dbvers.open(work / "data.db").commit("on feat again")
        assert run_cli("push", "origin", "feat", cwd=work).returncode == 0
    gcs: list[threading.Thread] = []
    failures: list[BaseException] = []

    def run_gc() -> None:
        try:
            dbvers.open(other.path).gc()
        except BaseException as e:
            failures.append(e)

    def start_gc() -> None:
        if not gcs:
            gcs.append(threading.Thread(target=run_gc))
            gcs[0].start()
            gcs[0].join(1.0)  # done by now, unless it waits for the lock the fetch holds

    if when == "before the refs move":
        real_read = other.refs.read
        monkeypatch.setattr(other.refs, "read", lambda ref: (start_gc() if ref == "refs/remotes/origin/feat"
                                                             else None) or real_read(ref))
    else:
        real_put = other.objects.put_raw
        monkeypatch.setattr(other.objects, "put_raw", lambda *a, **k: (start_gc(), real_put(*a, **k))[1])
    other.fetch()
    monkeypatch.undo()
    assert gcs, "the gc never ran"
    gcs[0].join(60)
    assert not failures and not gcs[0].is_alive()
    assert other.refs.read("refs/remotes/origin/feat") == tip.id
    assert other.fsck().ok and other.objects.has(old.id)


def test_push_delete_reads_gits_order_too(shared: tuple[Path, Path]) -> None:
    work, remote = shared
    assert run_cli("branch", "gone", cwd=work).returncode == 0
    assert run_cli("push", "origin", "gone", cwd=work).returncode == 0
    r = run_cli("push", "-d", "origin", "gone", cwd=work)  # git push -d origin gone
    assert r.returncode == 0 and "[deleted]" in r.stdout, r.stderr
    assert not (remote / "refs" / "heads" / "gone").exists()
