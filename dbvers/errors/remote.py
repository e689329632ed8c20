"""Errors of remotes (directories and S3-compatible buckets) and of push, fetch, pull and clone.

L0, part of the one exception tree drawn in ``dbvers.errors`` (import from there).
"""

from __future__ import annotations

from .core import DbversError, UsageError


class RemoteError(DbversError):
    """A remote (a directory or an S3 bucket) refused or could not be used; *url* names it."""
    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"remote {url}: {detail}")


class RemoteUrlError(UsageError):
    """A remote URL that names no backend dbvers has."""
    def __init__(self, url: str, why: str) -> None:
        self.url = url
        self.why = why
        super().__init__(f"cannot use {url!r} as a remote: {why}; "
                         "use s3://bucket/prefix, a directory path or file:///path")


class RemoteNotFoundError(RemoteError):
    """Nothing dbvers can use at the URL: no remote marker, a missing bucket, a folder of other files."""


class RemoteFormatError(RemoteError):
    """The remote's format marker is unreadable or newer than this dbvers reads."""


class RemoteDamagedError(RemoteError):
    """Something read from the remote is damaged: a ref, an object (its bytes don't match its
    id), or an object a remote ref's history needs is missing there. The local store is fine."""
    def __init__(self, url: str, what: str) -> None:
        self.what = what
        super().__init__(url, f"is damaged: {what}; nothing was changed here. Repair the remote: push "
                              "the history again from a good copy (a clone that has it, with "
                              "--force-with-lease if a branch must be replaced), or restore it from a backup")


class FetchInterruptedError(RemoteError):
    """Objects a fetch relied on kept being removed here while it ran (a gc beside it): no
    tracking ref was moved."""
    def __init__(self, url: str) -> None:
        super().__init__(url, "the objects this fetch found here kept being removed while it ran (a gc "
                              "beside it?); nothing was moved: run the fetch again")


class FetchRejectedError(RemoteError):
    """A fetch moved what it could, but some refs were rejected (printed above, each with why)."""
    def __init__(self, url: str, rejected: list[tuple[str, str]]) -> None:
        self.rejected = rejected
        first, why = rejected[0]
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        super().__init__(url, f"fetch could not update {first}{more}: {why}")


class RemoteAccessError(RemoteError):
    """Credentials are missing or refused (dbvers never stores any: the usual AWS chain applies)."""


class RemoteUnreachableError(RemoteError):
    """The endpoint kept failing (network errors, 5xx) through every retry."""
    def __init__(self, url: str, reason: str, attempts: int) -> None:
        self.reason = reason
        self.attempts = attempts
        super().__init__(url, f"unreachable after {attempts} attempts ({reason}); "
                              "check the endpoint, the network and the region, then try again")


class ConditionalWritesUnsupportedError(RemoteError):
    """The endpoint ignores If-None-Match / If-Match, so refs could not move by compare-and-swap."""
    def __init__(self, url: str, which: str) -> None:
        self.which = which
        super().__init__(url, f"the endpoint ignores conditional writes ({which}), so concurrent pushes "
                              "could overwrite each other; use an S3 service that supports them")


class UnknownRemoteError(UsageError):
    """A remote name that ``.dbvers/config`` doesn't list."""
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        have = f"the remotes are {', '.join(known)}" if known else "there are no remotes yet"
        hint = "'dbvers remote' lists them" if known else f"add one with 'dbvers remote add {name} URL'"
        super().__init__(f"no remote named '{name}' ({have}); {hint}")


class RemoteExistsError(UsageError):
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        super().__init__(f"remote '{name}' already exists ({url}); remove or rename it first")


class NoUpstreamError(UsageError):
    """A push, pull or fetch that needs a branch when HEAD is detached (or the branch names none)."""
    def __init__(self, action: str, why: str) -> None:
        self.action = action
        self.why = why
        super().__init__(f"{action}: {why}")


class PushRejectedError(RemoteError):
    """Some refs were not pushed: the remote had moved (someone else pushed), or the push would
    drop the remote's commits. *rejected* lists ``(ref, reason)``; the rest were pushed."""
    def __init__(self, url: str, rejected: list[tuple[str, str]]) -> None:
        self.rejected = rejected
        self.result: object = None  # the push's SyncResult (what was pushed besides)
        ref, reason = rejected[0]
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        super().__init__(url, f"push of {ref} rejected: {reason}{more}")
