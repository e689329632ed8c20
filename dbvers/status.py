"""Status: how the working database differs from HEAD's commit.

L2. Owns :class:`Status` (what ``Repo.status()`` returns and ``dbvers status`` prints) and
how one is made: :func:`working_status` asks the worktree, then :func:`clean_status` when the
working file provably still holds HEAD's state (the clean record matched: nothing was
compared), or :func:`compared_status` from the worktree's comparison of a copy of the working
database with HEAD's state. Copying, comparing and the clean record are the working
database's business; presentation is :mod:`dbvers.render`'s, reached through the display hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import display
from .changes import Changes
from .errors import UnknownRefError
from .objects import Schema, SchemaChange, counts_summary
from .worktree import ChangeSummary, WorkingChanges

if TYPE_CHECKING:
    from .storage.base import Head
    from .worktree import Worktree


def _commits(n: int) -> str:
    return f"{n} commit{'s' if n != 1 else ''}"


@dataclass
class Status(ChangeSummary):
    branch: str | None
    head: str | None
    changes: Changes
    schema_changes: list[SchemaChange]
    pragmas_changed: dict[str, tuple[int, int]]
    sequences_changed: bool = False
    operation: str | None = None  # "merge", "revert" or "cherry-pick" when one is in progress
    conflicts: dict[str, int] = field(default_factory=dict)  # its conflicting rows left, per table
    upstream: str | None = None  # the remote-tracking branch the branch tracks ("origin/main")
    ahead: int = 0  # commits the branch has that its upstream doesn't
    behind: int = 0  # and the other way round
    upstream_gone: bool = False  # the upstream's tracking branch no longer exists (pruned, or never fetched)

    def tracking_line(self) -> str | None:
        """git's "Your branch is ahead of 'origin/main' by 2 commits." (None: no upstream)."""
        if self.upstream is None:
            return None
        up = f"'{self.upstream}'"
        if self.upstream_gone:
            return (f"Your branch is based on {up}, but the upstream is gone ('dbvers push -u' "
                    "publishes the branch again, or 'dbvers fetch' if it was never fetched)")
        # While a merge is in progress, pull and push are refused: no advice to run them.
        advice = self.operation is None
        if self.ahead and self.behind:
            return (f"Your branch and {up} have diverged: ahead {self.ahead}, behind {self.behind}"
                    + (" ('dbvers pull' merges them)" if advice else ""))
        if self.ahead:
            return (f"Your branch is ahead of {up} by {_commits(self.ahead)}"
                    + (" ('dbvers push' publishes them)" if advice else ""))
        if self.behind:
            return (f"Your branch is behind {up} by {_commits(self.behind)}"
                    + (" ('dbvers pull' fast-forwards)" if advice else ""))
        return f"Your branch is up to date with {up}"

    def operation_line(self) -> str | None:
        """What a person should know about an operation in progress (None: there is none)."""
        if self.operation is None:
            return None
        if self.conflicts:
            n = sum(self.conflicts.values())
            return (f"{self.operation} in progress: {n:,} conflicting row{'s' if n != 1 else ''} in "
                    f"{', '.join(sorted(self.conflicts))} (see 'dbvers conflicts', settle with "
                    f"'dbvers resolve --ours|--theirs', or 'dbvers {self.operation} --abort')")
        return (f"{self.operation} in progress, no conflicts left: 'dbvers {self.operation} --continue' "
                "commits it")

    # The changes hold the whole patchset (megabytes after a big update): the repr is one
    # bounded line; str() is what `dbvers status` prints, and notebooks get HTML.
    def __repr__(self) -> str:
        where = self.branch or f"detached at {(self.head or '')[:10]}"
        if self.clean:
            return f"<dbvers.Status {where}: clean>"
        counts = {t: c for t, c in self.changes.counts.items() if c.total}
        return (f"<dbvers.Status {where}: {counts_summary(counts)}, "
                f"{len(self.schema_changes)} schema change(s)>")

    def __str__(self) -> str:
        return str(display.render(self, "text"))

    def _repr_html_(self) -> str:
        return str(display.render(self, "html"))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else str(self))

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "head": self.head,
            "clean": self.clean,
            "tables": {t: c.to_json() for t, c in sorted(self.changes.counts.items())},
            "schema_changes": [str(s) for s in self.schema_changes],
            "untracked": self.changes.untracked,
            "pragmas_changed": {k: list(v) for k, v in self.pragmas_changed.items()},
            "operation": self.operation,
            "conflicts": dict(sorted(self.conflicts.items())),
            "upstream": self.upstream,
            "upstream_gone": self.upstream_gone,
            "ahead": self.ahead,
            "behind": self.behind,
        }


def clean_status(head: Head, schema: Schema) -> Status:
    """The status of a working database known to hold HEAD's state (*schema*: HEAD's).

    Nothing changed; virtual tables are still named, as a compared status names them
    (they are versioned through snapshots only).
    """
    virtual = sorted(e.name for e in schema.entries
                     if e.type == "table" and (e.sql or "").upper().startswith("CREATE VIRTUAL"))
    return Status(head.branch, head.commit, Changes(None, {}, False, untracked=virtual), [], {})


def compared_status(head: Head, working: WorkingChanges) -> Status:
    """The status from the worktree's comparison of the working database with HEAD's commit."""
    return Status(head.branch, head.commit, working.changes, working.schema_changes,
                  working.pragmas_changed, working.sequences_changed)


def working_status(worktree: Worktree) -> Status:
    """How the working database differs from HEAD (the caller holds the store's lock)."""
    head = worktree.refs.head()
    if head.commit is None:
        raise UnknownRefError("HEAD", "HEAD has no commit yet")
    if worktree.known_clean():
        states = worktree.states
        return clean_status(head, states.get_schema(states.get_commit(head.commit).schema))
    return compared_status(head, worktree.changes_against(head.commit))
