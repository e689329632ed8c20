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
