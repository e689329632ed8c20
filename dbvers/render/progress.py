"""Progress of a push, fetch or clone (L4): a rich bar in a terminal, a widget in a notebook.

Both implement :class:`dbvers.transfer.Progress`. Objects are copied by several
threads at once, so ``advance`` is safe from any thread (rich's Progress locks;
the widget's updates go through one lock here). Nothing is shown for a copy of
no objects, and a piped stdout gets no bar at all (the CLI passes none).
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..formats import human_size


class ConsoleProgress:
    """A rich progress bar on *console*: bytes (when known), objects, rate, time left."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._by_bytes = False

    def start(self, label: str, objects: int, nbytes: int) -> None:
        if not objects:
            return
        self._by_bytes = nbytes > 0
        columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
        if self._by_bytes:
            columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
        else:
            columns += [MofNCompleteColumn(), TextColumn("objects")]
        self._bar = Progress(*columns, console=self.console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(f"{label} {objects} objects", total=nbytes if self._by_bytes else objects)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, nbytes if self._by_bytes else 1)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class WidgetProgress:
    """An ipywidgets bar with a line of text, displayed in the notebook cell that runs the copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bar: Any = None
        self._label: Any = None
        self._done = self._total = self._objects = self._count = 0
        self._what = ""

    def start(self, label: str, objects: int, nbytes: int) -> None:
        if not objects:
            return
        import ipywidgets as w
        from IPython.display import display

        self._total, self._objects, self._what = nbytes, objects, label
        self._bar = w.IntProgress(value=0, min=0, max=nbytes or objects, description=label)
        self._label = w.Label(value=self._text())
        display(w.HBox([self._bar, self._label]))

    @property
    def text(self) -> str:
        """The line beside the bar: "2 of 5 objects, 1.3 KB of 4.1 MB"."""
        return self._text()

    def _text(self) -> str:
        size = f", {human_size(self._done)} of {human_size(self._total)}" if self._total else ""
        return f"{self._count} of {self._objects} objects{size}"

    def advance(self, nbytes: int) -> None:
        if self._bar is None:
            return
        with self._lock:
            self._count += 1
            self._done += nbytes
            self._bar.value = self._done if self._total else self._count
            self._label.value = self._text()

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.bar_style = "success"
