"""One exception tree for everything dbvers reports to a user.

Every error a user can cause is a :class:`DbversError`; the CLI prints its
message as one line and exits 2. Each subclass carries the data that explains it
(the ref that was unknown, the tables that are dirty, ...) so callers can act on
it without parsing messages.
"""

from __future__ import annotations


class DbversError(Exception):
    """Base of every error dbvers raises on purpose."""

    exit_code = 2


class UsageError(DbversError):
    """The command line or call itself is wrong."""


class NotADatabaseError(DbversError):
    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{path} is not a SQLite database{extra}")


class RepositoryNotFoundError(DbversError):
    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(
            f"no dbvers repository found at or above {where}; "
            "run 'dbvers init DB' or pass --db PATH"
        )


class RepositoryExistsError(DbversError):
    def __init__(self, store: str, tracked: str) -> None:
        self.store = store
        self.tracked = tracked
        super().__init__(
            f"{store} already tracks {tracked}; "
            "use --store DIR to keep a second database's history elsewhere"
        )


class UnsupportedFormatError(DbversError):
    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"this store has format {found} but this dbvers reads up to {supported}; "
            "upgrade dbvers"
        )


class ConfigValueError(DbversError):
    """A setting in ``.dbvers/config`` (or its environment override) has a value dbvers can't use."""

    def __init__(self, path: str, section: str, key: str, value: str, allowed: str) -> None:
        self.path = path
        self.section = section
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(
            f"{path}: [{section}] {key} = {value!r} is not valid; it must be {allowed}"
        )


class BadExpiryError(UsageError):
    """A time for ``--expire``, ``--expire-unreachable`` or ``--prune`` that dbvers can't read."""

    def __init__(self, option: str, value: str) -> None:
        self.option = option
        self.value = value
        super().__init__(
            f"{option} {value!r} is not a time; use now, never, a number of days (30, 30.days, "
            "2.weeks.ago) or an ISO date (2024-01-31)"
        )


class UnknownRefError(DbversError):
    def __init__(self, ref: str, detail: str = "") -> None:
        self.ref = ref
        super().__init__(detail or f"unknown revision '{ref}'; see 'dbvers log' or 'dbvers branch'")


class AmbiguousRefError(UnknownRefError):
    def __init__(self, ref: str, candidates: list[str]) -> None:
        self.candidates = candidates
        super().__init__(
            ref,
            f"short id '{ref}' is ambiguous ({', '.join(c[:12] for c in candidates[:5])}); "
            "give more characters",
        )


class InvalidRefNameError(DbversError):
    def __init__(self, name: str, why: str) -> None:
        self.name = name
        # The name is shown escaped and cut: a newline or a 10 kB name must not break the one-line message.
        shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
        shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in shown)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"'{shown}' is not a valid name: {why}")


class DamagedRefError(DbversError):
    """A ref or HEAD file exists but can't be used (garbage, empty, not UTF-8, a directory, missing HEAD).

    Only a ref that does not exist is an unborn branch: anything else stops the
    command before it moves a ref, so history is never silently restarted.
    """

    def __init__(self, ref: str, path: str, detail: str) -> None:
        self.ref = ref
        self.path = path
        self.detail = detail
        fix = ("'dbvers checkout --force BRANCH' (drops uncommitted changes) or write "
               "'ref: refs/heads/main' into that file" if ref == "HEAD"
               else f"write a commit id into that file (logs/{ref} lists the ones it held) or delete it")
        super().__init__(
            f"{ref} is damaged: {detail} ({path}); run 'dbvers fsck', then {fix}, "
            "or restore the store from a backup"
        )


class RefPathConflictError(DbversError):
    """A ref can't be created because a file or folder of the store is where it would go."""

    def __init__(self, ref: str, blocking: str) -> None:
        self.ref = ref
        self.blocking = blocking
        super().__init__(
            f"cannot create {ref}: {blocking} is in the way (a name cannot be both a ref and a "
            "folder of refs, like 'a' and 'a/b'); choose another name"
        )


class UnfinishedMoveError(DbversError):
    """The working database was changed, but a ref move after it failed (recorded; finished later)."""

    def __init__(self, commit: str, path: str, reason: str) -> None:
        self.commit = commit
        self.path = path
        super().__init__(
            f"the working database now holds {commit[:10]} but {path} could not be written ({reason}); "
            "fix that and run 'dbvers status' to finish moving HEAD"
        )


class RefExistsError(DbversError):
    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        super().__init__(f"a {kind} named '{name}' already exists")


class RefConflictError(DbversError):
    """A compare-and-swap on a ref lost: someone moved it meanwhile."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"{ref} was moved by another process; run the command again")


class DirtyWorkingDatabaseError(DbversError):
    def __init__(self, tables: list[str], action: str = "checkout") -> None:
        self.tables = tables
        names = ", ".join(tables[:10]) + (" ..." if len(tables) > 10 else "")
        super().__init__(
            f"uncommitted changes in {names} would be lost by {action}; "
            "commit them, or pass --force to discard them"
        )


class NothingToCommitError(DbversError):
    def __init__(self) -> None:
        super().__init__("nothing to commit, working database matches HEAD (use --allow-empty)")


class RepositoryBusyError(DbversError):
    """The store's lock stayed held for the whole timeout.

    *holder*: ``"thread"`` (another thread of this process, on the same Repo),
    ``"process"`` (this process, through another Repo object or thread), a pid, or
    None when the lock file doesn't say.
    """

    def __init__(self, lock_path: str, waited: float, holder: str | int | None = None) -> None:
        self.lock_path = lock_path
        self.waited = waited
        self.holder = holder
        if holder == "thread":
            who, fix = "another thread of this process (same Repo)", "let that call finish first"
        elif holder == "process":
            who = "this process (another Repo object or thread holds it)"
            fix = "finish that operation first, or use one Repo object"
        elif isinstance(holder, int):
            who, fix = f"another dbvers process (pid {holder})", "try again when it finishes"
        else:
            who, fix = "another dbvers process", "try again when it finishes"
        super().__init__(f"repository is busy: {lock_path} is locked by {who} "
                         f"(waited {waited:.0f}s); {fix}")


class LockFileError(DbversError):
    """The store's lock file can't be used (it is a directory, or the file system refuses)."""

    def __init__(self, lock_path: str, why: str) -> None:
        self.lock_path = lock_path
        super().__init__(f"cannot lock the repository: {lock_path} {why}; "
                         f"remove it (no dbvers command may be running) and try again")


class ReadOnlyStoreError(DbversError):
    """A command that writes the store ran against a store this process can't write."""

    def __init__(self, store: str) -> None:
        self.store = store
        super().__init__(f"the store {store} is read-only; read-only commands (status, diff, log, "
                         "show, fsck) work, to change it make it writable or use a copy")


class CheckoutJournalError(DbversError):
    """``.dbvers/CHECKOUT`` (the journal of an interrupted checkout) can't be used."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"the checkout journal {path} is damaged ({why}); check 'dbvers status' "
                         f"and 'dbvers fsck', then delete {path} to continue")


class DatabaseLockedError(DbversError):
    """The working database stayed locked for the whole timeout.

    *holder*: ``"process"`` (a connection of this very process, such as the
    notebook's own), another process's pid, or None (unknown).
    """

    def __init__(self, path: str, waited: float, holder: str | int | None = None) -> None:
        self.path = path
        self.waited = waited
        self.holder = holder
        if holder == "process":
            super().__init__(
                f"database {path} is locked by this process: one of its own connections holds a "
                f"transaction (waited {waited:.0f}s); commit or roll it back and try again"
            )
            return
        pid = f" (pid {holder})" if isinstance(holder, int) else ""
        super().__init__(
            f"database {path} is locked by another process{pid} (waited {waited:.0f}s); "
            "finish or close the other writer and try again"
        )


class CorruptDatabaseError(DbversError):
    """The working database itself is damaged (SQLite reports a malformed page)."""

    def __init__(self, path: str, detail: str, fix: str = "") -> None:
        self.path = path
        fix = fix or ("run 'dbvers restore --force' to replace it with HEAD's state (losing uncommitted "
                      "changes), or repair it with sqlite3's .recover")
        super().__init__(f"{path} is corrupt ({detail}); nothing was changed: {fix}")


class CorruptObjectError(DbversError):
    def __init__(self, object_id: str, detail: str) -> None:
        self.object_id = object_id
        super().__init__(
            f"object {object_id[:12]} is corrupt ({detail}); "
            "run 'dbvers fsck' and restore the store from a backup"
        )


class MissingObjectError(CorruptObjectError):
    def __init__(self, object_id: str) -> None:
        DbversError.__init__(
            self,
            f"object {object_id[:12]} is missing from the store; "
            "run 'dbvers fsck' and restore the store from a backup",
        )
        self.object_id = object_id


class HistoryDamagedError(DbversError):
    """A ref, HEAD, reflog line or commit of the history can't be read or resolved.

    Raised by operations that must see the whole history to be safe (``gc``
    deletes what it cannot see), before they change anything.
    """

    def __init__(self, action: str, problems: list[str]) -> None:
        self.action = action
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"the history is damaged: {problems[0]}{more}; {action} refused and nothing was changed; "
            "run 'dbvers fsck' and repair or restore the store from a backup"
        )


class TableNotFoundError(DbversError):
    def __init__(self, table: str, at: str) -> None:
        self.table = table
        self.at = at
        super().__init__(f"no table '{table}' at {at}")


class StorageError(DbversError):
    """The file system refused: disk full, permission denied, read-only."""

    def __init__(self, path: str, err: OSError) -> None:
        self.path = path
        self.errno = err.errno
        super().__init__(f"cannot write {path}: {err.strerror or err}; nothing was changed")


class DatabaseFullError(StorageError):
    """SQLite ran out of disk space (SQLITE_FULL) while copying into or out of the working database."""

    def __init__(self, path: str, detail: str) -> None:
        import errno

        self.path = path
        self.errno = errno.ENOSPC
        DbversError.__init__(self, f"cannot write {path}: {detail}; free some disk space and try again; "
                                   "nothing was changed")


class BackupError(DbversError):
    """A backup could not be made, checked or restored; nothing was changed."""


class BackupIOError(BackupError):
    """The file system refused while writing a backup or restoring one (disk full, permissions)."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"cannot write {path}: {detail}; nothing was changed")


class BackupValidationError(BackupError):
    """An archive is damaged, tampered with, incomplete or hostile."""

    def __init__(self, archive: str, detail: str, member: str | None = None) -> None:
        self.archive = archive
        self.member = member
        self.detail = detail
        super().__init__(f"backup {archive} is not usable: {detail}; nothing was restored")


class BackupSchemaError(BackupError):
    """The archive's format, or the database's user_version, is not what the restore expects."""


class BackupLockError(BackupError):
    def __init__(self, path: str, waited: float) -> None:
        self.path = path
        self.waited = waited
        super().__init__(
            f"database is locked by another process: {path} (waited {waited:.0f}s); "
            "finish or close the other writer and try again"
        )



class RemoteError(DbversError):
    """A remote (a directory or an S3 bucket) refused or could not be used; *url* names it."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"remote {url}: {detail}")


class RemoteUrlError(UsageError):
    """A remote URL that names no backend dbvers has."""

    def __init__(self, url: str, why: str) -> None:
        self.url = url
        self.why = why
        super().__init__(f"cannot use {url!r} as a remote: {why}; "
                         "use s3://bucket/prefix, a directory path or file:///path")


class RemoteNotFoundError(RemoteError):
    """Nothing dbvers can use at the URL: no remote marker, a missing bucket, a folder of other files."""


class RemoteFormatError(RemoteError):
    """The remote's format marker is unreadable or newer than this dbvers reads."""


class RemoteAccessError(RemoteError):
    """Credentials are missing or refused (dbvers never stores any: the usual AWS chain applies)."""


class RemoteUnreachableError(RemoteError):
    """The endpoint kept failing (network errors, 5xx) through every retry."""

    def __init__(self, url: str, reason: str, attempts: int) -> None:
        self.reason = reason
        self.attempts = attempts
        super().__init__(url, f"unreachable after {attempts} attempts ({reason}); "
                              "check the endpoint, the network and the region, then try again")


class ConditionalWritesUnsupportedError(RemoteError):
    """The endpoint ignores If-None-Match / If-Match, so refs could not move by compare-and-swap."""

    def __init__(self, url: str, which: str) -> None:
        self.which = which
        super().__init__(url, f"the endpoint ignores conditional writes ({which}), so concurrent pushes "
                              "could overwrite each other; use an S3 service that supports them")


class MissingDependencyError(DbversError):
    """An optional package a feature needs is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"{package} is not installed; install it with: pip install 'dbvers[{extra}]'")

# -- the one boundary: foreign exceptions as DbversErrors -------------------------------
#
# DbversError
#  ├─ ... (the classes above: raised on purpose, where the cause is known)
#  └─ raised by translate() at the boundary (cli.main, the magics), for exceptions
#     that come from below dbvers (the OS, SQLite, the codecs) and mean the same
#     thing whatever dbvers was doing:
#     ├─ DiskFullError        the disk or a quota is full
#     ├─ FileSystemError      the OS refused a file operation (by errno)
#     ├─ DamagedFileError     SQLite or a codec found a damaged file
#     ├─ SQLiteRefusedError   SQLite refused for another reason (read-only, locked, I/O error)
#     ├─ UndecodableTextError bytes that are not UTF-8 where text was expected
#     ├─ OutOfMemoryError     the process ran out of memory
#     └─ InternalError        anything else: a bug in dbvers (exit 3)


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
        what = err.strerror or str(err)
        super().__init__(f"{what}: {path}; {hint}" if path else f"{what}; {hint}")


class DamagedFileError(DbversError):
    """SQLite, a codec or a decoder found bytes that are not what they should be."""

    def __init__(self, detail: str, hint: str = "") -> None:
        self.detail = detail
        super().__init__(
            f"{detail}; "
            + (hint or "run 'dbvers fsck' to check the store, and 'dbvers restore --force' to put "
                       "HEAD back into a damaged working database")
        )


class SQLiteRefusedError(DbversError):
    """SQLite refused an operation for a reason outside dbvers (read-only file, lock, I/O error)."""

    def __init__(self, detail: str, hint: str) -> None:
        self.detail = detail
        super().__init__(f"{detail}; {hint}")


class UndecodableTextError(DbversError):
    def __init__(self, exc: UnicodeDecodeError) -> None:
        self.reason = exc.reason
        super().__init__(
            f"found bytes that are not valid UTF-8 ({exc.reason} at byte {exc.start}); if a file in the "
            "store (HEAD, a ref, the config) holds them, 'dbvers fsck' names it: restore it from a backup"
        )


class OutOfMemoryError(DbversError):
    def __init__(self) -> None:
        super().__init__("out of memory; close other programs, or ask for less (e.g. diff --limit N) and try again")


class InternalError(DbversError):
    """An exception no one expected: a bug. Exit code 3 tells scripts it is not a user error."""

    exit_code = 3

    def __init__(self, exc: BaseException) -> None:
        self.original = exc
        msg = " ".join(str(exc).split())[:300]  # one line, whatever the exception said
        super().__init__(
            f"internal error: {type(exc).__name__}: {msg} "
            "(please report it; run with DBVERS_DEBUG=1 for the traceback)"
        )


def debug_enabled() -> bool:
    """``DBVERS_DEBUG=1``: let unexpected exceptions through with their traceback."""
    import os

    return os.environ.get("DBVERS_DEBUG", "") not in ("", "0")


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
