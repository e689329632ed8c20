"""Backups against hostile archives and hostile timing (issue 9): names from an archive never
become paths outside the target, foreign histories need --yes, a killed restore is finished or
rolled back by the next command, decompression is bounded and checked against its claims, and
damaged working databases get one-line errors (and restore --force repairs them)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute, run_cli

import dbvers
from dbvers import backup as bk
from dbvers.errors import BackupValidationError
from dbvers.fsutil import temp_prefix
from dbvers.remotes import archive as fmt


def new_db(path: Path, sql: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.commit()
    conn.close()
    return path


def rewrite_manifest(src: Path, dest: Path, edit: Any) -> None:
    """A forger's edit: change backup.json and re-sign it (plain SHA-256 proves nothing)."""
    raw = src.read_bytes()
    with open(src, "rb") as f:
        off, ti = fmt.find_manifest(f, len(raw))
    m = bk.read_manifest(src)
    edit(m)
    body = fmt.sign_manifest(m)
    out = raw[:off] + fmt.tar_header("backup.json", len(body), int(ti.mtime)) + body
    out += b"\0" * (-len(out) % 512) + b"\0" * 1024
    out += b"\0" * (-len(out) % 10240)
    dest.write_bytes(out)


def tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): (b"" if p.is_dir() else p.read_bytes())
            for p in sorted(d.rglob("*")) if p.name != "lock"}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    db = new_db(tmp_path / "src" / "data.db", "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'a');")
    repo = dbvers.init(db)
    execute(db, "INSERT INTO t VALUES (2, 'b')")
    repo.commit("two")
    return repo.backup(tmp_path / "backups").path


# -- item 2: names from an archive ----------------------------------------------------------


@pytest.mark.parametrize("name", ["../escaped.db", "ABS", "sub/inner.db", "", "nul\0.db", "..", ".",
                                  "back\\slash.db", "x" * 300])
def test_database_name_from_an_archive_must_be_a_bare_file_name(archive: Path, tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    if name == "ABS":
        name = str(outside / "abs.db")
    bad = tmp_path / "backups" / "bad.dbvers.tar"

    def rename(m: dict[str, Any]) -> None:
        m["database"]["name"] = name

    rewrite_manifest(archive, bad, rename)
    cwd = tmp_path / "here" / "deeper"
    cwd.mkdir(parents=True)
    before = tree(tmp_path / "here"), tree(outside), sorted(p.name for p in tmp_path.iterdir())
    r = run_cli("restore", "--from", str(bad), cwd=cwd)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "bare file name" in r.stderr
    assert (tree(tmp_path / "here"), tree(outside), sorted(p.name for p in tmp_path.iterdir())) == before
    assert not bk.verify(bad)[0].ok
    with pytest.raises(BackupValidationError):
        dbvers.restore(bad, to=tmp_path / "elsewhere.db")
    assert not (tmp_path / "elsewhere.db").exists()


@pytest.mark.parametrize("field", ["size", "snapshots", "roots"])
def test_sizes_and_names_of_backup_json_are_checked(archive: Path, tmp_path: Path, field: str) -> None:
    bad = tmp_path / "backups" / "bad.dbvers.tar"

    def edit(m: dict[str, Any]) -> None:
        if field == "size":
            m["database"]["size"] = -1
        elif field == "snapshots":
            m["snapshots"] = {"../../x": 5}
        else:
            m["roots"] = ["../HEAD"]

    rewrite_manifest(archive, bad, edit)
    with pytest.raises(BackupValidationError):
        dbvers.restore(bad, to=tmp_path / "r.db")
    assert not (tmp_path / "r.db").exists() and not (tmp_path / ".dbvers").exists()


def test_restoring_a_foreign_history_into_a_repository_needs_yes(archive: Path, tmp_path: Path) -> None:
    other = new_db(tmp_path / "other" / "data.db", "CREATE TABLE mine(x); INSERT INTO mine VALUES (1);")
    orepo = dbvers.init(other)
    before_db, before_store = dump_state(other), tree(orepo.store_dir)
    r = run_cli("restore", "--from", str(archive), "--to", str(other))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--yes" in r.stderr and "no history" in r.stderr
    assert dump_state(other) == before_db and tree(orepo.store_dir) == before_store
    # the same history is restored without asking, a foreign one with --yes
    dbvers.restore(archive, to=other, yes=True)
    assert [r[1:] for r in dump_state(other)["tables"]["t"]] == [(("integer", 1), ("text", "a")),
                                                                 (("integer", 2), ("text", "b"))]
    repo = dbvers.open(other)
    assert repo.fsck().ok
    own = tmp_path / "own" / "data.db"
    shutil.copytree(archive.parents[1] / "src", own.parent)
    dbvers.restore(archive, to=own)  # same roots: no question asked


# -- item 9: damaged working databases -------------------------------------------------------


def corrupt_pages(db: Path) -> None:
    """Overwrite a page in the middle of the file, the way a failing disk does."""
    with open(db, "r+b") as f:  # the test process holds no SQLite connection on it
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096)


@pytest.fixture
def bigger(tmp_path: Path) -> dbvers.Repo:
    rows = ", ".join(f"({i}, '{'x' * 200}')" for i in range(400))
    db = new_db(tmp_path / "w" / "data.db", f"CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES {rows};")
    return dbvers.init(db)


def test_backup_of_a_damaged_working_database_is_a_one_line_error_that_creates_nothing(
        bigger: dbvers.Repo, tmp_path: Path) -> None:
    corrupt_pages(bigger.path)
    out = tmp_path / "nowhere" / "backups"
    r = run_cli("backup", str(out), cwd=bigger.path.parent)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "restore --force" in r.stderr
    assert not (tmp_path / "nowhere").exists()


def test_restore_force_repairs_a_truncated_working_database(bigger: dbvers.Repo) -> None:
    want = dump_state(bigger.path)
    os.truncate(bigger.path, bigger.path.stat().st_size // 2)
    r = run_cli("restore", "--force", cwd=bigger.path.parent)
    assert r.returncode == 0, r.stderr
    assert dump_state(bigger.path) == want
    repo = dbvers.open(bigger.path)
    assert repo.status().clean and repo.fsck().ok


def test_restore_from_a_backup_over_a_truncated_tracked_database(bigger: dbvers.Repo, tmp_path: Path) -> None:
    want = dump_state(bigger.path)
    archive = bigger.backup(tmp_path / "b").path
    os.truncate(bigger.path, bigger.path.stat().st_size // 2)
    r = run_cli("restore", "--from", str(archive), "--to", str(bigger.path), "--yes")
    assert r.returncode == 0, r.stderr
    assert dump_state(bigger.path) == want


# -- minor: temp files of killed backups ------------------------------------------------------


def test_temp_archives_of_dead_backups_are_removed_by_the_next_backup(archive: Path, tmp_path: Path) -> None:
    d = archive.parent
    # A temp archive's name says who owns it (fsutil.temp_prefix): one of a process that is gone,
    # one of this test process (alive, maybe busy).
    dead = subprocess.run([sys.executable, "-c", "from dbvers.fsutil import temp_prefix; "
                           "print(temp_prefix('backup'))"], capture_output=True, text=True)
    stale = d / f"{dead.stdout.strip()}0badf00d.tar"
    live = d / f"{temp_prefix('backup')}0badf00d.tar"
    stale.write_bytes(b"\0" * 10240)
    live.write_bytes(b"\0" * 10240)
    r = run_cli("backup", str(d), cwd=tmp_path / "src")
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and live.exists()
    assert not [p for p in d.iterdir() if p.name.startswith(".tmp-") and p != live]


# -- item 4: a killed restore is finished (or was never started) ------------------------------

STRACE = shutil.which("strace")


def _strace_works() -> bool:
    if STRACE is None:
        return False
    r = subprocess.run([STRACE, "-f", "-qq", "-o", os.devnull, "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(STRACE is None, reason="strace is not installed (.ci/run installs it): "
                                           "the restore kill-injection test needs it")
@pytest.mark.parametrize("scenario", ["new", "untracked"])
def test_restore_killed_at_every_rename_is_finished_by_the_next_command(tmp_path: Path, scenario: str) -> None:
    """SIGKILL injected at the Nth rename(2) of a restore, for every N until one runs to the end:
    after each kill the old state is intact with no store, or a store exists and the next command
    (a plain status, or a rerun of the restore) finishes the restore; never a database without
    its store."""
    if not _strace_works():
        pytest.skip("strace cannot trace here (ptrace not permitted)")
    rows = ", ".join(f"({i}, '{'v' * 50}')" for i in range(300))
    src = new_db(tmp_path / "src" / "data.db", f"CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES {rows};")
    repo = dbvers.init(src)
    execute(src, "DELETE FROM t WHERE id % 7 = 0")
    repo.commit("second")
    archive = repo.backup(tmp_path / "b").path
    restored = dump_state(src)
    template = tmp_path / "template"
    template.mkdir()
    old = None
    if scenario == "untracked":
        old = dump_state(new_db(template / "data.db", "CREATE TABLE mine(x); INSERT INTO mine VALUES (1), (2);"))
    flags = ["--yes"] if scenario == "untracked" else []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no .pyc renames to count
    syscalls = "rename,renameat,renameat2"
    finished = False
    for n in range(1, 60):
        d = tmp_path / f"{scenario}{n}"
        shutil.copytree(template, d)
        target = d / "data.db"
        cmd = [STRACE, "-f", "-qq", "-o", os.devnull, "-e", f"trace={syscalls}",
               "-e", f"inject={syscalls}:signal=KILL:when={n}",
               sys.executable, "-m", "dbvers", "restore", "--from", str(archive), "--to", str(target), *flags]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        store = d / ".dbvers"
        if r.returncode == 0:
            finished = True  # fewer than n renames: the restore ran to its end
        else:
            assert r.returncode in (137, -9), f"n={n}: {r.stderr}"
            if not (store / "config").is_file():
                # (a) killed before the store went in: the old state, untouched
                if old is None:
                    assert not target.exists() or target.stat().st_size == 0, f"n={n}: a database with no store"
                else:
                    assert dump_state(target) == old, f"n={n}: the old database changed with no store"
                again = run_cli("restore", "--from", str(archive), "--to", str(target), *flags)
                assert again.returncode == 0, f"n={n}: {again.stderr}"
            elif n % 2:
                # (b) the store is in: any next command finishes the restore
                nxt = run_cli("status", cwd=d)
                assert nxt.returncode == 0, f"n={n}: {nxt.stderr}"
            else:
                again = run_cli("restore", "--from", str(archive), "--to", str(target), *flags)
                assert again.returncode == 0, f"n={n}: {again.stderr}"
        assert dump_state(target) == restored, f"n={n}"
        after = dbvers.open(target)
        assert after.status().clean and after.fsck().ok, f"n={n}"
        assert not [p.name for p in d.iterdir() if p.name.startswith(".tmp-")], f"n={n}"
        assert not (store / "RESTORE").exists() and not (store / "RESTORE.db").exists()
        shutil.rmtree(d)
        if finished:
            break
    assert finished, "the restore never completed"
    assert n > 1, "no kill was injected: strace ran the restore to its end at once"


# -- item 12: decompression is bounded and checked against what the archive claims ----------------

MEASURE = """
import resource, sys
import apsw, pyarrow, sqlite3
import dbvers, dbvers.backup
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dbvers.restore(sys.argv[1], to=sys.argv[2])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_restore_of_a_zeroblob_bomb_runs_in_bounded_memory(tmp_path: Path) -> None:
    # 200 MB of zeroblobs make a backup of a few hundred kB: restoring it must not hold
    # the state in memory (it peaked at three times the database's size).
    db = new_db(tmp_path / "src" / "data.db", "CREATE TABLE t(b); WITH RECURSIVE n(i) AS "
                "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO t SELECT zeroblob(1000000) FROM n;")
    archive = dbvers.init(db).backup(tmp_path / "b").path
    assert archive.stat().st_size < 2_000_000
    target = tmp_path / "out" / "data.db"
    target.parent.mkdir()
    r = subprocess.run([sys.executable, "-c", MEASURE, str(archive), str(target)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    peak_mb = float(r.stdout.split()[-1])
    assert peak_mb < 100, f"restore peaked at {peak_mb:.0f} MB above the interpreter"
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT count(*), sum(length(b)) FROM t").fetchone() == (200, 200_000_000)
    conn.close()


def test_a_snapshot_larger_than_backup_json_claims_is_refused(archive: Path, tmp_path: Path) -> None:
    bad = tmp_path / "backups" / "bad.dbvers.tar"

    def understate(m: dict[str, Any]) -> None:
        assert m["snapshots"]
        m["snapshots"] = {oid: size // 2 for oid, size in m["snapshots"].items()}
        m["database"]["size"] = 1

    rewrite_manifest(archive, bad, understate)
    target = tmp_path / "r" / "data.db"
    target.parent.mkdir()
    with pytest.raises(BackupValidationError, match="claims"):
        dbvers.restore(bad, to=target)
    assert not list(target.parent.iterdir())
    result = bk.verify(bad)[0]
    assert not result.ok and "claims" in (result.problem or "")
