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
        super().__init__(f"'{name}' is not a valid name: {why}")


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
    def __init__(self, lock_path: str, waited: float) -> None:
        self.lock_path = lock_path
        self.waited = waited
        super().__init__(
            f"repository is busy: another dbvers process has held {lock_path} "
            f"for {waited:.0f}s; try again when it finishes"
        )


class DatabaseLockedError(DbversError):
    def __init__(self, path: str, waited: float) -> None:
        self.path = path
        self.waited = waited
        super().__init__(
            f"database {path} is locked by another process (waited {waited:.0f}s); "
            "finish or close the other writer and try again"
        )


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
