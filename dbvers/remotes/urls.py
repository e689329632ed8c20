"""Remote URLs: ``s3://bucket/prefix``, a directory path, ``file:///path`` -> a backend.

L3. :func:`parse_url` only parses (a :class:`RemoteSpec`, nothing touched);
:func:`open_remote` makes the backend and checks it (``create=True`` for a first
push). Endpoint, region and profile are per remote options (kept in
``.dbvers/config`` by the remote commands), never part of the URL and never
credentials.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import RemoteUrlError
from .directory import DirectoryRemote
from .s3 import S3Remote

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# S3's rules (3-63 characters, lowercase letters, digits, dots, hyphens); '_' for older S3-compatible stores.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class RemoteSpec:
    kind: str  # "s3" or "directory"
    url: str  # normalized
    bucket: str = ""
    prefix: str = ""
    path: Path | None = None


def _directory(raw: str) -> RemoteSpec:
    # Absolute and without '..' steps (as a shell's `cd` reads them): the URL the config and
    # every message show is the one place the remote is.
    path = Path(os.path.abspath(Path(raw).expanduser()))
    return RemoteSpec("directory", str(path), path=path)


def parse_url(url: str) -> RemoteSpec:
    """What *url* names; RemoteUrlError (a UsageError) when it names nothing dbvers can use."""
    if not url or not url.strip():
        raise RemoteUrlError(url, "it is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):  # a newline would split the config line
        raise RemoteUrlError(url, "it holds a control character (a newline, a tab)")
    m = _SCHEME.match(url)
    if m is None:
        return _directory(url)
    scheme = m[1].lower()
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise RemoteUrlError(url, "a remote URL has no ?query or #fragment")
    if scheme == "s3":
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if not _BUCKET.match(bucket):
            raise RemoteUrlError(url, f"{bucket!r} is not a valid bucket name" if bucket else "it names no bucket")
        if "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
            raise RemoteUrlError(url, "the prefix has an empty, '.' or '..' component")
        norm = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return RemoteSpec("s3", norm, bucket=bucket, prefix=prefix)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RemoteUrlError(url, f"file:// URLs name a local path, not the host {parts.netloc!r}; "
                                      "mount it and use the path")
        raw = unquote(parts.path)
        if not raw:
            raise RemoteUrlError(url, "it names no path")
        return _directory(raw)
    raise RemoteUrlError(url, f"dbvers has no {scheme}:// remotes")


def make_remote(url: str | RemoteSpec, *, endpoint_url: str | None = None, region: str | None = None,
                profile: str | None = None, **connection: Any) -> DirectoryRemote | S3Remote:
    """The backend for *url*, touching nothing yet (S3 clients are made at first use)."""
    spec = url if isinstance(url, RemoteSpec) else parse_url(url)
    if spec.kind == "s3":
        return S3Remote(spec.bucket, spec.prefix, endpoint_url=endpoint_url, region=region,
                        profile=profile, **connection)
    if endpoint_url or region or profile:
        raise RemoteUrlError(spec.url, "--endpoint-url, --region and --profile are for s3:// remotes")
    assert spec.path is not None
    return DirectoryRemote(spec.path)


def open_remote(url: str | RemoteSpec, *, create: bool = False, endpoint_url: str | None = None,
                region: str | None = None, profile: str | None = None,
                **connection: Any) -> DirectoryRemote | S3Remote:
    """The backend for *url*, opened: its marker checked (with *create*, made on an empty target)."""
    return make_remote(url, endpoint_url=endpoint_url, region=region, profile=profile,
                       **connection).check(create=create)
