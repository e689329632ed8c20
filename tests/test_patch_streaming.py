"""Patches replay as streams: a patch object never has to fit in memory (issue 9's last item).

A crafted store holds a patch that is tiny on disk but decompresses to hundreds of
megabytes; checking out its commit must stay within the restore memory bound, and a
patch whose hash turns out wrong only at its end discards the materialization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import dbvers
from dbvers.errors import CorruptObjectError
from dbvers.objects import header
from dbvers.storage import codec

BODY_MB = 250
BOUND_MB = 100  # the restore memory bound, above what the same checkout of a small patch takes


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _patch_block() -> bytes:
    """1 MB of patchset inserts into table 'elsewhere' (which the state lacks: SQLite skips them)."""
    text = b"x" * 100
    record = b"\x12\x00" + b"\x01" + (1).to_bytes(8, "big") + b"\x03" + _varint(len(text)) + text
    return record * ((1 << 20) // len(record))


def _huge_patch(repo: dbvers.Repo, megabytes: int) -> str:
    """Store a patch object of *megabytes* MB body, repeating one zstd frame (seconds, not minutes)."""
    table = b"P" + _varint(2) + b"\x01\x00" + b"elsewhere\x00"
    block = _patch_block()
    body_len = len(table) + len(block) * megabytes
    head = header("patch", body_len)
    h = hashlib.sha256(head + table)
    for _ in range(megabytes):
        h.update(block)
    oid = h.hexdigest()
    first, rest = list(codec.encode([head + table + block, block]))
    with tempfile.TemporaryFile() as raw:
        raw.write(first + rest * (megabytes - 1))
        raw.seek(0)
        assert repo.objects.put_raw(oid, raw) == oid  # verified on the way in
    return oid


def _crafted_commit(repo: dbvers.Repo, patch: str) -> str:
    """A child of HEAD whose patch is *patch* (HEAD's state otherwise), made the tip of 'crafted'."""
    head = repo.get_commit(repo.resolve("HEAD"))
    child = dataclasses.replace(head, parents=(repo.resolve("HEAD"),), patch=patch, snapshot=None,
                                message="crafted", counts={}, rowids=None)
    oid = repo.objects.put_bytes("commit", child.to_bytes())
    repo.refs.update("refs/heads/crafted", oid, expect=None, message="test")
    return oid


def _peak_mb_of_checkout(db: Path, rev: str) -> float:
    code = ("import resource, sys, dbvers; r = dbvers.open(sys.argv[1]); r.checkout(sys.argv[2], force=True); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, str(db), rev], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


@pytest.fixture
def repo(tmp_path: Path) -> dbvers.Repo:
    db = tmp_path / "data.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row {i}") for i in range(100)])
    con.commit()
    con.close()
    r = dbvers.init(db)
    r.snapshot()
    return r


def test_huge_patch_replays_within_the_memory_bound(repo: dbvers.Repo) -> None:
    small = _crafted_commit(repo, _huge_patch(repo, 1))
    baseline = _peak_mb_of_checkout(repo.path, small)
    repo.refs.delete("refs/heads/crafted", message="test")
    big = _crafted_commit(repo, _huge_patch(repo, BODY_MB))
    assert repo.objects.body_size(repo.get_commit(big).patch or "") > BODY_MB * 10**6
    peak = _peak_mb_of_checkout(repo.path, big)
    assert peak < baseline + BOUND_MB, (baseline, peak)
    assert repo.read_table("t", at=big)["v"].tolist() == [f"row {i}" for i in range(100)]


def test_patch_damaged_at_its_end_discards_the_materialization(repo: dbvers.Repo) -> None:
    good = _huge_patch(repo, 2)
    # The same bytes under another id: every piece decodes, only the final hash check fails.
    wrong = "f" * 64
    with repo.objects.open_raw(good) as src:
        raw = src.read()
    path = repo.store_dir / "objects" / wrong[:2] / wrong[2:]
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    oid = _crafted_commit(repo, wrong)
    with pytest.raises(CorruptObjectError, match="does not match its id"):
        repo.materialize(oid, use_cache=False)
    assert not (repo.cache_dir / f"{oid}.db").exists()
    with pytest.raises(CorruptObjectError):
        repo.read_table("t", at=oid)
