"""Reflog expiry and gc's prune time, as git has them (issue 10, item 16).

Before this, every reflog entry lived forever, so ``gc`` after ``branch -d`` or
``reset --hard`` reclaimed nothing. Now entries expire (``[gc] reflog_expire``, 90
days; ``reflog_expire_unreachable``, 30 days, for entries the ref's tip doesn't
reach), ``dbvers reflog expire`` expires them on demand, and ``gc`` expires them
first and then deletes unreachable objects older than ``--prune`` (``[gc]
prune_expire``, 14 days). Old entries and old objects are faked by rewriting reflog
times and object mtimes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import dump_state, execute, run_cli

import dbvers
from dbvers.errors import BadExpiryError, ConfigValueError, HistoryDamagedError

DAY = 86400.0
STORE = ".dbvers"


# -- helpers ------------------------------------------------------------------------------


def objects(store: Path) -> set[str]:
    return {p.parent.name + p.name for p in (store / "objects").glob("*/*") if p.is_file()}


def age_objects(store: Path, days: float) -> None:
    """Make every object file *days* old (gc's prune time reads the file's mtime)."""
    t = time.time() - days * DAY
    for p in (store / "objects").glob("*/*"):
        os.utime(p, (t, t))


def log_file(store: Path, ref: str) -> Path:
    return store / "logs" / ref


def age_reflog(store: Path, ref: str, days: list[float] | float) -> None:
    """Rewrite the times of *ref*'s reflog lines to *days* ago (one age for all, or one per line)."""
    p = log_file(store, ref)
    lines = p.read_text().splitlines()
    ages = days if isinstance(days, list) else [days] * len(lines)
    assert len(ages) == len(lines)
    out = []
    for line, age in zip(lines, ages, strict=True):
        old, new, _t, message = line.split(" ", 3)
        out.append(f"{old} {new} {time.time() - age * DAY:.3f} {message}")
    p.write_text("".join(x + "\n" for x in out))


def dbv(d: Path, *argv: str, code: int = 0) -> tuple[str, str]:
    """``dbvers ARGV`` in *d* through the console entry point, in this process (fast)."""
    r = run_cli(*argv, cwd=d)
    assert r.returncode == code, (argv, r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    return r.stdout, r.stderr


def commit_rows(repo: dbvers.Repo, db: Path, sql: str, message: str) -> tuple[str, dict[str, object]]:
    execute(db, sql)
    c = repo.commit(message)
    return c.id, dump_state(db)


# -- the whole story through the CLI -------------------------------------------------------


def test_branch_d_then_gc_reclaims_only_after_reflog_expire(
        db_path: Path) -> None:
    d, store = db_path.parent, db_path.parent / STORE
    repo = dbvers.init(db_path)
    states = {repo.log()[0].id: dump_state(db_path)}
    kept_id, state = commit_rows(repo, db_path, "UPDATE orders SET qty = qty + 1", "kept")
    states[kept_id] = state
    repo.checkout("HEAD", create_branch="side")
    side_ids = []
    for i in range(3):
        oid, _ = commit_rows(repo, db_path, f"INSERT INTO orders VALUES ({100 + i}, 'side', {i}, 1.0, "
                                            f"randomblob(20000))", f"side {i}")
        side_ids.append(oid)
    repo.checkout("main")
    dbv(d, "branch", "-d", "side")
    before = objects(store)
    assert set(side_ids) <= before

    # The reflogs still name the side commits: gc --prune=now reclaims nothing, and they can be recovered.
    out, _ = dbv(d, "gc", "--prune=now")
    assert out.startswith("removed 0 unreachable objects"), out
    assert objects(store) == before
    out, _ = dbv(d, "reflog", "show", "side")
    assert side_ids[-1][:10] in out and "branch: deleted" in out
    out, _ = dbv(d, "reflog")
    assert out.splitlines()[0].startswith(f"{repo.head.commit[:10]} HEAD@{{0}} "), out

    # --dry-run lists what would go and changes nothing.
    logs = {p: p.read_bytes() for p in (store / "logs").rglob("*") if p.is_file()}
    out, _ = dbv(d, "reflog", "expire", "--expire=now", "--all", "--dry-run")
    assert "would expire side" in out and side_ids[-1][:10] in out
    assert {p: p.read_bytes() for p in (store / "logs").rglob("*") if p.is_file()} == logs

    out, _ = dbv(d, "reflog", "expire", "--expire=now", "--all")
    assert not log_file(store, "refs/heads/side").exists()  # a deleted branch's reflog goes with its entries
    # Each ref's current value stays logged.
    assert [e.new for e in repo.reflog("HEAD")] == [kept_id]
    assert [e.new for e in repo.reflog("main")] == [kept_id]
    out, _ = dbv(d, "gc", "--prune=now")
    after = objects(store)
    assert after < before and not set(side_ids) & after, out
    assert not out.startswith("removed 0 "), out

    out, _ = dbv(d, "fsck")
    assert out.strip().endswith(": ok"), out
    for oid, state in states.items():
        repo.checkout(oid)
        assert dump_state(db_path) == state
    repo.checkout("main")


def test_reset_hard_then_gc_with_defaults_once_entries_are_old(repo: dbvers.Repo, db_path: Path) -> None:
    """`gc` alone (config defaults) reclaims commits left by reset --hard once their entries
    are past 30 days and their objects past 14 days; nothing younger goes."""
    store = db_path.parent / STORE
    base = repo.log()[0].id
    lost = [commit_rows(repo, db_path, f"INSERT INTO orders VALUES ({50 + i}, 'x', 1, 1.0, randomblob(9000))",
                        f"lost {i}")[0] for i in range(2)]
    repo.reset(base, hard=True)
    before = objects(store)

    report = repo.gc()  # everything is young
    assert report.removed_objects == 0 and objects(store) == before

    for ref in ("HEAD", "refs/heads/main"):
        age_reflog(store, ref, 31)
    report = repo.gc()  # entries expired, but the objects are younger than 14 days: kept
    assert report.expired_entries > 0 and report.removed_objects == 0 and report.recent_objects > 0
    assert objects(store) == before

    age_objects(store, 13)
    assert repo.gc().removed_objects == 0
    age_objects(store, 15)
    report = repo.gc()
    assert report.removed_objects > 0 and not set(lost) & objects(store)
    assert repo.fsck().ok
    assert repo.log()[0].id == base


# -- git's default times -------------------------------------------------------------------


def _moved_back(repo: dbvers.Repo, db_path: Path) -> tuple[str, str, str]:
    """main: A -> B -> C, then reset --hard B. main's reflog: 0>A, A>B, B>C, C>B."""
    a = repo.log()[0].id
    b, _ = commit_rows(repo, db_path, "UPDATE orders SET qty = 7", "B")
    c, _ = commit_rows(repo, db_path, "UPDATE orders SET qty = 8", "C")
    repo.reset(b, hard=True)
    assert [(e.old[:6], e.new) for e in repo.reflog("main")][1:] == [(a[:6], b), (b[:6], c), (c[:6], b)]
    return a, b, c


def test_default_expiry_honours_90_and_30_days(repo: dbvers.Repo, db_path: Path) -> None:
    store = db_path.parent / STORE
    a, b, c = _moved_back(repo, db_path)
    # 0>A reachable 91 days: goes; A>B reachable 89: stays; B>C unreachable (C) 31: goes;
    # C>B is main's current value, 100 days old: stays (its old side now points at what precedes it).
    age_reflog(store, "refs/heads/main", [91, 89, 31, 100])
    report = repo.reflog_expire(refs=["main"], dry_run=True)
    assert [(e.old, e.new) for e in report.expired] == [("0" * 64, a), (b, c)]
    assert [e.new for e in repo.reflog("main")] == [a, b, c, b]  # a dry run changes nothing
    report = repo.reflog_expire(refs=["main"])
    assert [(e.old, e.new) for e in repo.reflog("main")] == [(a, b), (b, b)]
    assert report.kept_entries == 2


def test_unreachable_entries_younger_than_30_days_stay(repo: dbvers.Repo, db_path: Path) -> None:
    store = db_path.parent / STORE
    a, b, c = _moved_back(repo, db_path)
    age_reflog(store, "refs/heads/main", [89, 89, 29, 29])
    assert repo.reflog_expire(refs=["main"]).expired == []
    assert [e.new for e in repo.reflog("main")] == [a, b, c, b]
    # An explicit time wins over the config's: the unreachable entry goes at --expire-unreachable=20.
    report = repo.reflog_expire(expire_unreachable=20, refs=["refs/heads/main"])
    assert [e.new for e in report.expired] == [c]


def test_head_reflog_and_deleted_branch_reflog_expire_too(repo: dbvers.Repo, db_path: Path) -> None:
    store = db_path.parent / STORE
    repo.checkout("HEAD", create_branch="team/topic")
    gone, _ = commit_rows(repo, db_path, "UPDATE orders SET qty = 9", "topic")
    repo.checkout("main")
    repo.delete_branch("team/topic")
    head_tip = repo.head.commit
    age_reflog(store, "refs/heads/team/topic", 29)
    assert repo.reflog_expire().expired == []  # under 30 days: a deleted branch stays recoverable
    assert gone in {e.new for e in repo.reflog("team/topic")}

    age_reflog(store, "refs/heads/team/topic", 31)  # no tip: every entry is unreachable from it
    age_reflog(store, "HEAD", 91)
    report = repo.reflog_expire()
    assert "refs/heads/team/topic" in report.removed_reflogs
    assert not (store / "logs" / "refs" / "heads" / "team").exists()  # its empty folder went too
    assert [e.new for e in repo.reflog("HEAD")] == [head_tip]  # HEAD's current entry stays
    with pytest.raises(dbvers.DbversError, match="no reflog for 'team/topic'"):
        repo.reflog("team/topic")
    age_objects(store, 15)
    repo.gc()
    assert not repo.objects.has(gone) and repo.fsck().ok


# -- prune times ---------------------------------------------------------------------------


def test_prune_times_never_iso_and_config(repo: dbvers.Repo, db_path: Path) -> None:
    store = db_path.parent / STORE
    base = repo.log()[0].id
    lost, _ = commit_rows(repo, db_path, "UPDATE orders SET qty = 5", "lost")
    repo.reset(base, hard=True)
    repo.reflog_expire(expire="now", expire_unreachable="now")
    age_objects(store, 20)
    assert repo.gc(prune="never").removed_objects == 0 and repo.objects.has(lost)
    assert repo.gc(prune="2000-01-01").removed_objects == 0  # nothing is that old
    assert repo.gc(prune="30.days").removed_objects == 0
    assert repo.gc(prune="3 weeks ago").removed_objects == 0
    config = store / "config"
    config.write_text(config.read_text() + "\n[gc]\nprune_expire = now\n")
    again = dbvers.open(db_path)
    assert again.gc().removed_objects > 0 and not again.objects.has(lost)
    assert again.fsck().ok


# -- bad times and settings ----------------------------------------------------------------


NOT_A_TIME = "is not a time; use now, never, a number of days"


@pytest.mark.parametrize(("argv", "says"), [
    (["gc", "--prune=soon"], f"--prune 'soon' {NOT_A_TIME}"), (["gc", "--prune", "-3"], f"'-3' {NOT_A_TIME}"),
    (["gc", "--prune=2024-02-30"], NOT_A_TIME), (["gc", "--prune=12.fortnights"], NOT_A_TIME),
    (["reflog", "expire", "--all", "--expire=yesterday"], f"--expire 'yesterday' {NOT_A_TIME}"),
    (["reflog", "expire", "--all", "--expire-unreachable=inf"], f"--expire-unreachable 'inf' {NOT_A_TIME}"),
    (["reflog", "expire"], "takes --all or the refs"), (["reflog", "expire", "--all", "main"], "not both"),
    (["reflog", "show", "nosuch"], "no reflog for 'nosuch'"),
])
def test_bad_when_is_one_line_exit_2_and_changes_nothing(
        argv: list[str], says: str, db_path: Path) -> None:
    dbvers.init(db_path)
    store = db_path.parent / STORE
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and p.name != "lock"}
    _, err = dbv(db_path.parent, *argv, code=2)
    assert len(err.strip().splitlines()) == 1 and err.startswith("dbvers: error: "), err
    assert says in err, err
    after = {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before


def test_bad_when_through_the_api(repo: dbvers.Repo) -> None:
    with pytest.raises(BadExpiryError, match="--prune 'bogus' is not a time"):
        repo.gc(prune="bogus")
    with pytest.raises(BadExpiryError, match="--expire"):
        repo.reflog_expire(expire=-1)
    with pytest.raises(BadExpiryError, match="--expire-unreachable"):
        repo.reflog_expire(expire_unreachable="1 fortnight")


@pytest.mark.parametrize("key", ["reflog_expire", "reflog_expire_unreachable", "prune_expire"])
def test_config_keys_are_validated(key: str, db_path: Path) -> None:
    dbvers.init(db_path)
    config = db_path.parent / STORE / "config"
    text = config.read_text()
    config.write_text(text + f"\n[gc]\n{key} = someday\n")
    with pytest.raises(ConfigValueError, match=rf"\[gc\] {key} = 'someday' is not valid; it must be now, never"):
        dbvers.open(db_path)
    r = run_cli("gc", cwd=db_path.parent)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and f"[gc] {key}" in r.stderr, r.stderr
    for good in ("now", "never", "30", "30.days", "2024-01-31"):
        config.write_text(text + f"\n[gc]\n{key} = {good}\n")
        dbvers.open(db_path)


def test_config_reflog_expire_never_keeps_everything(repo: dbvers.Repo, db_path: Path) -> None:
    store = db_path.parent / STORE
    _moved_back(repo, db_path)
    cfg = (store / "config").read_text()
    (store / "config").write_text(cfg + "\n[gc]\nreflog_expire = never\nreflog_expire_unreachable = never\n")
    for ref in ("HEAD", "refs/heads/main"):
        age_reflog(store, ref, 1000)
    assert dbvers.open(db_path).gc(prune="now").expired_entries == 0
    assert len(repo.reflog("main")) == 4


# -- safety ---------------------------------------------------------------------------------


def test_reflog_expire_refuses_on_a_damaged_history(repo: dbvers.Repo, db_path: Path) -> None:
    store = db_path.parent / STORE
    _moved_back(repo, db_path)
    age_reflog(store, "refs/heads/main", 100)
    (store / "refs" / "tags").mkdir(exist_ok=True)
    (store / "refs" / "tags" / "bad").write_text("not a commit id\n")
    before = log_file(store, "refs/heads/main").read_bytes()
    with pytest.raises(HistoryDamagedError, match="reflog expire refused"):
        repo.reflog_expire(expire="now")
    with pytest.raises(HistoryDamagedError, match="gc refused"):
        repo.gc(prune="now")
    assert log_file(store, "refs/heads/main").read_bytes() == before


def test_cli_through_a_real_process(db_path: Path) -> None:
    d = db_path.parent
    run = run_cli("init", str(db_path), cwd=d)
    assert run.returncode == 0, run.stderr
    r = run_cli("reflog", "expire", "--expire=now", "--expire-unreachable=now", "--all", cwd=d)
    assert r.returncode == 0 and "reflog entries" in r.stdout, r.stderr
    r = run_cli("gc", "--prune=now", cwd=d)
    assert r.returncode == 0 and r.stdout.startswith("removed 0 unreachable objects"), r.stderr
