"""What the command line and the notebook magics share (layer L5).

* the error mapping: :func:`user_error` turns any exception into the
  :class:`~dbvers.errors.DbversError` a user is shown (one line, an exit code);
  :func:`stdout_closed` tells a reader that left early (``dbvers log | head``)
  from a real failure;
* the argument checks both frontends make with the same words
  (:func:`check_at_least`, :func:`diff_refs`);
* the console factory: :func:`console` is a rich ``Console`` that colours when
  stdout is a terminal and writes plain text when it is piped or captured;
* the progress factory: :func:`progress_bar` is a rich bar on a terminal, a widget
  under the magics (:func:`widget_progress`), nothing when piped.

Nothing here imports the repository: the magics and ``dbvers --help`` stay cheap.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .boundary import translate
from .errors import DbversError, InternalError, UsageError

if TYPE_CHECKING:
    from rich.console import Console


def user_error(exc: BaseException) -> DbversError:
    """The one error mapping shared by the CLI and the magics: what *exc* means to a user.

    A ``DbversError`` is itself; a foreign exception with a known meaning (disk
    full, a damaged SQLite file, a refused file operation, ...) is translated; any
    other exception is an :class:`InternalError` (a bug), reported in one line.
    """
    return translate(exc) or InternalError(exc)


def error_line(err: DbversError) -> str:
    """*err*'s message as a person reads it: names and values from the user's data in it with
    their control characters and bytes that aren't UTF-8 escaped (``render.text.safe_text``)."""
    from .render.text import safe_text

    return safe_text(str(err))


def stdout_closed(exc: BaseException | None) -> bool:
    """Did *exc* (or what caused it) come from writing to a stdout whose reader left?"""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def silence_stdout() -> None:
    """The Python docs' recipe after a broken pipe: point stdout at /dev/null so the
    interpreter's final flush succeeds (no "Exception ignored ... BrokenPipeError")."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def say(line: str) -> None:
    """One line on stderr, even when stderr itself is gone (then nothing)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr)
        sys.stderr.flush()


def warn(message: str) -> None:
    """``dbvers: warning: MESSAGE`` on stderr: the command went on."""
    print(f"dbvers: warning: {message}", file=sys.stderr)


# -- argument checks ----------------------------------------------------------------


def check_at_least(value: int | float | None, minimum: int, option: str, verb: str = "takes") -> None:
    """Refuse a numeric option below *minimum*: ``-n takes a number >= 0``."""
    if value is not None and value < minimum:
        raise UsageError(f"{option} {verb} a number >= {minimum}")


def diff_refs(refs: Sequence[str] | None) -> tuple[str, str | None]:
    """``diff [A [B]]``: (A, B), HEAD for a missing A, None (the working database) for B."""
    refs = list(refs or [])
    if len(refs) > 2:
        raise UsageError("diff takes at most two refs: dbvers diff [A [B]]")
    return (refs[0] if refs else "HEAD"), (refs[1] if len(refs) == 2 else None)


# -- the console ----------------------------------------------------------------------


def console() -> Console:
    """A rich console on the current ``sys.stdout``: colour on a terminal, plain when piped.

    rich's own reaction to a closed stdout is to exit 1 (and to kill a notebook
    kernel's cell); here it raises ``BrokenPipeError``, which each frontend handles
    once (the CLI exits 0 quietly, see :func:`stdout_closed`).
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "stdout was closed")

    # In a notebook (the magics run the CLI's commands) the output is text on the cell's stdout,
    # one stream: rich's Jupyter mode would make each line a display of its own, ANSI in its text.
    return _Console(highlight=False, soft_wrap=True, force_jupyter=False)


# -- progress -------------------------------------------------------------------------

_WIDGETS: ContextVar[bool] = ContextVar("dbvers_widget_progress", default=False)


@contextlib.contextmanager
def widget_progress(enabled: bool = True) -> Iterator[None]:
    """Within this block, :func:`progress_bar` is a notebook widget (the magics set it)."""
    token = _WIDGETS.set(enabled)
    try:
        yield
    finally:
        _WIDGETS.reset(token)


def progress_bar() -> Any:
    """How a transfer shows its progress here: a widget under the magics, a rich bar when
    stdout is a terminal, None (nothing shown) when it is piped or captured."""
    if _WIDGETS.get():
        from .render.progress import WidgetProgress

        return WidgetProgress()
    if not sys.stdout.isatty():
        return None
    from .render.progress import ConsoleProgress

    return ConsoleProgress(console())
