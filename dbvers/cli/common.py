"""What every command module of the CLI uses (layer L5): the parser class, the
:class:`Command` record a module declares its commands with, opening the
repository an invocation names, and machine output (``--format``, ``-o FILE``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import UsageError

FORMATS = ("json", "csv", "parquet")

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the notebook magics can share it.

    No abbreviated options: ``push --force`` must not quietly mean ``--force-with-lease``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        raise usage_error(self.prog, message)


def usage_error(prog: str, message: str) -> UsageError:
    """argparse's complaint about *prog* (``dbvers push``) as one line naming the command
    (the boundary adds ``dbvers: error:``) and where its options are listed."""
    name = prog.removeprefix("dbvers").strip()
    return UsageError(f"{name + ': ' if name else ''}{message}; see '{prog} --help'")


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, what runs it, its one-line help and its arguments."""

    name: str
    run: Handler
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


def add_location(p: argparse.ArgumentParser) -> None:
    """``--db``/``--store`` accepted after the command too (``dbvers init other.db --store DIR``,
    as the "already tracks" hint suggests); SUPPRESS keeps a global value when absent."""
    p.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--store", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_format(p: argparse.ArgumentParser, formats: Sequence[str] = ("json",)) -> None:
    p.add_argument("--format", choices=formats, help="machine-readable output")
    p.add_argument("-o", "--output", metavar="FILE", help="write machine output to FILE")


def open_repo(args: argparse.Namespace) -> Any:
    """The repository ``--db``/``--store`` (or the current directory) names."""
    from ..opening import open_repo as open_

    return open_(args.db, store=args.store)


# -- machine output -----------------------------------------------------------------


def emit(args: argparse.Namespace, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    """Write *rows* as json/csv/parquet to stdout or ``-o FILE``."""
    fmt = args.format
    out_path = getattr(args, "output", None)
    if fmt == "json":
        write_text(out_path, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    table = rows if isinstance(rows, list) else [rows]
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(table[0].keys()) if table else []
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in table:
            w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                        for k, v in r.items()})
        write_text(out_path, buf.getvalue())
        return
    if fmt == "parquet":
        if not out_path:
            raise UsageError("--format parquet needs -o FILE")
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = [{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()}
                for r in table]
        pq.write_table(pa.Table.from_pylist(flat), out_path)


def write_text(path: str | None, text: str) -> None:
    if path:
        with output_file(path) as f:
            f.write(text)
    else:
        sys.stdout.write(text)


@contextlib.contextmanager
def output_file(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """``-o FILE``: a temp file beside FILE, renamed onto it only when the command succeeds,
    so a failed command leaves FILE as it was."""
    from ..fsutil import TMP_PREFIX

    target = Path(path)
    if target.is_dir():
        raise UsageError(f"-o {path}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise UsageError(f"-o {path}: directory {target.parent} does not exist")
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def commit_json(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "short_id": c.short_id,
        "parents": list(c.parents),
        "message": c.message,
        "author": c.author,
        "timestamp": c.timestamp,
        "counts": {t: v.to_json() for t, v in sorted(c.counts.items())},
        "snapshot": c.snapshot,
        "patch": c.patch,
    }


def decorations(repo: Any) -> dict[str, list[str]]:
    """Labels per commit id, as ``git log --decorate``: ``HEAD -> main``, ``tag: v1``."""
    deco: dict[str, list[str]] = {}
    head = repo.head
    for name, oid in repo.branches().items():
        label = f"HEAD -> {name}" if name == head.branch else name
        deco.setdefault(oid, []).insert(0 if name == head.branch else len(deco.get(oid, [])), label)
    if head.branch is None and head.commit:
        deco.setdefault(head.commit, []).insert(0, "HEAD")
    for name, oid in repo.refs.list("refs/remotes/").items():
        deco.setdefault(oid, []).append(name)
    for name, oid in repo.tags().items():
        deco.setdefault(oid, []).append(f"tag: {name}")
    return deco

