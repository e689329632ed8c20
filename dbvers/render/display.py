"""The registrations of the display hook: how each core type is shown as text, HTML or a widget.

The core (L0-L3) asks :func:`dbvers.display.render` for a presentation and never imports this
package; ``dbvers/__init__.py`` imports this module, so the registrations exist whenever dbvers is
imported. One function per group of types. L4: imports the core and the rest of ``render``.
"""

from __future__ import annotations

from typing import Any

from .. import display
from ..diff import Diff
from ..objects import Commit, CommitLog
from ..status import Status
from . import html


def _diff_widget(diff: Diff, **options: Any) -> Any:
    from .widgets import DiffView  # ipywidgets: imported only when a widget is asked for

    return DiffView(diff, **options)


def _register_diff() -> None:
    """Diffs (dbvers.diff): ``str()``'s plain text, a notebook's static HTML, the widget."""
    display.register(Diff, "text", html.diff_text)
    display.register(Diff, "html", html.diff_html)
    display.register(Diff, "widget", _diff_widget)


_register_diff()


def _status_text(st: Status, **options: Any) -> str:
    return html.status_text(st, colour=options.get("colour", False))


def _register_status() -> None:
    """The working database's status (dbvers.status): ``dbvers status``'s text, a notebook's HTML."""
    display.register(Status, "text", _status_text)
    display.register(Status, "html", html.status_html)


_register_status()


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
