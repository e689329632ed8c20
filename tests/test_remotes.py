"""The remote backends beyond the storage contract: URLs, the marker, races, faults.

The contract (``test_storage_contract.py``) already runs every ObjectStore and
RefStore test on the directory and S3 remotes. Here: what only a remote has —
parsing URLs, creating and opening by the marker, the layout both backends share,
compare-and-swap races between processes, stale directory locks, S3's 412 / 409 /
5xx answers, refusing an endpoint that ignores conditional writes, a dead endpoint,
and listing refs without ever listing objects. S3 runs against moto's server on
127.0.0.1 (``conftest.moto_endpoint``); failures are injected through botocore's
event hooks on a client of the test's own (a distinct ``timeout`` gives each test
its own cached client).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MOTO_BUCKET, moto_remote_url

from dbvers.errors import (
    ConditionalWritesUnsupportedError,
    DbversError,
    RemoteAccessError,
    RemoteError,
    RemoteFormatError,
    RemoteNotFoundError,
    RemoteUnreachableError,
    RemoteUrlError,
    RepositoryBusyError,
    UsageError,
)
from dbvers.fsutil import TMP_PREFIX
from dbvers.remotes import DirectoryRemote, S3Remote, make_remote, open_remote, parse_url
from dbvers.remotes.layout import MARKER, object_key
from dbvers.storage import reflock
from dbvers.storage.local import LocalObjectStore
from dbvers.storage.memory import MemoryObjectStore

MAIN = "refs/heads/main"


def _id(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _one_line(e: DbversError) -> str:
    text = str(e)
    assert "\n" not in text and "Traceback" not in text and len(text) < 400, text
    return text


@pytest.fixture
def s3(s3_endpoint: str) -> Iterator[S3Remote]:
    """A new, empty remote on moto, with its own client (so hooks stay in this test)."""
    remote = make_remote(moto_remote_url(), endpoint_url=s3_endpoint, timeout=9.5, backoff=0.01)
    assert isinstance(remote, S3Remote)
    yield remote
    for event in _EVENTS:
        remote.conn.client.meta.events.unregister(event, _injector)
    _EVENTS.clear()
    _INJECT.clear()


# -- failure injection through botocore's events ------------------------------------------------

_INJECT: list[Callable[..., Any]] = []
_EVENTS: set[str] = set()


def _injector(**kw: Any) -> Any:
    for fn in list(_INJECT):
        out = fn(**kw)
        if out is not None:
            return out
    return None


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _answer(status: int, code: str) -> Any:
    from botocore.awsrequest import AWSResponse

    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
    return AWSResponse("http://127.0.0.1/", status, {"Content-Type": "application/xml"}, _Raw(body))


def _inject(remote: S3Remote, event: str, fn: Callable[..., Any]) -> None:
    if event not in _EVENTS:
        remote.conn.client.meta.events.register(event, _injector)
        _EVENTS.add(event)
    _INJECT.append(fn)


# -- URLs -----------------------------------------------------------------------------------------


def test_urls_name_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_url("s3://my-bucket/team/db/").url == "s3://my-bucket/team/db"
    spec = parse_url("s3://my-bucket")
    assert (spec.kind, spec.bucket, spec.prefix) == ("s3", "my-bucket", "")
    assert parse_url("shared/remote").path == tmp_path / "shared" / "remote"
    assert parse_url("file:///srv/nas/db%20remote").path == Path("/srv/nas/db remote")
    assert parse_url("file://localhost/srv/x").path == Path("/srv/x")
    assert isinstance(make_remote("file:///srv/x"), DirectoryRemote)
    assert isinstance(make_remote("s3://my-bucket/p"), S3Remote)  # nothing is contacted yet
    for bad in ("", "gs://bucket/x", "s3://", "s3://Bad_Bucket!/x", "s3://ab/x", "s3://bucket/a/../b",
                "file://nas-host/x", "s3://bucket/x?versionId=1"):
        with pytest.raises(RemoteUrlError) as info:
            parse_url(bad)
        assert isinstance(info.value, UsageError)
        _one_line(info.value)
    with pytest.raises(RemoteUrlError, match="are for s3://"):
        make_remote(str(tmp_path), endpoint_url="http://127.0.0.1:9")


# -- the directory remote -----------------------------------------------------------------------


def test_directory_remote_is_created_once_and_self_describing(tmp_path: Path) -> None:
    where = tmp_path / "nas" / "team.dbvers"
    with pytest.raises(RemoteNotFoundError, match="not a dbvers remote"):
        open_remote(str(where))
    remote = open_remote(str(where), create=True)
    marker = json.loads((where / MARKER).read_text())
    assert marker["dbvers_remote"] == 1
    assert (where / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert remote.refs.head().branch == "main" and remote.refs.head().commit is None
    assert not [p for p in where.rglob("*") if p.name.startswith(TMP_PREFIX)]  # the probe cleaned up
    # Reopening needs only the path, creating again changes nothing
    again = open_remote(f"file://{where}", create=True)
    assert isinstance(again, DirectoryRemote) and again.root == where
    assert json.loads((where / MARKER).read_text()) == marker


def test_directory_remote_refuses_foreign_or_newer(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(RemoteNotFoundError, match="not empty") as info:
        open_remote(str(tmp_path / "photos"), create=True)
    _one_line(info.value)
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat.jpg"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RemoteNotFoundError, match="is a file"):
        open_remote(str(tmp_path / "file"), create=True)
    where = tmp_path / "r"
    open_remote(str(where), create=True)
    (where / MARKER).write_text('{"dbvers_remote": 7}')
    with pytest.raises(RemoteFormatError, match=r"format 7.*upgrade dbvers"):
        open_remote(str(where))
    (where / MARKER).write_text("garbage")
    with pytest.raises(RemoteFormatError, match="unreadable"):
        open_remote(str(where))


def test_interrupted_directory_creation_resumes(tmp_path: Path) -> None:
    where = tmp_path / "r"
    (where / "objects").mkdir(parents=True)
    (where / "HEAD").write_text("ref: refs/heads/main\n")  # killed before the marker
    assert open_remote(str(where), create=True).exists()


def test_remote_layout_is_the_store_layout_on_both_backends(tmp_path: Path, s3: S3Remote) -> None:
    local = LocalObjectStore(tmp_path / "store" / "objects")
    ids = [local.put_bytes("patch", os.urandom(n)) for n in (0, 10, 1 << 18)]
    directory = open_remote(str(tmp_path / "remote"), create=True)
    s3.check(create=True)
    for remote in (directory, s3):
        for oid in ids:
            with local.open_raw(oid) as raw:
                remote.objects.put_raw(oid, raw)
        remote.refs.update(MAIN, ids[0], expect=None, message="push")
    for oid in ids:  # the same key, the same bytes, everywhere
        stored = local.path(oid).read_bytes()
        assert (tmp_path / "remote" / object_key(oid)).read_bytes() == stored
        got = s3.conn.get(object_key(oid), 1 << 30)
        assert got is not None and got[0] == stored
    assert (tmp_path / "remote" / MAIN).read_text() == ids[0] + "\n"
    assert s3.conn.get(MAIN, 4096)[0] == (ids[0] + "\n").encode()  # type: ignore[index]
    keys = {e.key for e in s3.conn.list("") if not e.key.startswith("logs/")}
    assert keys == {MARKER, "HEAD", MAIN, *(object_key(o) for o in ids)}


# -- races between processes ---------------------------------------------------------------------


def _cas_in_child(url: str, endpoint: str | None, expect: str, new: str, go: float,
                  out: multiprocessing.Queue) -> None:
    remote = open_remote(url, endpoint_url=endpoint) if endpoint else open_remote(url)
    while time.time() < go:
        time.sleep(0.001)
    out.put(remote.refs.compare_and_swap(MAIN, expect, new, message="push"))


@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_concurrent_cas_from_processes_exactly_one_wins(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "s3":
        endpoint: str | None = request.getfixturevalue("s3_endpoint")
        url = moto_remote_url()
    else:
        endpoint, url = None, str(tmp_path / "remote")
    remote = open_remote(url, create=True, endpoint_url=endpoint) if endpoint else open_remote(url, create=True)
    start = _id("start")
    remote.refs.update(MAIN, start, expect=None, message="first push")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    go = time.time() + 1.0  # every child has opened the remote (made its client) by then
    procs = [ctx.Process(target=_cas_in_child, args=(url, endpoint, start, _id(i), go, out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results.count(True) == 1, results
    assert remote.refs.read(MAIN) in {_id(i) for i in range(4)}
    assert [e.old for e in remote.refs.reflog(MAIN)] == ["0" * 64, start]  # the winner's line only


# -- stale directory locks ----------------------------------------------------------------------


def test_stale_lock_of_another_machine_is_broken_only_when_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = open_remote(str(tmp_path / "remote"), create=True)
    assert isinstance(remote, DirectoryRemote)
    lock = reflock.lock_path(remote.root / MAIN)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("odeadbeef.4242.99-0123abcd\n")  # another host's writer: its pid says nothing here
    monkeypatch.setattr(reflock, "WAIT", 0.3)
    with pytest.raises(RepositoryBusyError):  # fresh: it may be mid-write on the other machine
        remote.refs.compare_and_swap(MAIN, None, _id(1), message="blocked")
    assert lock.exists() and remote.refs.read(MAIN) is None
    old = time.time() - reflock.UNOWNED_STALE_AFTER - 5
    os.utime(lock, (old, old))  # ... until it is older than any write takes: its owner is gone
    assert remote.refs.compare_and_swap(MAIN, None, _id(1), message="after the crash")
    assert not lock.exists() and remote.refs.read(MAIN) == _id(1)


# -- S3 answers --------------------------------------------------------------------------------


def test_s3_412_loses_the_swap_and_writes_nothing(s3: S3Remote) -> None:
    s3.check(create=True)
    s3.refs.update(MAIN, _id("a"), expect=None, message="push")
    other = _id("someone else")
    fired: list[str] = []

    def race(params: dict[str, Any], **_: Any) -> None:
        # Between our read and our conditional write, another pusher moves the ref.
        if params.get("Key", "").endswith(MAIN) and not fired:
            fired.append("x")
            s3.conn.put(MAIN, (other + "\n").encode())

    _inject(s3, "before-parameter-build.s3.PutObject", race)
    assert s3.refs.compare_and_swap(MAIN, _id("a"), _id("b"), message="mine") is False
    assert fired and s3.refs.read(MAIN) == other
    assert len(s3.refs.reflog(MAIN)) == 1  # no line for the lost swap
    # create: If-None-Match loses the same way
    _INJECT.clear()
    fired.clear()

    def create_race(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key", "").endswith("refs/heads/new") and not fired:
            fired.append("x")
            s3.conn.put("refs/heads/new", (other + "\n").encode())

    _inject(s3, "before-parameter-build.s3.PutObject", create_race)
    assert s3.refs.compare_and_swap("refs/heads/new", None, _id("b"), message="create") is False
    assert s3.refs.read("refs/heads/new") == other


def test_s3_409_retries_with_backoff_then_one_line(s3: S3Remote) -> None:
    s3.check(create=True)
    conflicts: list[int] = []

    def conflict(request: Any, **_: Any) -> Any:
        if request.method == "PUT" and request.url.split("?")[0].endswith(MAIN) and len(conflicts) < 2:
            conflicts.append(1)
            return _answer(409, "ConditionalRequestConflict")
        return None

    _inject(s3, "before-send.s3.PutObject", conflict)
    assert s3.refs.compare_and_swap(MAIN, None, _id("a"), message="push")
    assert len(conflicts) == 2 and s3.refs.read(MAIN) == _id("a")
    _INJECT.clear()
    _inject(s3, "before-send.s3.PutObject",
            lambda request, **_: _answer(409, "ConditionalRequestConflict")
            if request.url.split("?")[0].endswith(MAIN) else None)
    with pytest.raises(RemoteError, match="kept being written concurrently") as info:
        s3.refs.compare_and_swap(MAIN, _id("a"), _id("b"), message="push")
    _one_line(info.value)


def test_s3_5xx_is_retried(s3: S3Remote) -> None:
    s3.check(create=True)
    failures: list[int] = []

    def flaky(request: Any, **_: Any) -> Any:
        if len(failures) < 2:
            failures.append(1)
            return _answer(503, "SlowDown")
        return None

    _inject(s3, "before-send.s3.GetObject", flaky)
    assert s3.refs.read(MAIN) is None and len(failures) == 2
    _INJECT.clear()
    _inject(s3, "before-send.s3.GetObject", lambda **_: _answer(500, "InternalError"))
    with pytest.raises(RemoteUnreachableError, match=r"after 5 attempts.*HTTP 500") as info:
        s3.refs.read(MAIN)
    _one_line(info.value)


@pytest.mark.parametrize("header", ["If-None-Match", "If-Match"])
def test_probe_refuses_an_endpoint_that_ignores_conditional_writes(s3: S3Remote, header: str) -> None:
    def strip(request: Any, **_: Any) -> None:
        request.headers.pop(header, None)  # what a store without conditional writes does with it

    _inject(s3, "before-send.s3.PutObject", strip)
    with pytest.raises(ConditionalWritesUnsupportedError, match=header) as info:
        s3.check(create=True)
    _one_line(info.value)
    assert not s3.exists() and list(s3.conn.list("probe/")) == []  # not made a remote, probe removed
    _INJECT.clear()
    assert s3.check(create=True).exists()  # an honest endpoint passes


def test_dead_endpoint_retries_then_one_line() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = make_remote(f"s3://{MOTO_BUCKET}/x", endpoint_url=f"http://127.0.0.1:{port}",
                         attempts=3, backoff=0.01, timeout=2)
    started = time.monotonic()
    with pytest.raises(RemoteUnreachableError, match="unreachable after 3 attempts") as info:
        remote.check()
    assert info.value.attempts == 3 and time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in _one_line(info.value)


def test_missing_bucket_and_missing_credentials(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RemoteNotFoundError, match="bucket 'no-such-bucket' does not exist") as info:
        open_remote("s3://no-such-bucket/x", endpoint_url=s3_endpoint, create=True, timeout=9.1)
    _one_line(info.value)
    with pytest.raises(RemoteNotFoundError, match="not a dbvers remote"):
        open_remote(moto_remote_url(), endpoint_url=s3_endpoint)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RemoteAccessError, match="no AWS credentials") as info2:
        open_remote(moto_remote_url(), endpoint_url=s3_endpoint)
    _one_line(info2.value)


def test_listing_refs_never_lists_objects(s3: S3Remote) -> None:
    s3.check(create=True)
    source = MemoryObjectStore()
    ids = [source.put_bytes("commit", str(i).encode()) for i in range(30)]
    for oid in ids:
        with source.open_raw(oid) as raw:
            s3.objects.put_raw(oid, raw)
    s3.refs.update(MAIN, ids[0], expect=None, message="push")
    s3.refs.update("refs/tags/v1", ids[1], expect=None, message="tag")
    s3.refs.update("refs/heads/topic/x", ids[2], expect=None, message="push")
    s3.refs.set_keyframe(ids[0], ids[3])
    absent = {_id("not pushed"), _id("nor this")}
    listed: list[str] = []
    _inject(s3, "before-parameter-build.s3.ListObjectsV2", lambda params, **_: listed.append(params["Prefix"]))
    s3.check()
    assert s3.refs.branches() == {"main": ids[0], "topic/x": ids[2]}
    assert s3.refs.tags() == {"v1": ids[1]}
    values, problems = s3.refs.check()
    assert problems == [] and values["refs/tags/v1"] == ids[1]
    assert s3.refs.keyframes() == {ids[0]: ids[3]}
    assert s3.objects.missing({*ids[:5], *absent}) == absent  # what a push asks: HEADs, no listing
    assert listed and not [p for p in listed if "/objects" in p or p == s3.conn.key("")], listed


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from dbvers.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without it looks like
    remote = make_remote("s3://some-bucket/x", timeout=8.8)  # making the backend needs no boto3
    with pytest.raises(MissingDependencyError, match=r"pip install 'dbvers\[s3\]'") as info:
        remote.check()
    _one_line(info.value)


def test_s3_refuses_a_ref_and_a_folder_of_refs_like_a_directory(s3: S3Remote, tmp_path: Path) -> None:
    from dbvers.errors import RefPathConflictError

    s3.check(create=True)
    directory = open_remote(str(tmp_path / "remote"), create=True)
    for remote in (s3, directory):
        remote.refs.update("refs/heads/a", _id(1), expect=None, message="push")
        remote.refs.update("refs/heads/x/y", _id(1), expect=None, message="push")
        for ref in ("refs/heads/a/b", "refs/heads/x"):
            with pytest.raises(RefPathConflictError):
                remote.refs.compare_and_swap(ref, None, _id(2), message="push")
        assert remote.refs.branches() == {"a": _id(1), "x/y": _id(1)}
