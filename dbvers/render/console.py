"""Rich text for the terminal: what the CLI prints for humans.

Colour only when the output is a terminal (rich decides); piped output stays
plain and readable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape as markup_escape

from ..formats import parse_timestamp
from ..storage.refnames import HEADS
from .text import safe_text

if TYPE_CHECKING:  # types only: the reports and Status are rendered here, never built
    from ..maintenance import FsckReport, GcReport, ReflogExpireReport
    from ..objects import Commit, SchemaChange, TableCounts
    from ..status import Status
    from ..storage.base import ReflogEntry


def escape(text: str) -> str:
    """User text for a rich markup string: control characters escaped (``safe_text``; rich
    prints an ESC as is), then rich's markup brackets."""
    return markup_escape(safe_text(text))


def counts_text(c: TableCounts) -> str:
    return f"[green]+{c.inserts}[/] [yellow]~{c.updates}[/] [red]-{c.deletes}[/]"


def print_counts(console: Console, counts: dict[str, TableCounts], indent: str = "  ") -> None:
    if not counts:
        return
    width = max(len(t) for t in counts)
    for table, c in sorted(counts.items()):
        console.print(f"{indent}{escape(table).ljust(width)}  {counts_text(c)}")


def print_schema_changes(console: Console, changes: list[SchemaChange], indent: str = "  ") -> None:
    for s in changes:
        colour = {"created": "green", "dropped": "red"}.get(s.change, "yellow")
        console.print(f"{indent}[{colour}]{escape(str(s))}[/]")


def head_label(branch: str | None, commit: str | None) -> str:
    if branch:
        return f"On branch [bold]{escape(branch)}[/]"
    return f"HEAD detached at [bold]{(commit or '')[:10]}[/]"


def print_commit_result(
    console: Console, branch: str | None, commit: Commit, schema: list[SchemaChange]
) -> None:
    where = branch or "detached HEAD"
    console.print(f"[{escape(where)} [bold]{commit.short_id}[/]] {escape(commit.summary)}")
    print_counts(console, commit.counts)
    print_schema_changes(console, schema)
    if reason := commit.meta.get("keyframe"):
        console.print(f"  [dim]snapshot stored ({escape(reason)})[/]")


def print_status(console: Console, st: Status) -> None:
    console.print(head_label(st.branch, st.head))
    if (tracking := st.tracking_line()) is not None:
        console.print(escape(tracking))
    if (line := st.operation_line()) is not None:
        console.print(f"[bold yellow]{escape(line)}[/]")
    if st.clean:
        console.print("nothing to commit, working database matches HEAD")
    else:
        console.print("Changes not committed:")
        print_counts(console, st.changes.counts)
        print_schema_changes(console, st.schema_changes)
        for name, (old, new) in st.pragmas_changed.items():
            console.print(f"  [yellow]PRAGMA {name}: {old} → {new}[/]")
        for t in st.changes.key_changed:
            console.print(f"  [yellow]{escape(t)}: primary key changed, compared as whole rows[/]")
        for why in st.changes.needs_keyframe:
            console.print(f"  [dim]{escape(why)} (the next commit stores a snapshot)[/]")
    if st.changes.untracked:
        names = ", ".join(st.changes.untracked)
        console.print(
            f"Virtual tables, versioned through snapshots (no row counts): {escape(names)}"
        )


def _date(ts: str) -> str:
    try:
        dt = parse_timestamp(ts)
    except ValueError:
        return ts
    return dt.strftime("%a %b %d %H:%M:%S %Y UTC")


def graph_prefixes(commits: list[Commit]) -> list[str]:
    """git's ``--graph`` lanes, simply: one column per line of history still open, ``*`` where
    the commit is, ``|`` for the others; a merge opens a column for its second parent."""
    lanes: list[str] = []
    out: list[str] = []
    for c in commits:
        if c.id not in lanes:
            lanes.append(c.id)
        at = lanes.index(c.id)
        out.append(" ".join("*" if i == at else "|" for i in range(len(lanes))))
        rest = [p for p in c.parents[1:] if p not in lanes]
        if c.parents and c.parents[0] not in lanes:
            lanes[at] = c.parents[0]
        else:
            lanes.pop(at)  # a root, or its line joins another column
        lanes.extend(rest)
    return out


def print_log(
    console: Console, commits: list[Commit], decorations: dict[str, list[str]], oneline: bool,
    graph: bool = False,
) -> None:
    if graph:
        for prefix, c in zip(graph_prefixes(commits), commits, strict=True):
            deco = decorations.get(c.id, [])
            label = f" [bold cyan]({escape(', '.join(deco))})[/]" if deco else ""
            console.print(f"{prefix} [yellow]{c.short_id}[/]{label} {escape(c.summary)}", highlight=False)
        return
    for c in commits:
        deco = decorations.get(c.id, [])
        if oneline:
            # Exactly "<short id> <message>": scripts rely on it.
            console.print(f"{c.short_id} {escape(c.summary)}", highlight=False)
            continue
        label = f" [bold cyan]({escape(', '.join(deco))})[/]" if deco else ""
        console.print(f"[yellow]commit {c.id}[/]{label}")
        if len(c.parents) > 1:
            console.print("Merge:  " + " ".join(p[:10] for p in c.parents))
        console.print(f"Author: {escape(c.author)}")
        console.print(f"Date:   {_date(c.timestamp)}")
        console.print()
        for line in c.lines:
            console.print(f"    {escape(line)}")
        if c.counts:
            console.print()
            print_counts(console, c.counts, indent="    ")
        console.print()


def print_show(
    console: Console, c: Commit, changes: list[SchemaChange], decorations: list[str]
) -> None:
    print_log(console, [c], {c.id: decorations}, oneline=False)
    if changes:
        console.print("    Schema:")
        print_schema_changes(console, changes, indent="      ")
    kind = "snapshot" if c.snapshot else "patch" if c.patch else "no row changes"
    console.print(f"    [dim]stored as {kind}" + (f" ({escape(c.meta['keyframe'])})" if "keyframe" in c.meta else "") + "[/]")


def print_head_moved(console: Console, c: Commit) -> None:
    """``HEAD is now at <short id> <summary>`` (reset)."""
    console.print(f"HEAD is now at {c.short_id} {escape(c.summary)}")


def print_refs(console: Console, refs: dict[str, str], current: str | None) -> None:
    for name, oid in sorted(refs.items()):
        mark = "* " if name == current else "  "
        style = "green" if name == current else ""
        text = f"{mark}{escape(name)}"
        console.print(f"[{style}]{text}[/] [dim]{oid[:10]}[/]" if style else f"{text} [dim]{oid[:10]}[/]")


def print_fsck(console: Console, report: FsckReport) -> None:
    for p in report.problems:
        console.print(f"[red]error:[/] {escape(p)}")
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    console.print(
        f"checked {report.objects} objects ({report.commits} commits, {report.snapshots} snapshots), "
        f"{report.refs} refs: {verdict}"
    )


def print_gc(console: Console, report: GcReport) -> None:
    recent = (f" ({report.recent_objects} unreachable but newer than the prune time; "
              "'gc --prune=now' removes them)") if report.recent_objects else ""
    console.print(
        f"removed {report.removed_objects} unreachable objects ({report.removed_bytes:,} bytes), "
        f"kept {report.kept_objects}{recent}; expired {report.expired_entries} reflog entries"
    )


def _plain(text: str) -> str:
    """A reflog message fit for one terminal line: control characters escaped, markup too."""
    return escape("".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text))


def _when(t: float | None) -> str:
    if t is None:
        return "(no time)"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short_ref(ref: str) -> str:
    return ref[len(HEADS):] if ref.startswith(HEADS) else ref


def print_reflog(console: Console, ref: str, entries: list[ReflogEntry]) -> None:
    """Newest first, git's ``<id> <ref>@{n}: <message>``, with each move's time."""
    name = _plain(_short_ref(ref))
    for n, e in enumerate(reversed(entries)):
        console.print(f"[yellow]{e.new[:10]}[/] {name}@{{{n}}} [dim]{_when(e.time)}[/]: {_plain(e.message)}")


def print_reflog_expire(console: Console, report: ReflogExpireReport) -> None:
    verb = "would expire" if report.dry_run else "expired"
    for e in report.expired:
        console.print(f"{verb} {_plain(_short_ref(e.ref))} [yellow]{e.new[:10]}[/] "
                      f"[dim]{_when(e.time)}[/]: {_plain(e.message)}")
    gone = f", {len(report.removed_reflogs)} reflog(s) left empty" if report.removed_reflogs else ""
    console.print(f"{verb} {len(report.expired)} reflog entries, kept {report.kept_entries}{gone}")

