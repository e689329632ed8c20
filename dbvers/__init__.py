"""dbvers: git for SQLite databases, made for notebooks.

    import dbvers
    repo = dbvers.init("data.db")      # or dbvers.open("data.db")
    repo.commit("load March")
    repo.log()
"""

from __future__ import annotations

from ._version import __version__
from .backup import BackupInfo, restore
from .clone import clone
from .errors import DbversError
from .maintenance import FsckReport, GcReport
from .objects import Commit, SchemaChange, TableCounts
from .opening import init_repo as init
from .opening import open_repo as open
from .render import display as render_display  # noqa: F401  (registers how core objects are shown)
from .repo import Repo
from .status import Status
from .sync import SyncResult


def load_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """``%load_ext dbvers``: the %dbvers, %dbcommit, %dbdiff, %dblog and %dbcheckout magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    from .magics import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "BackupInfo",
    "Commit",
    "DbversError",
    "FsckReport",
    "GcReport",
    "Repo",
    "SchemaChange",
    "Status",
    "SyncResult",
    "TableCounts",
    "__version__",
    "clone",
    "init",
    "open",
    "restore",
]

