"""The object store, gc and derived data against damage (issue 9, items 5, 6, 9 and fsck).

* A write of an object that already exists never builds on a damaged copy: it is
  verified and, when bad, replaced by the good bytes (the store is repaired).
* ``gc`` deletes nothing unless every ref, HEAD and reflog line resolves to a
  readable commit with a readable ancestry.
* The materialization cache and keyframe records are derived data: garbage there
  is rebuilt or ignored, never a wrong answer or a traceback.
* ``fsck`` always runs and reports, whatever is damaged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import dump_state, execute, one_line_error, run_cli

import dbvers
from dbvers.errors import HistoryDamagedError
from dbvers.storage.local import LocalObjectStore as ObjectStore


def ok(*args: str, cwd: Path) -> str:
    r = run_cli(*args, cwd=cwd)
    assert r.returncode == 0, f"dbvers {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout



def fsck_problems(cwd: Path) -> list[str]:
    """fsck through the CLI: it must run (exit 0 or 1, never a traceback) and report."""
    r = run_cli("fsck", "--format", "json", cwd=cwd)
    assert r.returncode in (0, 1), f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    data = json.loads(r.stdout)
    assert data["ok"] == (r.returncode == 0) == (not data["problems"])
    r = run_cli("fsck", cwd=cwd)  # the human form runs too
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
    return list(data["problems"])


def store_files(store: Path) -> dict[str, str]:
    """Every file of the store but the lock and the (derived, rebuildable) cache, hashed."""
    return {
        p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != "lock" and not p.relative_to(store).as_posix().startswith("cache/")
    }


def garbage(p: Path) -> None:
    p.chmod(0o644)
    p.write_bytes(b"\xff\xfe this is not what was stored \x00\x01" * 7)


def flip_byte(p: Path) -> None:
    p.chmod(0o644)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x55
    p.write_bytes(bytes(data))


def truncate(p: Path) -> None:
    p.chmod(0o644)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def empty(p: Path) -> None:
    p.chmod(0o644)
    p.write_bytes(b"")


@pytest.fixture
def hist(repo: dbvers.Repo, db_path: Path) -> dbvers.Repo:
    """Three commits on main (a root with a snapshot, two patches), tag v1 on the second."""
    cfg = repo.store_dir / "config"
    # Tiny databases would get a snapshot at every commit: keep the later ones patches only.
    cfg.write_text(cfg.read_text().replace("max_patch_ratio = 0.05", "max_patch_ratio = 1000"))
    repo = dbvers.open(db_path)
    execute(db_path, "UPDATE orders SET qty = qty + 1 WHERE id = 1;")
    repo.commit("second")
    repo.tag("v1")
    execute(db_path, "INSERT INTO orders VALUES (4, 'dan', 3, 4.5, NULL); DELETE FROM events WHERE kind = 'close';")
    repo.commit("third")
    assert [repo.get_commit(repo.resolve(r)).snapshot is None for r in ("HEAD", "HEAD~1", "HEAD~2")] == [
        True, True, False]
    return repo


def main_ref(repo: dbvers.Repo) -> str:
    return (repo.store_dir / "refs/heads/main").read_text().strip()


# -- item 5: reusing an existing object ---------------------------------------------


@pytest.mark.parametrize("damage", [garbage, flip_byte, truncate], ids=["garbage", "flipped", "truncated"])
def test_commit_over_corrupt_schema_object_repairs_it(hist: dbvers.Repo, db_path: Path,
                                                      damage: Callable[[Path], None]) -> None:
    d = db_path.parent
    head = hist.head.commit
    assert head
    schema = hist.get_commit(head).schema
    damage(hist.objects.path(schema))
    assert any(schema[:12] in p for p in fsck_problems(d))
    execute(db_path, "UPDATE orders SET customer = 'eve' WHERE id = 2;")  # data only: same schema
    expected = dump_state(db_path)
    r = run_cli("commit", "-m", "over a damaged schema", cwd=d)
    moved = main_ref(hist) != head
    # Never "error + ref moved": either it failed and main stayed, or it worked and repaired.
    if r.returncode != 0:
        assert not moved, r.stderr
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert moved
    assert hist.get_commit(main_ref(hist)).schema == schema
    assert fsck_problems(d) == []  # the good bytes replaced the damaged copy
    ok("checkout", "-f", "HEAD~1", cwd=d)
    ok("checkout", "main", cwd=d)
    assert dump_state(db_path) == expected


def test_commit_report_after_the_commit_point_never_fails(hist: dbvers.Repo, db_path: Path) -> None:
    """A damaged parent schema (a schema change, so not rewritten) costs only the summary."""
    d = db_path.parent
    head = hist.head.commit
    assert head
    garbage(hist.objects.path(hist.get_commit(head).schema))
    execute(db_path, "ALTER TABLE orders ADD COLUMN extra;")
    r = run_cli("commit", "-m", "schema change", cwd=d)
    moved = main_ref(hist) != head
    assert r.returncode == 0 and moved, f"exit {r.returncode}, moved {moved}: {r.stderr}"
    assert "Traceback" not in r.stderr and "warning" in r.stderr


@pytest.mark.parametrize("damage", [garbage, flip_byte, truncate, empty],
                         ids=["garbage", "flipped", "truncated", "empty"])
def test_put_replaces_a_damaged_existing_object(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    store = ObjectStore(tmp_path / "objects")
    oid = store.put_bytes("schema", b"[1, 2, 3]")
    damage(store.path(oid))
    assert store.put_bytes("schema", b"[1, 2, 3]") == oid
    assert store.verify(oid) == "schema" and store.get(oid) == b"[1, 2, 3]"

    src = tmp_path / "snap.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    sid = store.put_file("snapshot", src)
    damage(store.path(sid))
    assert store.put_file("snapshot", src) == sid
    assert store.verify(sid) == "snapshot" and store.get(sid) == src.read_bytes()
    # an intact object is kept as it is (no rewrite)
    before = store.path(sid).stat().st_ino
    store.put_file("snapshot", src)
    assert store.path(sid).stat().st_ino == before
    assert not [p for p in store.root.rglob(".tmp-*")]


# -- item 6: gc over damaged history -------------------------------------------------


def assert_gc_refused(repo: dbvers.Repo, *needles: str) -> str:
    d = repo.path.parent
    before = store_files(repo.store_dir)
    msg = one_line_error(run_cli("gc", cwd=d))
    assert "fsck" in msg and "nothing was changed" in msg, msg
    for n in needles:
        assert n in msg, msg
    assert store_files(repo.store_dir) == before  # nothing deleted
    with pytest.raises(HistoryDamagedError):
        dbvers.open(repo.path).gc()
    assert store_files(repo.store_dir) == before
    return msg


def test_gc_refuses_when_the_tip_commit_is_missing(hist: dbvers.Repo) -> None:
    tip = hist.head.commit
    assert tip
    c = hist.get_commit(tip)
    hist.objects.path(tip).unlink()
    assert any(tip[:12] in p for p in fsck_problems(hist.path.parent))
    assert_gc_refused(hist, tip[:12], "missing")
    assert hist.objects.has(c.patch or "") and hist.objects.has(c.schema)


def test_gc_refuses_when_an_ancestor_is_missing(hist: dbvers.Repo) -> None:
    mid = hist.resolve("HEAD~1")
    root = hist.resolve("HEAD~2")
    snap = hist.get_commit(root).snapshot
    shutil_rmtree(hist.store_dir / "logs")  # only the chain names the root
    hist.objects.path(mid).unlink()
    assert_gc_refused(hist, mid[:12])
    assert hist.objects.has(root) and snap and hist.objects.has(snap)


def test_gc_refuses_over_a_garbage_branch_ref(hist: dbvers.Repo) -> None:
    shutil_rmtree(hist.store_dir / "logs")
    hist.delete_tag("v1")
    shutil_rmtree(hist.store_dir / "logs")
    n = len(list(hist.objects.iter_ids()))
    (hist.store_dir / "refs/heads/main").write_text("this is not a commit id\n")
    assert any("refs/heads/main" in p for p in fsck_problems(hist.path.parent))
    assert_gc_refused(hist, "refs/heads/main")
    assert len(list(hist.objects.iter_ids())) == n


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage", b"ref: refs/heads/../../x\n", b"0123"],
                         ids=["empty", "binary", "bad-branch", "short-id"])
def test_gc_refuses_over_a_damaged_head(hist: dbvers.Repo, content: bytes) -> None:
    hist.checkout(hist.resolve("HEAD"))  # detached: HEAD alone names the tip
    (hist.store_dir / "HEAD").write_bytes(content)
    assert any("HEAD" in p for p in fsck_problems(hist.path.parent))
    assert_gc_refused(hist, "HEAD")


def test_gc_refuses_when_head_names_a_deleted_branch(hist: dbvers.Repo) -> None:
    shutil_rmtree(hist.store_dir / "logs")
    (hist.store_dir / "refs/heads/main").unlink()
    assert_gc_refused(hist, "main")


def test_gc_refuses_over_a_garbage_reflog_line(hist: dbvers.Repo, db_path: Path) -> None:
    """A commit only a reflog knows (after a reset), whose reflog lines are damaged."""
    d = db_path.parent
    execute(db_path, "UPDATE orders SET note = 'lost?' WHERE id = 3;")
    lost = hist.commit("only the reflog will know").id
    ok("reset", "--hard", "HEAD~1", cwd=d)
    for log in (hist.store_dir / "logs").rglob("*"):
        if log.is_file():
            text = log.read_bytes()
            log.write_bytes(text.replace(lost.encode(), b"#" * 20 + lost[20:].encode()))
    problems = fsck_problems(d)
    assert any("logs/" in p and "line" in p for p in problems), problems
    assert_gc_refused(hist, "logs/")
    assert hist.objects.has(lost)


def test_gc_refuses_when_a_reflog_names_a_missing_commit(hist: dbvers.Repo, db_path: Path) -> None:
    d = db_path.parent
    # The refusals don't cost the normal case: a torn reflog *tail* after two whole ids parses.
    execute(db_path, "UPDATE orders SET note = 'dropped' WHERE id = 3;")
    lost = hist.commit("dropped").id
    ok("reset", "--hard", "HEAD~1", cwd=d)
    log = hist.store_dir / "logs/HEAD"
    with log.open("a") as f:
        f.write(f"{lost} {lost} 17000")  # killed mid-line: the ids are whole, the time torn
    assert "removed 0 unreachable objects" in ok("gc", cwd=d)
    assert hist.objects.has(lost)
    assert hist.reachable_commits() == {hist.resolve(r) for r in ("HEAD", "HEAD~1", "HEAD~2")} | {lost}
    assert fsck_problems(d) == []

    with log.open("a") as f:
        f.write(f"\n{'0' * 64} {'ab' * 32} 1700000000.000 commit: from elsewhere\n")
    assert any("abababababab" in p for p in fsck_problems(d))
    assert_gc_refused(hist, "abababababab")
    with pytest.raises(HistoryDamagedError):
        hist.reachable_commits()


def shutil_rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


# -- item 9: derived data ------------------------------------------------------------


def observe(repo: dbvers.Repo) -> dict[str, object]:
    """What status, diff, checkout and read_table say (all through the CLI but read_table)."""
    d = repo.path.parent
    out: dict[str, object] = {
        "status": ok("status", "--format", "json", cwd=d),
        "diff": ok("diff", "HEAD~2", "HEAD", "--format", "json", cwd=d),
        "diff-working": ok("diff", "--format", "json", cwd=d),
        "read_table": dbvers.open(repo.path).read_table("orders", at="HEAD~1").to_dict("list"),
    }
    ok("checkout", "v1", cwd=d)
    out["at v1"] = dump_state(repo.path)
    ok("checkout", "main", cwd=d)
    out["at main"] = dump_state(repo.path)
    return out


@pytest.mark.parametrize("damage", [garbage, truncate, empty], ids=["garbage", "truncated", "empty"])
def test_garbage_cache_is_rebuilt(hist: dbvers.Repo, damage: Callable[[Path], None]) -> None:
    expected = observe(hist)
    caches = list(hist.cache_dir.glob("*.db"))
    assert caches
    for p in caches:
        damage(p)
    (hist.cache_dir / "working.json").write_text("[1, 2]")  # the clean record is derived too
    assert observe(hist) == expected
    # every cached state was also damaged for each operation on its own
    for args in (["status"], ["diff", "v1", "HEAD"], ["checkout", "-f", "v1"], ["checkout", "main"]):
        for p in hist.cache_dir.glob("*.db"):
            damage(p)
        ok(*args, cwd=hist.path.parent)
    assert dump_state(hist.path) == expected["at main"]
    assert fsck_problems(hist.path.parent) == []


def test_cache_damaged_inside_is_rebuilt_for_checkout(hist: dbvers.Repo) -> None:
    """Damage past the header (caught by checkout's quick_check) costs a rebuild, not an error."""
    d = hist.path.parent
    expected = observe(hist)
    v1 = hist.resolve("v1")
    ok("checkout", "v1", cwd=d)
    ok("checkout", "main", cwd=d)
    p = hist.cache_dir / f"{v1}.db"
    data = bytearray(p.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(page, len(data)):
        data[i] = 0x5A
    p.write_bytes(bytes(data))
    ok("checkout", "v1", cwd=d)
    assert dump_state(hist.path) == expected["at v1"]


def damage_pages(p: Path) -> None:
    """Overwrite every page but the first: the header still looks whole."""
    data = bytearray(p.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\x5a" * (len(data) - page)
    p.write_bytes(bytes(data))


def test_cache_damaged_inside_is_rebuilt_for_status_and_commit(hist: dbvers.Repo) -> None:
    d = hist.path.parent
    head = hist.resolve("HEAD")
    damage_pages(hist.cache_dir / f"{head}.db")
    (hist.cache_dir / "working.json").unlink()  # force a full comparison with the cached state
    assert json.loads(ok("status", "--format", "json", cwd=d))["clean"] is True
    damage_pages(hist.cache_dir / f"{head}.db")
    execute(hist.path, "UPDATE orders SET qty = 42 WHERE id = 3;")
    expected = dump_state(hist.path)
    ok("commit", "-m", "over a damaged cache", cwd=d)
    c = hist.get_commit(hist.resolve("HEAD"))
    assert c.counts["orders"].updates == 1 and sum(t.inserts + t.deletes for t in c.counts.values()) == 0
    shutil_rmtree(hist.cache_dir)
    hist.cache_dir.mkdir()
    ok("checkout", "-f", "HEAD~1", cwd=d)
    ok("checkout", "main", cwd=d)
    assert dump_state(hist.path) == expected
    assert fsck_problems(d) == []


KEYFRAME_GARBAGE: dict[str, Callable[[dbvers.Repo], bytes]] = {
    "binary": lambda r: b"\xff\xfe\x00\x01 not a keyframe",
    "text": lambda r: b"../../../../etc/passwd\n",
    "missing-id": lambda r: ("cd" * 32 + "\n").encode(),
    "not-a-snapshot": lambda r: (r.resolve("HEAD") + "\n").encode(),
}


@pytest.mark.parametrize("kind", list(KEYFRAME_GARBAGE))
def test_garbage_keyframe_record_is_ignored(hist: dbvers.Repo, kind: str) -> None:
    d = hist.path.parent
    expected = observe(hist)
    ok("snapshot", cwd=d)  # a keyframe record for HEAD (not a root: it has no snapshot of its own)
    ok("checkout", "v1", cwd=d)
    ok("snapshot", cwd=d)
    ok("checkout", "main", cwd=d)
    records = sorted((hist.store_dir / "refs" / "keyframes").iterdir())
    assert len(records) == 2
    for kf in records:
        kf.write_bytes(KEYFRAME_GARBAGE[kind](hist))
    shutil_rmtree(hist.cache_dir)  # materialization must start from the store
    hist.cache_dir.mkdir()
    problems = fsck_problems(d)
    assert any("keyframe" in p for p in problems), problems
    shutil_rmtree(hist.cache_dir)
    hist.cache_dir.mkdir()
    assert observe(hist) == expected
    # `dbvers snapshot` repairs a garbage record; gc runs (the records are derived data)
    ok("snapshot", cwd=d)
    ok("gc", cwd=d)


# -- fsck always runs ----------------------------------------------------------------


def test_fsck_reports_everything_and_never_crashes(hist: dbvers.Repo) -> None:
    d = hist.path.parent
    store = hist.store_dir
    ok("snapshot", cwd=d)
    tip = hist.resolve("HEAD")
    c = hist.get_commit(tip)
    garbage(hist.objects.path(c.schema))
    assert c.patch
    hist.objects.path(c.patch).unlink()
    hist.objects.path(c.patch).mkdir()  # a directory where an object should be
    (store / "refs/heads/junk").write_bytes(b"\xff\xfe\x00")
    (store / "refs/tags/empty").write_bytes(b"")
    with (store / "logs/HEAD").open("ab") as f:
        f.write(b"\xff\xfe garbage line\n")
    (store / "refs" / "keyframes" / tip).write_bytes(b"\x00\xff")
    for p in hist.cache_dir.glob("*.db"):
        garbage(p)
    (hist.cache_dir / "working.json").write_bytes(b"\xff")
    (store / "CHECKOUT").write_text(json.dumps({"target": "ef" * 32, "head": f"{'ef' * 32}\n", "ref": None}))
    problems = fsck_problems(d)
    text = "\n".join(problems)
    for needle in (c.schema[:12], c.patch[:12], "refs/heads/junk", "refs/tags/empty", "logs/HEAD",
                   "keyframe", "CHECKOUT"):
        assert needle in text, (needle, problems)


def test_fsck_runs_with_a_broken_head(hist: dbvers.Repo) -> None:
    d = hist.path.parent
    (hist.store_dir / "HEAD").write_bytes(b"\xff\xfe\x00")
    assert any("HEAD" in p for p in fsck_problems(d))
    (hist.store_dir / "HEAD").unlink()
    assert any("HEAD" in p for p in fsck_problems(d))
