"""``storage.filechecks``: a push's early check of a large object is the check its upload
makes, reused, never a reason to trust a file that changed, another process's word, or an
old result."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dbvers.errors import CorruptObjectError
from dbvers.storage import codec, filechecks
from dbvers.storage.local import LocalObjectStore


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    verify = codec.verify
    monkeypatch.setattr(codec, "verify", lambda oid, *a, **k: seen.append(oid) or verify(oid, *a, **k))
    return seen


def stored(tmp_path: Path, body: bytes) -> tuple[LocalObjectStore, str, str]:
    store = LocalObjectStore(tmp_path / "objects")
    oid = store.put_bytes("patch", body)
    return store, oid, str(store.path(oid))


def test_a_check_is_reused_for_the_same_file_only(tmp_path: Path, decodes: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store, oid, path = stored(tmp_path, b"some rows" * 1000)
    store.check_ahead(oid)
    assert filechecks.verify_file(oid, path) == "patch" and decodes == [oid]  # the upload's: reused
    copy = Path(path + ".new")
    copy.write_bytes(Path(path).read_bytes())
    os.replace(copy, path)  # the same bytes in another file (a repair): checked again
    filechecks.verify_file(oid, path)
    assert decodes == [oid, oid]
    monkeypatch.setattr(filechecks, "REUSE_FOR", 0.0)  # too old: checked again
    filechecks.verify_file(oid, path)
    assert decodes == [oid, oid, oid]


def test_a_damaged_file_fails_every_check(tmp_path: Path, decodes: list[str]) -> None:
    _, oid, path = stored(tmp_path, b"other rows" * 1000)
    data = bytearray(Path(path).read_bytes())
    data[-5] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    for _ in range(2):
        with pytest.raises(CorruptObjectError):
            filechecks.verify_file(oid, path)
    assert decodes == [oid, oid]  # a failed check is never reused


def test_a_check_running_is_waited_for_not_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, oid, path = stored(tmp_path, os.urandom(1 << 16))
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []
    verify = codec.verify

    def slow(oid: str, *a: object, **k: object) -> str:
        calls.append(oid)
        started.set()
        release.wait(10)
        return verify(oid, *a, **k)  # type: ignore[arg-type]
    monkeypatch.setattr(codec, "verify", slow)
    early = threading.Thread(target=store.check_ahead, args=(oid,))
    early.start()
    assert started.wait(10)
    got: list[str] = []
    upload = threading.Thread(target=lambda: got.append(filechecks.verify_file(oid, path)))
    upload.start()
    release.set()
    early.join(10)
    upload.join(10)
    assert got == ["patch"] and calls == [oid]
