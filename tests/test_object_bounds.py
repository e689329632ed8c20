"""Objects whose size an attacker controls never expand into memory (issue 9, item 12).

A ``rowids`` object streams during replay, row by row: a crafted one that expands to hundreds
of megabytes (rows the table doesn't have, or one endless row) is refused with bounded memory.
Commits and schemas, read whole, have a ceiling (``objects.BODY_MAX``) checked on the header
before their body is decoded: a crafted 2 GB schema or commit is refused, on import too, and the
writer refuses to make one a reader would refuse.
"""

from __future__ import annotations

import configparser
import dataclasses
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import dbvers
from dbvers.errors import CorruptObjectError, UsageError
from dbvers.objects import BODY_MAX, header
from dbvers.rowidstream import ROW_MAX
from dbvers.storage import codec
from tests.conftest import dump_state, execute, one_line_error, run_cli

BOUND_MB = 100  # the restore memory bound, above what the same checkout of a small object takes
BODY_MB = 300


def _craft(repo: dbvers.Repo, obj_type: str, prefix: bytes, block: bytes, count: int, suffix: bytes) -> str:
    """Store prefix + block * count + suffix as an object, repeating one zstd frame (fast)."""
    body_len = len(prefix) + len(block) * count + len(suffix)
    head = header(obj_type, body_len)
    h = hashlib.sha256(head + prefix)
    for _ in range(count):
        h.update(block)
    h.update(suffix)
    oid = h.hexdigest()
    first, rest, *last = list(codec.encode([head + prefix + block, block, suffix]))
    path = repo.store_dir / "objects" / oid[:2] / oid[2:]  # as a fetch or restore would leave it
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(first + rest * (count - 1) + b"".join(last))
    return oid


def _patches_only(r: dbvers.Repo) -> dbvers.Repo:
    """*r* reopened with a keyframe policy that keeps every commit a patch."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(r.store_dir / "config", encoding="utf-8")
    if not cfg.has_section("snapshot"):
        cfg.add_section("snapshot")
    cfg.set("snapshot", "max_patch_ratio", "1000000")
    with open(r.store_dir / "config", "w", encoding="utf-8") as f:
        cfg.write(f)
    return dbvers.open(r.path)


@pytest.fixture
def repo(tmp_path: Path) -> dbvers.Repo:
    """A text-keyed rowid table; HEAD is a patch commit with a rowids object."""
    db = tmp_path / "data.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE c(k TEXT PRIMARY KEY, v); INSERT INTO c VALUES ('a', 1), ('b', 2);")
    con.close()
    r = _patches_only(dbvers.init(db))
    execute(db, "INSERT INTO c VALUES ('aa', 3); DELETE FROM c WHERE k = 'b'")  # 'aa' keeps rowid 3
    c = r.commit("needs a rowid fixup")
    assert c.rowids is not None and c.patch is not None and c.snapshot is None
    return r


def _with_rowids(repo: dbvers.Repo, rowids: str) -> str:
    """HEAD's commit with another rowids object, made the tip of 'crafted'."""
    head = repo.get_commit(repo.resolve("HEAD"))
    oid = repo.objects.put_bytes("commit", dataclasses.replace(head, rowids=rowids, message="crafted").to_bytes())
    repo.refs.update("refs/heads/crafted", oid, expect=repo.refs.read("refs/heads/crafted"), message="test")
    return oid


def _peak_mb(db: Path, code: str, *args: str) -> tuple[float, str]:
    """Run *code* (with ``r`` the opened repo) in a fresh process: (peak RSS MB, its error or 'ok')."""
    script = ("import resource, sys, dbvers\nr = dbvers.open(sys.argv[1])\ntry:\n    " + code +
              "\n    msg = 'ok'\nexcept dbvers.DbversError as e:\n    msg = str(e)\n"
              "print(msg)\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", script, str(db), *args], capture_output=True, text=True,
                         check=True, timeout=300)
    *msg, rss = out.stdout.strip().splitlines()
    return int(rss) / 1024, "\n".join(msg)


def _checkout_peak(repo: dbvers.Repo, rev: str) -> tuple[float, str]:
    return _peak_mb(repo.path, "r.materialize(r.resolve(sys.argv[2]), use_cache=False)", rev)


def test_rowids_listing_rows_the_table_lacks_is_refused_with_bounded_memory(repo: dbvers.Repo) -> None:
    baseline, msg = _checkout_peak(repo, "HEAD")
    assert msg == "ok"
    # 300 MB of the same row: more rows than the table holds, refused at the fourth.
    block = b'[3,"aa"],' * ((1 << 20) // 9)
    big = _with_rowids(repo, _craft(repo, "rowids", b'{"c":{"key":["k"],"rows":[', block, BODY_MB,
                                    b'[3,"aa"]]}}'))
    peak, msg = _checkout_peak(repo, big)
    assert "recorded rowids name more rows of c than the state holds" in msg and "\n" not in msg
    assert peak < baseline + BOUND_MB, (baseline, peak)


def test_rowids_with_an_endless_row_is_refused_with_bounded_memory(repo: dbvers.Repo) -> None:
    baseline, _ = _checkout_peak(repo, "HEAD")
    big = _with_rowids(repo, _craft(repo, "rowids", b'{"c":{"key":["k"],"rows":[[3,"', b"a" * (1 << 20),
                                    BODY_MB, b'"]]}}'))
    peak, msg = _checkout_peak(repo, big)
    assert f"a rowids entry longer than {ROW_MAX:,} characters" in msg
    assert peak < baseline + BOUND_MB, (baseline, peak)
    r = one_line_error(run_cli("checkout", "crafted", "--force", cwd=repo.path.parent))
    assert "is corrupt" in r and "dbvers fsck" in r
    assert dump_state(repo.path) == dump_state(repo.materialize(repo.resolve("HEAD")))  # nothing changed


@pytest.mark.parametrize("body, detail", [
    (b'{"c":{"key":["k"],"rows":[[3,"aa"]]}} x', "data after the end"),
    (b'{"c":{"key":["k"],"rows":[[3,"aa",1]]}}', "a row that doesn't fit its key"),
    (b'{"c":{"key":["k"],"rows":[[true,"aa"]]}}', "wrong type or range"),
    (b'{"c":{"key":["k"],"rows":[[99999999999999999999,"aa"]]}}', "wrong type or range"),
    (b'{"c":{"key":["k"],"rows":[[3,{"x":1}]]}}', "a value that can't be read"),
    (b'{"c":{"key":[],"rows":[]}}', "without its name or key"),
    (b'{"c" :{"key":["k"],"rows":[]}}', "malformed rowids"),
    (b'{"c":{"key":["k"],"rows":[[3,"aa"]', "malformed rowids"),
    (b'{"c":{"key":["k"],"rows":[[3,"zz"]]}}', "name rows of c the state lacks"),
    (b'{"nope":{"key":["k"],"rows":[[3,"aa"]]}}', "which has no hidden rowid"),
    (b'{"c":{"key":["k"],"rows":[[3,"\xff"]]}}', "aren't UTF-8"),
])
def test_malformed_rowids_are_corrupt_objects(repo: dbvers.Repo, body: bytes, detail: str) -> None:
    oid = _with_rowids(repo, repo.objects.put_bytes("rowids", body))
    with pytest.raises(CorruptObjectError, match=detail):
        repo.materialize(oid, use_cache=False)


def test_rowids_stream_still_exact_for_many_rows_and_tables(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE c(k TEXT PRIMARY KEY, v); CREATE TABLE m(a BLOB, b REAL, v, PRIMARY KEY (a, b));")
    con.close()
    r = _patches_only(dbvers.init(db))
    con = sqlite3.connect(db)
    # Inserted in an order that isn't key order, beyond one read of the stream (1 MiB).
    con.executemany("INSERT INTO c VALUES (?, ?)", [(f"key {(i * 7919) % 60000:06}", i) for i in range(60000)])
    con.executemany("INSERT INTO m VALUES (?, ?, ?)", [(bytes([i % 7, i % 251]), i / 3, i) for i in range(3000)])
    con.execute("DELETE FROM c WHERE v % 5 = 0")
    con.commit()
    con.close()
    c = r.commit("many")
    assert c.rowids is not None and c.snapshot is None and r.objects.body_size(c.rowids) > 1 << 20
    assert dump_state(r.materialize(c.id, use_cache=False)) == dump_state(db)


def _big_zeros(repo: dbvers.Repo, obj_type: str) -> str:
    """A 2 GB body of zeros (a few KB stored), of *obj_type*."""
    return _craft(repo, obj_type, b"", bytes(8 << 20), 256, b"")


def test_a_2gb_schema_is_refused_before_decoding(repo: dbvers.Repo) -> None:
    schema = _big_zeros(repo, "schema")
    assert repo.objects.stored_size(schema) < 1 << 20
    head = repo.get_commit(repo.resolve("HEAD"))
    oid = repo.objects.put_bytes("commit", dataclasses.replace(head, schema=schema).to_bytes())
    repo.refs.update("refs/heads/crafted", oid, expect=None, message="test")
    baseline, _ = _peak_mb(repo.path, "r.get_schema(r.get_commit(r.resolve('HEAD')).schema)")
    peak, msg = _peak_mb(repo.path, "r.get_schema(r.get_commit(r.resolve('crafted')).schema)")
    assert f"a schema of 2,147,483,648 bytes, over the {BODY_MAX['schema']:,}" in msg
    assert peak < baseline + 20, (baseline, peak)
    err = one_line_error(run_cli("show", "crafted", cwd=repo.path.parent))
    assert schema[:12] in err and "is corrupt" in err
    # Nor can it come in from elsewhere (fetch, restore verify what they import).
    (repo.path.parent / "other").mkdir()
    other = dbvers.init(_empty_db(repo.path.parent / "other" / "other.db"))
    with repo.objects.open_raw(schema) as raw, pytest.raises(CorruptObjectError, match="over the"):
        other.objects.put_raw(schema, raw)
    assert not other.objects.has(schema)


def test_a_2gb_commit_is_refused_before_decoding(repo: dbvers.Repo) -> None:
    commit = _big_zeros(repo, "commit")
    repo.refs.update("refs/heads/crafted", commit, expect=None, message="test")
    peak, msg = _peak_mb(repo.path, "r.get_commit(r.resolve('crafted'))")
    assert "a commit of 2,147,483,648 bytes" in msg
    baseline, _ = _peak_mb(repo.path, "r.get_commit(r.resolve('HEAD'))")
    assert peak < baseline + 20, (baseline, peak)
    err = one_line_error(run_cli("log", "crafted", cwd=repo.path.parent))
    assert "is corrupt" in err
    fsck = run_cli("fsck", cwd=repo.path.parent)
    assert fsck.returncode != 0 and commit[:12] in fsck.stdout + fsck.stderr
    assert "Traceback" not in fsck.stderr


def _empty_db(path: Path) -> Path:
    sqlite3.connect(path).close()
    return path


def test_writing_a_commit_over_the_ceiling_is_refused(repo: dbvers.Repo) -> None:
    execute(repo.path, "UPDATE c SET v = 9")
    with pytest.raises(UsageError, match="shorter message"):
        repo.commit("x" * (BODY_MAX["commit"] + 1))
    assert repo.get_commit(repo.resolve("HEAD")).message == "needs a rowid fixup"
    assert len(repo.commit("short").message) == 5


def test_a_key_too_long_for_a_rowids_entry_makes_a_snapshot(repo: dbvers.Repo) -> None:
    con = sqlite3.connect(repo.path)
    con.execute("INSERT INTO c VALUES (?, 4)", ("k" * (ROW_MAX + 1),))
    con.execute("DELETE FROM c WHERE k = 'aa'")
    con.commit()
    con.close()
    c = repo.commit("a huge key")
    assert c.rowids is None and c.snapshot is not None
    assert dump_state(repo.materialize(c.id, use_cache=False)) == dump_state(repo.path)



RESTORE = """
import resource, sys
import apsw, pyarrow, sqlite3
import dbvers, dbvers.backup
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    dbvers.restore(sys.argv[1], to=sys.argv[2], at=sys.argv[3])
    print("ok")
except dbvers.DbversError as e:
    print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_restore_of_an_archive_with_a_rowids_bomb_is_refused_in_bounded_memory(repo: dbvers.Repo,
                                                                              tmp_path: Path) -> None:
    block = b'[3,"aa"],' * ((1 << 20) // 9)
    _with_rowids(repo, _craft(repo, "rowids", b'{"c":{"key":["k"],"rows":[', block, BODY_MB, b'[3,"aa"]]}}'))
    archive = repo.backup(tmp_path / "b").path
    assert archive.stat().st_size < 5 << 20
    target = tmp_path / "out" / "data.db"
    target.parent.mkdir()
    out = subprocess.run([sys.executable, "-c", RESTORE, str(archive), str(target), "crafted"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    msg, peak = out.stdout.strip().splitlines()
    assert "recorded rowids name more rows of c than the state holds" in msg
    assert float(peak) < BOUND_MB, f"restore peaked at {float(peak):.0f} MB above the interpreter"
    assert not target.exists()


@pytest.mark.parametrize("body", [b"not json", b'{"parents": 5}', b"[]", b'{"entries":[[1]]}'])
def test_a_commit_or_schema_that_does_not_parse_is_corrupt(repo: dbvers.Repo, body: bytes) -> None:
    with pytest.raises(CorruptObjectError, match="not a commit"):
        repo.get_commit(repo.objects.put_bytes("commit", body))
    with pytest.raises(CorruptObjectError, match="not a schema"):
        repo.get_schema(repo.objects.put_bytes("schema", body))


@pytest.mark.parametrize("behind", [False, True], ids=["here", "hashed-behind"])
def test_a_body_is_checked_and_copied_exactly_in_either_thread(monkeypatch: pytest.MonkeyPatch,
                                                               behind: bool) -> None:
    """A big body is hashed and copied in a thread of its own (``codec.HASH_BEHIND_MIN``): the
    copy is the body exactly, a wrong id is refused, and a copy that fails (a full disk) is the
    copy's error, not a corrupt object."""
    import errno
    import io

    from dbvers.storage import codec
    from dbvers.storage.memory import MemoryObjectStore

    if behind:
        monkeypatch.setattr(codec, "HASH_BEHIND_MIN", 0)
    body = bytes(range(256)) * (12 << 12) + b"tail"  # several CHUNKs
    store = MemoryObjectStore()
    oid = store.put_bytes("snapshot", body)
    with store.open_raw(oid) as f:
        raw = f.read()
    out = io.BytesIO()
    assert codec.verify(oid, lambda: codec.decoder_of_bytes(raw), out) == "snapshot"
    assert out.getvalue() == body
    with pytest.raises(CorruptObjectError, match="does not match its id"):
        codec.verify("0" * 64, lambda: codec.decoder_of_bytes(raw), io.BytesIO())

    class Full(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="No space left") as caught:
        codec.verify(oid, lambda: codec.decoder_of_bytes(raw), Full())
    assert not isinstance(caught.value, CorruptObjectError)
