"""The registrations of the display hook: how each core type is shown as text, HTML or a widget.

The core (L0-L3) asks :func:`dbvers.display.render` for a presentation and never imports this
package; ``dbvers/__init__.py`` imports this module, so the registrations exist whenever dbvers is
imported. One function per group of types. L4: imports the core and the rest of ``render``.
"""

from __future__ import annotations

from typing import Any

from .. import display
from ..objects import Commit, CommitLog
from . import html


def _commit_log_text(log: CommitLog, **options: Any) -> str:
    return html.log_text(log, log.repo, **options)


def _commit_log_html(log: CommitLog, **options: Any) -> str:
    return html.log_html(log, log.repo, **options)


def _register_objects() -> None:
    """Commits and the log (dbvers.objects)."""
    display.register(Commit, "text", html.commit_text)
    display.register(Commit, "html", html.commit_html)
    display.register(CommitLog, "text", _commit_log_text)
    display.register(CommitLog, "html", _commit_log_html)


_register_objects()
