"""ipywidgets views: a diff (summary, a tab per table, paging, filter, skinny, export)
and the log (commits with labels; the selected one's diff; checkout).

Only one page of rows is ever read and sent to the browser: each page is a
streaming ``LIMIT/OFFSET`` query over the diff (``Diff.iter_rows``), so the
first page of a table with a million changed rows shows at once. A tab's rows
are read when the tab is first opened.

Each view also carries a static HTML form of what it shows (``text/html`` in
its display bundle), for frontends without the widget JavaScript.
"""

from __future__ import annotations

import keyword
import re
import threading
from typing import Any

import ipywidgets as w

from ..errors import DbversError
from ..objects import Commit, TableCounts
from . import html as H
from .text import safe_text

__all__ = ["DiffView", "LogView", "TablePane"]


def _user_namespace() -> dict[str, Any]:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


# Tabs as wide as their labels (ipywidgets' default width cuts "table (+1 ~2 −3)").
_TAB_STYLE = ("<style>.dbvers-diff-view .lm-TabBar-tab, .dbvers-diff-view .p-TabBar-tab "
              "{flex: 0 0 auto !important; max-width: none !important; min-width: 0 !important}</style>")


def _message(text: str, *, error: bool = False) -> str:
    colour = "#cf222e" if error else "#1a7f37"
    return f'<span class="dbvers-message" style="color:{colour}">{H.escape(text)}</span>'


def _variable_name(table: str) -> str:
    name = re.sub(r"\W+", "_", table).strip("_") or "table"
    if name[0].isdigit():
        name = "t_" + name
    return name + "_diff"


class _StaticFallback:
    """Adds a static ``text/html`` form to a widget's display bundle."""

    def static_html(self) -> str:  # pragma: no cover - overridden
        return ""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if data is not None:
            data["text/html"] = self.static_html()
        return data


class TablePane(w.VBox):
    """One table of a diff: toolbar (filter, skinny, paging, export) and one page of rows."""

    def __init__(self, view: DiffView, table: str, counts: TableCounts | None, *,
                 where: str | None = None, skinny: bool = False) -> None:
        self.view = view
        self.diff = view.diff
        self.table = table
        self.counts = counts  # None while a background count runs
        self.where = where
        self.offset = 0
        self.total: int | None = counts.total if counts is not None else None
        self.shown = 0
        self.rendered = False
        self.filter = w.Text(
            value=where or "", placeholder="filter (SQL), e.g. diff_type = 'modified' AND to_price > 10",
            continuous_update=False, layout=w.Layout(width="420px"),
        )
        self.skinny = w.ToggleButton(value=skinny, description="skinny", icon="compress",
                                     tooltip="only key columns and columns that changed",
                                     layout=w.Layout(width="90px"))
        self.prev = w.Button(description="prev", icon="chevron-left", layout=w.Layout(width="80px"))
        self.next = w.Button(description="next", icon="chevron-right", layout=w.Layout(width="80px"))
        self.position = w.HTML()
        self.export_name = w.Text(value=_variable_name(table), layout=w.Layout(width="150px"),
                                  tooltip="variable the export button sets")
        self.export = w.Button(description="export to DataFrame", icon="table",
                               layout=w.Layout(width="170px"),
                               tooltip="the shown table (filter and skinny applied) as a pandas DataFrame")
        self.rows = w.HTML(layout=w.Layout(overflow="auto", max_height="480px"))
        self.message = w.HTML()
        self.filter.observe(self._on_filter, "value")
        self.skinny.observe(lambda _change: self.show(0), "value")
        self.prev.on_click(lambda _b: self.show(max(0, self.offset - self.view.page_size)))
        self.next.on_click(lambda _b: self.show(self.offset + self.view.page_size))
        self.export.on_click(self._on_export)
        toolbar = w.HBox([self.filter, self.skinny, self.prev, self.position, self.next],
                         layout=w.Layout(align_items="center", flex_flow="row wrap"))
        exportbar = w.HBox([self.export, w.Label("into"), self.export_name],
                           layout=w.Layout(align_items="center"))
        super().__init__([toolbar, self.rows, exportbar, self.message])
        self.add_class("dbvers-table-pane")

    # -- actions ---------------------------------------------------------------
    def show(self, offset: int = 0, *, diff: Any = None) -> None:
        """Read and show one page starting at *offset* (clamped to the rows there are).

        *diff* is another connection to the same states (the background thread's).
        """
        size = self.view.page_size
        if self.total and offset >= self.total:
            offset = max(0, (self.total - 1) // size * size)
        try:
            html, n = H.page_html(diff or self.diff, self.table, offset=offset, limit=size,
                                  where=self.where, skinny=self.skinny.value)
        except DbversError as e:
            self.message.value = _message(str(e), error=True)
            return
        if n == 0 and offset > 0 and self.total is None:  # walked off the end while counting
            self.next.disabled = True
            return
        self.offset, self.shown, self.rendered = offset, n, True
        self.rows.value = html
        self._update_position()

    def set_counts(self, counts: TableCounts) -> None:
        self.counts = counts  # counted with the view's filter
        if self.where == self.view.where:
            self.total = counts.total
        if self.rendered:
            self._update_position()

    def _update_position(self) -> None:
        size = self.view.page_size
        if self.total == 0:
            text = "no changed rows" + (" match the filter" if self.where else "")
        else:
            last = self.offset + self.shown
            of = f"{self.total:,}" if self.total is not None else "… (counting)"
            text = f"rows {self.offset + 1:,}–{last:,} of {of}" if self.shown else f"no rows here, of {of}"
            if self.where:
                text += " (filtered)"
        self.position.value = f'<span style="padding:0 8px">{H.escape(text)}</span>'
        self.prev.disabled = self.offset == 0
        if self.total is None:
            self.next.disabled = self.shown < size
        else:
            self.next.disabled = self.offset + size >= self.total

    def _on_filter(self, change: dict[str, Any]) -> None:
        where = (change["new"] or "").strip() or None
        try:
            if where or (self.view.where and self.counts is not None):
                # (the tab's counts were made with the view's initial filter)
                total: int | None = self.diff.count_kinds(self.table, where).total
            else:
                total = self.counts.total if self.counts is not None else None
        except DbversError as e:
            self.message.value = _message(str(e), error=True)
            return
        self.where, self.total = where, total
        self.message.value = ""
        self.show(0)

    def _on_export(self, _button: Any = None) -> None:
        name = self.export_name.value.strip()
        if not name.isidentifier() or keyword.iskeyword(name):
            self.message.value = _message(f"'{name}' is not a valid Python variable name", error=True)
            return
        try:
            df = self.diff.to_pandas(self.table, where=self.where, skinny=self.skinny.value)
        except DbversError as e:
            self.message.value = _message(str(e), error=True)
            return
        self.view.namespace[name] = df
        self.view.exported[name] = df
        self.message.value = _message(f"{len(df):,} row(s) of {self.table} exported to the variable {name}")

    @property
    def label(self) -> str:
        return H.table_label(self.table, self.counts)

    def static_html(self) -> str:
        body = self.rows.value if self.rendered else (
            '<div style="color:#57606a">(open this tab in a live notebook to see its rows)</div>')
        return f'<div style="font-weight:600;margin-top:10px">{H.escape(self.label)}</div>{body}'


#: Above this size (both states' files), counting happens in a background thread
#: after the first page is shown (about 200k rows of a typical table).
BACKGROUND_BYTES = 32 * 1024 * 1024
#: Up to this many tables, every tab's first page is read when the view is built
#: (so a static export shows them all); past it, a tab's rows are read when opened.
EAGER_TABS = 20


class DiffView(_StaticFallback, w.VBox):
    """A diff as a widget: summary header, one tab per changed table, rows paged.

    Small diffs are counted before the view is built. For big ones (both states
    over :data:`BACKGROUND_BYTES`, or ``background=True``) the first changed
    table's first page is shown at once, and a thread on a second connection
    finds the other changed tables and counts rows, filling in the header and
    the tab labels as it goes. *counts* gives known per-table counts (a commit
    against its parent: the commit has them), which skips counting.
    """

    def __init__(self, diff: Any, *, page_size: int = H.PAGE_SIZE, where: str | None = None,
                 skinny: bool = False, tables: list[str] | None = None,
                 namespace: dict[str, Any] | None = None,
                 counts: dict[str, TableCounts] | None = None, background: bool | None = None) -> None:
        self.diff = diff
        self.page_size = max(1, int(page_size))
        self.where = where
        self.skinny = skinny
        self.namespace = _user_namespace() if namespace is None else namespace
        self.exported: dict[str, Any] = {}
        self.counts: dict[str, TableCounts] = {}
        self.pending: list[str] = []
        self.error: str | None = None
        self.panes: list[TablePane] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.schema_changes = diff.schema_changes
        self.schema_tables = {s.name for s in self.schema_changes if s.type == "table"}
        self.header = w.HTML()
        self.tabs = w.Tab()
        self.tabs.observe(self._on_tab, "selected_index")
        super().__init__([self.header])
        self.add_class("dbvers-diff-view")
        if background is None:
            background = counts is None and diff.nbytes > BACKGROUND_BYTES
        if counts is not None and not where:
            names = tables if tables is not None else sorted(
                t for t in set(counts) | self.schema_tables if t in diff.specs)
            for t in names:
                self.counts[t] = counts.get(t, TableCounts())
                self._add_pane(t, show=len(names) <= EAGER_TABS or not self.panes)
        elif not background:
            names = list(diff.tables if tables is None else tables)
            if where:
                names = [t for t in names if diff.where_applies(t, where)]
            for t in names:
                if where:
                    self.counts[t] = diff.count_kinds(t, where)
                elif tables is None:
                    self.counts[t] = diff.counts().get(t, TableCounts())  # made by diff.tables
                else:
                    self.counts[t] = diff.count_kinds(t)
            if tables is not None:  # asked-for tables without a change get no tab
                names = [t for t in names if self.counts[t].total or t in self.schema_tables]
            for t in names:
                self._add_pane(t, show=len(names) <= EAGER_TABS or not self.panes)
        else:
            self._start_background(list(diff.specs) if tables is None else list(tables))
        self._refresh()

    # -- building ----------------------------------------------------------------
    def _add_pane(self, table: str, *, show: bool = True, diff: Any = None) -> TablePane:
        """A tab for *table*; *show* reads its first page now (through *diff*, if given)."""
        pane = TablePane(self, table, self.counts.get(table), where=self.where, skinny=self.skinny)
        if show:
            pane.show(0, diff=diff)
        self.panes.append(pane)
        self.tabs.children = tuple(self.panes)
        self.tabs.titles = tuple(p.label for p in self.panes)
        if len(self.panes) == 1:
            self.children = (self.header, self.tabs)
        return pane

    def _refresh(self) -> None:
        names = [p.table for p in self.panes]
        html = _TAB_STYLE + H.summary_html(self.diff, names, self.counts, pending=self.pending,
                                           schema_changes=self.schema_changes)
        if self.where:
            html += (f'<div style="color:#57606a;font-size:12px">counts and rows filtered by '
                     f'<code>{H.escape(self.where)}</code></div>')
        if self.error:
            html += _message(self.error, error=True)
        self.header.value = html
        if self.panes:
            self.tabs.titles = tuple(p.label for p in self.panes)

    def _start_background(self, candidates: list[str]) -> None:
        where = self.where
        if where:
            candidates = [t for t in candidates if self.diff.where_applies(t, where)]
        # The first changed table, found here: its first page shows before anything is counted.
        rest: list[str] = []
        for i, t in enumerate(candidates):
            if t in self.schema_tables or self._has_rows(self.diff, t):
                self._add_pane(t)
                rest = candidates[i + 1:]
                break
        self.pending = [p.table for p in self.panes] + rest
        if not self.pending:
            return
        self._thread = threading.Thread(target=self._background, args=(rest,), daemon=True,
                                        name="dbvers-diff-count")
        self._thread.start()

    def _has_rows(self, diff: Any, table: str) -> bool:
        return next(diff.iter_rows(table, where=self.where, limit=1), None) is not None

    def _background(self, rest: list[str]) -> None:
        d2 = self.diff.copy()
        try:
            for t in rest:  # the other changed tables
                if self._stop.is_set():
                    return
                if t in self.schema_tables or self._has_rows(d2, t):
                    self._add_pane(t, diff=d2)
                else:
                    self.pending.remove(t)
                self._refresh()
            for pane in list(self.panes):  # then the counts
                if self._stop.is_set():
                    return
                c = d2.count_kinds(pane.table, self.where)
                self.counts[pane.table] = c
                pane.set_counts(c)
                self.pending.remove(pane.table)
                self._refresh()
        except Exception as e:  # shown in the header: a thread has no one else to tell
            self.error = f"counting stopped: {e}"
        finally:
            d2.close()
            self.pending = []
            if not self._stop.is_set():
                self._refresh()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background count (if any); True when every count is in."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _on_tab(self, change: dict[str, Any]) -> None:
        i = change["new"]
        if i is not None and 0 <= i < len(self.panes) and not self.panes[i].rendered:
            self.panes[i].show(0)

    def pane(self, table: str) -> TablePane:
        for p in self.panes:
            if p.table == table:
                return p
        raise KeyError(table)

    def static_html(self) -> str:
        return (f'<div class="dbvers-diff" style="color:{H.INK}">{self.header.value}'
                + "".join(p.static_html() for p in self.panes) + "</div>")

    def close(self) -> None:
        if (stop := getattr(self, "_stop", None)) is not None:
            stop.set()
        super().close()
        for p in getattr(self, "panes", []):
            p.close()


class LogView(_StaticFallback, w.VBox):
    """The history as a list; the selected commit's diff below it, and a checkout button."""

    def __init__(self, repo: Any, ref: str = "HEAD", *, n: int | None = 200, page_size: int = H.PAGE_SIZE,
                 namespace: dict[str, Any] | None = None) -> None:
        self.repo = repo
        self.ref = ref
        self.n = n
        self.page_size = page_size
        self.namespace = _user_namespace() if namespace is None else namespace
        self.commits: list[Commit] = list(repo.log(ref, n=n))
        self._diff: Any = None
        self.diff_view: DiffView | None = None
        self.select = w.Select(options=self._options(), rows=min(12, max(2, len(self.commits))),
                               layout=w.Layout(width="100%"))
        self.details = w.HTML()
        self.checkout = w.Button(description="check out", icon="code-branch", button_style="warning",
                                 tooltip="make the selected commit current (refused if there are uncommitted changes)")
        self.message = w.HTML()
        self.diff_box = w.VBox()
        self.select.observe(self._on_select, "value")
        self.checkout.on_click(self._on_checkout)
        super().__init__([self.select, self.details, w.HBox([self.checkout, self.message],
                          layout=w.Layout(align_items="center")), self.diff_box])
        self.add_class("dbvers-log-view")
        if self.commits:
            if self.select.value != self.commits[0].id:
                self.select.value = self.commits[0].id  # shows it through the observer
            else:
                self._on_select({"new": self.select.value})

    def _options(self) -> list[tuple[str, str]]:
        deco = H.decorations(self.repo)
        out = []
        for c in self.commits:
            labels = f"({', '.join(deco[c.id])}) " if c.id in deco else ""
            counts = "; ".join(f"{t} {H.counts_label(v)}" for t, v in sorted(c.counts.items()))
            text = (f"{c.short_id}  {labels}{c.summary[:70]}  ·  {counts or 'no row changes'}"
                    f"  ·  {H.date_text(c.timestamp)}")
            out.append((safe_text(text), c.id))  # a Select shows its options as plain text
        return out

    @property
    def selected(self) -> Commit | None:
        oid = self.select.value
        return next((c for c in self.commits if c.id == oid), None)

    def _on_select(self, change: dict[str, Any]) -> None:
        self.message.value = ""
        c = self.selected
        if c is None:
            return
        deco = H.decorations(self.repo)
        self.details.value = H.commit_html(c, deco.get(c.id, []))
        self.checkout.description = f"check out {self._target(c)}"
        self._show_diff(c)

    def _show_diff(self, c: Commit) -> None:
        if self.diff_view is not None:
            self.diff_view.close()
        if self._diff is not None:
            self._diff.close()
        self._diff = self.diff_view = None
        try:
            if c.parents:
                self._diff = self.repo.diff(c.parents[0], c.id)
                self._diff.a_label, self._diff.b_label = c.parents[0][:10], c.short_id
            else:  # a root commit: its state against an empty database, through the public API
                with self.repo.diff(c.id, c.id) as same:
                    self._diff = same.against_empty("(empty)")
                self._diff.b_label = c.short_id
            # A commit knows its counts against its first parent: nothing to count.
            self.diff_view = DiffView(self._diff, page_size=self.page_size, namespace=self.namespace,
                                      counts=dict(c.counts))
        except DbversError as e:
            self.diff_box.children = [w.HTML(_message(str(e), error=True))]
            return
        self.diff_box.children = [self.diff_view]

    def _target(self, c: Commit) -> str:
        """What checking out *c* means: its branch when it is a branch tip (HEAD's first), else its id."""
        branches = self.repo.branches()
        current = self.repo.head.branch
        if current is not None and branches.get(current) == c.id:
            return current
        names = sorted(n for n, oid in branches.items() if oid == c.id)
        return names[0] if names else c.short_id

    def _on_checkout(self, _button: Any = None) -> None:
        c = self.selected
        if c is None:
            return
        target = self._target(c)
        try:
            oid = self.repo.checkout(target if target != c.short_id else c.id)
        except DbversError as e:
            self.message.value = _message(str(e), error=True)
            return
        head = self.repo.head
        where = f"branch '{head.branch}'" if head.branch else "a detached HEAD"
        selected = self.select.value
        self.select.options = self._options()
        self.select.value = selected
        self.message.value = _message(f"Switched to {where} ({oid[:10]})")

    def static_html(self) -> str:
        parts = [H.log_rows_html(self.commits, H.decorations(self.repo))]
        if self.diff_view is not None:
            parts.append(self.diff_view.static_html())
        return f'<div class="dbvers-log-view" style="color:{H.INK}">{"".join(parts)}</div>'

    def close(self) -> None:
        # (also called by ipywidgets' __del__ on a view whose __init__ raised)
        if getattr(self, "diff_view", None) is not None:
            self.diff_view.close()
        if getattr(self, "_diff", None) is not None:
            self._diff.close()
        super().close()
