"""The one error boundary, over the whole command line.

Every subcommand runs with bad input, against a damaged store and against a
damaged working database; whatever happens, the user sees an exit code in
{0, 1, 2}, at most one line on stderr, never a traceback, and a command that
fails changes no file outside the store. The CLI is called in-process
(``dbvers.cli.main``) to keep this fast; a few cases use real processes and
real pipes (broken pipes, ``DBVERS_DEBUG``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import execute, run_cli

import dbvers
from dbvers import cli
from dbvers.boundary import translate
from dbvers.errors import DbversError, InternalError

STORE = ".dbvers"


# -- a repository to damage ------------------------------------------------------------


@dataclass
class Template:
    dir: Path
    head: str  # the HEAD commit (main)
    patch: str  # HEAD's patch object
    snapshot: str  # the root commit's snapshot object
    archive: str  # a backup archive, relative to dir
    remote: str  # a directory remote outside dir that main and v1 were pushed to (origin)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """main: 3 commits (root tagged v1), branch side, a backup archive, a non-SQLite file."""
    d = tmp_path_factory.mktemp("template")
    db = d / "data.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, qty INTEGER, note);
        CREATE TABLE events(kind, payload);
        INSERT INTO events VALUES ('open', 1), ('close', 2.5);
        """
    )
    # Enough rows for a few pages, so a damaged page can sit in the middle of the file.
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                     [(i, f"customer {i}", i % 7, "x" * 40) for i in range(1, 400)])
    conn.commit()
    conn.close()
    repo = dbvers.init(db)
    repo.tag("v1")
    execute(db, "UPDATE orders SET qty = qty + 1 WHERE id < 50")
    repo.commit("second")
    repo.branch("side")
    execute(db, "DELETE FROM orders WHERE id > 390; INSERT INTO events VALUES ('late', NULL)")
    head = repo.commit("third")
    root = repo.get_commit(repo.log()[-1].id)
    assert root.snapshot and head.patch
    (d / "notes.txt").write_text("not a database\n")
    (d / "sub").mkdir()
    old = Path.cwd()
    os.chdir(d)
    try:
        assert cli.main(["backup", "bk"]) == 0
    finally:
        os.chdir(old)
    archive = next((d / "bk").iterdir()).relative_to(d)
    remote = tmp_path_factory.mktemp("remote") / "shared"  # outside the copies: each pushes here
    repo.remote_add("origin", str(remote))
    repo.push(set_upstream=True)
    repo.push(tags=True)
    return Template(d, head.id, head.patch, root.snapshot, str(archive), str(remote))


@pytest.fixture
def work(template: Template, tmp_path: Path) -> Template:
    d = tmp_path / "w"
    shutil.copytree(template.dir, d, symlinks=True)
    return Template(d, template.head, template.patch, template.snapshot, template.archive, template.remote)


def outside_store(d: Path) -> dict[str, str]:
    """Every file outside the store, by content (a directory made or removed shows too)."""
    files: dict[str, str] = {}
    for root, _dirs, names in os.walk(d):
        rel = Path(root).relative_to(d)
        if rel.parts[:1] == (STORE,):
            continue
        files[f"{rel}/"] = "dir"
        for n in names:
            p = Path(root) / n
            files[str(rel / n)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "other"
    return files


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def invoke(d: Path, argv: list[str]) -> Outcome:
    """``dbvers ARGV`` in *d*, in this process (main() never raises: it returns the exit code)."""
    r = run_cli(*argv, cwd=d)
    return Outcome(r.returncode, r.stdout, r.stderr)


def check_boundary(d: Path, argv: list[str]) -> Outcome:
    """Run *argv* and assert the boundary's promises; return what happened."""
    before = outside_store(d)
    r = invoke(d, argv)
    shown = f"dbvers {' '.join(argv)} -> {r.code}\nstdout: {r.out[-2000:]}\nstderr: {r.err}"
    assert "Traceback" not in r.out + r.err, shown
    assert "Exception ignored" not in r.err, shown
    assert r.code in (0, 1, 2), shown
    if r.code == 2:
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dbvers: error: "), shown
    if r.code != 0:
        assert outside_store(d) == before, "a failed command changed files outside the store: " + shown
    return r


# -- every subcommand -------------------------------------------------------------------

# One ordinary invocation of each subcommand (what a user would type), run on damaged inputs.
ORDINARY: dict[str, list[list[str]]] = {
    "init": [["init", "data.db"]],
    "status": [["status"], ["status", "--format", "json"]],
    "commit": [["commit", "-m", "more", "--allow-empty"]],
    "log": [["log"], ["log", "--oneline", "v1"]],
    "show": [["show"], ["show", "HEAD~1"]],
    "branch": [["branch"], ["branch", "new"]],
    "checkout": [["checkout", "v1"], ["checkout", "-b", "fresh"]],
    "tag": [["tag"], ["tag", "t2"]],
    "reset": [["reset", "--hard", "HEAD~1"]],
    "restore": [["restore", "--force"], ["restore", "--from", "{archive}", "--to", "sub/copy.db"]],
    "backup": [["backup", "bk2"], ["backup", "--verify", "bk"]],
    "snapshot": [["snapshot"]],
    "diff": [["diff"], ["diff", "HEAD~1", "HEAD"], ["diff", "--stat", "v1"]],
    "fsck": [["fsck"]],
    "gc": [["gc"], ["gc", "--prune=now"]],
    "reflog": [["reflog"], ["reflog", "show", "side"], ["reflog", "expire", "--all", "--dry-run"],
               ["reflog", "expire", "--expire=now", "--expire-unreachable=now", "--all"]],
    "merge": [["merge", "side"], ["merge", "v1", "--no-ff"]],
    "conflicts": [["conflicts"], ["conflicts", "--format", "json"]],
    "resolve": [["resolve", "--help"]],
    "revert": [["revert", "HEAD"]],
    "cherry-pick": [["cherry-pick", "HEAD", "--no-commit"]],
    "remote": [["remote"], ["remote", "-v"], ["remote", "add", "other", "elsewhere"]],
    "push": [["push"], ["push", "--tags"]],
    "fetch": [["fetch"], ["fetch", "--all", "--prune"]],
    "pull": [["pull"]],
    "clone": [["clone", "{remote}", "cl/x.db"]],
    "help": [["help"], ["help", "diff"]],
}

# Bad input: each must fail with exit 2 and one line, changing nothing.
BAD: dict[str, list[list[str]]] = {
    "init": [["init", "typo.db"], ["init", "data.db"], ["init", "notes.txt"], ["init", "nowhere/x.db"],
             ["--db", "other.db", "init", "data.db"]],
    "status": [["status", "--format", "xml"], ["--db", "nowhere/x.db", "status"], ["--store", "nowhere", "status"]],
    "commit": [["commit"], ["commit", "-m", "nothing changed"], ["commit", "-m", "x", "--format", "csv"]],
    "log": [["log", "nosuch"], ["log", "-n", "abc"], ["log", "-n", "-1"], ["log", "HEAD~99"],
            ["log", "--oneline", "--format", "json"], ["log", "--format", "parquet"]],
    "show": [["show", "nosuch"], ["show", "HEAD", "extra"], ["show", "0" * 64]],
    "branch": [["branch", "-d", "nosuch"], ["branch", "bad..name"], ["branch", "x", "nosuch"],
               ["branch", "-d", "main"], ["branch", "side"], ["branch", "-d", "side", "extra"],
               ["branch", "-f"], ["branch", "new", "--format", "json"], ["branch", "n" * 300]],
    "checkout": [["checkout", "nosuch"], ["checkout"], ["checkout", "-b", "main"], ["checkout", "-b", "a..b"]],
    "tag": [["tag", "-d", "nosuch"], ["tag", "v1"], ["tag", "x", "nosuch"], ["tag", "-d", "v1", "-f"],
            ["tag", "t" * 300]],
    "reset": [["reset", "nosuch", "--hard"], ["reset", "HEAD"], ["reset", "--soft", "-f", "HEAD~1"],
              ["reset", "--hard", "--soft"]],
    "restore": [["restore", "--from", "missing.tar"], ["restore", "--at", "v1"], ["restore", "--from", "notes.txt"],
                ["restore", "--from", "{archive}", "--force", "--to", "sub/copy.db"],
                ["restore", "--from", "{archive}", "--at", "nosuch", "--to", "sub/copy.db"]],
    "backup": [["backup", "--keep", "0"], ["backup", "--max-age", "-1"], ["backup", "--list", "--verify"],
               ["backup", "--verify", "missing.tar"], ["backup", "--keep", "abc"], ["backup", "--prune"]],
    "snapshot": [["snapshot", "extra"]],
    "diff": [["diff", "nosuch"], ["diff", "-t", "nosuch"], ["diff", "--where", "nosuchcol = 1"],
             ["diff", "--where", "((("], ["diff", "--limit", "-1"], ["diff", "a", "b", "c"],
             ["diff", "--stat", "--skinny"], ["diff", "--stat", "--limit", "3"],
             ["diff", "--format", "sql", "--limit", "1"], ["diff", "--stat", "--format", "json"],
             ["diff", "--format", "parquet"], ["diff", "v1", "-o", "nowhere/out.txt"],
             ["diff", "-o", "data.db"]],
    "fsck": [["fsck", "--format", "csv"], ["fsck", "extra"]],
    "gc": [["gc", "--prune", "x"], ["gc", "--prune=30.years"], ["gc", "--prune", "2024-13-45"],
           ["gc", "--prune=-1"], ["gc", "extra"]],
    "reflog": [["reflog", "show", "nosuch"], ["reflog", "show", "bad..name"], ["reflog", "bogus"],
               ["reflog", "expire"], ["reflog", "expire", "--all", "main"], ["reflog", "expire", "nosuch"],
               ["reflog", "expire", "--expire", "x", "--all"], ["reflog", "expire", "--expire-unreachable=nan", "--all"],
               ["reflog", "expire", "--expire=now", "../heads/main"]],
    "merge": [["merge", "nosuch"], ["merge"], ["merge", "--continue"], ["merge", "side", "--abort"],
              ["merge", "--continue", "--abort"]],
    "conflicts": [["conflicts", "--format", "xml"], ["conflicts", "extra"]],
    "resolve": [["resolve"], ["resolve", "--ours"], ["resolve", "--ours", "--theirs"]],
    "revert": [["revert", "nosuch"], ["revert", "v1"], ["revert", "--abort"], ["revert", "HEAD", "-m", "1"]],
    "cherry-pick": [["cherry-pick", "nosuch"], ["cherry-pick", "--continue"], ["cherry-pick"],
                    ["cherry-pick", "side"]],
    "remote": [["remote", "add", "origin", "x"], ["remote", "add", "bad/name", "x"], ["remote", "remove", "nosuch"],
               ["remote", "rename", "nosuch", "y"], ["remote", "rename", "origin", "a..b"],
               ["remote", "add", "x", "s3://Bad_Bucket"], ["remote", "add", "x", "ftp://host/p"],
               ["remote", "add", "y", "dir", "--endpoint-url", "http://127.0.0.1:9"], ["remote", "bogus"]],
    "push": [["push", "nosuch"], ["push", "origin", "nosuchbranch"], ["push", "--all", "origin", "main"]],
    "fetch": [["fetch", "nosuch"], ["fetch", "--all", "origin"]],
    "pull": [["pull", "nosuch"], ["pull", "origin", "nosuchbranch"]],
    "clone": [["clone", "nowhere-remote", "new/c.db"], ["clone", "{remote}", "data.db"], ["clone", "s3://Bad_Bucket"],
              ["clone", "{remote}", "deep/er/x.db", "-b", "nosuch"]],
    "help": [["help", "nosuch"]],
}

def _argv(argv: list[str], t: Template) -> list[str]:
    return [a.format(archive=t.archive, remote=t.remote) for a in argv]


def test_the_tables_cover_every_subcommand() -> None:
    assert set(ORDINARY) == set(cli.commands()) == set(BAD)


def test_ordinary_commands_work_on_a_healthy_repository(work: Template) -> None:
    """The damage tests below mean something only if the same commands succeed without damage."""
    for name, argvs in ORDINARY.items():
        for i, argv in enumerate(argvs):
            d = work.dir.parent / f"h-{name}-{i}"
            shutil.copytree(work.dir, d, symlinks=True)
            r = check_boundary(d, _argv(argv, work))
            assert r.code == (2 if name == "init" else 0), (argv, r)


@pytest.mark.parametrize("command", sorted(BAD))
def test_bad_input_is_one_line_and_changes_nothing(command: str, work: Template) -> None:
    execute(work.dir / "data.db", "SELECT 1")  # a clean working database, HEAD at main
    for argv in BAD[command]:
        r = check_boundary(work.dir, _argv(argv, work))
        assert r.code == 2, (argv, r)
        assert not (work.dir / "typo.db").exists() and not (work.dir / "sub" / "copy.db").exists()


@pytest.mark.parametrize("command", [*sorted(ORDINARY)])
def test_help_for_every_subcommand(command: str, work: Template) -> None:
    for argv in ([command, "-h"], [command, "--help"], ["help", command]):
        r = check_boundary(work.dir, argv)
        assert r.code == 0 and r.out.startswith(f"usage: dbvers {command}"), (argv, r)
    r = check_boundary(work.dir, ["frobnicate"])
    assert r.code == 2 and "invalid choice" in r.err


# -- a damaged store --------------------------------------------------------------------


def _object(store: Path, oid: str) -> Path:
    return store / "objects" / oid[:2] / oid[2:]


def _garbage(path: Path, data: bytes = b"\x28\xb5\x2f\xfd garbage \xff\xfe\x00" * 20) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


STORE_DAMAGE: dict[str, Callable[[Path, Template], None]] = {
    "corrupt-commit": lambda s, t: _garbage(_object(s, t.head)),
    "corrupt-snapshot": lambda s, t: (_garbage(_object(s, t.snapshot)), shutil.rmtree(s / "cache")),
    "deleted-object": lambda s, t: _object(s, t.patch).unlink(),
    "garbage-ref": lambda s, t: (s / "refs" / "heads" / "main").write_bytes(b"\xff\xfe not a commit id\n"),
    "text-garbage-ref": lambda s, t: (s / "refs" / "heads" / "main").write_bytes(b"not a commit id\n"),
    "empty-ref": lambda s, t: (s / "refs" / "heads" / "main").write_bytes(b""),
    "garbage-head": lambda s, t: (s / "HEAD").write_bytes(b"\x00\xff garbage"),
    "deleted-head": lambda s, t: (s / "HEAD").unlink(),
    "truncated-config": lambda s, t: (s / "config").write_bytes((s / "config").read_bytes()[:10]),
    "garbage-cache": lambda s, t: [_garbage(p) for p in (s / "cache").glob("*.db")],
    "lock-is-a-directory": lambda s, t: ((s / "lock").unlink(missing_ok=True), (s / "lock").mkdir()),
}



@pytest.mark.parametrize("damage", sorted(STORE_DAMAGE))
@pytest.mark.parametrize("command", sorted(ORDINARY))
def test_every_command_on_a_damaged_store(damage: str, command: str, work: Template) -> None:
    run_damaged(work, command, lambda d: STORE_DAMAGE[damage](d / STORE, work))


def run_damaged(work: Template, command: str, damage: Callable[[Path], None]) -> None:
    """Each ordinary invocation of *command* on its own damaged copy (the last one damages
    *work* itself, already a fresh copy: a copy is 20-odd directories of objects)."""
    argvs = ORDINARY[command]
    for i, argv in enumerate(argvs):
        d = work.dir
        if i < len(argvs) - 1:
            d = work.dir.parent / f"damaged{i}"
            shutil.copytree(work.dir, d, symlinks=True)
        damage(d)
        check_boundary(d, _argv(argv, work))


# -- a damaged working database -----------------------------------------------------------


def _garbage_page(db: Path) -> None:
    size = db.stat().st_size
    page = 4096
    assert size >= 4 * page
    with open(db, "r+b") as f:  # the test's own write, with no SQLite connection open
        f.seek((size // page // 2) * page)
        f.write(os.urandom(page))


DB_DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage-page": _garbage_page,
    "truncated": lambda db: os.truncate(db, db.stat().st_size // 2 + 100),
    "not-sqlite": lambda db: db.write_bytes(b"hello, not a database\n" * 200),
    "deleted": lambda db: db.unlink(),
}



@pytest.mark.parametrize("damage", sorted(DB_DAMAGE))
@pytest.mark.parametrize("command", sorted(ORDINARY))
def test_every_command_on_a_damaged_database(damage: str, command: str, work: Template) -> None:
    run_damaged(work, command, lambda d: DB_DAMAGE[damage](d / "data.db"))


# -- the mapping itself: each foreign exception, through the entry point -----------------


def _foreign() -> list[tuple[BaseException, str]]:
    import errno

    import apsw

    return [
        (OSError(errno.ENOSPC, "No space left on device", "/x/objects/ab/cd"), "the disk is full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/x/f"), "the disk is full"),
        (OSError(errno.EROFS, "Read-only file system", "/x/f"), "read-only; use a writable location"),
        (PermissionError(errno.EACCES, "Permission denied", "/x/f"), "check the file's permissions"),
        (OSError(errno.ENAMETOOLONG, "File name too long", "/x/" + "n" * 300), "use a shorter name"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/HEAD"), "run 'dbvers fsck'"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/x/lock"), "a directory is where a file should be"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/refs"), "a file is where a directory should be"),
        (OSError(errno.EIO, "Input/output error", "/x/f"), "I/O error"),
        (OSError("ZSTD decompression failed: Unknown frame descriptor"), "compressed data in the store is damaged"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
         "not valid UTF-8"),
        (MemoryError(), "out of memory"),
        (apsw.CorruptError("database disk image is malformed"), "a SQLite file is damaged"),
        (apsw.NotADBError("file is not a database"), "a SQLite file is damaged"),
        (apsw.FullError("database or disk is full"), "the disk is full"),
        (apsw.ReadOnlyError("attempt to write a readonly database"), "are writable"),
        (apsw.CantOpenError("unable to open database file"), "SQLite could not open a file"),
        (sqlite3.DatabaseError("database disk image is malformed"), "a SQLite file is damaged"),
        (sqlite3.DatabaseError("file is not a database"), "a SQLite file is damaged"),
        (sqlite3.OperationalError("database or disk is full"), "the disk is full"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "are writable"),
        (__import__("configparser").MissingSectionHeaderError("config", 1, "garbage"), "config cannot be read"),
        (__import__("json").JSONDecodeError("Expecting value", "x", 0), "not valid JSON"),
    ]


def test_foreign_exceptions_become_one_line_that_says_what_to_do(
        work: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbvers.repo import Repo

    for exc, expected in _foreign():
        def boom(self: Repo, *a: object, _e: BaseException = exc, **k: object) -> None:
            raise _e

        monkeypatch.setattr(Repo, "status", boom)
        r = check_boundary(work.dir, ["status"])
        assert r.code == 2 and expected in r.err, (exc, r.err)
        assert isinstance(translate(exc), DbversError)
    # The same mapping in the notebook magics (they share it), as IPython UsageErrors.
    pytest.importorskip("IPython")
    from IPython.core.error import UsageError

    from dbvers import magics

    for exc, expected in _foreign():
        with pytest.raises(UsageError) as info, magics.user_errors():
            raise exc
        assert expected in str(info.value) and "\n" not in str(info.value)


def test_an_unexpected_exception_is_one_internal_error_line(
        work: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbvers.repo import Repo

    def boom(self: Repo, *a: object, **k: object) -> None:
        raise KeyError("surprise\nsecond line")

    monkeypatch.setattr(Repo, "status", boom)
    monkeypatch.delenv("DBVERS_DEBUG", raising=False)
    before = outside_store(work.dir)
    r = invoke(work.dir, ["status"])
    assert r.code == InternalError.exit_code == 3
    assert r.err.count("\n") == 1 and r.err.startswith("dbvers: error: internal error: KeyError: ")
    assert "DBVERS_DEBUG=1" in r.err and "Traceback" not in r.err
    assert outside_store(work.dir) == before
    monkeypatch.setenv("DBVERS_DEBUG", "1")
    monkeypatch.chdir(work.dir)
    with pytest.raises(KeyError):  # DBVERS_DEBUG=1: the exception (and so its traceback) comes through
        cli.main(["status"])


def test_debug_shows_the_traceback_in_a_real_process(work: Template) -> None:
    # A bug (an exception dbvers doesn't expect) injected into a real process's status.
    script = ("import sys, dbvers.repo, dbvers.cli\n"
              "def broken(self): raise KeyError('injected bug')\n"
              "dbvers.repo.Repo.status = broken\n"
              "sys.exit(dbvers.cli.main(['status']))\n")
    env = {**os.environ, "COLUMNS": "120"}
    r = subprocess.run([sys.executable, "-c", script], cwd=work.dir, capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "internal error: KeyError" in r.stderr
    r = subprocess.run([sys.executable, "-c", script], cwd=work.dir, capture_output=True, text=True,
                       env={**env, "DBVERS_DEBUG": "1"}, timeout=120)
    assert "Traceback" in r.stderr and "KeyError: 'injected bug'" in r.stderr


# -- broken pipes ---------------------------------------------------------------------------


def _closed_early(argv: list[str], cwd: Path, read_lines: int) -> subprocess.CompletedProcess[str]:
    """``dbvers ARGV | head -READ_LINES`` with a real pipe (0: closed before anything is written)."""
    env = {**os.environ, "COLUMNS": "120"}
    p = subprocess.Popen([sys.executable, "-m", "dbvers", *argv], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    for _ in range(read_lines):
        p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    return subprocess.CompletedProcess(argv, p.wait(timeout=120), "", err)


@pytest.mark.parametrize("argv", [["log"], ["log", "-n1"], ["show"], ["diff"], ["diff", "--format", "json"],
                                  ["status"]])
def test_a_closed_stdout_ends_quietly_with_exit_0(argv: list[str], work: Template) -> None:
    # Enough output that the writer is still writing when the reader leaves.
    execute(work.dir / "data.db", "UPDATE orders SET note = 'changed ' || id")
    for read_lines in (0, 3):
        r = _closed_early(argv, work.dir, read_lines)
        assert r.returncode == 0, (argv, read_lines, r.stderr)
        assert r.stderr == "", (argv, read_lines, r.stderr)


# -- options that used to be silently ignored --------------------------------------------------


def test_output_without_format_writes_the_plain_text_view(
        work: Template) -> None:
    execute(work.dir / "data.db", "UPDATE orders SET qty = 99 WHERE id = 1")
    for argv in (["diff"], ["diff", "--stat"], ["log"], ["status"], ["show", "v1"], ["branch"], ["fsck"]):
        shown = invoke(work.dir, argv)
        assert shown.code == 0 and shown.out
        r = invoke(work.dir, [*argv, "-o", "out.txt"])
        assert r.code == 0 and r.out == "", (argv, r)
        text = (work.dir / "out.txt").read_text()
        assert text == shown.out and "\x1b" not in text, argv
    # A command that fails leaves FILE as it was (written through a temp file, renamed at the end).
    (work.dir / "out.txt").write_text("keep me")
    r = check_boundary(work.dir, ["diff", "nosuch", "-o", "out.txt"])
    assert r.code == 2 and (work.dir / "out.txt").read_text() == "keep me"
    assert sorted(p.name for p in work.dir.iterdir() if p.name.startswith(".tmp")) == []


def test_options_that_would_be_ignored_are_refused(
        work: Template) -> None:
    refs = dict(sorted(dbvers.open(work.dir / "data.db").branches().items()))
    for argv, says in (
        (["log", "--oneline", "--format", "json"], "--oneline is a text view"),
        (["branch", "-d", "side", "extra"], "would be ignored"),
        (["branch", "-d", "side", "-f"], "would be ignored"),
        (["branch", "-f"], "-f moves an existing branch"),
        (["branch", "x", "--format", "json"], "--format lists branches"),
        (["tag", "-d", "v1", "HEAD"], "would be ignored"),
        (["tag", "x", "--format", "json"], "--format lists tags"),
        (["reset", "--soft", "-f", "HEAD~1"], "--force goes with --hard"),
        (["restore", "--from", work.archive, "--force", "--to", "sub/copy.db"], "with --from, --yes"),
        (["diff", "--stat", "--skinny"], "--stat counts every changed row"),
        (["diff", "--stat", "--limit", "2"], "--stat counts every changed row"),
        (["--db", "other.db", "init", "data.db"], "drop --db"),
        (["backup", "--keep", "0"], "--keep needs a number >= 1"),
        (["status", "-o", "data.db"], "is the tracked database"),
    ):
        r = check_boundary(work.dir, argv)
        assert r.code == 2 and says in r.err, (argv, r.err)
    assert dict(sorted(dbvers.open(work.dir / "data.db").branches().items())) == refs
    assert not (work.dir / "backups").exists()


# -- init of a missing file --------------------------------------------------------------------


def test_init_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "real.db").close()
    r = check_boundary(tmp_path, ["init", "typo.db"])
    assert r.code == 2 and "--create" in r.err and "typo.db does not exist" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.db"]
    with pytest.raises(DbversError, match="does not exist"):
        dbvers.init(tmp_path / "typo.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.db"]
    # The real database can still be tracked; --create makes a new one on purpose.
    assert invoke(tmp_path, ["init", "real.db"]).code == 0
    other = tmp_path / "other"
    other.mkdir()
    r = invoke(other, ["init", "--create", "new.db"])
    assert r.code == 0 and (other / "new.db").read_bytes()[:16] == b"SQLite format 3\x00"
    assert invoke(other, ["status"]).code == 0


# -- refusals that must leave the store untouched too ------------------------------------------


def _empty_main(d: Path) -> None:
    (d / STORE / "refs" / "heads" / "main").write_bytes(b"")


def _delete_head_patch(d: Path, t: Template) -> None:
    _object(d / STORE, t.patch).unlink()


@pytest.mark.parametrize(("argv", "damage"), [
    pytest.param(["checkout", "../tags/v1"], None, id="checkout-ref-escape"),
    pytest.param(["tag", "-d", "../heads/main"], None, id="tag-delete-escape"),
    pytest.param(["commit", "-m", "x", "--allow-empty"], "empty-ref", id="commit-over-empty-ref"),
    pytest.param(["gc"], "deleted-object", id="gc-with-missing-object"),
    pytest.param(["gc"], "text-garbage-ref", id="gc-with-garbage-ref"),
    pytest.param(["gc", "--prune=now"], "deleted-object", id="gc-prune-now-with-missing-object"),
    pytest.param(["reflog", "expire", "--expire=now", "--all"], "text-garbage-ref", id="expire-with-garbage-ref"),
])
def test_refused_without_touching_the_store(argv: list[str], damage: str | None, work: Template) -> None:
    """Stricter than the boundary: these must be refused, and the store must not change either."""
    if damage is not None:
        STORE_DAMAGE[damage](work.dir / STORE, work)

    def everything(d: Path) -> dict[str, str]:
        return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(d.rglob("*")) if p.is_file() and p.name != "lock" and "cache" not in p.parts}

    before = everything(work.dir)
    r = check_boundary(work.dir, argv)
    assert r.code == 2, r
    assert everything(work.dir) == before
