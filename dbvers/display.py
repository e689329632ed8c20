"""The one display hook: core objects' ``__str__``/``_repr_html_``/``widget`` call :func:`render`,
and :mod:`dbvers.render.display` registers the presentation for each type.

Why a registry: the core (objects, status, diff) must not import presentation (rich, HTML, ipywidgets),
which sits in a higher layer. The core asks this L0 module to render; the render layer, imported by the
package's ``__init__``, has registered how. L0: imports nothing from dbvers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The kinds a renderer can be registered for.
KINDS = ("text", "html", "widget")

_renderers: dict[tuple[type, str], Callable[..., Any]] = {}


def register(cls: type, kind: str, fn: Callable[..., Any]) -> None:
    """Make ``fn(obj, **options)`` the ``kind`` presentation of instances of ``cls``."""
    if kind not in KINDS:
        raise ValueError(f"unknown display kind {kind!r}; expected one of {', '.join(KINDS)}")
    _renderers[(cls, kind)] = fn


def render(obj: object, kind: str, **options: Any) -> Any:
    """``obj``'s ``kind`` presentation; falls back to ``repr`` for text and html when none is registered
    (so a core object used without the package's ``__init__`` still prints)."""
    for cls in type(obj).__mro__:
        fn = _renderers.get((cls, kind))
        if fn is not None:
            return fn(obj, **options)
    if kind == "text":
        return repr(obj)
    if kind == "html":
        import html

        return f"<pre>{html.escape(repr(obj))}</pre>"
    raise LookupError(f"no {kind} presentation for {type(obj).__name__}")
