"""Static HTML (and IPython text) views of diffs, commits and the log.

These are what a notebook shows without the widget JavaScript (nbconvert,
GitHub, VS Code without a widget manager): ``Diff._repr_html_``,
``Commit._repr_html_`` and ``CommitLog._repr_html_`` land here. The widgets in
:mod:`dbvers.render.widgets` reuse the same pieces, so the live and the static
views look alike.

Everything is inline-styled (notebook renderers drop ``<style>`` blocks) with
an explicit text colour, so rows stay readable on dark themes. Big diffs show
their first page only: the rows are read from a streaming query with a LIMIT,
never all at once.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence
from html import escape as html_escape
from typing import TYPE_CHECKING, Any

from ..formats import parse_timestamp
from ..objects import Commit, SchemaChange, TableCounts
from .text import safe_text

if TYPE_CHECKING:
    from ..diff import Diff

ARROW = "→"
PAGE_SIZE = 50
STATIC_PAGE_SIZE = 20
MAX_CELL = 80

INK = "#1f2328"
COLOURS = {  # row backgrounds: added green, removed red, modified yellow
    "added": "#dafbe1",
    "removed": "#ffebe9",
    "modified": "#fff8c5",
}
CHANGED_CELL = "#f5d76e"
MARKS = {"added": "+", "removed": "−", "modified": "~"}
OLD_STYLE = "color:#cf222e;text-decoration:line-through"
NEW_STYLE = "color:#116329;font-weight:600"
TABLE_STYLE = (f"border-collapse:collapse;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;"
               f"font-size:12px;color:{INK};margin:4px 0")
TH_STYLE = "text-align:left;padding:3px 8px;border-bottom:2px solid #d0d7de;background:#f6f8fa;color:#1f2328"
TD_STYLE = "padding:2px 8px;border-bottom:1px solid #eaeef2;white-space:nowrap;text-align:left"
BADGE = ("display:inline-block;padding:0 6px;margin-right:4px;border-radius:10px;font-size:11px;"
         "font-family:ui-monospace,monospace;border:1px solid {b};color:{c};background:{bg}")


# -- values ------------------------------------------------------------------------


def escape(text: str, quote: bool = True) -> str:
    """User text for HTML: control characters escaped (``safe_text``), then HTML's."""
    return html_escape(safe_text(text), quote)


def value_text(v: Any, *, exact: bool = False, width: int = MAX_CELL) -> str:
    """A cell value as text: NULL, numbers as written, text as is (quoted when *exact*)."""
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        text = "x'" + v[:32].hex() + ("…" if len(v) > 32 else "") + "'"
    elif isinstance(v, str):
        text = safe_text(v)
        text = "'" + text + "'" if exact else text
    elif isinstance(v, float):
        text = repr(v)
    else:
        text = str(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def value_html(v: Any, *, exact: bool = False) -> str:
    if v is None:
        return '<span class="dbvers-null" style="color:#8c959f;font-style:italic">NULL</span>'
    return escape(value_text(v, exact=exact))


def differs(a: Any, b: Any) -> bool:
    return a != b or type(a) is not type(b)


def counts_html(c: TableCounts) -> str:
    return (f'<span style="color:#1a7f37">+{c.inserts:,}</span> '
            f'<span style="color:#9a6700">~{c.updates:,}</span> '
            f'<span style="color:#cf222e">−{c.deletes:,}</span>')


def counts_label(c: TableCounts) -> str:
    return f"+{c.inserts:,} ~{c.updates:,} −{c.deletes:,}"


# -- diff pieces shared with the widgets --------------------------------------------


def rows_html(columns: Sequence[str], key: Iterable[str], rows: Iterable[Sequence[Any]]) -> tuple[str, int]:
    """An HTML table of diff rows (Dolt's shape: diff_type, from_c, to_c, ...); returns (html, n).

    Added rows are green, removed red, modified yellow with each changed cell as
    ``old → new``.
    """
    names = [c[5:] for c in columns[1::2]]
    keys = set(key)
    head = [f'<th style="{TH_STYLE}"></th>']
    for c in names:
        title = ' title="primary key"' if c in keys else ""
        style = TH_STYLE + (";text-decoration:underline" if c in keys else "")
        head.append(f'<th style="{style}"{title}>{escape(c)}</th>')
    body: list[str] = []
    n = 0
    for row in rows:
        kind = row[0]
        old, new = row[1::2], row[2::2]
        cells = [f'<td class="dbvers-mark" style="{TD_STYLE};font-weight:700" title="{kind}">'
                 f'{MARKS.get(kind, "?")}</td>']
        for c, o, v in zip(names, old, new, strict=True):
            if kind == "added":
                cells.append(f'<td style="{TD_STYLE}">{value_html(v)}</td>')
            elif kind == "removed":
                cells.append(f'<td style="{TD_STYLE}">{value_html(o)}</td>')
            elif c not in keys and differs(o, v):
                exact = o == v  # same value, different SQLite type: show the quotes
                cells.append(
                    f'<td class="dbvers-changed" style="{TD_STYLE};background:{CHANGED_CELL}">'
                    f'<span class="dbvers-old" style="{OLD_STYLE}">{value_html(o, exact=exact)}</span>'
                    f' {ARROW} '
                    f'<span class="dbvers-new" style="{NEW_STYLE}">{value_html(v, exact=exact)}</span></td>'
                )
            else:
                cells.append(f'<td style="{TD_STYLE}">{value_html(v)}</td>')
        body.append(f'<tr class="dbvers-row dbvers-{kind}" style="background:{COLOURS.get(kind, "")};'
                    f'color:{INK}">{"".join(cells)}</tr>')
        n += 1
    html = (f'<table class="dbvers-rows" style="{TABLE_STYLE}"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')
    return html, n


def table_label(table: str, c: TableCounts | None) -> str:
    return f"{safe_text(table)} ({counts_label(c) if c is not None else 'counting…'})"


def summary_html(diff: Diff, tables: Sequence[str] | None = None,
                 counts: dict[str, TableCounts] | None = None, pending: Sequence[str] = (),
                 schema_changes: Sequence[SchemaChange] | None = None) -> str:
    """The header: which states, totals, one line per changed table, schema changes.

    *counts* replaces ``diff.counts()`` (known counts, or those counted so far);
    tables in *pending* are still being counted or looked for. With *counts* and
    *schema_changes* given, no query runs (safe from another thread).
    """
    if counts is None:
        counts = diff.counts()
    tables = list(diff.tables if tables is None else tables)
    waiting = set(pending)
    schema_by_table: dict[str, list[str]] = {}
    other_schema: list[str] = []
    for s in diff.schema_changes if schema_changes is None else schema_changes:
        if s.type == "table":
            schema_by_table.setdefault(s.name, []).append(f"{s.change}" + (f" ({s.detail})" if s.detail else ""))
        else:
            other_schema.append(str(s))
    tot = TableCounts(
        sum(counts.get(t, TableCounts()).inserts for t in tables),
        sum(counts.get(t, TableCounts()).updates for t in tables),
        sum(counts.get(t, TableCounts()).deletes for t in tables),
    )
    title = (f'<div class="dbvers-title" style="font-weight:600;margin:2px 0 4px 0">diff '
             f'<code>{escape(diff.a_label)}</code> {ARROW} <code>{escape(diff.b_label)}</code>: ')
    if not tables and not other_schema and not waiting:
        return title + "no differences</div>"
    if waiting:
        title += (f"{len(tables)} table(s) changed so far; counting rows "
                  f"(the pages below are ready to browse)…</div>")
    else:
        title += (f"{len(tables)} table(s) changed, {tot.inserts:,} row(s) added, "
                  f"{tot.updates:,} modified, {tot.deletes:,} removed</div>")
    rows = []
    for t in tables:
        c = counts.get(t, TableCounts())
        schema = "; ".join(schema_by_table.get(t, []))
        note = ""
        spec = diff.specs.get(t)
        if spec is not None and spec.key_changed:
            note = " (primary key changed: compared as whole rows)"
        if t in waiting and t not in counts:
            cells = "".join(f'<td style="{TD_STYLE};text-align:right;color:#57606a">…</td>' for _ in range(3))
        else:
            cells = (f'<td style="{TD_STYLE};text-align:right;color:#1a7f37">{c.inserts:,}</td>'
                     f'<td style="{TD_STYLE};text-align:right;color:#9a6700">{c.updates:,}</td>'
                     f'<td style="{TD_STYLE};text-align:right;color:#cf222e">{c.deletes:,}</td>')
        rows.append(f'<tr><td style="{TD_STYLE}">{escape(t)}</td>{cells}'
                    f'<td style="{TD_STYLE}">{escape(schema + note)}</td></tr>')
    head = "".join(f'<th style="{TH_STYLE}">{h}</th>'
                   for h in ("table", "added", "modified", "removed", "schema"))
    html = (title + f'<table class="dbvers-summary" style="{TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')
    if other_schema:
        html += "".join(f'<div style="color:#9a6700;font-size:12px">schema: {escape(s)}</div>'
                        for s in other_schema)
    return f'<div class="dbvers-summary-box" style="color:{INK}">{html}</div>'


def page_html(diff: Diff, table: str, *, offset: int = 0, limit: int = PAGE_SIZE,
              where: str | None = None, skinny: bool = False) -> tuple[str, int]:
    """One page of a table's changed rows as an HTML table; returns (html, rows shown)."""
    spec = diff.spec(table)
    columns = diff.output_columns(table, skinny=skinny, where=where, limit=limit, offset=offset)
    rows = diff.iter_rows(table, where=where, limit=limit, offset=offset, skinny=skinny)
    html, n = rows_html(columns, spec.key, rows)
    if spec.key_changed:
        html = ('<div style="color:#57606a;font-size:12px">primary key changed: rows are compared '
                'as whole rows (all removed, then all added)</div>') + html
    return html, n


# -- whole views -----------------------------------------------------------------------


def diff_html(diff: Diff, *, page_size: int = STATIC_PAGE_SIZE) -> str:
    """The static view: summary header, then each table's first page of changed rows."""
    parts = [summary_html(diff)]
    counts = diff.counts()
    for t in diff.tables:
        c = counts.get(t, TableCounts())
        parts.append(f'<div class="dbvers-table" style="font-weight:600;margin-top:10px;color:{INK}">'
                     f'{escape(t)} <span style="font-weight:400">{counts_html(c)}</span></div>')
        html, shown = page_html(diff, t, limit=page_size)
        parts.append(html)
        if c.total > shown:
            parts.append(f'<div class="dbvers-more" style="color:#57606a;font-size:12px">… and '
                         f'{c.total - shown:,} more changed row(s); <code>.widget()</code> pages through '
                         f'them, <code>.to_pandas("{escape(t)}")</code> gives them all</div>')
    return f'<div class="dbvers-diff">{"".join(parts)}</div>'


def diff_text(diff: Diff, *, limit: int = STATIC_PAGE_SIZE, colour: bool | None = None) -> str:
    """The terminal form (``dbvers diff``), each table cut to its first *limit* rows."""
    from .diffview import print_diff, summary_line

    buf = io.StringIO()
    if colour is None:
        colour = _tty()
    totals = print_diff(diff, diff.tables, limit=limit, out=buf, colour=colour)
    buf.write(summary_line(len(diff.tables), totals))
    return buf.getvalue()


def _tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def date_text(ts: str) -> str:
    try:
        return parse_timestamp(ts).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return ts


def decorations(repo: Any) -> dict[str, list[str]]:
    """Commit id -> labels, like git's: ``HEAD -> main``, other branches, ``tag: v1``."""
    deco: dict[str, list[str]] = {}
    if repo is None:
        return deco
    head = repo.head
    for name, oid in sorted(repo.branches().items()):
        if name == head.branch:
            deco.setdefault(oid, []).insert(0, f"HEAD -> {name}")
        else:
            deco.setdefault(oid, []).append(name)
    if head.branch is None and head.commit:
        deco.setdefault(head.commit, []).insert(0, "HEAD")
    for name, oid in sorted(repo.tags().items()):
        deco.setdefault(oid, []).append(f"tag: {name}")
    return deco


def badges_html(labels: Iterable[str]) -> str:
    out = []
    for label in labels:
        if label.startswith("tag: "):
            colours = {"b": "#bf8700", "c": "#7d4e00", "bg": "#fff8c5"}
        elif label.startswith("HEAD"):
            colours = {"b": "#0969da", "c": "#0550ae", "bg": "#ddf4ff"}
        else:
            colours = {"b": "#1a7f37", "c": "#116329", "bg": "#dafbe1"}
        out.append(f'<span class="dbvers-label" style="{BADGE.format(**colours)}">{escape(label)}</span>')
    return "".join(out)


def commit_counts_html(c: Commit) -> str:
    if not c.counts:
        return '<span style="color:#57606a">no row changes</span>'
    return "; ".join(f"{escape(t)} {counts_html(v)}" for t, v in sorted(c.counts.items()))


def commit_html(c: Commit, labels: Iterable[str] = ()) -> str:
    """One commit: id, labels, author, date, message and per-table counts."""
    parents = ", ".join(p[:10] for p in c.parents) or "none (root commit)"
    msg = "<br>".join(escape(line) for line in c.lines)
    rows = "".join(
        f'<tr><td style="{TD_STYLE};color:#57606a">{k}</td><td style="{TD_STYLE};white-space:normal">{v}</td></tr>'
        for k, v in (
            ("commit", f"<code>{c.id}</code> {badges_html(labels)}"),
            ("parents", f"<code>{escape(parents)}</code>"),
            ("author", escape(c.author)),
            ("date", escape(date_text(c.timestamp))),
            ("message", msg),
            ("changes", commit_counts_html(c)),
        )
    )
    return (f'<div class="dbvers-commit" style="color:{INK}"><table style="{TABLE_STYLE}">'
            f"<tbody>{rows}</tbody></table></div>")


def _text_console(buf: io.StringIO, colour: bool | None) -> Any:
    from rich.console import Console

    return Console(file=buf, highlight=False, soft_wrap=True, force_terminal=_tty() if colour is None else colour,
                   force_jupyter=False, no_color=colour is False)


def commit_text(c: Commit, labels: Sequence[str] = (), *, colour: bool | None = None) -> str:
    from .console import print_log

    buf = io.StringIO()
    print_log(_text_console(buf, colour), [c], {c.id: list(labels)}, oneline=False)
    return buf.getvalue().rstrip("\n")


def log_rows_html(commits: Sequence[Commit], deco: dict[str, list[str]]) -> str:
    head = "".join(f'<th style="{TH_STYLE}">{h}</th>' for h in ("commit", "", "message", "changes", "author", "date"))
    rows = []
    for c in commits:
        rows.append(
            f'<tr class="dbvers-commit-row"><td style="{TD_STYLE}"><code>{c.short_id}</code></td>'
            f'<td style="{TD_STYLE}">{badges_html(deco.get(c.id, []))}</td>'
            f'<td style="{TD_STYLE}">{escape(c.summary)}</td>'
            f'<td style="{TD_STYLE}">{commit_counts_html(c)}</td>'
            f'<td style="{TD_STYLE};color:#57606a">{escape(c.author)}</td>'
            f'<td style="{TD_STYLE};color:#57606a">{escape(date_text(c.timestamp))}</td></tr>'
        )
    return (f'<table class="dbvers-log" style="{TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def log_html(commits: Sequence[Commit], repo: Any = None) -> str:
    return f'<div style="color:{INK}">{log_rows_html(commits, decorations(repo))}</div>'


def log_text(commits: Sequence[Commit], repo: Any = None, *, colour: bool | None = None) -> str:
    from .console import print_log

    buf = io.StringIO()
    print_log(_text_console(buf, colour), list(commits), decorations(repo), oneline=False)
    return buf.getvalue().rstrip("\n")


def status_text(st: Any, *, colour: bool | None = None) -> str:
    """What ``dbvers status`` prints."""
    from .console import print_status

    buf = io.StringIO()
    print_status(_text_console(buf, colour), st)
    return buf.getvalue().rstrip("\n")


def status_html(st: Any) -> str:
    """A status for a notebook: where HEAD is, then each changed table's counts."""
    where = (f"on branch <b>{escape(st.branch)}</b>" if st.branch
             else f"HEAD detached at <code>{escape((st.head or '')[:10])}</code>")
    if (tracking := st.tracking_line()) is not None:
        where += f"<br>{escape(tracking)}"
    if (line := st.operation_line()) is not None:
        where += f'<br><b style="color:#9a6700">{escape(line)}</b>'
    if st.clean:
        body = "nothing to commit, working database matches HEAD"
    else:
        rows = [f'<tr><td style="{TD_STYLE}">{escape(t)}</td><td style="{TD_STYLE}">{counts_html(c)}</td></tr>'
                for t, c in sorted(st.changes.counts.items()) if c.total]
        rows += [f'<tr><td style="{TD_STYLE}" colspan="2">{escape(str(s))}</td></tr>' for s in st.schema_changes]
        rows += [f'<tr><td style="{TD_STYLE}" colspan="2">PRAGMA {escape(k)}: {old} {ARROW} {new}</td></tr>'
                 for k, (old, new) in st.pragmas_changed.items()]
        body = (f'changes not committed:<table style="{TABLE_STYLE}"><tbody>{"".join(rows)}</tbody></table>')
    return f'<div class="dbvers-status" style="color:{INK}">{where}: {body}</div>'
