"""The store's ``config`` file: one typed reader and writer.

``.dbvers/config`` is INI, like git's. It is read once per ``Repo`` and every
known key is checked against :data:`SCHEMA` right then, so a bad value is one
clear error at the start of a command (naming the file, section, key and what is
allowed), never a ``ValueError`` traceback from deep inside a commit. Values are
read raw: ``%`` has no special meaning (``name = Grace 100% Hopper`` is a name).
Unknown sections and keys are kept as they are, as git does, so a newer dbvers's
settings survive an older one.
"""

from __future__ import annotations

import configparser
import io
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import ConfigUnreadableError, ConfigValueError, RepositoryNotFoundError
from .fsutil import write_atomic

Config = configparser.RawConfigParser


@dataclass(frozen=True)
class Setting:
    """One known key: how to check it and how to say what is allowed."""

    check: Callable[[str], object]
    allowed: str
    default: str | None = None


def _int_at_least(low: int) -> Callable[[str], int]:
    def check(raw: str) -> int:
        value = int(raw.strip())
        if value < low:
            raise ValueError(raw)
        return value

    return check


def _float_above(low: float, *, inclusive: bool) -> Callable[[str], float]:
    def check(raw: str) -> float:
        value = float(raw.strip())
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise ValueError(raw)
        return value

    return check


def _boolean(raw: str) -> bool:
    value = configparser.RawConfigParser.BOOLEAN_STATES.get(raw.strip().lower())
    if value is None:
        raise ValueError(raw)
    return value


def _text(raw: str) -> str:
    return raw


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError(raw)
    return raw


_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
_AGE_RE = re.compile(r"(\d+(?:\.\d+)?)(?:[ .]+(second|minute|hour|day|week)s?)?(?:[ .]+ago)?", re.IGNORECASE)
EXPIRY_ALLOWED = "now, never, a number of days (30, 30.days, 2.weeks.ago) or an ISO date (2024-01-31)"


def expiry_cutoff(raw: str | float, now: float) -> float:
    """The unix time before which entries (or objects) expire, for a ``WHEN`` as git writes it.

    The one parser for every expiry setting and option: ``now`` (everything,
    whatever its clock said: +inf), ``never`` (nothing: -inf), an age (a bare
    number is days; ``30.days``, ``2.weeks.ago``, ``12 hours``) or an ISO date
    (UTC when it names no zone). Anything else is a ValueError.
    """
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or raw < 0:
            raise ValueError(raw)
        return now - float(raw) * 86400
    text = raw.strip()
    word = text.lower()
    if word in ("now", "all"):
        return math.inf
    if word in ("never", "false"):
        return -math.inf
    if m := _AGE_RE.fullmatch(text):
        unit = (m.group(2) or "day").lower()
        return now - float(m.group(1)) * _UNIT_SECONDS[unit]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(raw) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _expiry(raw: str) -> str:
    expiry_cutoff(raw, 0.0)
    return raw


SCHEMA: dict[tuple[str, str], Setting] = {
    ("core", "format"): Setting(_int_at_least(1), "a whole number of at least 1"),
    ("core", "database"): Setting(_nonempty, "the tracked database's path, relative to the store"),
    ("snapshot", "max_patch_ratio"): Setting(
        _float_above(0.0, inclusive=False), "a number above 0, such as 0.05 (a share, not a percentage)",
        "0.05"),
    ("snapshot", "max_commits"): Setting(_int_at_least(1), "a whole number of at least 1", "100"),
    ("cache", "keep"): Setting(_int_at_least(1), "a whole number of at least 1", "2"),
    ("lock", "timeout"): Setting(_float_above(0.0, inclusive=True), "a number of seconds, 0 or more",
                                 "10"),
    ("stats", "version"): Setting(_boolean, "true or false", "false"),
    ("user", "name"): Setting(_text, "any text"),
    ("user", "email"): Setting(_text, "any text"),
    ("backup", "dir"): Setting(_text, "a directory path"),
    ("backup", "keep"): Setting(_int_at_least(1), "a whole number of at least 1"),
    ("backup", "max_age"): Setting(_float_above(0.0, inclusive=False), "a number of days above 0"),
    # git's gc.reflogExpire, gc.reflogExpireUnreachable and gc.pruneExpire, with git's defaults.
    ("gc", "reflog_expire"): Setting(_expiry, EXPIRY_ALLOWED, "90"),
    ("gc", "reflog_expire_unreachable"): Setting(_expiry, EXPIRY_ALLOWED, "30"),
    ("gc", "prune_expire"): Setting(_expiry, EXPIRY_ALLOWED, "14"),
}

#: Keys of the named sections ``[remote "NAME"]`` and ``[branch "NAME"]`` (git's shape).
SUBSECTION_SCHEMA: dict[str, dict[str, Setting]] = {
    "remote": {
        "url": Setting(_nonempty, "the remote's URL: s3://bucket/prefix, a directory path or file:///path"),
        "endpoint_url": Setting(_nonempty, "an http(s) URL of an S3-compatible endpoint"),
        "region": Setting(_nonempty, "an S3 region name, such as eu-west-1"),
        "profile": Setting(_nonempty, "an AWS profile name (credentials stay in the AWS chain)"),
    },
    "branch": {
        "remote": Setting(_nonempty, "the name of a remote"),
        "merge": Setting(_nonempty, "the remote's branch, as refs/heads/NAME"),
    },
}
_SUBSECTION_RE = re.compile(r'^(remote|branch) "(.+)"$')

# Environment variables that override a setting, checked by the same rule.
ENVIRONMENT: dict[str, tuple[str, str]] = {"DBVERS_LOCK_TIMEOUT": ("lock", "timeout")}


def new_config() -> Config:
    """An empty config with dbvers's parsing rules (no interpolation, keys as written)."""
    cfg = configparser.RawConfigParser(interpolation=None, strict=True)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    return cfg


def with_defaults(cfg: Config) -> Config:
    """Fill in every default the file doesn't set, so readers need no fallbacks."""
    for (section, key), setting in SCHEMA.items():
        if setting.default is None or cfg.has_option(section, key):
            continue
        if not cfg.has_section(section):
            cfg.add_section(section)
        cfg.set(section, key, setting.default)
    return cfg


def validate(cfg: Config, path: Path) -> None:
    """Check every known key that is set; the first bad one is a :class:`ConfigValueError`."""
    checks = [(section, key, setting) for (section, key), setting in SCHEMA.items()]
    for section in cfg.sections():  # [remote "NAME"] and [branch "NAME"], like git's
        kind = _subsection(section)
        if kind is not None:
            checks += [(section, key, setting) for key, setting in SUBSECTION_SCHEMA[kind[0]].items()]
    for section, key, setting in checks:
        if not cfg.has_option(section, key):
            continue
        raw = cfg.get(section, key)
        try:
            setting.check(raw)
        except ValueError:
            raise ConfigValueError(str(path), section, key, raw, setting.allowed) from None


def read_config(store: Path) -> Config:
    """Read and check ``store/config``; a missing file means there is no repository."""
    path = store / "config"
    cfg = new_config()
    try:
        found = cfg.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigUnreadableError(str(path), reason) from None
    except OSError as e:
        raise ConfigUnreadableError(str(path), e.strerror or str(e)) from None
    if not found:
        raise RepositoryNotFoundError(str(store))
    validate(cfg, path)
    return with_defaults(cfg)


def parse_config(text: str) -> Config:
    """A config from text (a backup's copy); unreadable text gives an empty config."""
    cfg = new_config()
    try:
        cfg.read_string(text)
    except configparser.Error:
        return new_config()
    return cfg


def write_config(store: Path, cfg: Config) -> None:
    """Write *cfg* to ``store/config`` atomically."""
    buf = io.StringIO()
    cfg.write(buf)
    write_atomic(store / "config", buf.getvalue().encode())


def env_override(name: str) -> str | None:
    """An overriding environment variable's value, checked like the key it overrides."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    section, key = ENVIRONMENT[name]
    try:
        SCHEMA[section, key].check(raw)
    except ValueError:
        raise ConfigValueError(f"${name}", section, key, raw, SCHEMA[section, key].allowed) from None
    return raw


def lock_timeout(cfg: Config | None = None) -> float:
    """Seconds to wait for a lock: ``$DBVERS_LOCK_TIMEOUT``, else ``[lock] timeout`` of *cfg*
    (None: no store yet, such as a restore onto a new machine: the default)."""
    override = env_override("DBVERS_LOCK_TIMEOUT")
    if override is not None:
        return float(override)
    if cfg is not None and cfg.has_option("lock", "timeout"):
        return cfg.getfloat("lock", "timeout")
    return float(SCHEMA["lock", "timeout"].default or 10)


def set_store_identity(cfg: Config, *, store: Path, database: Path, store_format: int) -> Config:
    """Record in *cfg* which database the store at *store* tracks, and its format (``[core]``).

    The one writer of those two keys: ``init`` and a restore onto a new machine both call it.
    """
    if not cfg.has_section("core"):
        cfg.add_section("core")
    cfg.set("core", "format", str(store_format))
    cfg.set("core", "database", os.path.relpath(database, store))
    return cfg


# -- remotes and upstreams ([remote "NAME"], [branch "NAME"]) ---------------------------------------

#: The per-remote options besides the URL (never credentials: those stay in the AWS chain).
REMOTE_OPTIONS = ("endpoint_url", "region", "profile")


def _subsection(section: str) -> tuple[str, str] | None:
    m = _SUBSECTION_RE.match(section)
    return (m[1], m[2]) if m else None


def remote_section(name: str) -> str:
    return f'remote "{name}"'


def branch_section(name: str) -> str:
    return f'branch "{name}"'


def remote_names(cfg: Config) -> list[str]:
    """The configured remotes, in the order the file lists them."""
    return [sub[1] for s in cfg.sections() if (sub := _subsection(s)) and sub[0] == "remote"]


def remote_settings(cfg: Config, name: str) -> dict[str, str] | None:
    """``url`` and the options set for remote *name*; None when there is no such remote."""
    section = remote_section(name)
    if not cfg.has_section(section) or not cfg.has_option(section, "url"):
        return None
    return {k: cfg.get(section, k) for k in ("url", *REMOTE_OPTIONS) if cfg.has_option(section, k)}


def set_remote(cfg: Config, name: str, url: str, options: dict[str, str | None]) -> Config:
    section = remote_section(name)
    if not cfg.has_section(section):
        cfg.add_section(section)
    cfg.set(section, "url", url)
    for key in REMOTE_OPTIONS:
        value = options.get(key)
        if value:
            cfg.set(section, key, value)
        elif cfg.has_option(section, key):
            cfg.remove_option(section, key)
    return cfg


def upstream(cfg: Config, branch: str) -> tuple[str, str] | None:
    """(remote, remote branch name) that *branch* tracks, if it tracks one."""
    section = branch_section(branch)
    if not (cfg.has_option(section, "remote") and cfg.has_option(section, "merge")):
        return None
    return cfg.get(section, "remote"), cfg.get(section, "merge").removeprefix("refs/heads/")


def set_upstream(cfg: Config, branch: str, remote: str | None, remote_branch: str = "") -> Config:
    """Make *branch* track *remote*'s *remote_branch*; *remote* None stops it tracking anything."""
    section = branch_section(branch)
    if remote is None:
        for key in ("remote", "merge"):
            if cfg.has_option(section, key):
                cfg.remove_option(section, key)
        if cfg.has_section(section) and not cfg.items(section):
            cfg.remove_section(section)
        return cfg
    if not cfg.has_section(section):
        cfg.add_section(section)
    cfg.set(section, "remote", remote)
    cfg.set(section, "merge", f"refs/heads/{remote_branch}")
    return cfg


def remove_remote(cfg: Config, name: str) -> Config:
    """Drop remote *name* and every branch's upstream on it."""
    cfg.remove_section(remote_section(name))
    for section in cfg.sections():
        sub = _subsection(section)
        if sub and sub[0] == "branch" and cfg.get(section, "remote", fallback=None) == name:
            set_upstream(cfg, sub[1], None)
    return cfg


def rename_remote(cfg: Config, old: str, new: str) -> Config:
    """Rename remote *old* to *new*, with every branch that tracks it."""
    settings = remote_settings(cfg, old) or {}
    cfg.remove_section(remote_section(old))
    set_remote(cfg, new, settings.get("url", ""), dict(settings))
    for section in cfg.sections():
        sub = _subsection(section)
        if sub and sub[0] == "branch" and cfg.get(section, "remote", fallback=None) == old:
            cfg.set(section, "remote", new)
    return cfg


def edit_config(store: Path, change: Callable[[Config], object]) -> None:
    """Apply *change* to ``store/config`` as written (defaults are not written out), check it, write it."""
    path = store / "config"
    cfg = new_config()
    try:
        cfg.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as e:
        raise ConfigUnreadableError(str(path), str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    change(cfg)
    validate(cfg, path)
    write_config(store, cfg)


def config_stamp(store: Path) -> tuple[int, int, int] | None:
    """What changes when ``store/config`` is rewritten (every write is an atomic replace)."""
    try:
        st = (store / "config").stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def reload_into(cfg: Config, store: Path) -> None:
    """Make *cfg* (an object others hold) what ``store/config`` says now, in place."""
    fresh = read_config(store)
    for section in cfg.sections():
        cfg.remove_section(section)
    cfg.read_dict({s: dict(fresh.items(s)) for s in fresh.sections()})
