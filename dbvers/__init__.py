"""dbvers: git for SQLite databases, made for notebooks.

    import dbvers
    repo = dbvers.init("data.db")      # or dbvers.open("data.db")
    repo.commit("load March")
    repo.log()
"""

from __future__ import annotations

from .errors import DbversError
from .objects import Commit, SchemaChange, TableCounts
from .repo import FsckReport, GcReport, Repo, Status
from .repo import init_repo as init
from .repo import open_repo as open

__version__ = "0.1.0"

__all__ = [
    "Commit",
    "DbversError",
    "FsckReport",
    "GcReport",
    "Repo",
    "SchemaChange",
    "Status",
    "TableCounts",
    "__version__",
    "init",
    "open",
]

