"""The object model: commits and schemas, their canonical encoding and ids.

An object's id is the SHA-256 of its canonical bytes, which are
``b"<type> <length>\\0" + body`` (git's framing, so the type is bound into the id
and a patch can never be mistaken for a snapshot). JSON bodies are canonical:
sorted keys, no whitespace, UTF-8.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import display

FORMAT_VERSION = 1
OBJECT_TYPES = ("commit", "schema", "patch", "snapshot", "rowids")
SHORT_ID_LEN = 10
# Commits and schemas are read whole and parsed as JSON, whose Python form takes up to ~12 times
# the bytes: their bodies have a ceiling that writing refuses to pass (storage.codec.body_chunks)
# and reading treats as corruption before decoding anything (storage.codec.stream), so a crafted
# object of gigabytes is never decompressed into memory. 8 MiB is a commit with counts for
# ~150,000 tables, or a schema of ~8 MB of CREATE statements. Patches, snapshots and rowids stream.
BODY_MAX = {"commit": 8 << 20, "schema": 8 << 20}


def header(obj_type: str, size: int) -> bytes:
    if obj_type not in OBJECT_TYPES:
        raise ValueError(f"unknown object type {obj_type!r}")
    return f"{obj_type} {size}".encode() + b"\0"


def object_id(obj_type: str, body: bytes) -> str:
    h = hashlib.sha256(header(obj_type, len(body)))
    h.update(body)
    return h.hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class TableCounts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0

    def to_json(self) -> dict[str, int]:
        return {"inserts": self.inserts, "updates": self.updates, "deletes": self.deletes}

    def __str__(self) -> str:
        return f"+{self.inserts} ~{self.updates} -{self.deletes}"

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes


@dataclass(frozen=True)
class SchemaEntry:
    """One row of ``sqlite_schema`` (rootpage left out: it is layout, not content)."""

    type: str
    name: str
    tbl_name: str
    sql: str | None


@dataclass(frozen=True)
class Schema:
    entries: tuple[SchemaEntry, ...]

    def to_bytes(self) -> bytes:
        return canonical_json(
            {"entries": [[e.type, e.name, e.tbl_name, e.sql] for e in self.entries]}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Schema:
        raw = json.loads(data)
        return cls(tuple(SchemaEntry(*row) for row in raw["entries"]))

    @property
    def id(self) -> str:
        return object_id("schema", self.to_bytes())

    def by_name(self) -> dict[str, SchemaEntry]:
        return {e.name: e for e in self.entries}

    def tables(self) -> list[str]:
        return [e.name for e in self.entries if e.type == "table"]


@dataclass(frozen=True)
class Commit:
    parents: tuple[str, ...]
    schema: str
    patch: str | None
    snapshot: str | None
    message: str
    author: str
    timestamp: str
    counts: dict[str, TableCounts] = field(default_factory=dict)
    # State that lives outside ordinary tables and so outside patchsets.
    pragmas: dict[str, int] = field(default_factory=dict)
    sequences: tuple[tuple[int, str, int], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION
    # Hidden rowids a replay of the patch would get wrong (a "rowids" object; see RowidFixups).
    rowids: str | None = None

    def to_bytes(self) -> bytes:
        optional = {"rowids": self.rowids} if self.rowids else {}  # absent: older commits keep their ids
        return canonical_json(
            {
                **optional,
                "format": self.format,
                "parents": list(self.parents),
                "schema": self.schema,
                "patch": self.patch,
                "snapshot": self.snapshot,
                "message": self.message,
                "author": self.author,
                "timestamp": self.timestamp,
                "counts": {t: c.to_json() for t, c in sorted(self.counts.items())},
                "pragmas": self.pragmas,
                "sequences": [list(s) for s in self.sequences],
                "meta": self.meta,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Commit:
        raw = json.loads(data)
        return cls(
            parents=tuple(raw["parents"]),
            schema=raw["schema"],
            patch=raw["patch"],
            snapshot=raw["snapshot"],
            message=raw["message"],
            author=raw["author"],
            timestamp=raw["timestamp"],
            counts={t: TableCounts(**c) for t, c in raw.get("counts", {}).items()},
            pragmas=raw.get("pragmas", {}),
            sequences=tuple(tuple(s) for s in raw.get("sequences", [])),  # type: ignore[misc]
            meta=raw.get("meta", {}),
            format=raw.get("format", FORMAT_VERSION),
            rowids=raw.get("rowids"),
        )

    @cached_property
    def id(self) -> str:
        return object_id("commit", self.to_bytes())

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID_LEN]

    @property
    def summary(self) -> str:
        return self.lines[0]

    @property
    def lines(self) -> list[str]:
        """The message's lines, split at newlines only (str.splitlines would also split at a
        carriage return, a form feed or U+2028, which human output shows escaped)."""
        return self.message.replace("\r\n", "\n").rstrip("\n").split("\n")

    def typed_references(self) -> list[tuple[str, str]]:
        """(id, type) of every object this commit names, parents excluded."""
        refs = [(self.schema, "schema")]
        if self.patch:
            refs.append((self.patch, "patch"))
        if self.snapshot:
            refs.append((self.snapshot, "snapshot"))
        if self.rowids:
            refs.append((self.rowids, "rowids"))
        return refs

    def referenced_objects(self) -> list[str]:
        return [oid for oid, _ in self.typed_references()]

    # A commit's fields can be large (counts of thousands of tables, meta): its repr is
    # one bounded line; str() and the notebook views are what `dbvers show` shows.
    def __repr__(self) -> str:
        return f"<dbvers.Commit {self.short_id} {short_repr(self.summary)} {counts_summary(self.counts)}>"

    # Text, notebook and terminal views are registered by dbvers.render.display.
    def __str__(self) -> str:
        return str(display.render(self, "text", colour=False))

    def _repr_html_(self) -> str:
        return str(display.render(self, "html"))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(display.render(self, "text"))


class CommitLog(list):  # type: ignore[type-arg]
    """Commits, newest first (what ``Repo.log`` returns): a plain list that notebooks
    show as a table with branch and tag labels, and terminal IPython as ``dbvers log``."""

    def __init__(self, commits: Any = (), *, repo: Any = None) -> None:
        super().__init__(commits)
        self.repo = repo

    def __repr__(self) -> str:
        shown = ", ".join(f"{c.short_id} {short_repr(c.summary, 30)}" for c in self[:3])
        more = f", … {len(self) - 3} more" if len(self) > 3 else ""
        return f"<dbvers.CommitLog {len(self)} commit(s){': ' if self else ''}{shown}{more}>"

    def __str__(self) -> str:
        return str(display.render(self, "text", colour=False))

    def _repr_html_(self) -> str:
        return str(display.render(self, "html"))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("[...]" if cycle else display.render(self, "text"))


def short_repr(text: str, width: int = 50) -> str:
    """*text* as a Python literal, cut to about *width* characters (for a bounded repr)."""
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def counts_summary(counts: dict[str, TableCounts]) -> str:
    """``N table(s) +I ~U -D``: totals of per-table counts, in a line of bounded length."""
    tot = TableCounts(sum(c.inserts for c in counts.values()), sum(c.updates for c in counts.values()),
                      sum(c.deletes for c in counts.values()))
    return f"{len(counts)} table(s) {tot}"


def tag_value(v: Any) -> Any:
    """A SQLite value in JSON without loss: integers and text as they are, reals and blobs tagged."""
    if isinstance(v, float):
        return {"real": v.hex()}
    if isinstance(v, bytes):
        return {"blob": v.hex()}
    return v


def untag_value(v: Any) -> Any:
    if isinstance(v, dict):
        return float.fromhex(v["real"]) if "real" in v else bytes.fromhex(v["blob"])
    return v


@dataclass(frozen=True)
class RowidFixups:
    """The hidden rowids of rows a commit inserted or replaced in rowid tables keyed on other
    columns. A patchset names those rows by primary key, so replaying it would give them
    whatever rowid SQLite picks next; after the patch, each listed row is moved to its rowid.

    ``tables[name] = (key column names, ((rowid, key values...), ...))``
    """

    tables: dict[str, tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]]

    def to_bytes(self) -> bytes:
        return canonical_json({
            name: {"key": list(cols), "rows": [[tag_value(v) for v in row] for row in rows]}
            for name, (cols, rows) in sorted(self.tables.items())
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> RowidFixups:
        raw = json.loads(data)
        return cls({
            name: (tuple(t["key"]), tuple(tuple(untag_value(v) for v in row) for row in t["rows"]))
            for name, t in raw.items()
        })


@dataclass(frozen=True)
class SchemaChange:
    """One schema difference between two states: a table, index, view or trigger."""

    type: str
    name: str
    change: str  # created, dropped, altered
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.type} {self.name} {self.change}" + (f" ({self.detail})" if self.detail else "")
