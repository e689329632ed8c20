"""The working database (layer L2): copies out of it, comparisons, and replacing it under a journal.

The working database is the user's file: it is read and written only through
:mod:`dbvers.sqlio` (stdlib ``sqlite3``; DESIGN.md section 2). This module owns

* copies out (a private file of its current committed state) and the errors a
  damaged copy means for the user;
* the *clean record* (``cache/working.json``: the file's fingerprint when it last
  held HEAD's state, so status and commit skip a full comparison);
* the comparison of a private copy with a commit's state;
* replacing it with a commit's state (verified, in one transaction) under the
  *operation journal* ``.dbvers/CHECKOUT``, which records the ref moves that must
  follow the copy, and an operation's own state that outlives them (a merge in
  progress: MERGE_HEAD, base, conflicts), and the recovery that finishes or forgets
  a move a killed process left.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from . import changes as ch
from . import snapshots, sqlio
from .config import Config, env_override
from .errors import (
    CheckoutJournalError,
    CorruptDatabaseError,
    DbversError,
    StorageError,
    UnfinishedMoveError,
)
from .formats import is_id
from .fsutil import remove_stale_temps, temp_path, write_atomic
from .objects import SchemaChange
from .schemadiff import schema_changes
from .states import States
from .storage.base import RefStore
from .storage.refnames import HEADS, validate_name

JOURNAL = "CHECKOUT"
# What wrote a journal; merge, revert and cherry-pick add theirs (issue 12).
MOVE_OPS = ("checkout", "reset", "restore")


def lock_timeout(config: Config) -> float:
    """How long to wait for the store's lock and the working database (env overrides config)."""
    override = env_override("DBVERS_LOCK_TIMEOUT")
    return float(override) if override is not None else config.getfloat("lock", "timeout")


class ChangeSummary:
    """``clean`` and ``dirty_tables`` of anything holding what differs from a commit
    (:class:`WorkingChanges`, and ``status.Status``, which adds the refs)."""

    changes: ch.Changes
    schema_changes: list[SchemaChange]
    pragmas_changed: dict[str, tuple[int, int]]
    sequences_changed: bool

    @property
    def clean(self) -> bool:
        return self.changes.empty and not self.pragmas_changed and not self.sequences_changed

    @property
    def dirty_tables(self) -> list[str]:
        return dirty_names(self.changes, self.schema_changes, self.pragmas_changed, self.sequences_changed)


@dataclass
class WorkingChanges(ChangeSummary):
    """What differs between the working database and a commit (a status without the refs)."""

    changes: ch.Changes
    schema_changes: list[SchemaChange]
    pragmas_changed: dict[str, tuple[int, int]]
    sequences_changed: bool = False


def dirty_names(changes: ch.Changes, schema: Sequence[SchemaChange], pragmas_changed: dict[str, Any],
                sequences_changed: bool) -> list[str]:
    """The names a refusal lists: changed tables, else what only a keyframe or the header holds."""
    names = set(changes.changed_tables)
    names.update(s.name for s in schema)
    if sequences_changed:
        names.add("sqlite_sequence")
    if not names and changes.needs_keyframe:
        # Changes only a keyframe can carry (virtual tables' contents, sqlite_stat*).
        names.update(changes.untracked or ["(sqlite_stat tables)"])
    return sorted(names) or (["(database header)"] if pragmas_changed else [])


@dataclass(frozen=True)
class Intent:
    """One operation journal record.

    *target*, *head*, *ref*: a pending move (the working database is being made
    commit *target*'s state; then HEAD's text becomes *head* and branch ``ref[0]``
    moves to ``ref[1]``); *target* None: no move pending. *state*: the operation's
    own record, kept after the move until the operation ends (issue 12's merge).
    """

    op: str = "checkout"
    target: str | None = None
    head: str | None = None
    ref: tuple[str, str] | None = None
    state: dict[str, Any] | None = field(default=None, hash=False)

    def to_bytes(self) -> bytes:
        record: dict[str, Any] = {"op": self.op, "target": self.target, "head": self.head,
                                  "ref": list(self.ref) if self.ref else None}
        if self.state is not None:
            record["state"] = self.state
        return json.dumps(record).encode()


def _valid_branch(name: str) -> bool:
    try:
        validate_name(name)
    except DbversError:
        return False
    return True


def parse_intent(data: bytes, where: str) -> Intent:
    """A journal's record checked field by field (today's and the older checkout-only format)."""
    try:
        rec = json.loads(data)
    except ValueError:
        raise CheckoutJournalError(where, "not JSON") from None
    if not isinstance(rec, dict):
        raise CheckoutJournalError(where, "not a JSON object")
    op, target, head, ref, state = (rec.get(k) for k in ("op", "target", "head", "ref", "state"))
    op = "checkout" if op is None else op  # the format before operation kinds
    if not isinstance(op, str) or not op.replace("-", "").isalpha():
        raise CheckoutJournalError(where, "its operation is not a name")
    if state is not None and not isinstance(state, dict):
        raise CheckoutJournalError(where, "its operation state is not a JSON object")
    if not (isinstance(target, str) and is_id(target)) and not (target is None and state is not None):
        raise CheckoutJournalError(where, "no valid target commit id")
    if head is not None:
        name = head[5:].strip().removeprefix(HEADS) if isinstance(head, str) and head.startswith(
            "ref: " + HEADS) else None
        if not isinstance(head, str) or not (is_id(head.strip()) or (name and _valid_branch(name))):
            raise CheckoutJournalError(where, "its new HEAD is not a branch or a commit id")
    if ref is not None and not (
            isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str)
            and ref[0].startswith(HEADS) and _valid_branch(ref[0].removeprefix(HEADS))
            and isinstance(ref[1], str) and is_id(ref[1])):
        raise CheckoutJournalError(where, "its branch update is not a branch and a commit id")
    return Intent(op, target, head, (ref[0], ref[1]) if ref else None, state)


class Worktree:
    """The working database *path* of the store *store_dir*, with its states and refs."""

    def __init__(self, path: Path, store_dir: Path, states: States, refs: RefStore, config: Config) -> None:
        self.path = path
        self.store_dir = store_dir
        self.states = states
        self.refs = refs
        self.config = config
        self.journal = store_dir / JOURNAL
        # The planner's sqlite_stat* tables are versioned only when asked (guide: "What is versioned").
        self.version_stats = config.getboolean("stats", "version")
        # Why the last recovery couldn't use .dbvers/CHECKOUT (read-only commands run anyway).
        self.journal_problem: str | None = None

    def lock_timeout(self) -> float:
        return lock_timeout(self.config)

    # -- copies out --------------------------------------------------------------------
    def copy_out(self) -> Path:
        """A private copy of the working database's current committed state (the caller removes it)."""
        cache = self.states.cache_dir
        cache.mkdir(exist_ok=True)
        tmp = temp_path(cache, ".db")
        try:
            sqlio.copy_out(self.path, tmp, self.lock_timeout())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    @contextlib.contextmanager
    def reading_copy(self, copy: Path) -> Iterator[None]:
        """Turn SQLite's "malformed" while reading *copy* (a private copy of the working
        database) into the user's error: the copy has the working file's damaged pages."""
        try:
            yield
        except snapshots.IntegrityError as e:
            raise CorruptDatabaseError(str(self.path), e.problems[0][:100], self._corrupt_fix()) from None
        except (apsw.CorruptError, apsw.NotADBError) as e:
            try:
                damaged = bool(snapshots.file_problems(copy, quick=True))
            except apsw.Error:
                damaged = True
            if not damaged:
                raise  # the copy is sound: the damage is in dbvers's own files
            raise CorruptDatabaseError(str(self.path), str(e), self._corrupt_fix()) from None

    def _corrupt_fix(self) -> str:
        if self.refs.head().commit is None:
            return "repair it (e.g. sqlite3's .recover) and run the command again"
        return ""

    # -- comparing ---------------------------------------------------------------------
    def compare(self, new_file: Path, old_file: Path, *, rowids: bool = False) -> tuple[ch.Changes, Any]:
        """What turns *old_file* into *new_file* and *new_file*'s (schema, pragmas, sequences,
        schema changes); with *rowids*, also the hidden rowids a replay of the patchset would
        get wrong (what a commit records)."""
        conn = ch.open_private(new_file)
        try:
            ch.attach(conn, old_file)
            changes = ch.compute_changes(conn, stats=self.version_stats)
            if rowids and changes.patchset and not changes.schema_changed:
                changes.rowids = ch.rowid_fixups(conn, changes)
            extras = (
                ch.read_schema(conn, stats=self.version_stats),
                ch.read_pragmas(conn),
                ch.read_sequences(conn),
                schema_changes(conn, stats=self.version_stats),
            )
            ch.detach(conn)
        finally:
            conn.close()
        return changes, extras

    def compare_with(self, new_file: Path, oid: str, *, rowids: bool = False) -> tuple[ch.Changes, Any]:
        """``compare`` against commit *oid*'s materialized state; a cached state that SQLite
        finds damaged inside (past what ``looks_whole`` checks) is rebuilt from the store once."""
        try:
            return self.compare(new_file, self.states.materialize(oid), rowids=rowids)
        except (apsw.CorruptError, apsw.NotADBError):
            self.states.cache_path(oid).unlink(missing_ok=True)
        return self.compare(new_file, self.states.materialize(oid, use_cache=False), rowids=rowids)

    def changes_against(self, oid: str) -> WorkingChanges:
        """Compare the working database with commit *oid* (and record it clean if they are equal)."""
        fp = sqlio.fingerprint(self.path)
        tmp = self.copy_out()
        try:
            with self.reading_copy(tmp):
                changes, (_, pragmas, sequences, sch) = self.compare_with(tmp, oid)
        finally:
            tmp.unlink(missing_ok=True)
        c = self.states.get_commit(oid)
        wc = WorkingChanges(
            changes, sch,
            {k: (c.pragmas.get(k, 0), v) for k, v in pragmas.items() if c.pragmas.get(k, 0) != v},
            sequences != c.sequences,
        )
        if wc.clean:
            self.record_clean(fp, oid)
        return wc

    def dirty_tables(self) -> list[str]:
        """Tables whose uncommitted changes would be lost (empty when clean)."""
        head = self.refs.head()
        if head.commit is None or not self.path.exists() or self.known_clean():
            return []  # a deleted working database has nothing to lose
        return self.changes_against(head.commit).dirty_tables

    # -- the clean record: skip full diffs when the file hasn't changed ------------------
    def record_clean(self, fp: str | None, oid: str) -> None:
        """Remember that the working file with fingerprint *fp* holds commit *oid*'s state."""
        if fp is not None:
            write_atomic(self.states.cache_dir / "working.json",
                         json.dumps({"fingerprint": fp, "commit": oid}).encode())

    def forget_clean(self) -> None:
        (self.states.cache_dir / "working.json").unlink(missing_ok=True)

    def known_clean(self) -> bool:
        """True when the working database provably still holds HEAD's state (unchanged file)."""
        try:
            rec = json.loads((self.states.cache_dir / "working.json").read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(rec, dict):
            return False  # derived data gone bad: the next full status rewrites it
        fp = sqlio.fingerprint(self.path)
        return fp is not None and rec.get("fingerprint") == fp and rec.get("commit") == self.refs.head().commit

    # -- replacing it, under the journal -------------------------------------------------
    def write_working(self, oid: str, *, head: str | None = None, ref: tuple[str, str] | None = None,
                      op: str = "checkout", state: dict[str, Any] | None = None) -> None:
        """Replace the working database with commit *oid*'s state, verified, in one transaction.

        Before the copy, the ref moves that must follow it (*head*: new HEAD
        text; *ref*: a branch and its new value) and the operation's *state* are
        journalled, so a process killed after the copy is finished by the next one.
        The record replaces any operation in progress: an operation that must not be
        interrupted (a merge with conflicts left) is its callers' to refuse first.
        """
        src = self.states.materialize_verified(oid)
        # The refs must be movable before the working database changes (read-only logs, a folder in
        # the way): otherwise the copy would be made and the command fail after it.
        self.refs.check_writable([*([ref[0]] if ref else []), *(["HEAD"] if head else [])])
        before = self._journal_bytes()
        write_atomic(self.journal, Intent(op, oid, head, ref, state).to_bytes())
        self.forget_clean()
        try:
            sqlio.copy_in(src, self.path, self.lock_timeout())
        except DbversError:
            # The copy's transaction never committed (locked, disk full, ...): the working
            # database is unchanged, so the ref moves must not be finished by a later recovery.
            self._put_journal(before)
            raise
        self.record_clean(sqlio.fingerprint(self.path), oid)

    def apply_intent(self, head: str | None, ref: Sequence[Any] | None, why: str) -> None:
        """Make the journalled ref moves (HEAD's text *head*, branch ``ref[0]`` to ``ref[1]``), then
        end the move: the journal goes, or keeps only an operation's state that outlives it."""
        # Both moves are proven writable before the first: a failure can't leave only the branch moved.
        self.refs.check_writable([*([ref[0]] if ref else []), *(["HEAD"] if head else [])])
        if ref:
            name, new = ref
            current = self.refs.read(name)
            if current != new:
                self.refs.update(name, new, expect=current, message=why)
        if head and self.refs.head_text() != head:
            if head.startswith("ref: "):
                self.refs.set_head(branch=head[5:].strip().removeprefix(HEADS), message=why)
            else:
                self.refs.set_head(commit=head.strip(), message=why)
        self._end_move()

    def finish_move(self, head: str | None, ref: tuple[str, str] | None, why: str,
                    written: str | None) -> None:
        """Move the refs after the working database was (or was not) rewritten to *written*."""
        try:
            self.apply_intent(head, ref, why)
        except StorageError as e:
            if written is None:
                raise  # nothing was changed: the plain error says so
            # The journal stays: the next command finishes the move once the store is writable.
            raise UnfinishedMoveError(written, e.path, os.strerror(e.errno) if e.errno else str(e)) from None

    def operation(self) -> Intent | None:
        """The operation in progress (a journal with a state and no pending move), if any."""
        try:
            intent = self.read_journal()
        except CheckoutJournalError:
            return None
        return intent if intent is not None and intent.target is None else None

    def begin_operation(self, op: str, state: dict[str, Any]) -> None:
        """Record an operation in progress (merge, revert, cherry-pick) with its *state*: it
        stays in the journal, surviving any process, until ``end_operation``."""
        write_atomic(self.journal, Intent(op, state=state).to_bytes())

    def end_operation(self) -> None:
        """Forget the operation in progress (its --continue or --abort is done)."""
        self._put_journal(None)

    def _end_move(self) -> None:
        data = self._journal_bytes()
        try:
            intent = parse_intent(data, str(self.journal)) if data is not None else None
        except CheckoutJournalError:
            intent = None
        if intent is not None and intent.state is not None:
            self._put_journal(Intent(intent.op, state=intent.state).to_bytes())
        else:
            self._put_journal(None)

    def _journal_bytes(self) -> bytes | None:
        try:
            return self.journal.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckoutJournalError(str(self.journal), e.strerror or str(e)) from None

    def _put_journal(self, data: bytes | None) -> None:
        if data is None:
            self.journal.unlink(missing_ok=True)
        else:
            write_atomic(self.journal, data)

    def read_journal(self) -> Intent | None:
        """The journal's record checked field by field, its target commit readable (None: no journal)."""
        if not self.journal.exists() and not self.journal.is_symlink():
            return None
        try:
            data = self.journal.read_bytes()  # a dangling symlink is a damaged journal, not none
        except OSError as e:
            raise CheckoutJournalError(str(self.journal), e.strerror or str(e)) from None
        intent = parse_intent(data, str(self.journal))
        if intent.target is not None:
            try:
                self.states.get_commit(intent.target)
            except DbversError as e:
                raise CheckoutJournalError(str(self.journal), f"its target commit {intent.target[:12]} can't "
                                           f"be read: {str(e).split(';')[0]}") from None
        return intent

    # -- recovery ------------------------------------------------------------------------
    def sweep_temps(self) -> None:
        """Remove temp files of killed processes only: a live process's (a Diff's pinned
        states, another thread's copy) stay, whoever sweeps (see fsutil.remove_stale_temps)."""
        for d in (self.store_dir, self.states.cache_dir, self.states.objects.root, self.states.keyframes_dir):
            remove_stale_temps(d)
        remove_stale_temps(self.store_dir / "refs", recursive=True)
        remove_stale_temps(self.store_dir / "logs", recursive=True)  # check_writable's probes

    def check_journal(self) -> None:
        """Note a damaged journal in ``journal_problem`` (a store this process can't write)."""
        self.journal_problem = None
        try:
            self.read_journal()
        except CheckoutJournalError as e:
            self.journal_problem = str(e)

    def recover(self, write: bool = True) -> None:
        """Finish or forget a move a killed process left half done.

        The working database was copied in within one transaction, so it holds
        either the old or the target state; the refs are moved only if it holds
        the target. A journal that can't be used (damaged, or naming a commit the
        store can't read) refuses write commands with :class:`CheckoutJournalError`;
        read-only ones run and report it in ``journal_problem``.
        """
        self.journal_problem = None
        try:
            intent = self.read_journal()
            if intent is None or intent.target is None:
                return  # nothing pending (an operation in progress stays)
            if not (intent.head or intent.ref or intent.state):
                self._put_journal(None)  # nothing to finish (a restore): either state is fine
            elif self._holds(intent.target):
                self.apply_intent(intent.head, intent.ref, "recovered after interruption")
            else:
                # The copy never committed: the move never happened. An operation that was in
                # progress before it (the merge an --abort was putting back) still is.
                self._end_move()
        except DbversError as e:
            if write:
                raise
            self.journal_problem = str(e)

    def _holds(self, oid: str) -> bool:
        """Whether the working database holds exactly commit *oid*'s state."""
        return self.holds_file(self.states.materialize(oid), self.states.get_commit(oid).pragmas)

    def holds_file(self, state: Path, pragmas: dict[str, int] | None = None) -> bool:
        """Whether the working database holds exactly the rows of the private file *state*
        (and, when given, its header *pragmas*)."""
        tmp = self.copy_out()
        try:
            changes, (_, now, _, _) = self.compare(tmp, state)
        finally:
            tmp.unlink(missing_ok=True)
        return changes.empty and (pragmas is None or now == pragmas)
