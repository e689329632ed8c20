"""File output of diffs: table names become safe, unique, reversible file names inside the
requested directory, files are written atomically, and options compose (what is shown is
computed from what is shown)."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pyarrow.parquet as pq
import pytest

import dbvers
from dbvers.changes import quote
from tests.conftest import execute, run_cli

NAMES = ["table/with/slashes", "../escaped", ".hidden", "A", "Über", "über", "x" * 300, "tab\tand\nnl", ".."]


def test_path_like_table_names_stay_inside_the_directory(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    db = work / "d.db"
    execute(db, "".join(f"CREATE TABLE {quote(n)}(id INTEGER PRIMARY KEY, v);" for n in NAMES))
    dbvers.init(db)
    execute(db, "".join(f"INSERT INTO {quote(n)} VALUES (1, {i});" for i, n in enumerate(NAMES)))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".dbvers" not in p.parts)
    out = work / "out"
    r = run_cli("diff", "--format", "parquet", "-o", str(out), cwd=work)
    assert r.returncode == 0, r.stderr
    files = sorted(out.iterdir())
    assert len(files) == len(NAMES)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".dbvers" not in p.parts)
    assert set(after) - set(before) == {p.relative_to(tmp_path) for p in [out, *files]}
    found = {}
    for f in files:
        assert f.parent == out and f.name.endswith(".parquet") and not f.name.startswith(".")
        t = pq.read_table(f)
        name = t.schema.metadata[b"dbvers.table"].decode()
        found[name] = t.num_rows
        if len(name) < 100:
            assert unquote(f.name[: -len(".parquet")]) == name  # reversible
    assert found == dict.fromkeys(NAMES, 1)
    assert len({f.name.casefold() for f in files}) == len(files)  # unique on any file system


def test_failed_export_leaves_no_partial_file(repo: dbvers.Repo, db_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from dbvers.diff import Diff
    from dbvers.render import diffexport

    execute(db_path, "UPDATE orders SET qty = 9 WHERE id = 1; INSERT INTO events VALUES ('x', 1)")
    target = db_path.parent / "out.json"
    target.write_text("old")
    real = Diff.iter_rows

    def failing(self: Diff, table: str, **kw: object) -> Iterator[tuple[object, ...]]:
        yield from itertools.islice(real(self, table, **kw), 1)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Diff, "iter_rows", failing)
    with repo.diff() as d, pytest.raises(OSError):
        diffexport.export(d, d.tables, "json", str(target))
    assert target.read_text() == "old"
    assert not [p for p in db_path.parent.iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.setattr(Diff, "iter_rows", real)
    r = run_cli("diff", "--format", "json", "-o", str(target), cwd=db_path.parent)
    assert r.returncode == 0
    assert set(json.loads(target.read_text())) == {"orders", "events"}


def test_skinny_with_limit_takes_columns_from_the_rows_shown(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    execute(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b); "
                "INSERT INTO t VALUES (1, 1, 1), (2, 2, 2), (3, 3, 3)")
    repo = dbvers.init(db)
    execute(db, "UPDATE t SET a = 10 WHERE id = 1; UPDATE t SET b = 20 WHERE id = 3")
    r = run_cli("diff", "--format", "csv", "--skinny", "--limit", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header = next(csv.reader(io.StringIO(r.stdout)))
    assert header == ["table", "diff_type", "from_id", "to_id", "from_a", "to_a"]
    r = run_cli("diff", "--format", "json", "--skinny", "--limit", "1", cwd=tmp_path)
    assert set(json.loads(r.stdout)["t"][0]) == {"diff_type", "from_id", "to_id", "from_a", "to_a"}
    frame = repo.diff().to_pandas("t", skinny=True, limit=1)
    assert [c for c in frame.columns if c not in ("from_commit", "to_commit")] == header[1:]


def test_stat_with_where_lists_only_matching_tables(repo: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "UPDATE orders SET qty = 9 WHERE id = 1; INSERT INTO events VALUES ('x', 1)")
    r = run_cli("diff", "--stat", "--where", "diff_type = 'modified'", cwd=db_path.parent)
    assert r.returncode == 0, r.stderr
    assert "orders" in r.stdout and "events" not in r.stdout
    assert "1 table(s) changed" in r.stdout
