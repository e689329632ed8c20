"""The registrations of the display hook: how each core type is shown as text, HTML or a widget.

The core (L0-L3) asks :func:`dbvers.display.render` for a presentation and never imports this
package; ``dbvers/__init__.py`` imports this module, so the registrations exist whenever dbvers is
imported. One function per group of types. L4: imports the core and the rest of ``render``.
"""

from __future__ import annotations

from typing import Any

from .. import display
from ..status import Status
from . import html


def _status_text(st: Status, **options: Any) -> str:
    return html.status_text(st, colour=options.get("colour", False))


def _register_status() -> None:
    """The working database's status (dbvers.status): ``dbvers status``'s text, a notebook's HTML."""
    display.register(Status, "text", _status_text)
    display.register(Status, "html", html.status_html)


_register_status()
