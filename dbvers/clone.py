"""Clone: a new database file and store from a remote, checked out at its default branch (L3).

A clone is a fetch into a scratch store beside the new database, then the same
recoverable installation a restore onto a new machine uses
(:func:`dbvers.restore.install_store`): the store is renamed into place holding
the verified state and a journal, and the database goes in last. A clone killed at
any instant leaves nothing (a scratch directory the next run removes), or a store
whose next command — a rerun of the clone included — installs the database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import config
from .errors import DbversError, RemoteError, RepositoryExistsError, UnknownRefError, UsageError
from .formats import STORE_NAME
from .fsutil import make_store_skeleton, remove_stale_temps, temp_prefix, write_atomic
from .objects import FORMAT_VERSION
from .remotes.named import DEFAULT_REMOTE
from .remotes.urls import RemoteSpec, make_remote, parse_url
from .repo import Repo
from .restore import RESTORE_JOURNAL, install_store
from .storage.local import LocalObjectStore
from .storage.refnames import HEADS, REMOTES
from .sync import blame_remote, fetch
from .transfer import Progress

DB_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")


def default_db_name(spec: RemoteSpec) -> str:
    """The database file a clone of *spec* makes when none is named: the URL's last part."""
    last = (spec.prefix or spec.bucket).rstrip("/").rsplit("/", 1)[-1] if spec.kind == "s3" else \
        (spec.path.name if spec.path else "")
    last = last or "clone"
    return last if last.lower().endswith(DB_SUFFIXES) else f"{last}.db"


def _target(spec: RemoteSpec, db_path: str | os.PathLike[str] | None) -> Path:
    """The database file to make: DB_PATH, DB_PATH/<name> for a directory (``dir/``: a new one)."""
    target = Path(db_path).expanduser() if db_path else Path(default_db_name(spec))
    target = target.absolute()
    if not db_path and target.is_dir():  # the name from the URL is taken (by a folder)
        raise UsageError(f"{target} exists and is a directory; name the new database: "
                         "'dbvers clone URL DB_PATH'")
    if target.is_dir() or (db_path and str(db_path).endswith(("/", os.sep))):
        target = target / default_db_name(spec)
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{parent} is not a directory")
            break
    return target


def _make_parents(directory: Path) -> list[Path]:
    """Create *directory* and its missing parents (as git clone does); the ones made, deepest first."""
    made = [p for p in [directory, *directory.parents] if not p.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    return made


def _remove_made(made: list[Path]) -> None:
    """A failed clone leaves no directory it made behind (only empty ones are removed)."""
    for d in made:
        with contextlib.suppress(OSError):
            d.rmdir()


def _finished_before(store_dir: Path, target: Path) -> Repo | None:
    """A store already at *store_dir*: a killed clone of *target* to finish, else an error."""
    if not (store_dir / "config").is_file():
        if store_dir.exists() and (not store_dir.is_dir() or any(store_dir.iterdir())):
            raise UsageError(f"{store_dir} exists and is not a dbvers store; pass --store DIR")
        return None
    tracked = (store_dir / config.read_config(store_dir).get("core", "database")).resolve()
    if tracked != target.resolve() or not (store_dir / RESTORE_JOURNAL).is_file():
        raise RepositoryExistsError(str(store_dir), str(tracked))
    repo = Repo.at(store_dir, target)
    with repo.locked():  # its recovery installs the database the killed clone left staged
        pass
    return repo


def clone(url: str, db_path: str | os.PathLike[str] | None = None, *, endpoint_url: str | None = None,
          region: str | None = None, profile: str | None = None, branch: str | None = None,
          store: str | os.PathLike[str] | None = None, progress: Progress | None = None) -> Repo:
    """Make *db_path* (default: named after the URL) and its store from the remote at *url*,
    checked out at *branch* (default: the remote's HEAD branch); the remote becomes ``origin``."""
    spec = parse_url(url)
    options = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    remote = make_remote(spec, **options).check()
    target = _target(spec, db_path)
    store_dir = Path(store).expanduser().absolute() if store else target.parent / STORE_NAME
    done = _finished_before(store_dir, target)
    if done is not None:
        return done
    if target.exists() and target.stat().st_size > 0:
        raise UsageError(f"{target} exists; a clone makes a new database: name another path")
    made = _make_parents(target.parent) + _make_parents(store_dir.parent)
    work_parent = store_dir.parent
    remove_stale_temps(work_parent, pattern="clone-*")
    work = work_parent / f"{temp_prefix('clone')}{os.urandom(4).hex()}"
    try:
        make_store_skeleton(work)
        write_atomic(work / "HEAD", f"ref: {HEADS}main\n".encode())  # unborn until the branch is chosen
        cfg = config.set_store_identity(config.new_config(), store=store_dir, database=target,
                                        store_format=FORMAT_VERSION)
        config.write_config(work, config.set_remote(cfg, DEFAULT_REMOTE, spec.url, options))
        # The repository's own memory limit (a share of RAM): every object is verified (length
        # and hash) as it is fetched, and reads never pass a body's declared length, so a remote
        # can make this rebuild no larger than any later checkout of the clone would be.
        wrepo = Repo.at(work, target, scratch=True)
        with ThreadPoolExecutor(1, thread_name_prefix="dbvers-head") as pool:
            head_read = pool.submit(lambda: remote.refs.head().branch)  # beside the fetch's first reads

            def checked_out(heads: dict[str, str]) -> str | None:  # its snapshot is decoded as it comes
                with contextlib.suppress(DbversError):
                    return _choose_branch(heads, head_read.result(), branch, spec.url)[1]
                return None

            fetch(wrepo, DEFAULT_REMOTE, progress=progress, checkout=checked_out, backend=remote)
            with blame_remote(remote.url):
                remote_head = head_read.result()
        name, oid = _choose_branch(wrepo.refs.list(f"{REMOTES}{DEFAULT_REMOTE}/"), remote_head, branch, spec.url)
        why = f"clone: from {spec.url}"
        wrepo.refs.update(HEADS + name, oid, expect=None, message=why)
        config.edit_config(work, lambda c: config.set_upstream(c, name, DEFAULT_REMOTE, name))
        try:
            state = wrepo.materialize_verified(oid)
        finally:
            wrepo.states.drop_unpacked()
        if isinstance(wrepo.objects, LocalObjectStore):  # its objects were renamed in unsynced
            wrepo.objects.sync()
        repo = install_store(wrepo, work, store_dir, target, state, oid, name, why)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        _remove_made(made)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return repo


def _choose_branch(fetched: dict[str, str], remote_head: str | None, wanted: str | None,
                   url: str) -> tuple[str, str]:
    """(branch, commit) a clone checks out, of the remote's branches *fetched*."""
    if not fetched:
        raise RemoteError(url, "has no branches yet; push to it first (nothing was cloned)")
    if wanted is not None:
        if wanted not in fetched:
            raise UnknownRefError(wanted, f"the remote has no branch '{wanted}' (it has "
                                          f"{', '.join(sorted(fetched)[:10])})")
        return wanted, fetched[wanted]
    for name in (remote_head, "main"):
        if name and name in fetched:
            return name, fetched[name]
    first = sorted(fetched)[0]
    return first, fetched[first]
