"""One exception tree for everything dbvers reports to a user (L0: imports nothing from dbvers).

Every error a user can cause is a :class:`DbversError`; the CLI and the magics print its message
as one line (what happened, what to do) and exit 2. Each class keeps the data that explains it as
attributes (the ref that was unknown, the tables that are dirty, ...): callers act on those fields
and never parse a message. ``tests/test_error_tree.py`` holds this drawing to the classes.

DbversError
├── UsageError                  the command line or the call itself is wrong
│   ├── BadExpiryError          a time for --expire/--prune that can't be read
│   ├── RemoteUrlError          a remote URL that names no backend
│   ├── UnknownRemoteError      a remote name the config doesn't list
│   ├── RemoteExistsError
│   └── NoUpstreamError         push/pull on a detached HEAD, or a branch with no upstream
├── NotADatabaseError           the tracked file is not SQLite
├── UndecodableSchemaError      a name or SQL in sqlite_schema that isn't UTF-8
├── RepositoryNotFoundError
├── RepositoryExistsError
├── UnsupportedFormatError      a store written by a newer dbvers
├── ConfigValueError            a setting with a value dbvers can't use
├── ConfigUnreadableError       .dbvers/config can't be parsed or read
├── UnknownRefError             a revision that names nothing
│   └── AmbiguousRefError       a short id with several matches
├── InvalidRefNameError
├── DamagedRefError             a ref or HEAD file that exists but can't be used
├── RefPathConflictError        a ref where a folder of refs is (or the reverse)
├── UnfinishedMoveError         the working database moved, the ref move after it failed
├── RefExistsError
├── RefConflictError            a ref compare-and-swap lost
├── DirtyWorkingDatabaseError   uncommitted changes an operation would lose
├── NothingToCommitError
├── RepositoryBusyError         the store's lock stayed held
├── LockFileError               the store's lock file can't be used
├── ReadOnlyStoreError
├── CheckoutJournalError        the journal of an interrupted checkout is damaged
├── DatabaseLockedError         the working database stayed locked
├── DatabaseOpenError           SQLite can't open a database dbvers must replace
├── CorruptDatabaseError        SQLite reports the working database malformed
├── IntegrityError              a database fails PRAGMA integrity_check
├── CorruptObjectError          an object whose bytes don't match its id
│   └── MissingObjectError
├── HistoryDamagedError         refs, reflogs or commits gc/fsck can't read
├── TableNotFoundError
├── MergeSchemaError            the two sides' schemas can't be combined; nothing changed
├── MergeInProgressError        a merge, revert or cherry-pick is in progress
├── NoMergeInProgressError      --continue, --abort or resolve with nothing in progress
├── ConflictsRemainError        --continue while conflicting rows are left
├── UnrelatedHistoriesError     a merge of histories with no common ancestor
├── EmptyChangeError            a revert or cherry-pick that would change nothing
├── RowsRefusedError            rows written into the working database broke a constraint
├── StorageError                the file system refused a write
│   └── DatabaseFullError       SQLITE_FULL while copying the working database
├── BackupError                 a backup could not be made, checked or restored
│   ├── BackupIOError           (also a StorageError)
│   ├── BackupValidationError   an archive is damaged, tampered with or hostile
│   ├── BackupSchemaError
│   └── BackupLockError         (also a DatabaseLockedError)
├── RemoteError                 a remote (directory, S3 bucket) refused or can't be used
│   ├── RemoteNotFoundError     no remote marker, no bucket
│   ├── RemoteFormatError       a marker unreadable or newer than this dbvers
│   ├── RemoteDamagedError      a ref or object read from the remote is damaged or missing
│   ├── FetchInterruptedError   what a fetch relied on kept being removed (a gc beside it)
│   ├── FetchRejectedError      a fetch moved what it could; some refs were rejected
│   ├── RemoteAccessError       credentials missing or refused
│   ├── RemoteUnreachableError  network errors or 5xx through every retry
│   ├── ConditionalWritesUnsupportedError  the endpoint ignores If-None-Match/If-Match
│   └── PushRejectedError       the remote moved, or a push would drop its commits
├── MissingDependencyError      an optional package a feature needs is not installed
│   (raised only by dbvers.boundary.translate(), for exceptions from below dbvers that
│    mean the same whatever dbvers was doing:)
├── DiskFullError               the disk or a quota is full
├── FileSystemError             the OS refused a file operation (by errno)
├── DamagedFileError            SQLite or a codec found a damaged file
├── SQLiteRefusedError          SQLite refused for another reason (read-only, locked, I/O)
├── UndecodableTextError        bytes that are not UTF-8 where text was expected
├── OutOfMemoryError
└── InternalError               anything else: a bug in dbvers (exit 3)
"""


from __future__ import annotations

from .backup import (
    BackupError,
    BackupIOError,
    BackupLockError,
    BackupSchemaError,
    BackupValidationError,
)
from .core import (
    AmbiguousRefError,
    BadExpiryError,
    CheckoutJournalError,
    ConfigUnreadableError,
    ConfigValueError,
    CorruptDatabaseError,
    CorruptObjectError,
    DamagedRefError,
    DatabaseFullError,
    DatabaseLockedError,
    DatabaseOpenError,
    DbversError,
    DirtyWorkingDatabaseError,
    HistoryDamagedError,
    IntegrityError,
    InvalidRefNameError,
    LockFileError,
    MissingDependencyError,
    MissingObjectError,
    NotADatabaseError,
    NothingToCommitError,
    ReadOnlyStoreError,
    RefConflictError,
    RefExistsError,
    RefPathConflictError,
    RepositoryBusyError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    StorageError,
    TableNotFoundError,
    UndecodableSchemaError,
    UnfinishedMoveError,
    UnknownRefError,
    UnsupportedFormatError,
    UsageError,
)
from .merge import (
    ConflictsRemainError,
    EmptyChangeError,
    MergeInProgressError,
    MergeSchemaError,
    NoMergeInProgressError,
    RowsRefusedError,
    UnrelatedHistoriesError,
)
from .remote import (
    ConditionalWritesUnsupportedError,
    FetchInterruptedError,
    FetchRejectedError,
    NoUpstreamError,
    PushRejectedError,
    RemoteAccessError,
    RemoteDamagedError,
    RemoteError,
    RemoteExistsError,
    RemoteFormatError,
    RemoteNotFoundError,
    RemoteUnreachableError,
    RemoteUrlError,
    UnknownRemoteError,
)
from .system import (
    DamagedFileError,
    DiskFullError,
    FileSystemError,
    InternalError,
    OutOfMemoryError,
    SQLiteRefusedError,
    UndecodableTextError,
    debug_enabled,
)

__all__ = [
    "AmbiguousRefError",
    "BackupError",
    "BackupIOError",
    "BackupLockError",
    "BackupSchemaError",
    "BackupValidationError",
    "BadExpiryError",
    "CheckoutJournalError",
    "ConditionalWritesUnsupportedError",
    "ConfigUnreadableError",
    "ConfigValueError",
    "ConflictsRemainError",
    "CorruptDatabaseError",
    "CorruptObjectError",
    "DamagedFileError",
    "DamagedRefError",
    "DatabaseFullError",
    "DatabaseLockedError",
    "DatabaseOpenError",
    "DbversError",
    "DirtyWorkingDatabaseError",
    "DiskFullError",
    "EmptyChangeError",
    "FetchInterruptedError",
    "FetchRejectedError",
    "FileSystemError",
    "HistoryDamagedError",
    "IntegrityError",
    "InternalError",
    "InvalidRefNameError",
    "LockFileError",
    "MergeInProgressError",
    "MergeSchemaError",
    "MissingDependencyError",
    "MissingObjectError",
    "NoMergeInProgressError",
    "NoUpstreamError",
    "NotADatabaseError",
    "NothingToCommitError",
    "OutOfMemoryError",
    "PushRejectedError",
    "ReadOnlyStoreError",
    "RefConflictError",
    "RefExistsError",
    "RefPathConflictError",
    "RemoteAccessError",
    "RemoteDamagedError",
    "RemoteError",
    "RemoteExistsError",
    "RemoteFormatError",
    "RemoteNotFoundError",
    "RemoteUnreachableError",
    "RemoteUrlError",
    "RepositoryBusyError",
    "RepositoryExistsError",
    "RepositoryNotFoundError",
    "RowsRefusedError",
    "SQLiteRefusedError",
    "StorageError",
    "TableNotFoundError",
    "UndecodableSchemaError",
    "UndecodableTextError",
    "UnfinishedMoveError",
    "UnknownRefError",
    "UnknownRemoteError",
    "UnrelatedHistoriesError",
    "UnsupportedFormatError",
    "UsageError",
    "debug_enabled",
]
