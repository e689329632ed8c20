"""The two-library boundary: the only code that opens the user's working database.

apsw and the standard library's ``sqlite3`` each bundle their own SQLite. Two
SQLite libraries must never have the same file open in one process (each one's
``close()`` drops the other's POSIX locks), so the working database is opened
here, with ``sqlite3`` only, and only to copy a consistent state out of it or a
verified state into it, both through SQLite's online backup API. apsw works on
dbvers's private files alone; those are never open in ``sqlite3`` and apsw at
the same time.

Besides those connections, the working database's bytes are read (header fields
for fingerprints and checks) only through descriptors this module never closes,
because closing any descriptor of a file drops this process's POSIX locks on it,
the locks of the user's own open ``sqlite3`` transaction included.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import (
    CorruptDatabaseError,
    DatabaseFullError,
    DatabaseLockedError,
    DatabaseOpenError,
    NotADatabaseError,
    RowsRefusedError,
    StorageError,
)
from .fsutil import sqlite_lock_holder

SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
_FULL_CODE = 13  # SQLITE_FULL
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_HEADER = 32
_WAL_FRAME_HEADER = 24

# -- raw header reads without ever closing a descriptor --------------------------------------
#
# POSIX drops every fcntl lock a process holds on a file when the process closes ANY
# descriptor of that file, so a plain open()/close() of the working database would release
# the locks of the user's own sqlite3 connection in this process (the notebook case) and let
# another process write "under" it. SQLite's SQL surface has no way to read the header's file
# change counter or the WAL header's salts (data_version is per connection, schema_version
# only moves with the schema, and this sqlite3 lacks sqlite_dbpage), so header bytes are read
# with pread() on a descriptor that is opened once per inode and never closed: nothing here
# can release a lock. The only exception is a WAL file that has been unlinked: SQLite never
# takes POSIX locks on a WAL (it opens every file but the main database without locking) and
# an unlinked file cannot be opened again, so its descriptor is closed to keep a notebook
# that recreates its WAL every cell from accumulating descriptors and deleted files.
_pins_lock = threading.Lock()
_pinned: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) -> read-only descriptor, never closed
_wal_pins: dict[tuple[int, int], int] = {}  # the same for WAL files, closed once unlinked


def _pinned_fd(path: Path | str, *, wal: bool = False) -> tuple[int, os.stat_result]:
    """A never-closed read-only descriptor of the file at *path* now, and its stat."""
    st = os.stat(path)
    table = _wal_pins if wal else _pinned
    with _pins_lock:
        fd = table.get((st.st_dev, st.st_ino))
        if fd is not None:
            return fd, st
        if wal:
            _prune_unlinked_wals()
        # O_NONBLOCK: a FIFO given as the database must not hang the open (no effect on files).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        st = os.fstat(fd)  # the file may have been replaced since the stat above
        key = (st.st_dev, st.st_ino)
        if key in table:
            # Another name for an inode already pinned: this descriptor has to stay open too
            # (closing it would drop the locks), so it is kept under a key of its own.
            table[(st.st_dev, -fd)] = fd
        else:
            table[key] = fd
        return fd, st


def _prune_unlinked_wals() -> None:
    for key, fd in list(_wal_pins.items()):
        try:
            gone = os.fstat(fd).st_nlink == 0
        except OSError:
            gone = True
        if gone:
            del _wal_pins[key]
            with contextlib.suppress(OSError):
                os.close(fd)


def read_header(path: Path | str, size: int = 100) -> bytes:
    """The first *size* bytes of the working database (b"" for an empty file), lock-safely.

    Raises OSError when the file cannot be opened.
    """
    fd, _ = _pinned_fd(path)
    return os.pread(fd, size, 0)


def page_size_of(header: bytes) -> int:
    """The page size a database header records (4096 for an empty file)."""
    if len(header) < 18:
        return 4096
    n = int.from_bytes(header[16:18], "big")
    return 65536 if n == 1 else n


def check_database_file(path: Path) -> None:
    """Refuse anything that is not a SQLite database file (an empty file is a valid empty one)."""
    if not path.exists():
        raise NotADatabaseError(str(path), "no such file")
    if path.is_dir():
        raise NotADatabaseError(str(path), "it is a directory")
    try:
        head = read_header(path, len(SQLITE_MAGIC))
    except OSError as e:
        raise NotADatabaseError(str(path), e.strerror or str(e)) from None
    if head and head != SQLITE_MAGIC:
        raise NotADatabaseError(str(path), "wrong file header")


@contextlib.contextmanager
def _connect(path: Path, timeout: float) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def is_busy(e: sqlite3.Error) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the database."""
    code = getattr(e, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in _BUSY_CODES) or "locked" in str(e)


def _is_damage(e: sqlite3.Error) -> bool:
    """SQLITE_CORRUPT / SQLITE_NOTADB: the file itself is damaged."""
    code = getattr(e, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in (11, 26)) or "malformed" in str(e) or "not a database" in str(e)


def create_empty(path: Path) -> None:
    """Create a new, empty SQLite database at *path* (for ``init`` of a path that doesn't exist)."""
    with _connect(path, 5.0) as conn:
        conn.execute("PRAGMA user_version = 0")
        conn.execute("VACUUM")


def _error(e: sqlite3.DatabaseError, working: Path, written: Path, waited: float) -> Exception:
    """The DbversError for a sqlite3 error met while copying *working* (writing *written*)."""
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if is_busy(e):
        return DatabaseLockedError(str(working), waited, sqlite_lock_holder(working))
    if code == _FULL_CODE or "disk is full" in str(e):
        return DatabaseFullError(str(written), str(e))
    if "not a database" in str(e):
        return NotADatabaseError(str(working), str(e))
    if code in _CORRUPT_CODES or "malformed" in str(e):
        return CorruptDatabaseError(str(working), str(e))
    return e


def copy_out(working: Path, dest: Path, timeout: float) -> None:
    """Copy one consistent committed state of *working* into the private file *dest*.

    A read transaction is opened first, so the copy is one snapshot even while
    other processes write (in WAL mode they are not blocked at all); if a writer
    holds the database exclusively for longer than *timeout*, a clear error is
    raised instead of waiting forever.
    """
    check_database_file(working)
    start = time.monotonic()
    try:
        with _connect(working, timeout) as src, _connect(dest, timeout) as dst:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            src.backup(dst)
            src.execute("COMMIT")
            # A private copy must be one self-contained file, whatever the user's journal mode.
            dst.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.DatabaseError as e:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise _error(e, working, dest, time.monotonic() - start) from None
    except OSError as e:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise StorageError(str(dest), e) from e


def _layout(conn: sqlite3.Connection) -> tuple[int, int]:
    """What a database's pages look like: (page size, auto_vacuum mode)."""
    return (int(conn.execute("PRAGMA page_size").fetchone()[0]),
            int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rebuild_layout(path: Path, page_size: int, auto_vacuum: int | None = None) -> None:
    """Give the private file *path* another page size (and auto_vacuum mode), rows and rowids kept.

    VACUUM does the rebuild, but it renumbers the rowids of rowid tables without
    an INTEGER PRIMARY KEY (dbvers versions those rowids), so every table whose
    rowids VACUUM could have changed gets its rows put back at their old rowids,
    from the file as it was, with triggers out of the way.
    """
    import shutil

    from .fsutil import temp_path

    before = temp_path(path.parent, ".db")
    try:
        shutil.copyfile(path, before)
        with _connect(path, 30.0) as conn:
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
            if auto_vacuum is not None:
                conn.execute(f"PRAGMA auto_vacuum = {int(auto_vacuum)}")
            conn.execute("VACUUM")
            conn.execute("ATTACH ? AS old", (str(before),))
            fix: list[str] = []
            for name, kind, wr in conn.execute(
                    "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'old'").fetchall():
                if kind not in ("table", "shadow") or wr or name in ("sqlite_schema", "sqlite_temp_schema"):
                    continue
                rid = _rowid_name(conn, name)
                n, lo, hi = conn.execute(f"SELECT count(*), min({rid}), max({rid}) FROM old.{_quote(name)}"
                                         ).fetchone() if rid else (0, None, None)
                if n and (lo, hi) != (1, n):  # rowids 1..n in order are what VACUUM gives anyway
                    fix.append(name)
            if fix:
                conn.execute("BEGIN")
                with _triggers_dropped(conn):
                    for name in fix:
                        rid = _rowid_name(conn, name)
                        cols = [r[1] for r in conn.execute(f"PRAGMA old.table_xinfo({_quote(name)})") if r[6] == 0]
                        listed = ", ".join([str(rid), *map(_quote, cols)])
                        q = _quote(name)
                        conn.execute(f"DELETE FROM main.{q}")
                        conn.execute(f"INSERT INTO main.{q}({listed}) SELECT {listed} FROM old.{q}")
                conn.execute("COMMIT")
            conn.execute("DETACH old")
    finally:
        before.unlink(missing_ok=True)


@contextlib.contextmanager
def _triggers_dropped(conn: sqlite3.Connection, tables: Sequence[str] | None = None) -> Iterator[None]:
    """Inside a transaction: the triggers (of *tables*, else all) dropped while rows are put
    back, so none fires (this sqlite3 can't switch them off), then made again in their order."""
    triggers = [(t, sql) for t, tbl, sql in conn.execute(
        "SELECT name, tbl_name, sql FROM main.sqlite_schema WHERE type = 'trigger' ORDER BY rowid")
        if tables is None or tbl in tables]
    for t, _ in triggers:
        conn.execute(f"DROP TRIGGER main.{_quote(t)}")
    yield
    for _, sql in triggers:
        conn.execute(sql)


def recompute_generated(path: Path, tables: Sequence[str]) -> None:
    """Have this module's SQLite, the one the user's Python writes with, compute the STORED
    generated columns of *tables* in the private file *path* (a state whose rows an apsw replay
    wrote: apsw's newer SQLite spells a REAL as text with 17 digits where this one writes 15).

    An UPDATE that sets a column to itself makes SQLite compute a row's generated columns
    again; values, rowids and every other table stay as they are, and no trigger fires. A
    schema this SQLite can't read (made by a newer one) keeps apsw's values: the transaction
    is rolled back.
    """
    with contextlib.suppress(sqlite3.Error), _connect(path, 30.0) as conn:
        todo = []
        for name in tables:
            cols = conn.execute("SELECT name, hidden FROM pragma_table_xinfo(?)", (name,)).fetchall()
            if any(h == 3 for _, h in cols):
                todo.append((name, next(c for c, h in cols if h == 0)))
        if not todo:
            return
        conn.execute("BEGIN")
        with _triggers_dropped(conn, [name for name, _ in todo]):
            for name, col in todo:
                conn.execute(f"UPDATE main.{_quote(name)} SET {_quote(col)} = {_quote(col)}")
        conn.execute("COMMIT")


def _rowid_name(conn: sqlite3.Connection, table: str) -> str | None:
    """A name that means the rowid in *table* (None when its columns take all three)."""
    cols = {r[1].lower() for r in conn.execute(f"PRAGMA old.table_xinfo({_quote(table)})")}
    return next((n for n in ("_rowid_", "rowid", "oid") if n not in cols), None)


def _fitted(private: Path, layout: tuple[int, int], timeout: float) -> Path | None:
    """A temp copy of *private* rebuilt with *layout*, or None when it already has it."""
    import shutil

    from .fsutil import temp_path

    with _connect(private, timeout) as conn:
        if _layout(conn) == layout:
            return None
    tmp = temp_path(private.parent, ".db")
    try:
        shutil.copyfile(private, tmp)
        rebuild_layout(tmp, *layout)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def copy_in(private: Path, working: Path, timeout: float) -> None:
    """Replace the contents of *working* with the private file *private*, in one transaction.

    The backup API writes every page under one write transaction on *working*, so
    readers see either the old or the new state, and connections other code holds
    open see the new state on their next statement. Any error leaves *working*
    unchanged (the transaction never committed).

    How the working file stores its pages (page size, auto_vacuum, journal mode) is
    the file's own setting, not versioned data, and stays as it is: the backup API
    would copy the state's page size and auto_vacuum along with its pages, and
    cannot change the page size of a WAL database at all, so the state is first
    rebuilt privately with the working file's layout. The encoding, user_version
    and application_id are the state's.
    """
    try:
        check_database_file(working)
    except NotADatabaseError:
        # Missing or destroyed: nothing to preserve and no SQLite reader to keep
        # consistent, so put a whole new file in place atomically.
        _replace_file(private, working)
        return
    start = time.monotonic()

    def progress(status: int, remaining: int, total: int) -> None:
        if status in _BUSY_CODES and time.monotonic() - start > timeout:
            raise DatabaseLockedError(str(working), time.monotonic() - start)

    fitted: Path | None = None
    target = working
    try:
        with _connect(working, timeout) as dst:
            # (The backup API keeps a WAL destination in WAL mode by itself.)
            if int(dst.execute("PRAGMA page_count").fetchone()[0]) > 0:
                target = private.parent  # where a disk-full would come from now
                fitted = _fitted(private, _layout(dst), timeout)
                target = working
            with _connect(fitted or private, timeout) as src:
                src.backup(dst, pages=-1, progress=progress, sleep=0.05)
    except sqlite3.DatabaseError as e:
        if target == working and _is_damage(e) and not is_busy(e):
            # A truncated or page-corrupted file has no consistent state to keep for its
            # readers (and SQLite cannot write pages into it): the verified private state
            # replaces it as a whole, which is what restore --force is for.
            _replace_file(fitted or private, working)
            return
        raise _error(e, working, target, time.monotonic() - start) from None
    except DatabaseLockedError as e:
        # Raised by progress() while our own connection still held locks: ask who holds it now.
        raise DatabaseLockedError(e.path, e.waited, sqlite_lock_holder(working)) from None
    except OSError as e:
        raise StorageError(str(target), e) from e
    finally:
        if fitted is not None:
            fitted.unlink(missing_ok=True)


def _replace_file(private: Path, working: Path) -> None:
    from .fsutil import copy_atomic

    try:
        for suffix in ("-wal", "-shm", "-journal"):
            Path(str(working) + suffix).unlink(missing_ok=True)
        copy_atomic(private, working)
    except OSError as e:
        raise StorageError(str(working), e) from e


def _wal_state(wal: Path) -> list[int | str]:
    """What a WAL holds: its checkpoint sequence and salts, and how many frames carry them.

    The salts change whenever the WAL restarts from its beginning, and the frames
    written since then are the prefix of frames carrying the current salts (older
    frames hold older ones): a change that leaves the WAL's size and (coarse) mtime
    alone still changes this.
    """
    fd, st = _pinned_fd(wal, wal=True)
    head = os.pread(fd, _WAL_HEADER, 0)
    if len(head) < _WAL_HEADER or int.from_bytes(head[:4], "big") not in _WAL_MAGIC:
        return ["nowalheader"]
    page = int.from_bytes(head[8:12], "big")
    salts = head[16:24]
    frame = page + _WAL_FRAME_HEADER
    lo, hi = 0, max(0, (st.st_size - _WAL_HEADER) // frame) if page else 0
    while lo < hi:  # the number of leading frames with the current salts
        mid = (lo + hi + 1) // 2
        if os.pread(fd, 8, _WAL_HEADER + (mid - 1) * frame + 8) == salts:
            lo = mid
        else:
            hi = mid - 1
    return [int.from_bytes(head[12:16], "big"), salts.hex(), lo]


def fingerprint(path: Path) -> str | None:
    """A cheap key that changes whenever the working database's content can have changed.

    Inode, size and mtime (ns) of the file and of its WAL, SQLite's file change
    counter (header bytes 24-27, bumped by every write transaction in
    rollback-journal mode), and the WAL's checkpoint sequence, salts and frame
    count (see _wal_state). Like git's index stat data: equal fingerprints let
    status and checkout skip a full diff; any doubt means a real diff. Nothing is
    read through a descriptor that gets closed (see _pinned_fd).
    """
    try:
        fd, st = _pinned_fd(path)
        head = os.pread(fd, 100, 0)
    except OSError:
        return None
    parts: list[int | str] = [st.st_ino, st.st_size, st.st_mtime_ns,
                              int.from_bytes(head[24:28] or b"\0", "big"), head[18:20].hex()]
    wal = Path(str(path) + "-wal")
    try:
        wst = os.stat(wal)
        parts += [wst.st_ino, wst.st_size, wst.st_mtime_ns, *_wal_state(wal)]
    except FileNotFoundError:
        parts.append("nowal")
    except OSError:
        return None
    return ":".join(map(str, parts))


def write_rows(working: Path, table: str, columns: Sequence[str], key: Sequence[str],
               rows: Sequence[tuple[tuple[Any, ...], tuple[Any, ...] | None]], timeout: float) -> None:
    """Put rows into the working database in one transaction: each ``(key, row)`` replaces
    the row with that key (``row`` None: deletes it); with no key columns, rows are added.

    For ``resolve --theirs``: the values are exact (``values.param`` binds text that
    isn't UTF-8 as its bytes). A constraint the rows break is the user's error.
    """
    from .values import param

    t = _quote(table)
    start = time.monotonic()
    try:
        with _connect(working, timeout) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for k, row in rows:
                    if key:
                        parts, args = [], []
                        for c, v in zip(key, k, strict=True):
                            mark, value = param(v)
                            parts.append(f"{_quote(c)} = {mark}")
                            args.append(value)
                        conn.execute(f"DELETE FROM {t} WHERE {' AND '.join(parts)}", args)
                    if row is not None:
                        marks, values = zip(*(param(v) for v in row), strict=True)
                        conn.execute(f"INSERT INTO {t} ({', '.join(_quote(c) for c in columns)}) "
                                     f"VALUES ({', '.join(marks)})", list(values))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.IntegrityError as e:
        raise RowsRefusedError(table, str(e)) from None
    except sqlite3.DatabaseError as e:
        raise _error(e, working, working, time.monotonic() - start) from None
    except OSError as e:
        raise StorageError(str(working), e) from e


# -- databases other than the working one that a user hands dbvers ------------------------
# (a restore's target, a user's sqlite3.Connection): they are the user's files too, so they
# are opened here and only with the standard library's sqlite3.


def check_unlocked(path: Path, timeout: float) -> None:
    """Refuse a database another process holds open for writing (a write transaction).

    Takes and releases a write lock. Raises DatabaseLockedError (still held after
    *timeout*), NotADatabaseError, or DatabaseOpenError.
    """
    start = time.monotonic()
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise DatabaseLockedError(str(path), time.monotonic() - start) from None
        raise DatabaseOpenError(str(path), str(e)) from None
    except sqlite3.DatabaseError as e:
        raise NotADatabaseError(str(path), str(e)) from None
    finally:
        conn.close()


def user_version(path: Path, timeout: float) -> int | None:
    """``PRAGMA user_version`` of the database at *path*, read-only (None: it can't be read)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def connection_file(conn: sqlite3.Connection) -> str:
    """The main database file of a user's connection ('' for an in-memory one).

    Raises sqlite3.ProgrammingError for a closed connection.
    """
    rows = conn.execute("PRAGMA database_list").fetchall()
    return next((r[2] or "" for r in rows if r[1] == "main"), "")


def copy_file_to_connection(private: Path, conn: sqlite3.Connection, *, in_memory: bool) -> None:
    """Replace *conn*'s main database with the private file *private* (one backup-API transaction).

    The backup API cannot change the page size of an in-memory or WAL target, so
    *private* is first given the target's page size (a bare VACUUM would renumber the
    rowids of tables without an INTEGER PRIMARY KEY). Raises sqlite3.Error.
    """
    want = int(conn.execute("PRAGMA page_size").fetchone()[0])
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    with open(private, "rb") as f:  # dbvers's own file, not the user's
        have = page_size_of(f.read(20))
    if want != have and (in_memory or mode in ("wal", "memory")):
        rebuild_layout(private, want)
    with _connect(private, 5.0) as source:
        source.backup(conn)


def copy_connection_to_file(conn: sqlite3.Connection, private: Path) -> None:
    """Copy *conn*'s main database into the new private file *private* (rollback journal).

    Raises sqlite3.Error.
    """
    with _connect(private, 5.0) as dst:
        conn.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")
