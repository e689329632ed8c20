"""Errors that dbvers.boundary.translate() makes of exceptions from below dbvers (the OS, SQLite, codecs).

L0, part of the one exception tree drawn in ``dbvers.errors`` (import from there).
"""

from __future__ import annotations

from .core import DbversError


class DiskFullError(DbversError):
    def __init__(self, path: str | None = None) -> None:
        self.path = path
        where = f" (writing {path})" if path else ""
        super().__init__(f"the disk is full{where}; free some space and run the command again")


class FileSystemError(DbversError):
    """The OS refused a file operation; the message names the file and what to do."""
    def __init__(self, path: str | None, err: OSError, hint: str) -> None:
        self.path = path
        self.errno = err.errno
        self.detail = what = err.strerror or str(err)
        self.hint = hint
        super().__init__(f"{what}: {path}; {hint}" if path else f"{what}; {hint}")


class DamagedFileError(DbversError):
    """SQLite, a codec or a decoder found bytes that are not what they should be."""
    def __init__(self, detail: str, hint: str = "") -> None:
        self.detail = detail
        self.hint = hint
        super().__init__(f"{detail}; "
                         + (hint or "run 'dbvers fsck' to check the store, and 'dbvers restore --force' to put "
                         "HEAD back into a damaged working database"))


class SQLiteRefusedError(DbversError):
    """SQLite refused an operation for a reason outside dbvers (read-only file, lock, I/O error)."""
    def __init__(self, detail: str, hint: str) -> None:
        self.detail = detail
        self.hint = hint
        super().__init__(f"{detail}; {hint}")


class UndecodableTextError(DbversError):
    def __init__(self, exc: UnicodeDecodeError) -> None:
        self.reason = exc.reason
        self.start = exc.start
        super().__init__(f"found bytes that are not valid UTF-8 ({exc.reason} at byte {exc.start}); if a file in the "
                         "store (HEAD, a ref, the config) holds them, 'dbvers fsck' names it: restore it from a backup")


class OutOfMemoryError(DbversError):
    def __init__(self) -> None:
        super().__init__("out of memory; close other programs, or ask for less (e.g. diff --limit N) and try again")


class InternalError(DbversError):
    """An exception no one expected: a bug. Exit code 3 tells scripts it is not a user error."""
    exit_code = 3

    def __init__(self, exc: BaseException) -> None:
        self.original = exc
        msg = " ".join(str(exc).split())[:300]  # one line, whatever the exception said
        super().__init__(f"internal error: {type(exc).__name__}: {msg} "
                         "(please report it; run with DBVERS_DEBUG=1 for the traceback)")


def debug_enabled() -> bool:
    """``DBVERS_DEBUG=1``: let unexpected exceptions through with their traceback."""
    import os

    return os.environ.get("DBVERS_DEBUG", "") not in ("", "0")
