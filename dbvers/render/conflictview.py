"""The conflicts of a merge (revert, cherry-pick) in a notebook: one tab per table, each
conflicting row as base / ours / theirs side by side, "take ours" / "take theirs" per
row and per table, then continue (or abort).

The data comes from :mod:`dbvers.merge` (``conflicts``, ``resolve``, ``merge_continue``,
``merge_abort``), the public operations, each taking the repository's lock itself; the
view holds no lock and builds nothing under one. A static HTML form of the same rows is
in the display bundle for frontends without the widget JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .. import merge
from ..errors import DbversError
from . import html as H
from .text import safe_text

if TYPE_CHECKING:
    import pandas

    from ..repo import Repo

__all__ = ["ConflictsView", "cell_value", "conflict_html", "conflict_layout", "conflicts_html", "print_conflicts"]

PAGE = 20
OURS_CELL = "#fff8c5"  # ours changed this cell (the diff's "modified" yellow)
THEIRS_CELL = "#ddf4ff"  # theirs changed it
SIDES = (("base", "base"), ("ours", "our"), ("theirs", "their"))


def conflict_layout(df: pandas.DataFrame) -> tuple[str, list[str], list[str]]:
    """(the conflict-id column, the key columns, the data columns) of a conflicts frame."""
    cols = list(df.columns)
    first_base = next(i for i, c in enumerate(cols) if c.startswith("base_"))
    n = (len(cols) - first_base - 4) // 3
    return cols[0], cols[1:first_base], [c[5:] for c in cols[first_base:first_base + n]]


def conflict_html(row: Any, columns: Sequence[str], key: Sequence[str]) -> str:
    """One conflict as a small table: a line per side, the cells a side changed coloured."""
    head = "".join(f'<th style="{H.TH_STYLE}">{H.escape(c)}</th>' for c in columns)
    kind = row["conflict"]
    lines = []
    base = [row[f"base_{c}"] for c in columns]
    missing = _missing(row)
    for label, prefix in SIDES:
        values = [row[f"{prefix}_{c}"] for c in columns]
        cells = [f'<td style="{H.TD_STYLE};font-weight:600">{label}</td>']
        if label in missing:
            cells.append(f'<td colspan="{len(columns)}" style="{H.TD_STYLE};color:#8c959f;font-style:italic">'
                         "(no row)</td>")
        else:
            colour = {"ours": OURS_CELL, "theirs": THEIRS_CELL}.get(label)
            for v, b in zip(values, base, strict=True):
                changed = colour and ("base" in missing or H.differs(cell_value(v), cell_value(b)))
                style = H.TD_STYLE + (f";background:{colour}" if changed else "")
                cells.append(f'<td style="{style}">{H.value_html(cell_value(v))}</td>')
        lines.append(f'<tr class="dbvers-conflict-{label}">{"".join(cells)}</tr>')
    constraint = row["constraint"]
    why = f" — {H.escape(str(constraint))}" if isinstance(constraint, str) and constraint else ""
    keytext = ", ".join(f"{k}={H.value_text(cell_value(row[k]))}" for k in key)
    return (f'<div class="dbvers-conflict"><span style="font-size:12px">{H.escape(str(kind))} conflict'
            f'{" at " + H.escape(keytext) if keytext else ""}{why}</span>'
            f'<table class="dbvers-rows" style="{H.TABLE_STYLE}"><thead><tr><th style="{H.TH_STYLE}"></th>'
            f'{head}</tr></thead><tbody>{"".join(lines)}</tbody></table></div>')


def _missing(row: Any) -> set[str]:
    """The sides that have no such row, from the diff types (base has none when a side added it)."""
    ours, theirs = row["our_diff_type"], row["their_diff_type"]
    out = {"base"} if "added" in (ours, theirs) else set()
    for label, t in (("ours", ours), ("theirs", theirs)):
        if t == "removed" or ("base" in out and _na(t)):
            out.add(label)
    return out


def _na(v: Any) -> bool:
    try:
        return bool(v is None or v != v)
    except (TypeError, ValueError):
        return False


def cell_value(v: Any) -> Any:
    """A DataFrame cell as the Python value it stands for (pandas' NA as None)."""
    if _na(v):
        return None
    return v.item() if hasattr(v, "item") and not isinstance(v, (bytes, str)) else v


def conflicts_html(frames: dict[str, pandas.DataFrame], *, limit: int = PAGE) -> str:
    """Every table's conflicts (the first *limit* of each) as static HTML."""
    if not frames:
        return '<div class="dbvers-conflicts">No conflicts left.</div>'
    parts = []
    for table, df in frames.items():
        _id, key, columns = conflict_layout(df)
        rows = "".join(conflict_html(r, columns, key) for _, r in df.head(limit).iterrows())
        more = f"<div>… and {len(df) - limit:,} more</div>" if len(df) > limit else ""
        parts.append(f"<h4>{H.escape(table)} ({len(df):,} conflicts)</h4>{rows}{more}")
    return f'<div class="dbvers-conflicts">{"".join(parts)}</div>'


class ConflictsView(w.VBox):
    """The widget: tabs of conflicts with take-ours / take-theirs, continue and abort."""

    def __init__(self, repo: Repo, *, page: int = PAGE) -> None:
        self.repo = repo
        self.page = page
        self.header = w.HTML()
        self.message = w.HTML()
        self.tabs = w.Tab()
        self.continue_button = w.Button(description="Continue", button_style="success", icon="check")
        self.abort_button = w.Button(description="Abort", button_style="danger", icon="times")
        self.continue_button.on_click(lambda _b: self._act(self.finish))
        self.abort_button.on_click(lambda _b: self._act(self.abort))
        super().__init__([self.header, self.tabs, w.HBox([self.continue_button, self.abort_button]), self.message])
        self.add_class("dbvers-conflicts-view")
        self.refresh()

    # -- what it shows ---------------------------------------------------------------
    def refresh(self) -> None:
        op = merge.current(self.repo)
        if op is None:
            self.header.value = "<b>No merge, revert or cherry-pick is in progress.</b>"
            self.tabs.children = ()
            self.continue_button.disabled = self.abort_button.disabled = True
            return
        frames = merge.conflicts(self.repo)
        left = sum(len(df) for df in frames.values())
        self.header.value = (f"<b>{H.escape(op.kind)} in progress</b>: {left:,} conflicting rows in "
                             f"{len(frames)} tables" if left else
                             f"<b>{H.escape(op.kind)} in progress</b>: no conflicts left — continue to commit")
        self.tabs.children = tuple(self._pane(t, df) for t, df in frames.items())
        for i, t in enumerate(frames):
            self.tabs.set_title(i, f"{safe_text(t)} ({len(frames[t]):,})")
        self.continue_button.disabled = bool(left)
        self.abort_button.disabled = False

    def _pane(self, table: str, df: pandas.DataFrame) -> w.VBox:
        id_col, key, columns = conflict_layout(df)
        bar = w.HBox([self._button("take ours for all", lambda: self.take("ours", table)),
                      self._button("take theirs for all", lambda: self.take("theirs", table))])
        rows = []
        for _, r in df.head(self.page).iterrows():
            cid = int(r[id_col])
            rows.append(w.HBox([
                w.HTML(conflict_html(r, columns, key)),
                w.VBox([self._button("take ours", lambda cid=cid: self.take("ours", table, cid)),
                        self._button("take theirs", lambda cid=cid: self.take("theirs", table, cid))]),
            ]))
        more = [w.HTML(f"… and {len(df) - self.page:,} more (settle these first, or use the table buttons)")] \
            if len(df) > self.page else []
        pane = w.VBox([bar, *rows, *more])
        pane.id_column = id_col  # type: ignore[attr-defined]
        return pane

    def _button(self, label: str, action: Callable[[], Any]) -> w.Button:
        b = w.Button(description=label, layout=w.Layout(width="auto"))
        b.on_click(lambda _b: self._act(action))
        return b

    # -- what it does --------------------------------------------------------------------
    def take(self, side: str, table: str, conflict_id: int | None = None) -> int:
        """Settle one conflict (by id) or all of a table's with ours' or theirs' row."""
        where = None
        if conflict_id is not None:
            id_col = conflict_layout(merge.conflicts(self.repo, table)[table])[0]
            where = f'"{id_col}" = {int(conflict_id)}'
        n = merge.resolve(self.repo, side, [table], where)
        self.refresh()
        self.message.value = f"took {side} for {n} row{'s' if n != 1 else ''} of {H.escape(table)}"
        return n

    def finish(self) -> None:
        c = merge.merge_continue(self.repo)
        self.refresh()
        self.message.value = f"committed {c.id[:12]} {H.escape(c.summary)}"

    def abort(self) -> None:
        merge.merge_abort(self.repo)
        self.refresh()
        self.message.value = "aborted: the working database holds HEAD's state again"

    def _act(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except DbversError as e:
            self.message.value = f'<span style="color:#cf222e">{H.escape(str(e))}</span>'

    # -- without the widget JavaScript ------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None and merge.current(self.repo) is not None:
            data["text/html"] = conflicts_html(merge.conflicts(self.repo))
        return data


def print_conflicts(console: Any, frames: dict[str, pandas.DataFrame], *, limit: int = 50) -> None:
    """``dbvers conflicts``: each conflicting row as a small table, base / ours / theirs."""
    from rich.table import Table

    if not frames:
        console.print("No conflicts.")
        return
    for name, df in frames.items():
        id_col, key, columns = conflict_layout(df)
        console.print(f"{safe_text(name)}: {len(df):,} conflicts", markup=False, highlight=False)
        for _, r in df.head(limit).iterrows():
            keytext = ", ".join(f"{k}={H.value_text(cell_value(r[k]))}" for k in key)
            why = f" ({r['constraint']})" if isinstance(r["constraint"], str) and r["constraint"] else ""
            t = Table(title=f"#{int(r[id_col])} {r['conflict']}{' at ' + keytext if keytext else ''}{why}",
                      title_justify="left")
            t.add_column("")
            for c in columns:
                t.add_column(safe_text(c), overflow="fold")
            missing = _missing(r)
            for label, prefix in SIDES:
                cells = ["(no row)"] + [""] * (len(columns) - 1) if label in missing else \
                    [H.value_text(cell_value(r[f"{prefix}_{c}"])) for c in columns]
                t.add_row(label, *cells)
            console.print(t)
        if len(df) > limit:
            console.print(f"... and {len(df) - limit:,} more (--format json|csv|parquet gives them all)")
