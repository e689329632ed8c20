"""The one boundary for foreign exceptions: what an OSError, a SQLite error or a codec's error means
to a user, as a :class:`~dbvers.errors.DbversError` (L0: imports only dbvers.errors).

The CLI's ``main`` and the notebook magics call :func:`translate` for every exception that is not
already a ``DbversError``; ``None`` means a bug (an ``InternalError``, exit 3).
"""

from __future__ import annotations

from .errors import (
    DamagedFileError,
    DbversError,
    DiskFullError,
    FileSystemError,
    OutOfMemoryError,
    SQLiteRefusedError,
    UndecodableTextError,
)

_ERRNO_HINTS: dict[str, str] = {
    "EROFS": "the file system is read-only; use a writable location (--store DIR for the store)",
    "EACCES": "check the file's permissions and owner",
    "EPERM": "check the file's permissions and owner",
    "ENAMETOOLONG": "use a shorter name (each part of a path, a ref name included, is at most 255 bytes)",
    "ENOENT": "check the path; if the file belongs to the store, run 'dbvers fsck'",
    "EISDIR": "a directory is where a file should be; move it away (run 'dbvers fsck' if it is in the store)",
    "ENOTDIR": "a file is where a directory should be; move it away (run 'dbvers fsck' if it is in the store)",
    "ELOOP": "a symbolic link points to itself; fix the link",
    "EIO": "the device reported an I/O error; check the disk, then run 'dbvers fsck'",
    "EMFILE": "too many open files; close some programs or raise 'ulimit -n'",
    "ENFILE": "too many open files; close some programs or raise 'ulimit -n'",
    "EFBIG": "the file is larger than the file system allows; use another location",
    "EEXIST": "a file is in the way; move it and try again",
    "ENOTEMPTY": "a directory is in the way; move it and try again",
    "ETIMEDOUT": "a network file system timed out; try again",
}


def translate(exc: BaseException) -> DbversError | None:
    """The :class:`DbversError` a foreign exception means, or None when it means a bug.

    The CLI's ``main`` and the notebook magics call this for every exception that
    is not already a ``DbversError``; the message is one line that says what to do.
    Nothing is imported here: an apsw or sqlite3 exception can only exist if its
    module is loaded, so ``sys.modules`` is asked.
    """
    import errno as errno_mod
    import json
    import sys

    if isinstance(exc, DbversError):
        return exc
    if isinstance(exc, MemoryError):
        return OutOfMemoryError()
    if isinstance(exc, UnicodeDecodeError):
        return UndecodableTextError(exc)
    if isinstance(exc, json.JSONDecodeError):
        return DamagedFileError(f"a record in the store is not valid JSON ({exc.msg})",
                                "run 'dbvers fsck' and restore the store from a backup")
    if isinstance(exc, OSError):
        return _translate_os_error(exc, errno_mod)
    configparser = sys.modules.get("configparser")
    if configparser is not None and isinstance(exc, configparser.Error):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DamagedFileError(f"the store's config cannot be read ({first})",
                                "fix .dbvers/config by hand, or restore it from a backup")
    apsw = sys.modules.get("apsw")
    if apsw is not None and isinstance(exc, apsw.Error):
        return _translate_sqlite(type(exc).__name__, str(exc))
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.DatabaseError):
        return _translate_sqlite(type(exc).__name__, str(exc))
    return None


def _translate_os_error(exc: OSError, errno_mod: object) -> DbversError | None:
    code = exc.errno
    path = exc.filename if exc.filename is not None else None
    path_s = None if path is None else (path.decode(errors="replace") if isinstance(path, bytes) else str(path))
    if code is None:
        # pyarrow's codecs raise OSError without an errno on damaged compressed data.
        text = str(exc)
        if "decompress" in text.lower() or "zstd" in text.lower():
            return DamagedFileError(f"compressed data in the store is damaged ({' '.join(text.split())[:200]})",
                                    "run 'dbvers fsck' and restore the store from a backup")
        return None
    name = errno_mod.errorcode.get(code, "")  # type: ignore[attr-defined]
    if name in ("ENOSPC", "EDQUOT"):
        return DiskFullError(path_s)
    if name == "EPIPE":
        return None  # a closed stdout is not an error; the CLI handles it
    hint = _ERRNO_HINTS.get(name, "check the path and its permissions, then try again")
    return FileSystemError(path_s, exc, hint)


def _translate_sqlite(kind: str, message: str) -> DbversError | None:
    """SQLite's error, whichever library raised it (apsw names it by class, sqlite3 by message)."""
    text = " ".join(message.split())[:200]
    low = text.lower()
    if kind == "FullError" or "database or disk is full" in low:
        return DiskFullError()
    if kind in ("CorruptError", "NotADBError") or "malformed" in low or "not a database" in low:
        return DamagedFileError(f"a SQLite file is damaged ({text})")
    if kind == "ReadOnlyError" or "readonly database" in low:
        return SQLiteRefusedError(f"SQLite could not write a file ({text})",
                                  "check that the database, its directory and the store are writable")
    if kind == "CantOpenError" or "unable to open database" in low:
        return SQLiteRefusedError(f"SQLite could not open a file ({text})",
                                  "check that the database and the store exist and are readable and writable")
    if kind == "IOError" or "disk i/o error" in low:
        return SQLiteRefusedError(f"SQLite reported an I/O error ({text})",
                                  "check the disk and free space, then run 'dbvers fsck'")
    if kind == "NoMemError" or low == "out of memory":
        return OutOfMemoryError()
    if kind in ("BusyError", "LockedError") or "database is locked" in low:
        return SQLiteRefusedError(f"a database is locked by another process ({text})",
                                  "finish or close the other writer and try again")
    if kind == "TooBigError" or "too big" in low:
        return SQLiteRefusedError(f"a value is larger than SQLite allows ({text})",
                                  "SQLite's limits apply to every version dbvers stores")
    return None
