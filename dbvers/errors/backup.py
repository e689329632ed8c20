"""Errors of backups and restores.

L0, part of the one exception tree drawn in ``dbvers.errors`` (import from there).
"""

from __future__ import annotations

from .core import DatabaseLockedError, DbversError, StorageError


class BackupError(DbversError):
    """A backup could not be made, checked or restored; nothing was changed."""


class BackupIOError(BackupError, StorageError):
    """The file system refused while writing or restoring a backup; a :class:`StorageError` too."""
    def __init__(self, path: str, detail: str, errno: int | None = None) -> None:
        self.path = path
        self.detail = detail
        self.errno = errno
        DbversError.__init__(self, f"cannot write {path}: {detail}; nothing was changed")

    @classmethod
    def from_os_error(cls, path: object, e: OSError) -> BackupIOError:
        """The error for *e*, naming the file the OS named (else *path*)."""
        return cls(str(getattr(e, "filename", None) or path), e.strerror or str(e), e.errno)


class BackupValidationError(BackupError):
    """An archive is damaged, tampered with, incomplete or hostile."""
    def __init__(self, archive: str, detail: str, member: str | None = None) -> None:
        self.archive = archive
        self.member = member
        self.detail = detail
        super().__init__(f"backup {archive} is not usable: {detail}; nothing was restored")


class BackupSchemaError(BackupError):
    """The archive's format, or the database's user_version, is not what the restore expects."""


class BackupLockError(BackupError, DatabaseLockedError):
    """A database a backup or restore needs stayed locked; a :class:`DatabaseLockedError` too."""
    def __init__(self, path: str, waited: float, holder: str | int | None = None) -> None:
        self.path = path
        self.waited = waited
        self.holder = holder
        DbversError.__init__(self,
                             f"database is locked by another process: {path} (waited {waited:.0f}s); "
                             "finish or close the other writer and try again")
