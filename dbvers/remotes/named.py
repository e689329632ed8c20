"""Named remotes: ``[remote "NAME"]`` in ``.dbvers/config``, and what ``dbvers remote`` does with them.

L3. A remote is a name, a URL and the options that reach it (endpoint, region,
profile — never a credential: those stay in the AWS chain). Adding one checks the
URL and, when something is already there, opens it and proves that it honours
conditional writes (an empty target is created and probed by the first push).
Removing or renaming one carries its remote-tracking refs
(``refs/remotes/<name>/...``) and the upstreams of the branches that track it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import config
from ..errors import (
    InvalidRefNameError,
    RemoteExistsError,
    RemoteNotFoundError,
    UnknownRemoteError,
    UsageError,
)
from ..storage.refnames import REMOTES, validate_name
from .directory import DirectoryRemote
from .s3 import S3Remote
from .urls import make_remote, parse_url

if TYPE_CHECKING:
    from ..repo import Repo

#: The remote a clone sets up, and the one push, fetch and pull use when nothing names another.
DEFAULT_REMOTE = "origin"


@dataclass(frozen=True)
class RemoteInfo:
    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)  # endpoint_url, region, profile (those set)

    def __str__(self) -> str:
        return f"{self.name}\t{self.url}"


def check_remote_name(name: str) -> str:
    """A remote name is one ref-name component (it becomes ``refs/remotes/<name>/``)."""
    validate_name(name)
    if "/" in name:
        raise InvalidRefNameError(name, "a remote name cannot contain '/'")
    return name


def remotes(repo: Repo) -> list[RemoteInfo]:
    """The configured remotes, in the order the config lists them."""
    repo.reload_config()
    out = []
    for name in config.remote_names(repo.config):
        settings = config.remote_settings(repo.config, name)
        if settings is not None:
            url = settings.pop("url")
            out.append(RemoteInfo(name, url, settings))
    return out


def remote_info(repo: Repo, name: str) -> RemoteInfo:
    repo.reload_config()
    settings = config.remote_settings(repo.config, name)
    if settings is None:
        raise UnknownRemoteError(name, config.remote_names(repo.config))
    url = settings.pop("url")
    return RemoteInfo(name, url, settings)


def connect(info: RemoteInfo, *, create: bool = False) -> DirectoryRemote | S3Remote:
    """The backend of a configured remote, opened (``create``: a first push may make it)."""
    opts = info.options
    remote = make_remote(info.url, endpoint_url=opts.get("endpoint_url"), region=opts.get("region"),
                         profile=opts.get("profile"))
    return remote.check(create=create)


def _edit(repo: Repo, change: Callable[[config.Config], object]) -> None:
    """Change the store's config file, then this Repo's copy of it (under the lock)."""
    config.edit_config(repo.store_dir, change)
    repo.reload_config()


def remote_add(repo: Repo, name: str, url: str, *, endpoint_url: str | None = None,
               region: str | None = None, profile: str | None = None) -> RemoteInfo:
    """Add remote *name* at *url*; an existing remote there is opened and probed first."""
    check_remote_name(name)
    spec = parse_url(url)
    options = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    backend = make_remote(spec, **options)  # refuses options a directory remote can't use
    try:
        backend.check()
        backend.probe()
    except RemoteNotFoundError:
        if isinstance(backend, DirectoryRemote) and backend.root.is_file():
            raise
        # Nothing there yet (or an empty folder/prefix): the first push creates and probes it.
    with repo.locked():
        existing = config.remote_settings(repo.config, name)
        if existing is not None:
            raise RemoteExistsError(name, existing["url"])
        _edit(repo, lambda cfg: config.set_remote(cfg, name, spec.url, options))
    return remote_info(repo, name)


def _tracking_refs(repo: Repo, name: str) -> dict[str, str]:
    return repo.refs.list(f"{REMOTES}{name}/")


def remote_remove(repo: Repo, name: str) -> RemoteInfo:
    """Forget remote *name*: its tracking refs and the upstreams that name it go too."""
    with repo.locked():
        info = remote_info(repo, name)
        for branch in _tracking_refs(repo, name):
            repo.refs.delete(f"{REMOTES}{name}/{branch}", message=f"remote remove {name}")
        _edit(repo, lambda cfg: config.remove_remote(cfg, name))
    return info


def remote_rename(repo: Repo, old: str, new: str) -> RemoteInfo:
    """Rename remote *old* to *new*, with its tracking refs and the branches that track it."""
    check_remote_name(new)
    if new == old:
        raise UsageError(f"remote '{old}' already has that name; give a new one")
    with repo.locked():
        remote_info(repo, old)
        taken = config.remote_settings(repo.config, new)
        if taken is not None:
            raise RemoteExistsError(new, taken["url"])
        why = f"remote rename {old} {new}"
        for branch, oid in _tracking_refs(repo, old).items():
            repo.refs.update(f"{REMOTES}{new}/{branch}", oid, expect=None, message=why)
            repo.refs.delete(f"{REMOTES}{old}/{branch}", message=why)
        _edit(repo, lambda cfg: config.rename_remote(cfg, old, new))
    return remote_info(repo, new)


def default_remote(repo: Repo, branch: str | None = None) -> str:
    """The remote *branch* (default: the current one) tracks, else ``origin``."""
    repo.reload_config()
    branch = branch if branch is not None else repo.current_branch
    up = config.upstream(repo.config, branch) if branch else None
    return up[0] if up else DEFAULT_REMOTE
