"""Errors of merge, revert and cherry-pick.

L0, part of the one exception tree drawn in ``dbvers.errors`` (import from there).
"""

from __future__ import annotations

from .core import DbversError


class MergeSchemaError(DbversError):
    """The two sides changed the schema in ways a merge can't combine; nothing was changed."""
    def __init__(self, clashes: list[tuple[str, str]]) -> None:
        self.clashes = clashes
        shown = "; ".join(f"{name}: {what}" for name, what in clashes[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        super().__init__(f"cannot merge the schemas: {shown}{more}; make the schemas agree on one side "
                         "(or take one side's table whole) and merge again")


class MergeInProgressError(DbversError):
    """A merge, revert or cherry-pick is in progress and the command would disturb it."""
    def __init__(self, kind: str, action: str) -> None:
        self.kind = kind
        self.action = action
        super().__init__(f"a {kind} is in progress; finish it with 'dbvers {kind} --continue' or undo it with "
                         f"'dbvers {kind} --abort' before {action}")


class NoMergeInProgressError(DbversError):
    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(f"no merge, revert or cherry-pick is in progress ({action} has nothing to work on)")


class ConflictsRemainError(DbversError):
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        shown = ", ".join(f"{t} ({n})" for t, n in sorted(counts.items())[:5])
        super().__init__(f"{sum(counts.values())} conflicts remain in {shown}; see 'dbvers conflicts', settle them with "
                         "'dbvers resolve --ours|--theirs', then continue")


class EmptyChangeError(DbversError):
    def __init__(self, kind: str, rev: str) -> None:
        self.kind = kind
        self.rev = rev
        super().__init__(f"the {kind} of {rev[:12]} changes nothing on HEAD (its changes are already there); "
                         "nothing was done")


class UnrelatedHistoriesError(DbversError):
    def __init__(self, rev: str) -> None:
        self.rev = rev
        super().__init__(f"{rev} shares no history with HEAD: there is no base to merge against")


class RowsRefusedError(DbversError):
    """Rows written into the working database broke one of its constraints."""
    def __init__(self, table: str, detail: str) -> None:
        self.table = table
        self.detail = detail
        super().__init__(f"the rows for {table} break a constraint ({detail}); nothing was written")
