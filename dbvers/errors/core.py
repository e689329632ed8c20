"""The core of the exception tree: the base class, usage, repository, refs, locks, objects, storage.

L0, part of the one exception tree drawn in ``dbvers.errors`` (import from there).
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
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{path} is not a SQLite database{extra}")


class UndecodableSchemaError(DbversError):
    """A name or SQL text in ``sqlite_schema`` that isn't UTF-8 (no statement can name it)."""
    def __init__(self, kind: str, name: str, part: str) -> None:  # name: surrogate escapes for bad bytes
        self.kind, self.name, self.part = kind, name, part
        super().__init__(f"{kind} '{name}' has {'a name' if part == 'name' else 'SQL'} that is not valid UTF-8, "
                         "which dbvers can't put in a statement: rename or recreate it with UTF-8 text")


class RepositoryNotFoundError(DbversError):
    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(f"no dbvers repository found at or above {where}; "
                         "run 'dbvers init DB' or pass --db PATH")


class RepositoryExistsError(DbversError):
    def __init__(self, store: str, tracked: str) -> None:
        self.store = store
        self.tracked = tracked
        super().__init__(f"{store} already tracks {tracked}; "
                         "use --store DIR to keep a second database's history elsewhere")


class UnsupportedFormatError(DbversError):
    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(f"this store has format {found} but this dbvers reads up to {supported}; "
                         "upgrade dbvers")


class ConfigValueError(DbversError):
    """A setting in ``.dbvers/config`` (or its environment override) has a value dbvers can't use."""
    def __init__(self, path: str, section: str, key: str, value: str, allowed: str) -> None:
        self.path = path
        self.section = section
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{path}: [{section}] {key} = {value!r} is not valid; it must be {allowed}")


class ConfigUnreadableError(DbversError):
    """``.dbvers/config`` can't be parsed or read (*reason*: the parser's or the OS's first line)."""
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is unreadable ({reason}); repair or restore it")


class BadExpiryError(UsageError):
    """A time for ``--expire``, ``--expire-unreachable`` or ``--prune`` that dbvers can't read."""
    def __init__(self, option: str, value: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"{option} {value!r} is not a time; use now, never, a number of days (30, 30.days, "
                         "2.weeks.ago) or an ISO date (2024-01-31)")


class UnknownRefError(DbversError):
    def __init__(self, ref: str, detail: str = "") -> None:
        self.ref = ref
        self.detail = detail
        super().__init__(detail or f"unknown revision '{ref}'; see 'dbvers log' or 'dbvers branch'")


class AmbiguousRefError(UnknownRefError):
    def __init__(self, ref: str, candidates: list[str]) -> None:
        self.candidates = candidates
        super().__init__(ref,
                         f"short id '{ref}' is ambiguous ({', '.join(c[:12] for c in candidates[:5])}); "
                         "give more characters")


class InvalidRefNameError(DbversError):
    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        # The name is shown escaped and cut: a newline or a 10 kB name must not break the one-line message.
        shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
        shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in shown)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"'{shown}' is not a valid name: {why}")


class DamagedRefError(DbversError):
    """A ref or HEAD file exists but can't be used (only a missing ref is an unborn branch)."""
    def __init__(self, ref: str, path: str, detail: str) -> None:
        self.ref = ref
        self.path = path
        self.detail = detail
        fix = ("'dbvers checkout --force BRANCH' (drops uncommitted changes) or write "
               "'ref: refs/heads/main' into that file" if ref == "HEAD"
               else f"write a commit id into that file (logs/{ref} lists the ones it held) or delete it")
        super().__init__(f"{ref} is damaged: {detail} ({path}); run 'dbvers fsck', then {fix}, "
                         "or restore the store from a backup")


class RefPathConflictError(DbversError):
    """A ref can't be created because a file or folder of the store is where it would go."""
    def __init__(self, ref: str, blocking: str) -> None:
        self.ref = ref
        self.blocking = blocking
        super().__init__(f"cannot create {ref}: {blocking} is in the way (a name cannot be both a ref and a "
                         "folder of refs, like 'a' and 'a/b'); choose another name")


class UnfinishedMoveError(DbversError):
    """The working database was changed, but a ref move after it failed (recorded; finished later)."""
    def __init__(self, commit: str, path: str, reason: str) -> None:
        self.commit = commit
        self.path = path
        self.reason = reason
        super().__init__(f"the working database now holds {commit[:10]} but {path} could not be written ({reason}); "
                         "fix that and run 'dbvers status' to finish moving HEAD")


class RefExistsError(DbversError):
    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        super().__init__(f"a {kind} named '{name}' already exists")


class RefConflictError(DbversError):
    """A compare-and-swap on a ref lost: someone moved it meanwhile."""
    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"{ref} was moved by another process; run the command again")


class DirtyWorkingDatabaseError(DbversError):
    def __init__(self, tables: list[str], action: str = "checkout", *, force: bool = True) -> None:
        self.tables = tables
        self.action = action
        names = ", ".join(tables[:10]) + (" ..." if len(tables) > 10 else "")
        fix = "commit them, or pass --force to discard them" if force else \
            "commit them, or discard them with 'dbvers restore --force'"
        super().__init__(f"uncommitted changes in {names} would be lost by {action}; {fix}")


class NothingToCommitError(DbversError):
    def __init__(self) -> None:
        super().__init__("nothing to commit, working database matches HEAD (use --allow-empty)")


class RepositoryBusyError(DbversError):
    """The store's lock stayed held; *holder*: ``"thread"`` (same Repo), ``"process"``, a pid, or None."""
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
        self.why = why
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
    """The working database stayed locked; *holder*: ``"process"`` (this one's own connection), a pid, or None."""
    def __init__(self, path: str, waited: float, holder: str | int | None = None) -> None:
        self.path = path
        self.waited = waited
        self.holder = holder
        if holder == "process":
            super().__init__(f"database {path} is locked by this process: one of its own connections holds a "
                             f"transaction (waited {waited:.0f}s); commit or roll it back and try again")
            return
        pid = f" (pid {holder})" if isinstance(holder, int) else ""
        super().__init__(f"database {path} is locked by another process{pid} (waited {waited:.0f}s); "
                         "finish or close the other writer and try again")


class DatabaseOpenError(DbversError):
    """SQLite refused to open a database dbvers must replace (neither a lock nor damage)."""
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"cannot open {path}: {detail}")


class CorruptDatabaseError(DbversError):
    """The working database itself is damaged (SQLite reports a malformed page)."""
    def __init__(self, path: str, detail: str, fix: str = "") -> None:
        self.path = path
        self.detail = detail
        fix = fix or ("run 'dbvers restore --force' to replace it with HEAD's state (losing uncommitted "
                      "changes), or repair it with sqlite3's .recover")
        self.fix = fix
        super().__init__(f"{path} is corrupt ({detail}); nothing was changed: {fix}")


class IntegrityError(DbversError):
    """A database fails ``PRAGMA integrity_check``; *what* names it, *problems* are SQLite's lines."""
    def __init__(self, what: str, problems: list[str]) -> None:
        self.what = what
        self.problems = problems
        super().__init__(f"{what} fails PRAGMA integrity_check ({problems[0][:100]}); "
                         "repair it (e.g. sqlite3 .recover) before committing")


class CorruptObjectError(DbversError):
    def __init__(self, object_id: str, detail: str) -> None:
        self.object_id = object_id
        self.detail = detail
        super().__init__(f"object {object_id[:12]} is corrupt ({detail}); "
                         "run 'dbvers fsck' and restore the store from a backup")


class MissingObjectError(CorruptObjectError):
    def __init__(self, object_id: str) -> None:
        DbversError.__init__(self,
                             f"object {object_id[:12]} is missing from the store; "
                             "run 'dbvers fsck' and restore the store from a backup")
        self.object_id = object_id
        self.detail = "missing"


class HistoryDamagedError(DbversError):
    """Part of the history can't be read, and the operation (``gc``) must see all of it to be safe."""
    def __init__(self, action: str, problems: list[str]) -> None:
        self.action = action
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"the history is damaged: {problems[0]}{more}; {action} refused and nothing was changed; "
                         "run 'dbvers fsck' and repair or restore the store from a backup")


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
        self.detail = err.strerror or str(err)
        super().__init__(f"cannot write {path}: {self.detail}; nothing was changed")


class DatabaseFullError(StorageError):
    """SQLite ran out of disk space (SQLITE_FULL) while copying into or out of the working database."""
    def __init__(self, path: str, detail: str) -> None:
        import errno

        self.path = path
        self.errno = errno.ENOSPC
        self.detail = detail
        DbversError.__init__(self, f"cannot write {path}: {detail}; free some disk space and try again; "
                                   "nothing was changed")


class MissingDependencyError(DbversError):
    """An optional package a feature needs is not installed."""
    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"{package} is not installed; install it with: pip install 'dbvers[{extra}]'")
