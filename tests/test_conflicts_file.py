"""The conflicts file: a merge's conflicting rows, read back as Dolt-shaped DataFrames."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from dbvers.conflicts import ConflictFile, write
from dbvers.errors import UsageError
from dbvers.rowmerge import merge_states


def _merged(tmp: Path, base: str, ours: str, theirs: str) -> ConflictFile:
    paths = {n: tmp / f"{n}.db" for n in ("base", "ours", "theirs", "out")}
    con = sqlite3.connect(paths["base"])
    con.executescript(base)
    con.close()
    for side, script in (("ours", ours), ("theirs", theirs)):
        shutil.copy(paths["base"], paths[side])
        con = sqlite3.connect(paths[side])
        con.executescript(script)
        con.close()
    shutil.copy(paths["ours"], paths["out"])
    outcome = merge_states(paths["out"], paths["base"], paths["theirs"])
    write(tmp / "conflicts.db", outcome)
    return ConflictFile(tmp / "conflicts.db")


T = '"odd ""name"""'
BASE = (f"CREATE TABLE {T} (id INTEGER PRIMARY KEY, amount REAL, note TEXT, raw BLOB);"
        f"INSERT INTO {T} VALUES (1, 1.5, 'a', x'00'), (2, 2.5, 'b', NULL), (3, 3.5, 'c', NULL);")


def test_frames_have_doltish_shape_and_exact_values(tmp_path: Path) -> None:
    cf = _merged(tmp_path, BASE,
                 f"UPDATE {T} SET amount = 10 WHERE id = 1; DELETE FROM {T} WHERE id = 2;",
                 f"UPDATE {T} SET amount = 20.25, raw = x'ff' WHERE id = 1; UPDATE {T} SET note = 'x' WHERE id = 2;")
    assert cf.counts() == {'odd "name"': 2}
    df = cf.frames()['odd "name"']
    assert list(df.columns) == [
        "conflict_id", "id", "base_id", "base_amount", "base_note", "base_raw", "our_id", "our_amount",
        "our_note", "our_raw", "their_id", "their_amount", "their_note", "their_raw",
        "our_diff_type", "their_diff_type", "conflict", "constraint"]
    one = df[df["id"] == 1].iloc[0]
    assert (one["base_amount"], one["our_amount"], one["their_amount"]) == (1.5, 10.0, 20.25)
    assert one["their_raw"] == b"\xff" and one["conflict"] == "data"
    assert (one["our_diff_type"], one["their_diff_type"]) == ("modified", "modified")
    two = df[df["id"] == 2].iloc[0]
    assert two["conflict"] == "delete-modify" and two["our_diff_type"] == "removed"
    assert pd.isna(two["our_amount"])


def test_select_where_and_remove(tmp_path: Path) -> None:
    cf = _merged(tmp_path, BASE, f"UPDATE {T} SET note = 'o';", f"UPDATE {T} SET note = 't';")
    assert cf.counts() == {'odd "name"': 3}
    picked = cf.select('odd "name"', "id >= 2 AND their_note = 't'")
    assert sorted(c.key for c in picked) == [(2,), (3,)]
    assert picked[0].ours == (2, 2.5, "o", None) and picked[0].conflict_id is not None
    cf.remove('odd "name"', picked)
    assert cf.counts() == {'odd "name"': 1}
    cf.remove('odd "name"', cf.select('odd "name"'))
    assert cf.counts() == {} and cf.frames() == {}


def test_bad_where_and_unknown_table_are_one_line_errors(tmp_path: Path) -> None:
    cf = _merged(tmp_path, BASE, f"UPDATE {T} SET note = 'o';", f"UPDATE {T} SET note = 't';")
    with pytest.raises(UsageError, match="not a valid condition"):
        cf.select('odd "name"', "no_such_column = 1")
    with pytest.raises(UsageError, match="has no conflicts"):
        cf.frames("nope")
