"""Every command through the real entry point (``python -m dbvers``), checked by what a user sees."""

from __future__ import annotations

import configparser
import csv
import io
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute

import dbvers

Cli = Callable[..., subprocess.CompletedProcess[str]]


def ok(cli: Cli, *args: str, cwd: Path) -> str:
    """Run a command that must succeed; return its stdout."""
    r = cli(*args, cwd=cwd)
    assert r.returncode == 0, f"dbvers {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    return r.stdout


def fails(cli: Cli, *args: str, cwd: Path, code: int = 2) -> str:
    """Run a command that must fail with a one-line message; return that line."""
    r = cli(*args, cwd=cwd)
    assert r.returncode == code, f"dbvers {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("dbvers: error: ")
    return lines[0]


def rev(cli: Cli, ref: str, cwd: Path) -> str:
    """The full id a revision resolves to, as ``show --format json`` reports it."""
    return json.loads(ok(cli, "show", ref, "--format", "json", cwd=cwd))["id"]


def oneline(cli: Cli, *args: str, cwd: Path) -> list[str]:
    return ok(cli, "log", "--oneline", *args, cwd=cwd).splitlines()


@dataclass
class History:
    dir: Path
    db: Path
    ids: list[str]  # oldest first: c0 (init) .. c3
    states: list[dict[str, Any]]  # dump_state at each commit
    messages: list[str]


@pytest.fixture
def hist(db_path: Path) -> History:
    """main: c0 (init) -> c1 (insert) -> c2 (update + delete, tagged v1) -> c3 (new table).

    Snapshots only where the design requires them (the root, a schema change): c1 and
    c2 are stored as patches alone.
    """
    dbvers.init(db_path)
    cfg_file = db_path.parent / ".dbvers" / "config"
    cfg = configparser.ConfigParser()
    cfg.read(cfg_file)
    cfg.set("snapshot", "max_patch_ratio", "1000")
    with open(cfg_file, "w") as f:
        cfg.write(f)
    repo = dbvers.open(db_path)
    ids = [repo.head.commit]
    states = [dump_state(db_path)]
    messages = ["Initial commit", "add dan", "fix prices", "add notes table"]
    steps = [
        "INSERT INTO orders VALUES (4, 'dan', 7, 3.5, NULL);",
        "UPDATE orders SET price = price * 2 WHERE id = 1; DELETE FROM events WHERE kind = 'close';",
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'hi');",
    ]
    for msg, step in zip(messages[1:], steps, strict=True):
        execute(db_path, step)
        ids.append(repo.commit(msg).id)
        states.append(dump_state(db_path))
        if msg == "fix prices":
            repo.tag("v1")
    assert repo.head.commit == ids[-1]
    return History(db_path.parent, db_path, ids, states, messages)


# -- init ------------------------------------------------------------------------


def test_init_creates_store_and_first_commit(cli: Cli, db_path: Path) -> None:
    out = ok(cli, "init", "data.db", cwd=db_path.parent)
    store = db_path.parent / ".dbvers"
    assert (store / "config").is_file()
    assert "Initialized dbvers repository in" in out
    assert str(store) in out
    assert "Initial commit" in out
    # the first commit counts every row as inserted
    assert "orders" in out and "+3" in out
    log = oneline(cli, cwd=db_path.parent)
    assert len(log) == 1
    assert log[0].endswith(" Initial commit")


def test_init_with_message(cli: Cli, db_path: Path) -> None:
    ok(cli, "init", str(db_path), "-m", "baseline", cwd=db_path.parent)
    assert oneline(cli, cwd=db_path.parent)[0].split(" ", 1)[1] == "baseline"


def test_init_second_database_in_same_directory_refused(cli: Cli, db_path: Path) -> None:
    ok(cli, "init", "data.db", cwd=db_path.parent)
    execute(db_path.parent / "other.db", "CREATE TABLE x(a); INSERT INTO x VALUES (1);")
    before = sorted(p.name for p in db_path.parent.iterdir())
    msg = fails(cli, "init", "other.db", cwd=db_path.parent)
    assert "--store" in msg
    assert sorted(p.name for p in db_path.parent.iterdir()) == before


def test_init_second_database_with_store(cli: Cli, db_path: Path) -> None:
    d = db_path.parent
    ok(cli, "init", "data.db", cwd=d)
    execute(d / "other.db", "CREATE TABLE x(a); INSERT INTO x VALUES (1);")
    ok(cli, "init", "other.db", "--store", ".dbvers-other", cwd=d)
    assert (d / ".dbvers-other" / "config").is_file()
    # each store tracks its own database
    execute(d / "other.db", "INSERT INTO x VALUES (2);")
    st = json.loads(ok(cli, "--store", ".dbvers-other", "status", "--format", "json", cwd=d))
    assert st["tables"] == {"x": {"inserts": 1, "updates": 0, "deletes": 0}}
    assert json.loads(ok(cli, "status", "--format", "json", cwd=d))["clean"] is True
    ok(cli, "--store", ".dbvers-other", "commit", "-m", "x2", cwd=d)
    assert [line.split(" ", 1)[1] for line in oneline(cli, cwd=d)] == ["Initial commit"]
    assert [
        line.split(" ", 1)[1]
        for line in oneline(cli, "--db", "other.db", "--store", ".dbvers-other", cwd=d)
    ] == ["x2", "Initial commit"]


def test_init_create_makes_empty_database(cli: Cli, tmp_path: Path) -> None:
    out = ok(cli, "init", "--create", "new.db", cwd=tmp_path)
    db = tmp_path / "new.db"
    assert db.is_file()
    assert db.read_bytes()[:16] == b"SQLite format 3\x00"
    assert dump_state(db)["tables"] == {}
    assert "Initial commit" in out
    assert len(oneline(cli, cwd=tmp_path)) == 1
    assert json.loads(ok(cli, "status", "--format", "json", cwd=tmp_path))["clean"] is True


# -- status ------------------------------------------------------------------------


def test_status_clean(cli: Cli, repo: dbvers.Repo, db_path: Path) -> None:
    out = ok(cli, "status", cwd=db_path.parent)
    assert "On branch main" in out
    assert "nothing to commit" in out


def test_status_counts_and_schema_changes(cli: Cli, repo: dbvers.Repo, db_path: Path) -> None:
    execute(
        db_path,
        """
        INSERT INTO orders VALUES (4, 'dan', 7, 3.5, NULL), (5, 'eve', 1, 1.0, NULL);
        UPDATE orders SET qty = 9 WHERE id = 1;
        DELETE FROM events WHERE kind = 'close';
        CREATE TABLE notes(body TEXT);
        ALTER TABLE "odd name" ADD COLUMN extra;
        """,
    )
    out = ok(cli, "status", cwd=db_path.parent)
    lines = [line.strip() for line in out.splitlines()]
    assert "Changes not committed:" in out
    assert any(line.startswith("orders") and "+2 ~1 -0" in line for line in lines), out
    assert any(line.startswith("events") and "+0 ~0 -1" in line for line in lines), out
    assert "table notes created" in out
    assert "table odd name altered" in out and "extra" in out

    data = json.loads(ok(cli, "status", "--format", "json", cwd=db_path.parent))
    assert data["branch"] == "main"
    assert data["head"] == repo.head.commit
    assert data["clean"] is False
    assert data["tables"]["orders"] == {"inserts": 2, "updates": 1, "deletes": 0}
    assert data["tables"]["events"] == {"inserts": 0, "updates": 0, "deletes": 1}
    assert "table notes created" in data["schema_changes"]
    assert any(s.startswith("table odd name altered") for s in data["schema_changes"])


def test_status_json_to_file(cli: Cli, repo: dbvers.Repo, db_path: Path) -> None:
    out = ok(cli, "status", "--format", "json", "-o", "st.json", cwd=db_path.parent)
    assert out == ""
    assert json.loads((db_path.parent / "st.json").read_text())["clean"] is True


# -- commit ------------------------------------------------------------------------


def test_commit_prints_short_id_and_counts(cli: Cli, repo: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "INSERT INTO orders VALUES (4, 'dan', 7, 3.5, NULL); DELETE FROM events WHERE rowid = 1;")
    out = ok(cli, "commit", "-m", "add dan", cwd=db_path.parent)
    head = rev(cli, "HEAD", cwd=db_path.parent)
    first = out.splitlines()[0]
    assert first == f"[main {head[:10]}] add dan"
    assert any(line.strip().startswith("orders") and "+1 ~0 -0" in line for line in out.splitlines())
    assert any(line.strip().startswith("events") and "+0 ~0 -1" in line for line in out.splitlines())
    assert json.loads(ok(cli, "status", "--format", "json", cwd=db_path.parent))["clean"] is True


def test_commit_nothing_to_commit(cli: Cli, repo: dbvers.Repo, db_path: Path) -> None:
    before = rev(cli, "HEAD", cwd=db_path.parent)
    msg = fails(cli, "commit", "-m", "nothing", cwd=db_path.parent)
    assert "nothing to commit" in msg
    assert "--allow-empty" in msg
    assert rev(cli, "HEAD", cwd=db_path.parent) == before
    out = ok(cli, "commit", "-m", "empty on purpose", "--allow-empty", cwd=db_path.parent)
    assert "empty on purpose" in out
    assert oneline(cli, cwd=db_path.parent)[0].endswith(" empty on purpose")
    assert rev(cli, "HEAD~1", cwd=db_path.parent) == before


def test_commit_json(cli: Cli, repo: dbvers.Repo, db_path: Path) -> None:
    parent = repo.head.commit
    execute(db_path, "UPDATE orders SET qty = 0;")
    data = json.loads(ok(cli, "commit", "-m", "zero", "--format", "json", cwd=db_path.parent))
    assert data["message"] == "zero"
    assert data["parents"] == [parent]
    assert data["short_id"] == data["id"][:10]
    assert data["counts"] == {"orders": {"inserts": 0, "updates": 3, "deletes": 0}}
    assert data["id"] == rev(cli, "HEAD", cwd=db_path.parent)


def test_commit_repeated_m_makes_paragraphs(cli: Cli, repo: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "UPDATE orders SET qty = 0;")
    ok(cli, "commit", "-m", "title", "-m", "body text", cwd=db_path.parent)
    data = json.loads(ok(cli, "show", "--format", "json", cwd=db_path.parent))
    assert data["message"].startswith("title\n\nbody text")
    assert oneline(cli, "-n", "1", cwd=db_path.parent)[0].endswith(" title")


# -- log / show ------------------------------------------------------------------


def test_log_oneline_exact(cli: Cli, hist: History) -> None:
    lines = oneline(cli, cwd=hist.dir)
    expected = [f"{i[:10]} {m}" for i, m in zip(hist.ids, hist.messages, strict=True)][::-1]
    assert lines == expected


def test_log_n_and_ref(cli: Cli, hist: History) -> None:
    assert oneline(cli, "-n", "2", cwd=hist.dir) == [
        f"{hist.ids[3][:10]} {hist.messages[3]}",
        f"{hist.ids[2][:10]} {hist.messages[2]}",
    ]
    assert oneline(cli, "-n", "0", cwd=hist.dir) == []
    assert oneline(cli, "v1", cwd=hist.dir) == [
        f"{i[:10]} {m}" for i, m in zip(hist.ids[:3], hist.messages[:3], strict=True)
    ][::-1]
    assert oneline(cli, "main~3", cwd=hist.dir) == [f"{hist.ids[0][:10]} Initial commit"]
    assert oneline(cli, "--max-count", "1", "v1", cwd=hist.dir) == [f"{hist.ids[2][:10]} fix prices"]


def test_log_full_shows_ids_authors_decorations(cli: Cli, hist: History) -> None:
    out = ok(cli, "log", cwd=hist.dir)
    for i in hist.ids:
        assert f"commit {i}" in out
    assert out.index(hist.ids[3]) < out.index(hist.ids[0])
    assert "HEAD -> main" in out
    assert "tag: v1" in out
    assert "Author:" in out and "Date:" in out
    for m in hist.messages:
        assert f"    {m}" in out


def test_log_json_and_csv(cli: Cli, hist: History) -> None:
    data = json.loads(ok(cli, "log", "--format", "json", cwd=hist.dir))
    assert [c["id"] for c in data] == hist.ids[::-1]
    assert [c["message"] for c in data] == hist.messages[::-1]
    assert data[-1]["parents"] == []
    assert data[0]["parents"] == [hist.ids[2]]
    assert data[2]["counts"]["orders"] == {"inserts": 1, "updates": 0, "deletes": 0}

    rows = list(csv.DictReader(io.StringIO(ok(cli, "log", "--format", "csv", cwd=hist.dir))))
    assert [r["id"] for r in rows] == hist.ids[::-1]
    assert [r["message"] for r in rows] == hist.messages[::-1]
    assert json.loads(rows[0]["parents"]) == [hist.ids[2]]
    assert json.loads(rows[2]["counts"])["orders"]["inserts"] == 1

    ok(cli, "log", "-n", "1", "--format", "json", "-o", "log.json", cwd=hist.dir)
    assert [c["id"] for c in json.loads((hist.dir / "log.json").read_text())] == [hist.ids[3]]


def test_show(cli: Cli, hist: History) -> None:
    out = ok(cli, "show", "HEAD", cwd=hist.dir)
    assert f"commit {hist.ids[3]}" in out
    assert "add notes table" in out
    assert "Author:" in out
    assert "table notes created" in out
    assert any(line.strip().startswith("notes") and "+1 ~0 -0" in line for line in out.splitlines())

    out = ok(cli, "show", "v1", cwd=hist.dir)
    assert f"commit {hist.ids[2]}" in out
    assert "tag: v1" in out
    assert "fix prices" in out
    lines = [line.strip() for line in out.splitlines()]
    assert any(line.startswith("orders") and "+0 ~1 -0" in line for line in lines), out
    assert any(line.startswith("events") and "+0 ~0 -1" in line for line in lines), out
    assert "created" not in out  # no schema change in this commit

    data = json.loads(ok(cli, "show", hist.ids[3][:8], "--format", "json", cwd=hist.dir))
    assert data["id"] == hist.ids[3]
    assert data["schema_changes"] == ["table notes created"]
    assert data["counts"] == {"notes": {"inserts": 1, "updates": 0, "deletes": 0}}


# -- revisions ---------------------------------------------------------------------


def test_revisions(cli: Cli, hist: History) -> None:
    ids = hist.ids
    d = hist.dir
    assert rev(cli, "HEAD", cwd=d) == ids[3]
    assert rev(cli, "@", cwd=d) == ids[3]
    assert rev(cli, "main", cwd=d) == ids[3]
    assert rev(cli, "main~2", cwd=d) == ids[1]
    assert rev(cli, "HEAD~3", cwd=d) == ids[0]
    assert rev(cli, "HEAD^", cwd=d) == ids[2]
    assert rev(cli, "HEAD^^", cwd=d) == ids[1]
    assert rev(cli, "HEAD~1^", cwd=d) == ids[1]
    assert rev(cli, "v1", cwd=d) == ids[2]
    assert rev(cli, "v1^", cwd=d) == ids[1]
    assert rev(cli, "v1~2", cwd=d) == ids[0]
    assert rev(cli, ids[1], cwd=d) == ids[1]
    assert rev(cli, ids[1].upper(), cwd=d) == ids[1]
    assert rev(cli, ids[1][:4], cwd=d) == ids[1]
    assert rev(cli, ids[1][:7], cwd=d) == ids[1]
    assert rev(cli, ids[2][:10] + "~1", cwd=d) == ids[1]
    assert rev(cli, "refs/tags/v1", cwd=d) == ids[2]
    # three characters are not enough for a short id (git's minimum is 4)
    assert "unknown revision" in fails(cli, "show", ids[1][:3], cwd=d)


def test_branch_as_revision(cli: Cli, hist: History) -> None:
    ok(cli, "branch", "old", hist.ids[0], cwd=hist.dir)
    assert rev(cli, "old", cwd=hist.dir) == hist.ids[0]
    assert rev(cli, "refs/heads/old", cwd=hist.dir) == hist.ids[0]


# -- branch / checkout / tag -----------------------------------------------------


def test_branch_list_create_delete(cli: Cli, hist: History) -> None:
    d = hist.dir
    assert ok(cli, "branch", cwd=d).splitlines() == [f"* main {hist.ids[3][:10]}"]
    out = ok(cli, "branch", "topic", cwd=d)
    assert "topic" in out and hist.ids[3][:10] in out
    ok(cli, "branch", "old", "v1^", cwd=d)
    assert rev(cli, "old", cwd=d) == hist.ids[1]
    lines = ok(cli, "branch", cwd=d).splitlines()
    assert lines == [
        f"* main {hist.ids[3][:10]}",
        f"  old {hist.ids[1][:10]}",
        f"  topic {hist.ids[3][:10]}",
    ]
    data = json.loads(ok(cli, "branch", "--format", "json", cwd=d))
    assert {b["name"]: (b["commit"], b["current"]) for b in data} == {
        "main": (hist.ids[3], True),
        "old": (hist.ids[1], False),
        "topic": (hist.ids[3], False),
    }
    # an existing branch is not moved without -f
    assert "already exists" in fails(cli, "branch", "old", cwd=d)
    ok(cli, "branch", "-f", "old", "HEAD", cwd=d)
    assert rev(cli, "old", cwd=d) == hist.ids[3]

    out = ok(cli, "branch", "-d", "topic", cwd=d)
    assert "Deleted branch topic" in out
    assert [line.split()[-2] for line in ok(cli, "branch", cwd=d).splitlines()] == ["main", "old"]
    msg = fails(cli, "branch", "-d", "main", cwd=d)
    assert "main" in msg and "checked out" in msg
    assert "main" in ok(cli, "branch", cwd=d)
    assert "no branch named" in fails(cli, "branch", "-d", "ghost", cwd=d)


def test_checkout_branch_and_detached(cli: Cli, hist: History) -> None:
    d = hist.dir
    ok(cli, "branch", "old", hist.ids[1], cwd=d)
    out = ok(cli, "checkout", "old", cwd=d)
    assert "Switched to branch 'old'" in out
    assert dump_state(hist.db) == hist.states[1]
    assert "On branch old" in ok(cli, "status", cwd=d)
    assert ok(cli, "branch", cwd=d).splitlines()[1].startswith("* old")

    out = ok(cli, "checkout", hist.ids[2][:8], cwd=d)
    assert "detached" in out
    assert dump_state(hist.db) == hist.states[2]
    st = ok(cli, "status", cwd=d)
    assert f"HEAD detached at {hist.ids[2][:10]}" in st
    assert json.loads(ok(cli, "status", "--format", "json", cwd=d))["branch"] is None
    assert not any(line.startswith("*") for line in ok(cli, "branch", cwd=d).splitlines())

    # a tag detaches too
    ok(cli, "checkout", "v1~2", cwd=d)
    assert dump_state(hist.db) == hist.states[0]
    assert "detached" in ok(cli, "status", cwd=d)

    # committing on a detached HEAD moves HEAD, not a branch
    execute(hist.db, "INSERT INTO orders VALUES (9, 'x', 1, 1.0, NULL);")
    out = ok(cli, "commit", "-m", "detached work", cwd=d)
    assert out.startswith("[detached HEAD ")
    assert rev(cli, "main", cwd=d) == hist.ids[3]

    ok(cli, "checkout", "main", cwd=d)
    assert dump_state(hist.db) == hist.states[3]
    assert "On branch main" in ok(cli, "status", cwd=d)


def test_checkout_b(cli: Cli, hist: History) -> None:
    d = hist.dir
    out = ok(cli, "checkout", "-b", "idea", cwd=d)
    assert "Switched to a new branch 'idea'" in out
    assert rev(cli, "idea", cwd=d) == hist.ids[3]
    assert dump_state(hist.db) == hist.states[3]
    ok(cli, "checkout", "-b", "from-v1", "v1", cwd=d)
    assert rev(cli, "from-v1", cwd=d) == hist.ids[2]
    assert dump_state(hist.db) == hist.states[2]
    assert "On branch from-v1" in ok(cli, "status", cwd=d)
    assert "already exists" in fails(cli, "checkout", "-b", "idea", cwd=d)
    # uncommitted changes are carried onto a new branch at HEAD (like git)
    execute(hist.db, "INSERT INTO orders VALUES (9, 'x', 1, 1.0, NULL);")
    ok(cli, "checkout", "-b", "carry", cwd=d)
    st = json.loads(ok(cli, "status", "--format", "json", cwd=d))
    assert st["branch"] == "carry"
    assert st["tables"]["orders"]["inserts"] == 1


def test_tag_create_list_delete(cli: Cli, hist: History) -> None:
    d = hist.dir
    out = ok(cli, "tag", "v2", cwd=d)
    assert "v2" in out and hist.ids[3][:10] in out
    ok(cli, "tag", "v0", "main~3", cwd=d)
    assert rev(cli, "v0", cwd=d) == hist.ids[0]
    lines = ok(cli, "tag", cwd=d).splitlines()
    assert [line.split() for line in lines] == [
        ["v0", hist.ids[0][:10]],
        ["v1", hist.ids[2][:10]],
        ["v2", hist.ids[3][:10]],
    ]
    assert "already exists" in fails(cli, "tag", "v1", cwd=d)
    ok(cli, "tag", "-f", "v1", "HEAD", cwd=d)
    assert rev(cli, "v1", cwd=d) == hist.ids[3]
    assert "Deleted tag v0" in ok(cli, "tag", "-d", "v0", cwd=d)
    assert "unknown revision" in fails(cli, "show", "v0", cwd=d)
    assert "no tag named" in fails(cli, "tag", "-d", "v0", cwd=d)
    # tags don't move with commits
    execute(hist.db, "UPDATE orders SET qty = 0;")
    ok(cli, "commit", "-m", "later", cwd=d)
    assert rev(cli, "v2", cwd=d) == hist.ids[3]


# -- reset / restore -------------------------------------------------------------


def test_reset_hard(cli: Cli, hist: History) -> None:
    d = hist.dir
    out = ok(cli, "reset", "--hard", "HEAD~2", cwd=d)
    assert out.strip() == f"HEAD is now at {hist.ids[1][:10]} add dan"
    assert rev(cli, "main", cwd=d) == hist.ids[1]
    assert dump_state(hist.db) == hist.states[1]
    assert "On branch main" in ok(cli, "status", cwd=d)
    assert json.loads(ok(cli, "status", "--format", "json", cwd=d))["clean"] is True
    assert len(oneline(cli, cwd=d)) == 2
    # the abandoned commits are still reachable by id (reflog keeps them)
    ok(cli, "reset", "--hard", hist.ids[3], cwd=d)
    assert dump_state(hist.db) == hist.states[3]


def test_reset_soft(cli: Cli, hist: History) -> None:
    d = hist.dir
    out = ok(cli, "reset", "--soft", "HEAD~1", cwd=d)
    assert f"HEAD is now at {hist.ids[2][:10]}" in out
    assert rev(cli, "main", cwd=d) == hist.ids[2]
    # the working database is untouched, so it now differs from HEAD by the last commit
    assert dump_state(hist.db) == hist.states[3]
    st = json.loads(ok(cli, "status", "--format", "json", cwd=d))
    assert st["clean"] is False
    assert "table notes created" in st["schema_changes"]
    # committing again re-creates the same change
    ok(cli, "commit", "-m", "notes again", cwd=d)
    assert oneline(cli, "-n", "1", cwd=d)[0].endswith(" notes again")
    assert rev(cli, "HEAD~1", cwd=d) == hist.ids[2]


def test_reset_needs_mode(cli: Cli, hist: History) -> None:
    msg = fails(cli, "reset", "HEAD~1", cwd=hist.dir)
    assert "--hard" in msg and "--soft" in msg
    assert rev(cli, "main", cwd=hist.dir) == hist.ids[3]


def test_reset_hard_detached(cli: Cli, hist: History) -> None:
    d = hist.dir
    ok(cli, "checkout", hist.ids[2], cwd=d)
    ok(cli, "reset", "--hard", "HEAD~1", cwd=d)
    assert rev(cli, "HEAD", cwd=d) == hist.ids[1]
    assert rev(cli, "main", cwd=d) == hist.ids[3]  # no branch moved
    assert dump_state(hist.db) == hist.states[1]


def test_restore(cli: Cli, hist: History) -> None:
    d = hist.dir
    out = ok(cli, "restore", cwd=d)  # clean: nothing to discard, no --force needed
    assert "restored" in out
    execute(hist.db, "DELETE FROM orders; DROP TABLE notes; CREATE TABLE junk(a); PRAGMA user_version = 7;")
    msg = fails(cli, "restore", cwd=d)
    assert "--force" in msg and "orders" in msg
    assert dump_state(hist.db) != hist.states[3]
    out = ok(cli, "restore", "--force", cwd=d)
    assert f"({hist.ids[3][:10]})" in out
    assert dump_state(hist.db) == hist.states[3]
    assert json.loads(ok(cli, "status", "--format", "json", cwd=d))["clean"] is True


# -- snapshot / fsck / gc --------------------------------------------------------


def test_snapshot(cli: Cli, hist: History) -> None:
    d = hist.dir
    store = d / ".dbvers"
    c1 = json.loads(ok(cli, "show", "HEAD~2", "--format", "json", cwd=d))
    assert c1["snapshot"] is None  # a plain row change is stored as a patch
    ok(cli, "checkout", "HEAD~2", cwd=d)
    out = ok(cli, "snapshot", cwd=d)
    assert out.startswith("Snapshot ") and f"stored for {hist.ids[1][:10]}" in out
    snap = out.split()[1]
    assert (store / "refs" / "keyframes" / hist.ids[1]).is_file()
    # idempotent
    assert ok(cli, "snapshot", cwd=d).split()[1] == snap
    assert "ok" in ok(cli, "fsck", cwd=d)
    # the keyframe is used, and materialization from it is exact
    shutil.rmtree(store / "cache")
    ok(cli, "checkout", "main", cwd=d)
    assert dump_state(hist.db) == hist.states[3]
    ok(cli, "checkout", hist.ids[1], cwd=d)
    assert dump_state(hist.db) == hist.states[1]


def test_fsck_ok(cli: Cli, hist: History) -> None:
    out = ok(cli, "fsck", cwd=hist.dir)
    assert out.strip().endswith(": ok")
    assert "4 commits" in out
    data = json.loads(ok(cli, "fsck", "--format", "json", cwd=hist.dir))
    assert data["ok"] is True
    assert data["problems"] == []
    assert data["commits"] == 4
    assert data["refs"] == 3  # HEAD, main, v1


def _object_file(store: Path, oid: str) -> Path:
    return store / "objects" / oid[:2] / oid[2:]


def test_gc_keeps_reflog_reachable_then_removes(cli: Cli, hist: History) -> None:
    d = hist.dir
    store = d / ".dbvers"
    execute(hist.db, "INSERT INTO orders VALUES (10, 'lost', 1, 1.0, NULL);")
    ok(cli, "commit", "-m", "to be abandoned", cwd=d)
    lost = rev(cli, "HEAD", cwd=d)
    shown = json.loads(ok(cli, "show", lost, "--format", "json", cwd=d))
    lost_patch = shown["patch"]
    assert lost_patch and shown["snapshot"] is None
    ok(cli, "reset", "--hard", "HEAD~1", cwd=d)
    assert lost[:10] not in ok(cli, "log", "--oneline", cwd=d)

    out = ok(cli, "gc", cwd=d)
    assert out.startswith("removed 0 unreachable objects")
    assert _object_file(store, lost).is_file()
    assert rev(cli, lost, cwd=d) == lost  # still recoverable

    shutil.rmtree(store / "logs")
    out = ok(cli, "gc", "--prune=now", cwd=d)
    assert out.startswith("removed 2 unreachable objects"), out  # the commit and its patch
    assert not _object_file(store, lost).exists()
    assert not _object_file(store, lost_patch).exists()
    assert "unknown revision" in fails(cli, "show", lost, cwd=d)
    # everything reachable survived
    assert "ok" in ok(cli, "fsck", cwd=d)
    assert oneline(cli, cwd=d) == [
        f"{i[:10]} {m}" for i, m in zip(hist.ids, hist.messages, strict=True)
    ][::-1]
    for i, state in enumerate(hist.states):
        ok(cli, "checkout", hist.ids[i], cwd=d)
        assert dump_state(hist.db) == state


def test_gc_keeps_tagged_and_branched_commits(cli: Cli, hist: History) -> None:
    d = hist.dir
    store = d / ".dbvers"
    ok(cli, "checkout", "-b", "side", "v1", cwd=d)
    execute(hist.db, "INSERT INTO orders VALUES (11, 'side', 1, 1.0, NULL);")
    ok(cli, "commit", "-m", "on side", cwd=d)
    side = rev(cli, "side", cwd=d)
    ok(cli, "checkout", "main", cwd=d)
    ok(cli, "reset", "--hard", "v1", cwd=d)
    shutil.rmtree(store / "logs")
    ok(cli, "gc", "--prune=now", cwd=d)
    assert _object_file(store, side).is_file()
    assert _object_file(store, hist.ids[2]).is_file()
    assert not _object_file(store, hist.ids[3]).exists()  # only the reflog knew it
    assert "ok" in ok(cli, "fsck", cwd=d)


# -- repository discovery --------------------------------------------------------


def test_discovery_from_subdirectory(cli: Cli, hist: History) -> None:
    sub = hist.dir / "a" / "b"
    sub.mkdir(parents=True)
    assert oneline(cli, cwd=sub)[0] == f"{hist.ids[3][:10]} add notes table"
    execute(hist.db, "UPDATE orders SET qty = 1;")
    ok(cli, "commit", "-m", "from below", cwd=sub)
    assert oneline(cli, "-n", "1", cwd=hist.dir)[0].endswith(" from below")


def test_db_option_from_elsewhere(cli: Cli, hist: History, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert "no dbvers repository" in fails(cli, "status", cwd=elsewhere)
    assert oneline(cli, "--db", str(hist.db), cwd=elsewhere)[0].startswith(hist.ids[3][:10])
    execute(hist.db, "UPDATE orders SET qty = 1;")
    st = json.loads(ok(cli, "--db", str(hist.db), "status", "--format", "json", cwd=elsewhere))
    assert st["tables"]["orders"]["updates"] == 3  # bob already had qty 1
    ok(cli, "--db", str(hist.db), "commit", "-m", "remote control", cwd=elsewhere)
    ok(cli, "--db", str(hist.db), "checkout", "v1", cwd=elsewhere)
    assert dump_state(hist.db) == hist.states[2]
    # --db may name the directory too
    assert oneline(cli, "--db", str(hist.dir), "-n", "1", cwd=elsewhere)[0].startswith(hist.ids[2][:10])
    assert not (elsewhere / ".dbvers").exists()


def test_version_and_help(cli: Cli, tmp_path: Path) -> None:
    r = cli("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("dbvers ")
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0
    for command in ("init", "status", "commit", "log", "show", "branch", "checkout", "tag",
                    "reset", "restore", "snapshot", "fsck", "gc"):
        assert command in r.stdout
    r = cli(cwd=tmp_path)
    assert r.returncode == 2 and "usage" in r.stdout.lower()


def test_working_db_untouched_by_read_commands(cli: Cli, hist: History) -> None:
    before = hist.db.read_bytes()
    for args in (["status"], ["log"], ["show", "v1"], ["branch"], ["tag"], ["fsck"]):
        ok(cli, *args, cwd=hist.dir)
    assert hist.db.read_bytes() == before
    conn = sqlite3.connect(hist.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
