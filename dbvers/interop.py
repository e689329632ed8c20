"""A user's ``sqlite3.Connection`` as the source or target of a state: ``Repo.export_to``/``import_from``.

L3. The two-library rule (DESIGN.md section 2) holds: a state goes through a
private file that only the standard library's sqlite3 opens (in :mod:`dbvers.sqlio`),
never through a handle passed between apsw and sqlite3, and large databases stream
page by page instead of passing through memory.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import snapshots, sqlio
from .config import lock_timeout
from .errors import BackupError, BackupIOError, BackupLockError, DatabaseLockedError, UsageError
from .fsutil import temp_path

if TYPE_CHECKING:
    from .repo import Repo


def _user_conn(conn: Any, action: str) -> str:
    """Check a user's connection; return its main database file ('' for in-memory)."""
    if not isinstance(conn, sqlite3.Connection):
        raise UsageError(f"{action} needs a sqlite3.Connection, not {type(conn).__name__} "
                         "(for another library, give dbvers a database file instead)")
    try:
        if conn.in_transaction:
            raise BackupError(f"the sqlite3.Connection has an open transaction; commit or roll it back "
                              f"before {action}")
        return sqlio.connection_file(conn)
    except sqlite3.ProgrammingError as e:
        raise BackupError(f"the sqlite3.Connection cannot be used here: {e}") from None


def _same_file(a: str, b: Path) -> bool:
    return bool(a) and Path(a).resolve() == b.resolve()


def _sqlite3_error(e: sqlite3.Error, what: str, path: str) -> BackupError:
    if sqlio.is_busy(e):
        return BackupLockError(path or "(the connection's database)", 0.0)
    return BackupError(f"{what}: {e}")


def export_to(repo: Repo, conn: sqlite3.Connection, at: str = "HEAD") -> str:
    """Write the state of *at* into *conn*'s main database (replacing it, one transaction)."""
    main = _user_conn(conn, "export_to")
    if _same_file(main, repo.path):
        raise UsageError("this connection is the working database; use checkout to change it")
    with repo.locked():
        oid = repo.resolve(at)
        src = repo.materialize(oid)
        tmp = temp_path(repo.cache_dir, ".db")
        try:
            shutil.copyfile(src, tmp)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise BackupIOError.from_os_error(tmp, e) from None
    try:
        sqlio.copy_file_to_connection(tmp, conn, in_memory=not main)
    except sqlite3.Error as e:
        raise _sqlite3_error(e, "could not write into the connection", main) from None
    except OSError as e:
        raise BackupIOError.from_os_error(tmp, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    return oid


def import_from(repo: Repo, conn: sqlite3.Connection) -> None:
    """Make the working database a copy of *conn*'s main database (one transaction; not committed)."""
    main = _user_conn(conn, "import_from")
    if _same_file(main, repo.path):
        raise UsageError("this connection is the working database already")
    with repo.locked():
        repo.cache_dir.mkdir(exist_ok=True)
        tmp = temp_path(repo.cache_dir, ".db")
        try:
            # copy_in gives the state the working file's page size and auto_vacuum.
            sqlio.copy_connection_to_file(conn, tmp)
            if problems := snapshots.file_problems(tmp, quick=True):
                raise BackupError(f"the connection's database fails quick_check ({problems[0][:100]}); "
                                  "nothing was imported")
            repo.worktree.forget_clean()
            sqlio.copy_in(tmp, repo.path, lock_timeout(repo.config))
        except sqlite3.Error as e:
            raise _sqlite3_error(e, "could not read the connection's database", main) from None
        except DatabaseLockedError as e:
            raise BackupLockError(e.path, e.waited) from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise BackupIOError.from_os_error(tmp, e) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
