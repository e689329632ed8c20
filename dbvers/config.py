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
    for (section, key), setting in SCHEMA.items():
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
