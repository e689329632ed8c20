"""The exception tree drawn in dbvers/errors.py's docstring is the real one, and errors keep their
data as attributes."""

from __future__ import annotations

import re

import dbvers.errors as errors
from dbvers import snapshots


def drawn_tree() -> dict[str, str | None]:
    """class name -> parent name, as the docstring draws it."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        m = re.match(r"^((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w*Error)\b", line)
        if m is None:
            continue
        depth = len(m[1]) // 4 + (1 if "──" in line else 0)
        del stack[depth:]
        parents[m[2]] = stack[-1] if stack else None
        stack.append(m[2])
    return parents


def test_the_docstring_draws_every_error_with_its_parent() -> None:
    real = {
        name: (None if cls is errors.DbversError else cls.__bases__[0].__name__)
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.DbversError)
    }
    assert drawn_tree() == real


def test_integrity_error_is_one_class_with_its_fields() -> None:
    assert snapshots.IntegrityError is errors.IntegrityError
    e = errors.IntegrityError("the database", ["row 3 missing from index i"])
    assert (e.what, e.problems) == ("the database", ["row 3 missing from index i"])
    assert str(e) == ("the database fails PRAGMA integrity_check (row 3 missing from index i); "
                      "repair it (e.g. sqlite3 .recover) before committing")


def test_errors_keep_what_their_message_says() -> None:
    e = errors.CorruptObjectError("ab" * 32, "bad hash")
    assert (e.object_id, e.detail) == ("ab" * 32, "bad hash")
    assert errors.MissingObjectError("cd" * 32).detail == "missing"
    assert errors.StorageError("/x", OSError(28, "No space left on device")).detail == \
        "No space left on device"
    c = errors.ConfigUnreadableError("/s/config", "bad section")
    assert (c.path, c.reason, str(c)) == ("/s/config", "bad section",
                                          "/s/config is unreadable (bad section); repair or restore it")
    assert errors.RefExistsError("main", "branch").kind == "branch"
    assert errors.DirtyWorkingDatabaseError(["t"], "reset").action == "reset"
