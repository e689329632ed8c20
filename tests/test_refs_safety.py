"""Refs can't be used to escape the store, a damaged ref is never an unborn branch, and a
failed ref move leaves every ref where it was (issue 9, items 3, 5, 9 and 11).

Every CLI case runs through the real entry point and checks: exit 2 (fsck: 1), one line on
stderr, no traceback, nothing changed in a sibling ``outside`` folder, and no ref moved.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute, one_line_error, run_cli

import dbvers
from dbvers.errors import (
    DamagedRefError,
    DbversError,
    InvalidRefNameError,
    StorageError,
    UnfinishedMoveError,
)


def tree(root: Path) -> dict[str, str]:
    """Every entry under *root* with a hash of its content ('dir' / 'link -> x' for the others).

    The lock and the derived cache (rebuilt at will) are left out.
    """
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.name == "lock" or rel.startswith("cache/"):
            continue
        if p.is_symlink():
            out[rel] = f"link -> {os.readlink(p)}"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refs_of(store: Path) -> dict[str, str]:
    """HEAD and every ref file: what "no ref moved" compares."""
    found = {k: v for k, v in tree(store).items() if k == "HEAD" or k.startswith("refs/")}
    return found



class World:
    """A repository in tmp/work (main: three commits, tag v1 at HEAD~1) beside tmp/outside."""

    def __init__(self, tmp: Path, db_src: Path) -> None:
        self.work = tmp / "work"
        self.work.mkdir()
        self.db = self.work / "data.db"
        shutil.move(db_src, self.db)
        self.store = self.work / ".dbvers"
        self.outside = tmp / "outside"
        (self.outside / "x").parent.mkdir(parents=True)
        (self.outside / "x").write_text("a file that is not dbvers's\n")
        (self.outside / "tags").mkdir()
        (self.outside / "tags" / "keep").write_text("b" * 64 + "\n")
        repo = dbvers.init(self.db)
        execute(self.db, "INSERT INTO orders VALUES (4, 'dan', 7, 3.5, NULL);")
        repo.commit("add dan")
        repo.tag("v1")
        execute(self.db, "UPDATE orders SET qty = 9 WHERE id = 1;")
        repo.commit("nine")
        self.repo = repo

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=self.work)

    def state(self) -> dict[str, Any]:
        return {"outside": tree(self.outside), "refs": refs_of(self.store), "db": dump_state(self.db)}

    def refused(self, *args: str, store_unchanged: bool = True) -> str:
        before, store_before = self.state(), tree(self.store)
        msg = one_line_error(self.cli(*args))
        assert self.state() == before, f"dbvers {' '.join(args)} changed a ref, the database or outside"
        if store_unchanged:
            assert tree(self.store) == store_before, f"dbvers {' '.join(args)} changed the store"
        return msg


@pytest.fixture
def w(tmp_path: Path, db_path: Path) -> World:
    return World(tmp_path, db_path)


# -- item 3: ref names on lookup and delete, HEAD's target ---------------------------------


def test_dotdot_names_never_reach_another_ref(w: World) -> None:
    v1 = w.repo.resolve("v1")
    msg = w.refused("checkout", "../tags/v1")
    assert "unknown revision" in msg
    assert w.repo.head.branch == "main"
    for args in (["tag", "-d", "../heads/main"], ["branch", "-d", "../tags/v1"],
                 ["branch", "-d", "../heads/main"]):
        assert "not a valid name" in w.refused(*args), args
    for args in (["show", "../tags/v1"], ["log", "refs/heads/../tags/v1"], ["reset", "--soft", "../tags/v1"],
                 ["checkout", "-b", "new", "../tags/v1"], ["branch", "new", "refs/tags/../heads/main"]):
        assert "unknown revision" in w.refused(*args), args
    # the next commit moves main, not the tag
    execute(w.db, "UPDATE orders SET qty = 1 WHERE id = 1;")
    assert w.cli("commit", "-m", "after").returncode == 0
    assert w.repo.resolve("v1") == v1
    assert w.repo.tags() == {"v1": v1}


@pytest.mark.parametrize("depth", [3, 4, 5, 6])
def test_tag_delete_cannot_leave_the_store(w: World, depth: int) -> None:
    name = "../" * depth + "outside/x"
    before_parent = sorted(p.name for p in w.outside.parent.iterdir())
    assert "not a valid name" in w.refused("tag", "-d", name)
    assert "not a valid name" in w.refused("branch", "-d", name)
    assert (w.outside / "x").is_file()
    assert sorted(p.name for p in w.outside.parent.iterdir()) == before_parent
    assert not any(p.name == "logs" for p in w.outside.parent.rglob("logs") if w.store not in p.parents)


@pytest.mark.parametrize("target", ["../../outside/x", "refs/heads/../../../outside/x", "refs/tags/v1",
                                    "../../outside/new", "refs/heads/ok/../../../../outside/x", "HEAD"])
def test_tampered_head_target_is_refused_and_nothing_is_written(w: World, target: str) -> None:
    (w.store / "HEAD").write_text(f"ref: {target}\n")
    execute(w.db, "UPDATE orders SET qty = 3 WHERE id = 2;")
    for args in (["commit", "-m", "escape"], ["status"], ["log"], ["branch", "b2"], ["tag", "t2"],
                 ["reset", "--soft", "HEAD~1"]):
        msg = w.refused(*args)
        assert "HEAD is damaged" in msg and "dbvers fsck" in msg, (args, msg)
    r = w.cli("fsck")
    assert r.returncode == 1 and "HEAD is damaged" in r.stdout + r.stderr and "Traceback" not in r.stderr
    # checking out a branch is how HEAD is repaired
    assert w.cli("checkout", "--force", "main").returncode == 0
    assert w.repo.head.branch == "main"


def test_symlinked_ref_folder_cannot_lead_outside(w: World) -> None:
    tags = w.store / "refs" / "tags"
    for p in tags.iterdir():
        shutil.move(p, w.outside / "tags" / p.name)
    tags.rmdir()
    tags.symlink_to(w.outside / "tags")
    for args in (["tag", "t2"], ["tag", "-d", "v1"], ["tag", "-d", "keep"], ["checkout", "v1"], ["tag"]):
        msg = w.refused(*args)
        assert "outside the store" in msg, (args, msg)
    assert (w.outside / "tags" / "keep").is_file() and (w.outside / "tags" / "v1").is_file()


# -- item 11: a damaged ref is not an unborn branch ---------------------------------------


GARBAGE: dict[str, bytes | None] = {
    "empty": b"",
    "spaces": b"  \n",
    "text": b"not a commit\n",
    "short": b"a" * 63 + b"\n",
    "long": b"a" * 65 + b"\n",
    "upper": b"A" * 64 + b"\n",
    "not-utf8": b"\xff\xfe" + b"a" * 62,
    "directory": None,
}


def _damage(path: Path, content: bytes | None) -> None:
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_damaged_checked_out_branch_is_an_error_not_a_new_root(w: World, kind: str) -> None:
    _damage(w.store / "refs/heads/main", GARBAGE[kind])
    objects = tree(w.store / "objects")
    execute(w.db, "UPDATE orders SET qty = 4 WHERE id = 2;")
    for args in (["commit", "-m", "would be a new root"], ["commit", "--allow-empty", "-m", "again"],
                 ["status"], ["branch", "side"], ["checkout", "-b", "side"]):
        msg = w.refused(*args)
        assert "refs/heads/main is damaged" in msg and "dbvers fsck" in msg, (args, msg)
    assert tree(w.store / "objects") == objects
    r = w.cli("fsck")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "refs/heads/main is damaged" in r.stdout + r.stderr
    with pytest.raises(DamagedRefError) as exc:
        w.repo.commit("api")
    assert exc.value.ref == "refs/heads/main"
    assert tree(w.store / "objects") == objects


@pytest.mark.parametrize("kind", ["empty", "text", "not-utf8", "directory"])
def test_damaged_other_refs_are_named(w: World, kind: str) -> None:
    _damage(w.store / "refs/tags/v1", GARBAGE[kind])
    # (an empty folder is only a folder of refs to a listing; read as a ref, it is damaged)
    listings = [["tag"], ["log"]] if kind != "directory" else []
    for args in (["checkout", "v1"], ["show", "v1"], ["tag", "v1", "--force"], *listings):
        msg = w.refused(*args)
        assert "refs/tags/v1 is damaged" in msg, (args, msg)
    if kind != "directory":
        r = w.cli("fsck")
        assert r.returncode == 1 and "refs/tags/v1 is damaged" in r.stdout + r.stderr
    # a ref that does not exist is simply unknown
    (w.store / "refs/tags/v1").unlink() if kind != "directory" else (w.store / "refs/tags/v1").rmdir()
    assert "unknown revision" in w.refused("show", "v1")


# -- item 9: one-line errors for long names, a missing HEAD, non-UTF-8 -----------------------


LONG = "a" * 300
BAD_NAMES = [LONG, "x/" + LONG, "/".join(["b" * 200] * 8), "caf\udcff"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["300", "x/300", "1600", "not-utf8"])
def test_unusable_names_are_one_line_errors(w: World, name: str) -> None:
    for args in (["branch", name], ["tag", name], ["checkout", "-b", name], ["branch", "-d", name],
                 ["tag", "-d", name]):
        assert "not a valid name" in w.refused(*args), args
    for args in (["checkout", name], ["show", name], ["log", name], ["branch", "z", name]):
        assert "unknown revision" in w.refused(*args), args
    with pytest.raises(InvalidRefNameError):
        w.repo.branch(name)
    with pytest.raises(DbversError):
        w.repo.checkout(name)


@pytest.mark.parametrize("head", [None, b"", b"\xff\xfe\n", b"ref: refs/heads/\xff\n", b"ref: refs/heads/\n",
                                  b"garbage\n", b"a" * 63 + b"\n"],
                         ids=["missing", "empty", "not-utf8", "target-not-utf8", "no-branch", "garbage", "short"])
def test_damaged_head_is_a_one_line_error(w: World, head: bytes | None) -> None:
    p = w.store / "HEAD"
    p.unlink()
    if head is not None:
        p.write_bytes(head)
    execute(w.db, "UPDATE orders SET qty = 5 WHERE id = 2;")
    for args in (["status"], ["commit", "-m", "x"], ["log"], ["show"], ["diff"], ["branch", "b"],
                 ["checkout", "v1"]):
        msg = w.refused(*args)
        assert "HEAD is damaged" in msg and "dbvers fsck" in msg and str(p) in msg, (args, msg)
    r = w.cli("fsck")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "HEAD is damaged" in r.stdout + r.stderr


# -- item 5: a failed reflog write leaves every ref where it was ------------------------------


def test_commit_with_blocked_head_reflog_moves_nothing(w: World) -> None:
    # root ignores permissions, so the reflog is blocked the way a read-only mount would: EISDIR
    log = w.store / "logs" / "HEAD"
    log.unlink()
    log.mkdir()
    execute(w.db, "UPDATE orders SET qty = 6 WHERE id = 2;")
    before = w.state()
    msg = one_line_error(w.cli("commit", "-m", "blocked"))
    assert "nothing was changed" in msg
    assert w.state() == before
    log.rmdir()
    assert w.cli("commit", "-m", "unblocked").returncode == 0


def test_branch_with_blocked_reflog_is_not_created(w: World) -> None:
    (w.store / "logs/refs/heads/side").mkdir(parents=True)
    for args in (["branch", "side"], ["checkout", "-b", "side"]):
        msg = w.refused(*args)
        assert "side" in msg, msg
    assert "side" not in w.repo.branches()


def test_checkout_with_blocked_reflog_leaves_the_working_database(w: World) -> None:
    log = w.store / "logs" / "HEAD"
    log.unlink()
    log.mkdir()
    w.refused("checkout", "v1")
    w.refused("reset", "--hard", "v1")
    w.refused("reset", "--soft", "v1")
    assert w.repo.head.branch == "main"


def _blocked(*args: Any, **kwargs: Any) -> None:
    raise StorageError(str(args[0]), OSError(errno.EROFS, os.strerror(errno.EROFS)))


def test_every_ref_move_is_last(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every reflog append failing, no ref-moving call moves a ref."""
    import dbvers.storage.local_refs

    repo = dbvers.open(w.db)
    repo.branch("gone")
    monkeypatch.setattr(dbvers.storage.local_refs, "append_line", _blocked)
    execute(w.db, "UPDATE orders SET qty = 8 WHERE id = 2;")
    calls = [
        lambda: repo.commit("blocked"),
        lambda: repo.commit("blocked", allow_empty=True),
        lambda: repo.branch("side"),
        lambda: repo.branch("gone", "v1", force=True),
        lambda: repo.tag("t2"),
        lambda: repo.tag("v1", "HEAD", force=True),
        lambda: repo.delete_branch("gone"),
        lambda: repo.delete_tag("v1"),
        lambda: repo.reset("v1", hard=False),
        lambda: repo.checkout("HEAD", create_branch="side"),
    ]
    for call in calls:
        before = refs_of(w.store)
        with pytest.raises(StorageError):
            call()
        assert refs_of(w.store) == before


def test_checkout_whose_ref_move_fails_says_so_and_is_finished_later(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import dbvers.storage.local_refs

    repo = dbvers.open(w.db)
    v1 = repo.resolve("v1")
    refs = refs_of(w.store)
    monkeypatch.setattr(dbvers.storage.local_refs, "append_line", _blocked)
    with pytest.raises(UnfinishedMoveError) as exc:  # not "nothing was changed": the database was
        repo.checkout("v1")
    assert "dbvers status" in str(exc.value) and "nothing was changed" not in str(exc.value)
    assert refs_of(w.store) == refs
    monkeypatch.undo()
    dbvers.open(w.db).status()  # the next command finishes the move
    assert repo.head.commit == v1 and repo.head.detached


def test_a_name_cannot_be_both_a_ref_and_a_folder(w: World) -> None:
    assert w.cli("branch", "a").returncode == 0
    assert "in the way" in w.refused("branch", "a/b")
    assert "in the way" in w.refused("tag", "v1/rc")
    assert w.cli("branch", "c/d").returncode == 0
    assert "in the way" in w.refused("branch", "c")
    assert "in the way" in w.refused("checkout", "-b", "c")
