"""Finding, starting and opening a repository (L3): the composition of a local store into a
:class:`~dbvers.repo.Repo` from a database path, as ``dbvers.init`` and ``dbvers.open`` do.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import sqlio
from .config import SCHEMA, new_config, read_config, set_store_identity, write_config
from .errors import RepositoryExistsError, RepositoryNotFoundError, UsageError
from .formats import STORE_NAME
from .fsutil import TMP_PREFIX, make_store_skeleton, write_atomic
from .objects import FORMAT_VERSION
from .repo import Repo

__all__ = ["find_store", "init_repo", "open_repo"]


def find_store(start: Path) -> Path:
    """Walk up from *start* to the first directory holding a ``.dbvers`` store (like git)."""
    start = start.resolve()
    for d in [start, *start.parents]:
        if (d / STORE_NAME / "config").is_file():
            return d / STORE_NAME
    raise RepositoryNotFoundError(str(start))


def init_repo(db_path: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None,
         message: str = "Initial commit", create: bool = False) -> Repo:
    """Start versioning *db_path*: create its store and commit its current state.

    A missing *db_path* is refused (a typo must not become an empty tracked
    database); ``create=True`` makes a new empty database there instead.
    """
    db = Path(db_path).resolve()
    store_dir = Path(store).resolve() if store else db.parent / STORE_NAME
    if (store_dir / "config").is_file():
        tracked = read_config(store_dir).get("core", "database", fallback="?")
        raise RepositoryExistsError(str(store_dir), str((store_dir / tracked).resolve()))
    if store_dir.exists() and any(store_dir.iterdir()):
        raise UsageError(f"{store_dir} exists and is not empty; choose another --store")
    if not db.exists():
        if not db.parent.is_dir():
            raise UsageError(f"directory {db.parent} does not exist")
        if not create:
            raise UsageError(f"{db} does not exist; check the name, or pass --create to start "
                             "a new empty database there")
        sqlio.create_empty(db)
    sqlio.check_database_file(db)

    # Build the store under a temporary name and rename it into place at the end,
    # so a killed init leaves no half-made repository behind.
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    building = store_dir.parent / f"{TMP_PREFIX}{store_dir.name}-{os.getpid()}"
    if building.exists():
        shutil.rmtree(building)
    make_store_skeleton(building)
    cfg = set_store_identity(new_config(), store=store_dir, database=db, store_format=FORMAT_VERSION)
    cfg.read_dict(
        {"snapshot": {k: SCHEMA["snapshot", k].default or "" for k in ("max_patch_ratio", "max_commits")}}
    )
    write_config(building, cfg)
    write_atomic(building / "HEAD", b"ref: refs/heads/main\n")
    try:
        Repo.at(building, db).commit(message, allow_empty=True)
        os.rename(building, store_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return Repo.at(store_dir, db)


def open_repo(db_path: str | os.PathLike[str] | None = None, *,
              store: str | os.PathLike[str] | None = None) -> Repo:
    """Open the repository of *db_path* (or the one found from the current directory)."""
    if store:
        store_dir = Path(store).resolve()
    elif db_path:
        db = Path(db_path).resolve()
        if db.is_dir():
            store_dir = find_store(db)
        else:
            store_dir = db.parent / STORE_NAME
            if not (store_dir / "config").is_file():
                raise RepositoryNotFoundError(str(db.parent))
    else:
        store_dir = find_store(Path.cwd())
    cfg = read_config(store_dir)
    db = (store_dir / cfg.get("core", "database")).resolve()
    if db_path and not Path(db_path).is_dir() and Path(db_path).resolve() != db:
        raise UsageError(f"{store_dir} tracks {db}, not {Path(db_path).resolve()}; use --store")
    return Repo.at(store_dir, db)
