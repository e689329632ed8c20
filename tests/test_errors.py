"""Bad input through the real entry point: one clear line on stderr, exit 2, nothing changed.

"Nothing changed" is checked on both sides: the working database (``dump_state``)
and every file of the store, byte for byte (only the lock file is left out).
"""

from __future__ import annotations

import configparser
import fcntl
import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute, one_line_error

import dbvers
from dbvers.errors import DbversError
from dbvers.objects import object_id
from dbvers.storage.local import LocalObjectStore as ObjectStore

Cli = Callable[..., subprocess.CompletedProcess[str]]


def store_files(store: Path) -> dict[str, str]:
    """Every file of the store (but the lock) with its SHA-256.

    The private cache of materialized states (``cache/``) may be rebuilt or
    dropped by any command, so only its leftover temp files count.
    """
    out: dict[str, str] = {}
    if not store.exists():
        return out
    for p in sorted(store.rglob("*")):
        rel = p.relative_to(store).as_posix()
        if not p.is_file() or p.name == "lock":
            continue
        if rel.startswith("cache/") and not p.name.startswith(".tmp-"):
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def world(directory: Path, db: Path, store: Path | None = None) -> dict[str, Any]:
    """What must not change: the database's state and the store's files."""
    state: Any = None
    if db.is_file():
        try:
            state = dump_state(db)
        except Exception:
            state = ("raw", db.read_bytes())
    return {
        "db": state,
        "store": store_files(store or directory / ".dbvers"),
        "dir": sorted(p.name for p in directory.iterdir()),
    }



def refused(cli: Cli, *args: str, cwd: Path, db: Path, env: dict[str, str] | None = None,
            store: Path | None = None) -> str:
    """Run a command that must be refused: exit 2, one line, no change anywhere."""
    before = world(cwd, db, store)
    r = cli(*args, cwd=cwd, env=env)
    msg = one_line_error(r)
    assert world(cwd, db, store) == before, f"dbvers {' '.join(args)} changed something"
    return msg


@pytest.fixture
def hist(db_path: Path) -> dbvers.Repo:
    """main: init (snapshot) -> 'add dan' (patch only) -> 'fix prices' (patch only, tag v1)."""
    dbvers.init(db_path)
    cfg_file = db_path.parent / ".dbvers" / "config"
    cfg = configparser.ConfigParser()
    cfg.read(cfg_file)
    cfg.set("snapshot", "max_patch_ratio", "1000")  # no keyframes: commits are patches
    with open(cfg_file, "w") as f:
        cfg.write(f)
    repo = dbvers.open(db_path)
    execute(db_path, "INSERT INTO orders VALUES (4, 'dan', 7, 3.5, NULL);")
    repo.commit("add dan")
    execute(db_path, "UPDATE orders SET price = price * 2 WHERE id = 1;")
    repo.commit("fix prices")
    repo.tag("v1")
    for ref in ("HEAD", "HEAD~1"):
        c = repo.get_commit(repo.resolve(ref))
        assert c.patch and not c.snapshot
    return repo


def drop_cache(repo: dbvers.Repo, oid: str) -> None:
    """Forget a commit's materialized state so the next use rebuilds it from the store."""
    (repo.store_dir / "cache" / f"{oid}.db").unlink(missing_ok=True)


def obj_file(repo: dbvers.Repo, oid: str) -> Path:
    return repo.objects.path(oid)


# -- not a database / no repository ------------------------------------------------


def test_init_on_text_file(cli: Cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes\nnot a database\n")
    msg = refused(cli, "init", "notes.txt", cwd=tmp_path, db=notes)
    assert "not a SQLite database" in msg
    assert "notes.txt" in msg
    assert not (tmp_path / ".dbvers").exists()
    assert notes.read_text() == "just some notes\nnot a database\n"


def test_init_on_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    msg = refused(cli, "init", "adir", cwd=tmp_path, db=tmp_path / "adir.db")
    assert "not a SQLite database" in msg
    assert not (tmp_path / ".dbvers").exists()


def test_init_in_missing_directory(cli: Cli, tmp_path: Path) -> None:
    msg = refused(cli, "init", "nowhere/x.db", cwd=tmp_path, db=tmp_path / "nowhere" / "x.db")
    assert "does not exist" in msg


def test_tracked_database_replaced_by_text(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    db_path.write_text("oops, overwritten with text\n" * 10)
    d = db_path.parent
    for args in (["status"], ["commit", "-m", "x"], ["checkout", "v1~1"], ["restore"],
                 ["reset", "--hard", "HEAD~1"]):
        msg = refused(cli, "--db", str(db_path), *args, cwd=d, db=db_path)
        assert "not a SQLite database" in msg, args
        assert "data.db" in msg


def test_db_option_names_a_text_file(cli: Cli, hist: dbvers.Repo, db_path: Path,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    d = db_path.parent
    notes = d / "notes.txt"
    notes.write_text("hello\n")
    msg = refused(cli, "--db", "notes.txt", "status", cwd=d, db=db_path)
    assert "notes.txt" in msg and "--store" in msg  # the store here tracks another file
    other = tmp_path_factory.mktemp("other")
    (other / "notes.txt").write_text("hello\n")
    msg = refused(cli, "--db", str(other / "notes.txt"), "status", cwd=other, db=other / "notes.txt")
    assert "no dbvers repository" in msg


def test_no_repository(cli: Cli, tmp_path: Path) -> None:
    for args in (["status"], ["log"], ["commit", "-m", "x"], ["branch"], ["checkout", "main"],
                 ["fsck"], ["gc"]):
        msg = refused(cli, *args, cwd=tmp_path, db=tmp_path / "none.db")
        assert "no dbvers repository" in msg, args
        assert "dbvers init" in msg
    assert list(tmp_path.iterdir()) == []


def test_unknown_command_and_option(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    assert "invalid choice" in refused(cli, "frobnicate", cwd=d, db=db_path)
    assert "unrecognized arguments" in refused(cli, "log", "--frob", cwd=d, db=db_path)
    assert "invalid choice" in refused(cli, "log", "--format", "xml", cwd=d, db=db_path)
    assert "-n" in refused(cli, "log", "-n", "-3", cwd=d, db=db_path)
    assert "needs a REF" in refused(cli, "checkout", cwd=d, db=db_path)


# -- refs ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["nope", "main~99"])
def test_unknown_ref(cli: Cli, hist: dbvers.Repo, db_path: Path, bad: str) -> None:
    d = db_path.parent
    for args in (["checkout", bad], ["log", bad], ["show", bad], ["reset", "--hard", bad],
                 ["reset", "--soft", bad], ["branch", "newb", bad], ["tag", "newt", bad],
                 ["checkout", "-b", "newc", bad]):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert bad in msg, (args, msg)
        assert "revision" in msg or "first commit" in msg, msg


@pytest.mark.parametrize("bad", ["v1^^^^", "HEAD^2", "refs/heads/nope", "deadbeef", "main~x",
                                 "main~1~1~1", " ", "nope~1"])
def test_unknown_ref_forms(cli: Cli, hist: dbvers.Repo, db_path: Path, bad: str) -> None:
    d = db_path.parent
    for args in (["show", bad],):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert bad in msg, (args, msg)
        assert "revision" in msg or "first commit" in msg or "parent" in msg, msg


def test_ambiguous_short_id(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    head = hist.head.commit
    assert head is not None
    commit = hist.get_commit(head)
    template = commit.to_bytes().replace(commit.message.encode(), b"twin-%08d")
    assert template.count(b"twin-%08d") == 1
    for i in range(10_000_000):
        body = template % i
        if object_id("commit", body)[:4] == head[:4]:
            break
    twin = hist.objects.put_bytes("commit", body)
    assert twin[:4] == head[:4] and twin != head
    d = db_path.parent
    msg = refused(cli, "show", head[:4], cwd=d, db=db_path)
    assert "ambiguous" in msg
    assert head[:12] in msg and twin[:12] in msg
    refused(cli, "checkout", head[:4], cwd=d, db=db_path)
    # a longer prefix is unique again
    r = cli("show", head[:12], cwd=d)
    assert r.returncode == 0 and head in r.stdout


BAD_NAMES = ["..", "a..b", "a b", "HEAD", "@", "x.lock", ".hidden", "/x", "x/", "a//b",
             "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "end.", "a@{1}", "tab\there", "0" * 64]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names(cli: Cli, hist: dbvers.Repo, db_path: Path, name: str) -> None:
    d = db_path.parent
    for args in (["branch", "--", name], ["tag", "--", name], ["checkout", "-b", name]):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert "not a valid name" in msg, (args, msg)


def test_leading_dash_names(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    # behind `--` the name reaches the validator ...
    for args in (["branch", "--", "-x"], ["tag", "--", "-x"]):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert "not a valid name" in msg and "'-'" in msg
    # ... without it the parser refuses it as an option
    for args in (["branch", "-x"], ["tag", "-x"], ["checkout", "-b", "-x"]):
        refused(cli, *args, cwd=d, db=db_path)


def test_existing_names(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    assert "already exists" in refused(cli, "branch", "main", "v1", cwd=d, db=db_path)
    assert "already exists" in refused(cli, "tag", "v1", "HEAD~1", cwd=d, db=db_path)
    assert "already exists" in refused(cli, "checkout", "-b", "main", "v1", cwd=d, db=db_path)
    assert "no branch named" in refused(cli, "branch", "-d", "nope", cwd=d, db=db_path)
    assert "no tag named" in refused(cli, "tag", "-d", "nope", cwd=d, db=db_path)
    assert "checked out" in refused(cli, "branch", "-d", "main", cwd=d, db=db_path)


# -- dirty working database ------------------------------------------------------


def test_dirty_working_database(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    hist.branch("other", "HEAD~2")
    execute(db_path, "UPDATE orders SET qty = 100 WHERE id = 2; CREATE TABLE scratch(a);")
    for args, action in ((["checkout", "v1~1"], "checkout"), (["checkout", "other"], "checkout"),
                         (["checkout", "-b", "fresh", "HEAD~1"], "checkout"),
                         (["reset", "--hard", "HEAD~1"], "reset --hard"), (["restore"], "restore")):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert "uncommitted changes in orders, scratch" in msg, msg
        assert action in msg and "--force" in msg
    assert hist.head.branch == "main"


def test_dirty_pragma_only(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "PRAGMA user_version = 42;")
    msg = refused(cli, "reset", "--hard", "HEAD~1", cwd=db_path.parent, db=db_path)
    assert "uncommitted changes" in msg


# -- locks -------------------------------------------------------------------------


@pytest.fixture
def held_lock(hist: dbvers.Repo) -> Iterator[Path]:
    lock = hist.store_dir / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def test_repository_busy(cli: Cli, hist: dbvers.Repo, db_path: Path, held_lock: Path) -> None:
    d = db_path.parent
    env = {"DBVERS_LOCK_TIMEOUT": "0.1"}  # any wait proves the refusal; 9 commands wait it out
    execute(db_path, "UPDATE orders SET qty = 0;")
    for args in (["status"], ["commit", "-m", "x"], ["checkout", "-f", "v1~1"],
                 ["reset", "--hard", "-f", "HEAD~1"], ["branch", "b2"], ["tag", "t2"], ["gc"],
                 ["snapshot"], ["restore", "--force"]):
        start = time.monotonic()
        msg = refused(cli, *args, cwd=d, db=db_path, env=env)
        assert time.monotonic() - start < 10
        assert "repository is busy" in msg, (args, msg)
        assert str(held_lock) in msg


def test_busy_then_free(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    lock = hist.store_dir / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = cli("status", cwd=db_path.parent, env={"DBVERS_LOCK_TIMEOUT": "0.2"})
        assert "busy" in one_line_error(r)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    r = cli("status", cwd=db_path.parent, env={"DBVERS_LOCK_TIMEOUT": "0.2"})
    assert r.returncode == 0


# -- damaged store -----------------------------------------------------------------


def flip_a_byte(store: ObjectStore, oid: str) -> None:
    """Flip one byte of an object's file so that reading it is refused."""
    p = store.path(oid)
    original = p.read_bytes()
    for pos in [len(original) // 2, *range(len(original))]:
        data = bytearray(original)
        data[pos] ^= 0x40
        p.write_bytes(bytes(data))
        try:
            store.verify(oid)
        except DbversError:
            return
    raise AssertionError("no single flipped byte is detected")  # pragma: no cover


def truncate(store: ObjectStore, oid: str) -> None:
    p = store.path(oid)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [flip_a_byte, truncate], ids=["flipped", "truncated"])
def test_corrupt_commit_object(cli: Cli, hist: dbvers.Repo, db_path: Path,
                               damage: Callable[[ObjectStore, str], None]) -> None:
    d = db_path.parent
    victim = hist.resolve("HEAD~1")
    damage(hist.objects, victim)
    msg = refused(cli, "log", cwd=d, db=db_path)
    assert "corrupt" in msg and victim[:12] in msg and "fsck" in msg
    msg = refused(cli, "show", "HEAD~1", cwd=d, db=db_path)
    assert "corrupt" in msg
    refused(cli, "checkout", "HEAD~1", cwd=d, db=db_path)

    before = world(d, db_path)
    r = cli("fsck", cwd=d)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert victim[:12] in r.stdout
    assert "corrupt" in r.stdout
    assert "problem" in r.stdout.splitlines()[-1]
    assert world(d, db_path) == before
    r = cli("fsck", "--format", "json", cwd=d)
    assert r.returncode == 1
    assert any(victim[:12] in p for p in __import__("json").loads(r.stdout)["problems"])


def test_corrupt_patch_blocks_checkout(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    target = hist.resolve("HEAD~1")
    patch = hist.get_commit(target).patch
    assert patch
    flip_a_byte(hist.objects, patch)
    drop_cache(hist, target)  # force materialization from the store
    msg = refused(cli, "checkout", "HEAD~1", cwd=d, db=db_path)
    assert "corrupt" in msg and patch[:12] in msg
    r = cli("fsck", cwd=d)
    assert r.returncode == 1 and patch[:12] in r.stdout


def test_corrupt_snapshot_blocks_checkout(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    root = hist.resolve("HEAD~2")
    snap = hist.get_commit(root).snapshot
    assert snap
    truncate(hist.objects, snap)
    drop_cache(hist, root)
    msg = refused(cli, "checkout", root, cwd=d, db=db_path)
    assert "corrupt" in msg and snap[:12] in msg


def test_missing_object(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    victim = hist.resolve("HEAD~1")
    obj_file(hist, victim).unlink()
    msg = refused(cli, "log", cwd=d, db=db_path)
    assert "missing" in msg and victim[:12] in msg
    refused(cli, "show", "HEAD~1", cwd=d, db=db_path)
    # the full id still names a commit a user may have written down
    refused(cli, "checkout", victim, cwd=d, db=db_path)
    before = world(d, db_path)
    r = cli("fsck", cwd=d)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert victim[:12] in r.stdout and "missing" in r.stdout
    assert world(d, db_path) == before


def test_missing_patch_object(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    patch = hist.get_commit(hist.resolve("HEAD")).patch
    assert patch
    obj_file(hist, patch).unlink()
    drop_cache(hist, hist.resolve("HEAD"))
    execute(db_path, "UPDATE orders SET qty = 3;")
    for args in (["status"], ["commit", "-m", "x"], ["checkout", "-f", "HEAD"]):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert "missing" in msg and patch[:12] in msg, (args, msg)


def test_newer_store_format(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    cfg = hist.store_dir / "config"
    text = cfg.read_text()
    assert "format = 1" in text
    cfg.write_text(text.replace("format = 1", "format = 99"))
    for args in (["status"], ["log"], ["commit", "-m", "x", "--allow-empty"], ["checkout", "v1"],
                 ["gc"], ["fsck"]):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert "upgrade" in msg and "99" in msg, (args, msg)


def test_store_config_damaged(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    cfg = hist.store_dir / "config"
    cfg.write_text("this is [not an ini file\n")
    r = cli("status", cwd=db_path.parent)
    msg = one_line_error(r)
    assert "config" in msg


# -- commit messages ---------------------------------------------------------------


def test_empty_commit_message(cli: Cli, hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    execute(db_path, "UPDATE orders SET qty = 1;")
    for args in (["commit"], ["commit", "-m", ""], ["commit", "-m", "   "], ["commit", "-m", "\n\n"],
                 ["commit", "-m", "", "--allow-empty"]):
        msg = refused(cli, *args, cwd=d, db=db_path)
        assert "message" in msg and "-m" in msg, (args, msg)
