"""What ``storage.refbase`` makes the same on every ref store backend (the contract suite's backends).

Each test here failed on at least one backend before the backends shared one base:
``read("HEAD")`` raised on a symbolic HEAD in the store directory, and asking for the
reflog of a name that is a folder of refs (``a`` while ``a/b`` exists) raised there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from test_storage_contract import REF_BACKENDS

from dbvers.errors import InvalidRefNameError
from dbvers.storage.base import RefStore


def _id(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture(params=list(REF_BACKENDS))
def refs(request: pytest.FixtureRequest, tmp_path: Path) -> RefStore:
    return REF_BACKENDS[request.param](tmp_path)


def test_read_head_is_the_commit_it_resolves_to(refs: RefStore) -> None:
    assert refs.read("HEAD") is None  # unborn main
    refs.update("refs/heads/main", _id(1), expect=None, message="first")
    assert refs.read("HEAD") == _id(1)
    refs.set_head(commit=_id(2), message="detach")
    assert refs.read("HEAD") == _id(2)


def test_reflog_of_a_folder_of_refs_is_empty(refs: RefStore) -> None:
    refs.update("refs/heads/a/b", _id(1), expect=None, message="nested")
    assert refs.read("refs/heads/a") is None
    assert refs.reflog_lines("refs/heads/a") == [] and refs.reflog("refs/heads/a") == []
    assert not refs.has_reflog("refs/heads/a") and refs.has_reflog("refs/heads/a/b")


BAD = "refs/heads/a..b"
CALLS: dict[str, Callable[[RefStore], object]] = {
    "read": lambda r: r.read(BAD),
    "compare_and_swap": lambda r: r.compare_and_swap(BAD, None, _id(1), message=""),
    "update": lambda r: r.update(BAD, _id(1), expect=None, message=""),
    "delete": lambda r: r.delete(BAD, message=""),
    "append_reflog": lambda r: r.append_reflog(BAD, None, _id(1), ""),
    "reflog": lambda r: r.reflog(BAD),
    "reflog_lines": lambda r: r.reflog_lines(BAD),
    "has_reflog": lambda r: r.has_reflog(BAD),
    "rewrite_reflog": lambda r: r.rewrite_reflog(BAD, []),
    "check_writable": lambda r: r.check_writable([BAD]),
    "set_head": lambda r: r.set_head(branch="a..b", message=""),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_every_path_validates_the_name(refs: RefStore, call: str) -> None:
    with pytest.raises(InvalidRefNameError):
        CALLS[call](refs)
    assert refs.lookup(BAD) is None  # a name a user typed that can't be a ref names none
    assert refs.reflog_names() == []  # nothing was written
