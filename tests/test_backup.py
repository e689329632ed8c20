"""Backups: archive format, round trips of full and incremental chains, verification
against damage and tampering, hostile archives, atomic restore (locks, user_version,
free space, disk full, SIGKILL), retention, and the CLI."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbvers
from dbvers import backup as bk
from dbvers.errors import (
    BackupError,
    BackupIOError,
    BackupLockError,
    BackupSchemaError,
    BackupValidationError,
    DbversError,
)
from dbvers.formats import parse_timestamp
from dbvers.remotes import archive as fmt

SCHEMA = """
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, qty INTEGER, price REAL, note);
CREATE TABLE events(kind, payload);
CREATE TABLE "odd name"("key part" TEXT, k2 TEXT, v, PRIMARY KEY ("key part", k2)) WITHOUT ROWID;
INSERT INTO orders VALUES (1, 'ann', 2, 9.5, NULL), (2, 'bob', 1, 20.0, x'00ff'), (3, 'zoë', 5, 1.25, 'x');
INSERT INTO events VALUES ('open', 1), ('close', 2.5), ('open', NULL);
INSERT INTO "odd name" VALUES ('a', 'x', 1), ('b', 'y', 'two');
"""


def new_db(path: Path, sql: str = SCHEMA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.commit()
    conn.close()
    return path


def commit(repo: dbvers.Repo, states: dict[str, Any], sql: str, msg: str) -> str:
    execute(repo.path, sql)
    c = repo.commit(msg)
    states[c.id] = dump_state(repo.path)
    return c.id


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".tmp-"))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A history with a branch, a tag, a schema change and a user_version change, backed up
    as a full backup and two incrementals; the dumps of every commit's state."""
    root = tmp_path_factory.mktemp("history")
    db = new_db(root / "work" / "data.db")
    repo = dbvers.init(db)
    states: dict[str, Any] = {repo.head.commit: dump_state(db)}
    archives: list[tuple[Path, set[str]]] = []
    out = root / "backups"

    commit(repo, states, "INSERT INTO orders VALUES (4, 'dan', 7, 3.0, 1); "
           "INSERT INTO events VALUES ('big', 9223372036854775807), ('neg', -0.5)", "more rows")
    archives.append((repo.backup(out).path, set(states)))
    commit(repo, states, "UPDATE orders SET price = 10 WHERE id = 1; DELETE FROM events WHERE kind = 'close'; "
           "UPDATE \"odd name\" SET v = x'0102' WHERE k2 = 'x'", "edit")
    commit(repo, states, "ALTER TABLE orders ADD COLUMN region TEXT DEFAULT 'eu'; PRAGMA user_version = 2; "
           "CREATE INDEX orders_customer ON orders(customer)", "schema v2")
    info2 = repo.backup(out, incremental=True)
    archives.append((info2.path, set(states)))
    repo.checkout("HEAD", create_branch="exp")
    commit(repo, states, "DELETE FROM orders WHERE id > 2; INSERT INTO events VALUES ('exp', 'only')", "experiment")
    repo.checkout("main")
    commit(repo, states, "INSERT INTO orders (id, customer, qty, price, note) VALUES (9, 'eve', 1, 1.0, 1.0)", "eve")
    repo.tag("v1")
    info3 = repo.backup(out, incremental=True)
    archives.append((info3.path, set(states)))
    return {"repo": repo, "states": states, "archives": archives, "root": root, "infos": [info2, info3]}


# -- the archive ------------------------------------------------------------------------


def test_archive_is_a_plain_tar_with_a_manifest(history: dict[str, Any]) -> None:
    full = history["archives"][0][0]
    assert full.name.startswith("data-") and full.name.endswith(".dbvers.tar")
    proc = subprocess.run(["tar", "tf", str(full)], capture_output=True, text=True, check=True)
    names = proc.stdout.split()
    assert names[-1] == "backup.json"
    assert "HEAD" in names and "refs/heads/main" in names and "config" in names
    assert any(n.startswith("objects/") for n in names)
    m = bk.read_manifest(full)
    repo = history["repo"]
    assert m["kind"] == "full" and m["parent"] is None
    assert m["store_format"] == 1 and m["dbvers_version"] == dbvers.__version__
    assert m["database"]["name"] == "data.db" and m["database"]["user_version"] == 0
    assert m["database"]["size"] > 0 and m["commits"] == 2
    assert datetime.strptime(m["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    # members carry checksums; objects are the store's files, byte for byte (no recompression)
    for mem in m["members"]:
        if mem["name"].startswith("objects/"):
            oid = mem["name"][8:10] + mem["name"][11:]
            if repo.objects.has(oid):
                import hashlib

                assert hashlib.sha256(repo.objects.path(oid).read_bytes()).hexdigest() == mem["sha256"]


def test_incremental_holds_only_what_the_chain_lacks(history: dict[str, Any]) -> None:
    (full, _), (inc1, _), (inc2, _) = history["archives"]
    mf, m1, m2 = (bk.read_manifest(p) for p in (full, inc1, inc2))
    assert m1["kind"] == m2["kind"] == "incremental"
    assert m1["parent"] == {"file": full.name, "id": mf["checksum"]}
    assert m2["parent"] == {"file": inc1.name, "id": m1["checksum"]}
    objs = [{x["name"] for x in m["members"] if x["name"].startswith("objects/")} for m in (mf, m1, m2)]
    assert objs[0] and objs[1] and objs[2]
    assert not (objs[0] & objs[1]) and not (objs[0] & objs[2]) and not (objs[1] & objs[2])
    assert m2["database"]["user_version"] == 2 and "refs/tags/v1" in m2["refs"]
    assert history["infos"][1].parent == inc1.name


def test_round_trip_every_commit_of_full_and_incremental_chains(history: dict[str, Any],
                                                               tmp_path: Path) -> None:
    states = history["states"]
    n = 0
    for archive, commits in history["archives"]:
        for oid in commits:
            target = tmp_path / f"r{n}" / "data.db"
            target.parent.mkdir()
            repo = dbvers.restore(archive, to=target, at=oid)
            assert dump_state(target) == states[oid], (archive.name, oid)
            assert repo.head.commit == oid and repo.head.branch is None
            n += 1
    assert n == 2 + 4 + 6


def test_restore_at_branch_tag_and_head(history: dict[str, Any], tmp_path: Path) -> None:
    archive = history["archives"][-1][0]
    repo0 = history["repo"]
    for at, branch in (("HEAD", "main"), ("main", "main"), ("exp", "exp"), ("v1", None)):
        target = tmp_path / at / "data.db"
        target.parent.mkdir()
        repo = dbvers.restore(archive, to=target, at=at)
        want = repo0.resolve(at if at != "HEAD" else "main")
        assert repo.head.commit == want and repo.head.branch == branch
        assert dump_state(target) == history["states"][want]
        assert repo.status().clean
        assert repo.fsck().ok
        assert set(repo.branches()) == {"main", "exp"} and set(repo.tags()) == {"v1"}
        assert len(repo.log("main")) == len(repo0.log("main"))
    with pytest.raises(BackupError, match="unknown revision"):
        dbvers.restore(archive, to=tmp_path / "x.db", at="nope")
    assert not (tmp_path / "x.db").exists() and not leftovers(tmp_path)


def test_verify_and_list(history: dict[str, Any]) -> None:
    out = history["archives"][0][0].parent
    results = bk.verify(out)
    assert [r.ok for r in results] == [True, True, True], [r.problem for r in results]
    assert results[-1].commits == 6 and results[-1].kind == "incremental"
    infos = bk.list_backups(out)
    assert [i.kind for i in infos] == ["full", "incremental", "incremental"]
    assert [i.commits for i in infos] == [2, 4, 6]
    assert all(i.verified == "ok" for i in infos)


def test_incremental_without_a_previous_backup_is_full(repo: dbvers.Repo, tmp_path: Path) -> None:
    info = repo.backup(tmp_path / "b", incremental=True)
    assert info.kind == "full" and info.note and "full" in info.note
    again = repo.backup(tmp_path / "b", incremental=True)
    assert again.kind == "incremental" and again.objects == 0 and again.parent == info.path.name


def test_backup_reports_uncommitted_changes(repo: dbvers.Repo, tmp_path: Path) -> None:
    execute(repo.path, "INSERT INTO orders VALUES (99, 'new', 1, 1.0, NULL)")
    info = repo.backup(tmp_path / "b")
    assert info.uncommitted == ["orders"]


def test_backup_refuses_a_damaged_store(repo: dbvers.Repo, tmp_path: Path) -> None:
    snap = repo.get_commit(repo.head.commit).snapshot
    p = repo.objects.path(snap)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="damaged"):
        repo.backup(tmp_path / "b")
    assert not (tmp_path / "b").exists()  # the directory it made goes too


def test_backup_is_online_while_a_writer_holds_a_transaction(repo: dbvers.Repo, tmp_path: Path) -> None:
    writer = sqlite3.connect(repo.path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO orders VALUES (50, 'w', 1, 1.0, NULL)")
        info = repo.backup(tmp_path / "b")
        assert info.kind == "full"
        writer.execute("COMMIT")
    finally:
        writer.close()


# -- damage and tampering -------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("small")
    db = new_db(root / "w" / "data.db")
    repo = dbvers.init(db)
    execute(db, "INSERT INTO orders VALUES (7, 'g', 1, 2.0, 'z'); UPDATE events SET payload = 3 WHERE kind = 'open'")
    repo.commit("two")
    archive = repo.backup(root / "b").path
    return {"archive": archive, "bytes": archive.read_bytes(), "root": root, "state": dump_state(db)}


def assert_rejected(path: Path, target_dir: Path) -> BackupError:
    result = bk.verify(path)[0]
    assert not result.ok and result.problem
    with pytest.raises(BackupError) as ei:
        dbvers.restore(path, to=target_dir / "data.db")
    assert not (target_dir / "data.db").exists() and not (target_dir / ".dbvers").exists()
    assert not leftovers(target_dir)
    return ei.value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_flipped_byte_anywhere_is_detected(small: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
                                           data: st.DataObject) -> None:
    raw = bytearray(small["bytes"])
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    raw[pos] ^= mask
    d = tmp_path_factory.mktemp("flip")
    bad = d / small["archive"].name
    bad.write_bytes(bytes(raw))
    err = assert_rejected(bad, d)
    assert isinstance(err, BackupValidationError | BackupSchemaError)


def test_flip_names_the_object_it_hit(small: dict[str, Any], tmp_path: Path) -> None:
    m = bk.read_manifest(small["archive"])
    mem = next(x for x in m["members"] if x["name"].startswith("objects/"))
    raw = bytearray(small["bytes"])
    raw[mem["offset"] + 512 + mem["size"] // 2] ^= 0x10
    bad = tmp_path / small["archive"].name
    bad.write_bytes(bytes(raw))
    oid = mem["name"][8:10] + mem["name"][11:]
    err = assert_rejected(bad, tmp_path)
    assert oid in str(err) and "checksum mismatch" in str(err)
    assert oid in (bk.verify(bad)[0].problem or "")
    # a flip in its tar header is named too
    raw = bytearray(small["bytes"])
    raw[mem["offset"] + 130] ^= 0x01  # the mode field
    bad.write_bytes(bytes(raw))
    assert oid in str(assert_rejected(bad, tmp_path))


@pytest.mark.parametrize("cut", ["empty", "header", "middle", "manifest", "end-blocks", "one-byte"])
def test_truncated_archive_is_detected(small: dict[str, Any], tmp_path: Path, cut: str) -> None:
    raw = small["bytes"]
    with open(small["archive"], "rb") as f:
        moff, _ = fmt.find_manifest(f, len(raw))
    keep = {"empty": 0, "header": 300, "middle": len(raw) // 2, "manifest": moff + 600,
            "end-blocks": moff + 512 + 512, "one-byte": len(raw) - 1}[cut]
    bad = tmp_path / small["archive"].name
    bad.write_bytes(raw[:keep])
    assert_rejected(bad, tmp_path)


def rewrite_manifest(src: Path, dest: Path, edit: Any, resign: bool = True) -> None:
    raw = src.read_bytes()
    with open(src, "rb") as f:
        off, ti = fmt.find_manifest(f, len(raw))
    m = bk.read_manifest(src)
    edit(m)
    body = fmt.sign_manifest(m) if resign else json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
    out = raw[:off] + fmt.tar_header("backup.json", len(body), int(ti.mtime)) + body
    out += b"\0" * (-len(out) % 512) + b"\0" * 1024
    out += b"\0" * (-len(out) % 10240)
    dest.write_bytes(out)


def test_tampered_manifest_is_detected(small: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / small["archive"].name

    def set_uv(m: dict[str, Any]) -> None:
        m["database"]["user_version"] = 42

    rewrite_manifest(small["archive"], bad, set_uv, resign=False)
    assert "checksum" in str(assert_rejected(bad, tmp_path))

    def change_member(m: dict[str, Any]) -> None:
        m["members"][0]["sha256"] = "0" * 64

    rewrite_manifest(small["archive"], bad, change_member)  # re-signed: the data no longer matches
    assert "checksum mismatch" in str(assert_rejected(bad, tmp_path))

    def drop_member(m: dict[str, Any]) -> None:
        m["members"].pop()

    rewrite_manifest(small["archive"], bad, drop_member)
    assert_rejected(bad, tmp_path)

    # not canonical: same content with whitespace
    raw = small["bytes"]
    with open(small["archive"], "rb") as f:
        off, ti = fmt.find_manifest(f, len(raw))
    body = json.dumps(bk.read_manifest(small["archive"]), sort_keys=True).encode()
    out = raw[:off] + fmt.tar_header("backup.json", len(body), int(ti.mtime)) + body
    out += b"\0" * (-len(out) % 512) + b"\0" * 1024
    bad.write_bytes(out + b"\0" * (-len(out) % 10240))
    assert "canonical" in str(assert_rejected(bad, tmp_path))

    bad.write_bytes(small["bytes"] + b"\0" * 10240)  # appended blocks
    assert_rejected(bad, tmp_path)


def test_newer_store_format_is_refused(small: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / small["archive"].name

    def newer(m: dict[str, Any]) -> None:
        m["store_format"] = 2

    rewrite_manifest(small["archive"], bad, newer)
    with pytest.raises(BackupSchemaError, match="newer dbvers"):
        dbvers.restore(bad, to=tmp_path / "data.db")
    assert not (tmp_path / "data.db").exists()
    r = run_cli("restore", "--from", str(bad), "--to", str(tmp_path / "data.db"), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "upgrade" in r.stderr


def test_damaged_parent_of_an_incremental_is_detected(history: dict[str, Any], tmp_path: Path) -> None:
    (full, _), (inc1, _), _ = history["archives"]
    for p in (full, inc1):
        shutil.copy(p, tmp_path / p.name)
    raw = bytearray((tmp_path / full.name).read_bytes())
    m = bk.read_manifest(full)
    mem = next(x for x in m["members"] if x["name"].startswith("objects/"))
    raw[mem["offset"] + 512] ^= 0x40
    (tmp_path / full.name).write_bytes(bytes(raw))
    (tmp_path / "out").mkdir()
    with pytest.raises(BackupValidationError, match=full.name):
        dbvers.restore(tmp_path / inc1.name, to=tmp_path / "out" / "data.db")
    assert not list((tmp_path / "out").iterdir())
    results = {r.path.name: r for r in bk.verify(tmp_path)}
    assert not results[full.name].ok and not results[inc1.name].ok
    (tmp_path / full.name).unlink()
    with pytest.raises(BackupValidationError, match="parent backup"):
        dbvers.restore(tmp_path / inc1.name, to=tmp_path / "out2.db")


# -- hostile archives -----------------------------------------------------------------------


def _hostile_members() -> list[tuple[str, tarfile.TarInfo, bytes | None]]:
    out = []
    for name in ("../evil", "/tmp/dbvers-evil-abs", "objects/../../evil", "refs/heads/../../../evil"):
        ti = tarfile.TarInfo(name)
        ti.size = 4
        out.append(("path " + name, ti, b"evil"))
    ti = tarfile.TarInfo("objects/ab/" + "c" * 62)
    ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
    out.append(("symlink", ti, None))
    ti = tarfile.TarInfo("refs/heads/main")
    ti.type, ti.linkname = tarfile.SYMTYPE, "../../../evil"
    out.append(("symlink ref", ti, None))
    ti = tarfile.TarInfo("config")
    ti.type, ti.linkname = tarfile.LNKTYPE, "/etc/passwd"
    out.append(("hard link", ti, None))
    ti = tarfile.TarInfo("HEAD")
    ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
    out.append(("char device", ti, None))
    ti = tarfile.TarInfo("keyframes/" + "a" * 64)
    ti.type, ti.devmajor, ti.devminor = tarfile.BLKTYPE, 8, 0
    out.append(("block device", ti, None))
    ti = tarfile.TarInfo("logs/HEAD")
    ti.type = tarfile.FIFOTYPE
    out.append(("fifo", ti, None))
    return out


@pytest.mark.parametrize("first", [True, False], ids=["first", "last"])
def test_hostile_archives_are_refused(small: dict[str, Any], tmp_path: Path, first: bool) -> None:
    work = tmp_path / "in" / "deeper"
    work.mkdir(parents=True)
    for label, ti, payload in _hostile_members():
        bad = work / "hostile.dbvers.tar"
        with tarfile.open(small["archive"]) as src, tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as out:
            members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
            if first:
                out.addfile(ti, io.BytesIO(payload) if payload else None)
            for m, b in members:
                if not first and m.name == "backup.json":
                    out.addfile(ti, io.BytesIO(payload) if payload else None)
                out.addfile(m, io.BytesIO(b))
        with pytest.raises(BackupValidationError) as ei:
            dbvers.restore(bad, to=work / "data.db")
        msg = str(ei.value)
        assert ti.name in msg or repr(ti.name) in msg, label
        assert any(w in msg for w in ("escape", "link", "device", "FIFO", "not a file")), msg
        assert not bk.verify(bad)[0].ok
        assert not (work / "data.db").exists() and not leftovers(work)
        assert not (tmp_path / "evil").exists() and not (tmp_path / "in" / "evil").exists()
        assert not Path("/tmp/dbvers-evil-abs").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    for content in (b"", b"hello world", b"\x1f\x8b" + os.urandom(2000)):
        p = tmp_path / "x.dbvers.tar"
        p.write_bytes(content)
        with pytest.raises(BackupError):
            dbvers.restore(p, to=tmp_path / "data.db")
    with pytest.raises(BackupError, match="no such backup"):
        dbvers.restore(tmp_path / "missing.tar", to=tmp_path / "data.db")


# -- restore onto what is there ---------------------------------------------------------------


def test_restore_into_existing_repository(history: dict[str, Any], tmp_path: Path) -> None:
    src = history["repo"]
    work = tmp_path / "w"
    shutil.copytree(src.path.parent, work)
    repo = dbvers.open(work / "data.db")
    tip = repo.head.commit
    execute(repo.path, "INSERT INTO orders (id) VALUES (1000)")
    repo.commit("after the backup")
    newest = repo.head.commit
    full = history["archives"][0][0]
    at = bk.read_manifest(full)["head_commit"]
    # a reader holds the database open: the copy-in keeps it consistent
    reader = sqlite3.connect(repo.path)
    try:
        with pytest.raises(BackupSchemaError, match="user_version 2"):
            dbvers.restore(full, to=repo.path)
        with pytest.warns(UserWarning, match="user_version"):
            dbvers.restore(full, to=repo.path, yes=True)
        assert reader.execute("SELECT count(*) FROM orders").fetchone()[0] == len(history["states"][at]["tables"]["orders"])
    finally:
        reader.close()
    assert dump_state(repo.path) == history["states"][at]
    assert not leftovers(work)
    repo = dbvers.open(work / "data.db")
    assert repo.head.branch == "main" and repo.head.commit == at
    assert newest in {e.new for e in repo.refs.reflog("refs/heads/main")}  # nothing lost
    assert repo.resolve(newest) == newest and repo.resolve("exp")
    assert repo.fsck().ok and repo.status().clean
    assert tip in repo.reachable_commits()


def test_restore_refuses_to_lose_uncommitted_changes(repo: dbvers.Repo, tmp_path: Path) -> None:
    archive = repo.backup(tmp_path / "b").path
    execute(repo.path, "DELETE FROM orders")
    before = dump_state(repo.path)
    with pytest.raises(BackupError, match="uncommitted changes"):
        dbvers.restore(archive, to=repo.path)
    assert dump_state(repo.path) == before
    dbvers.restore(archive, to=repo.path, yes=True)
    assert len(dump_state(repo.path)["tables"]["orders"]) == 3


def test_restore_over_an_untracked_database_needs_yes(small: dict[str, Any], tmp_path: Path) -> None:
    target = new_db(tmp_path / "data.db", "CREATE TABLE mine(x); INSERT INTO mine VALUES (1);")
    before = dump_state(target)
    with pytest.raises(BackupError, match="not tracked"):
        dbvers.restore(small["archive"], to=target)
    assert dump_state(target) == before
    dbvers.restore(small["archive"], to=target, yes=True)
    assert dump_state(target) == small["state"]
    assert dbvers.open(target).status().clean


def test_user_version_mismatch_needs_yes(small: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "data.db"
    dbvers.restore(small["archive"], to=target)
    execute(target, "CREATE TABLE mine(x); PRAGMA user_version = 7;")
    dbvers.open(target).commit("v7")
    before = dump_state(target)
    with pytest.raises(BackupSchemaError, match="user_version 7"):
        dbvers.restore(small["archive"], to=target, yes=False)
    assert dump_state(target) == before
    r = run_cli("restore", "--from", str(small["archive"]), "--to", str(target), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    with pytest.warns(UserWarning, match="user_version"):
        dbvers.restore(small["archive"], to=target, yes=True)
    assert dump_state(target) == small["state"]


def test_restore_refuses_a_database_locked_by_another_process(small: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "data.db"
    dbvers.restore(small["archive"], to=target)
    execute(target, "DELETE FROM events")
    dbvers.open(target).commit("newer")
    before = dump_state(target)
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); c.execute('DELETE FROM orders'); print('locked', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("DBVERS_LOCK_TIMEOUT", "0.3")
        with pytest.raises(BackupLockError, match="database is locked by another process"):
            dbvers.restore(small["archive"], to=target)
        r = run_cli("restore", "--from", str(small["archive"]), "--to", str(target), cwd=tmp_path,
                    env={"DBVERS_LOCK_TIMEOUT": "0.3"})
        assert r.returncode == 2 and "database is locked by another process" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    assert dump_state(target) == before and not leftovers(tmp_path)


def test_restore_without_space_fails_cleanly(small: dict[str, Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    Usage = type("Usage", (), {"free": 1000})
    monkeypatch.setattr(bk.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(BackupIOError, match=r"needs [\d.,]+ MB .* 0\.0 MB is free"):
        dbvers.restore(small["archive"], to=tmp_path / "data.db")
    assert not list(tmp_path.iterdir())


# -- disk full for real --------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Any:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        r = None
    if r is None or r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the RLIMIT_FSIZE test covers disk full)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def test_disk_full_on_a_small_tmpfs(tiny_tmpfs: Path, tmp_path: Path) -> None:
    db = new_db(tmp_path / "w" / "data.db", "CREATE TABLE t(x); INSERT INTO t SELECT randomblob(600) FROM "
                "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000) SELECT i FROM c);")
    repo = dbvers.init(db)
    # backing up into a full file system: the write fails, nothing is left behind
    with pytest.raises(BackupIOError, match="No space left"):
        repo.backup(tiny_tmpfs / "b")
    assert not (tiny_tmpfs / "b").exists()  # the directory it made goes too
    # restoring onto it: refused before anything is written, saying how much is needed
    archive = repo.backup(tmp_path / "b").path
    with pytest.raises(BackupIOError, match=r"needs .* is free"):
        dbvers.restore(archive, to=tiny_tmpfs / "data.db")
    assert not list(tiny_tmpfs.iterdir())


RLIMIT_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    import dbvers
    from dbvers.errors import BackupIOError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        dbvers.restore(sys.argv[1], to=sys.argv[2], yes=True)
    except BackupIOError as e:
        print("BackupIOError:", e)
        sys.exit(3)
    print("restored")
    """
)


def test_disk_full_in_a_file_size_limited_child(tmp_path: Path) -> None:
    rows = "".join(f"({i}, 'row number {i} with some repeated text to compress well'), " for i in range(30000))
    db = new_db(tmp_path / "w" / "data.db", f"CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES {rows[:-2]};")
    repo = dbvers.init(db)
    archive = repo.backup(tmp_path / "b").path
    size = db.stat().st_size
    assert max(p.stat().st_size for p in repo.objects.root.rglob("*") if p.is_file()) < size // 2
    target_dir = tmp_path / "t"
    target = new_db(target_dir / "data.db", "CREATE TABLE old(x); INSERT INTO old VALUES ('keep me');")
    before = dump_state(target)
    r = subprocess.run([sys.executable, "-c", RLIMIT_CHILD, str(archive), str(target), str(size // 2)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "BackupIOError" in r.stdout and "nothing was changed" in r.stdout
    assert dump_state(target) == before
    assert sorted(p.name for p in target_dir.iterdir()) == ["data.db"]


# -- SIGKILL during restore ------------------------------------------------------------------


KILL_CHILD = textwrap.dedent(
    """
    import sys, time
    import dbvers
    print("ready", flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    dbvers.restore(sys.argv[1], to=sys.argv[2], yes=True)
    print("done", time.perf_counter() - t, flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_during_restore_leaves_old_or_new(tmp_path: Path) -> None:
    rows = ", ".join(f"({i}, 'text {i}', {i * 0.5}, x'{i:08x}')" for i in range(15000))
    src = new_db(tmp_path / "src" / "data.db", f"CREATE TABLE t(id INTEGER PRIMARY KEY, a, b, c); INSERT INTO t VALUES {rows};")
    repo = dbvers.init(src)
    archive = repo.backup(tmp_path / "b").path
    restored = dump_state(src)
    # an existing repository whose database moved on since the backup
    tracked = tmp_path / "tracked"
    shutil.copytree(src.parent, tracked)
    execute(tracked / "data.db", "DELETE FROM t WHERE id % 3 = 0; UPDATE t SET a = 'changed' WHERE id < 100")
    dbvers.open(tracked / "data.db").commit("moved on")
    old_tracked = dump_state(tracked / "data.db")
    untracked = tmp_path / "untracked"
    new_db(untracked / "data.db", "CREATE TABLE mine(x); INSERT INTO mine VALUES (1), (2);")
    old_untracked = dump_state(untracked / "data.db")
    scenarios = {"tracked": (tracked, old_tracked), "untracked": (untracked, old_untracked), "new": (None, None)}
    rng = random.Random(5)
    kills = outcomes = 0
    for name, (template, old) in scenarios.items():
        duration = None
        for i in range(4):
            d = tmp_path / f"{name}{i}"
            if template is not None:
                shutil.copytree(template, d)
            else:
                d.mkdir()
            target = d / "data.db"
            child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(archive), str(target)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert child.stdout.readline().strip() == "ready"
            child.stdin.write("go\n")
            child.stdin.flush()
            if duration is None:  # the first run measures how long a restore takes
                out, err = child.communicate(timeout=120)
                assert child.returncode == 0, err
                duration = float(out.split()[-1])
            else:
                time.sleep(rng.uniform(0, duration * 1.1))
                child.kill()
                child.communicate(timeout=60)
                kills += 1
            if target.exists() and (old is not None or (d / ".dbvers").exists() or target.stat().st_size):
                state = dump_state(target)
                assert state in (old, restored), f"{name}{i}: a mix of states"
                conn = sqlite3.connect(target)
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                conn.close()
                outcomes += state == restored
            else:
                assert old is None, f"{name}{i}: the database disappeared"
            # the next run finishes the job and cleans up
            r = dbvers.restore(archive, to=target, yes=True)
            assert dump_state(target) == restored
            assert r.fsck().ok and r.status().clean
            assert not leftovers(d), leftovers(d)
    assert kills == 9 and outcomes >= 1  # some kills land after the switch


# -- retention ----------------------------------------------------------------------------------


def test_prune_keeps_what_incrementals_need(repo: dbvers.Repo, tmp_path: Path) -> None:
    out = tmp_path / "b"
    kinds = []
    for day in range(6):
        execute(repo.path, f"INSERT INTO events VALUES ('day', {day})")
        repo.commit(f"day {day}")
        kinds.append(repo.backup(out, incremental=day not in (0, 3)).kind)
    assert kinds == ["full", "incremental", "incremental", "full", "incremental", "incremental"]
    names = [i.path.name for i in bk.list_backups(out)]
    # keep 2: the two newest incrementals, and the full backup they need
    removed = bk.prune(out, keep=2)
    assert sorted(p.name for p in removed) == sorted(names[:3])
    assert [i.path.name for i in bk.list_backups(out)] == names[3:]
    for i in bk.list_backups(out):
        assert bk.verify(i.path)[0].ok
    # max-age (measured from prune's *now*): every backup is too old, yet the newest is always
    # kept, and with it the chain it needs
    newest = max(parse_timestamp(i.created_at) for i in bk.list_backups(out))
    assert bk.prune(out, max_age=1.5, now=newest + timedelta(days=1.6)) == []
    assert bk.prune(out, max_age=1, now=newest + timedelta(days=14)) == []
    assert len(bk.list_backups(out)) == 3
    # a backup no kept one needs goes when it is too old
    full = repo.backup(out)
    assert sorted(p.name for p in bk.prune(out, max_age=1, now=newest + timedelta(days=14))) == sorted(names[3:])
    assert [i.path for i in bk.list_backups(out)] == [full.path]
    with pytest.raises(DbversError):
        bk.prune(out, keep=0)


def test_retention_from_config_after_backup(repo: dbvers.Repo, tmp_path: Path) -> None:
    cfg = repo.store_dir / "config"
    cfg.write_text(cfg.read_text() + f"\n[backup]\ndir = {tmp_path / 'bk'}\nkeep = 2\n")
    repo = dbvers.open(repo.path)
    for _ in range(4):
        info = repo.backup()
    assert info.path.parent == tmp_path / "bk" and len(info.pruned) == 1
    assert len(bk.list_backups(tmp_path / "bk")) == 2


def test_damaged_files_are_listed_never_pruned(small: dict[str, Any], tmp_path: Path) -> None:
    shutil.copy(small["archive"], tmp_path)
    junk = tmp_path / "junk.dbvers.tar"
    junk.write_bytes(b"not a tar")
    infos = bk.list_backups(tmp_path)
    assert {i.kind for i in infos} == {"full", "damaged"}
    assert bk.prune(tmp_path, keep=1) == [] and junk.exists()


# -- the command line ---------------------------------------------------------------------------


def test_cli_backup_list_verify_prune_restore(db_path: Path, tmp_path: Path,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    cli = run_cli
    work = db_path.parent
    assert cli("init", str(db_path), cwd=work).returncode == 0
    r = run_cli("backup", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "full" in r.stdout and (work / "backups").is_dir()
    execute(db_path, "INSERT INTO orders VALUES (10, 'x', 1, 1.0, NULL)")
    assert cli("commit", "-m", "ten", cwd=work).returncode == 0
    r = cli("backup", "--incremental", "--format", "json", cwd=work)
    info = json.loads(r.stdout)
    assert info["kind"] == "incremental" and info["commits"] == 2
    r = cli("backup", "--list", "--format", "json", cwd=work)
    assert [i["kind"] for i in json.loads(r.stdout)] == ["full", "incremental"]
    r = cli("backup", "--verify", cwd=work)
    assert r.returncode == 0 and r.stdout.count("ok") == 2
    r = cli("backup", "--list", cwd=work)
    assert r.returncode == 0 and "incremental" in r.stdout
    # a new machine: no repository, restore from the incremental
    fresh = tmp_path_factory.mktemp("fresh")
    r = run_cli("restore", "--from", info["path"], cwd=fresh)
    assert r.returncode == 0, r.stderr
    assert dump_state(fresh / "data.db") == dump_state(db_path)
    r = cli("log", "--oneline", cwd=fresh)
    assert r.stdout.splitlines()[0].endswith("ten")
    r = cli("restore", "--from", info["path"], "--at", "HEAD~1", cwd=fresh)
    assert r.returncode == 0 and "detached" in r.stdout
    assert len(dump_state(fresh / "data.db")["tables"]["orders"]) == 3
    # damage one: --verify exits 1 and names it
    damaged = Path(info["path"])
    raw = bytearray(damaged.read_bytes())
    raw[600] ^= 1
    damaged.write_bytes(bytes(raw))
    r = cli("backup", "--verify", str(damaged), cwd=work)
    assert r.returncode == 1 and "FAILED" in r.stdout
    r = cli("backup", "--list", "--format", "json", cwd=work)
    assert json.loads(r.stdout)[1]["verified"].startswith("failed")
    r = run_cli("restore", "--from", str(damaged), "--to", str(tmp_path / "x.db"), cwd=work)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    # keep 1: the newest incremental needs the full backup, so nothing goes ...
    r = cli("backup", "--prune", "--keep", "1", cwd=work)
    assert r.returncode == 0 and "0 backups removed" in r.stdout
    # ... until a newer full backup exists
    assert cli("backup", cwd=work).returncode == 0
    r = cli("backup", "--prune", "--keep", "1", cwd=work)
    assert r.returncode == 0 and "2 backups removed" in r.stdout
    # usage errors: one line, exit 2
    for args in (["restore", "--at", "main"], ["backup", "--list", "--verify"], ["backup", "--prune"],
                 ["backup", "--prune", "--keep", "0"], ["restore", "--from", str(tmp_path / "nope.tar")]):
        r = cli(*args, cwd=work)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    # restore without --from still throws away uncommitted changes, as before
    execute(db_path, "DELETE FROM orders")
    assert cli("restore", cwd=work).returncode == 2
    assert cli("restore", "--force", cwd=work).returncode == 0
    assert len(dump_state(db_path)["tables"]["orders"]) == 4


def test_verify_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(DbversError, match="no such"):
        bk.verify(tmp_path / "nope")


def test_keyframe_records_travel_as_refs_and_restore(repo: dbvers.Repo, db_path: Path, tmp_path: Path) -> None:
    """A keyframe record (``dbvers snapshot``) is a refs/keyframes/<commit> member of the archive; a
    restore onto a new machine and one into the existing repository both bring it back."""
    execute(db_path, "CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT); "
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
                     "INSERT INTO big SELECT i, printf('row %d', i) FROM n")
    repo.commit("big")
    execute(db_path, "UPDATE big SET v = 'changed' WHERE id = 7")
    repo.commit("small change")  # stored as a patch: no snapshot of its own
    tip = repo.head.commit
    assert repo.get_commit(tip).snapshot is None
    snap = repo.snapshot()
    assert repo.refs.keyframe(tip) == snap
    info = repo.backup(tmp_path / "bk")
    with tarfile.open(info.path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert members[f"refs/keyframes/{tip}"].strip() == snap.encode()
    assert not any(name.startswith("keyframes/") for name in members)
    assert bk.verify(info.path)[0].ok

    (tmp_path / "elsewhere").mkdir()
    fresh = bk.restore(info.path, tmp_path / "elsewhere" / "copy.db")
    assert fresh.refs.keyframe(tip) == snap
    repo.refs.delete_keyframe(tip)
    bk.restore(info.path, db_path, yes=True)
    assert repo.refs.keyframe(tip) == snap
