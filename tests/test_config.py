"""The store's config: one typed reader; a bad value is one line naming file, section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

import dbvers
from tests.conftest import execute, run_cli


def _set(store: Path, section: str, key: str, value: str) -> None:
    text = (store / "config").read_text()
    if f"[{section}]" not in text:
        text += f"\n[{section}]\n"
    lines = text.splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    lines = [ln for i, ln in enumerate(lines) if not (start < i < end and ln.split("=")[0].strip() == key)]
    lines.insert(start + 1, f"{key} = {value}")
    (store / "config").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("snapshot", "max_commits", "abc"),
        ("snapshot", "max_patch_ratio", "5%"),
        ("snapshot", "max_patch_ratio", "-1"),
        ("snapshot", "max_commits", "0"),
        ("lock", "timeout", "soon"),
        ("lock", "timeout", "nan"),
        ("cache", "keep", "two"),
        ("backup", "keep", "x"),
        ("backup", "max_age", "0"),
        ("core", "format", "new"),
    ],
)
def test_bad_value_is_one_line_naming_file_section_and_key(
    db_path: Path, section: str, key: str, value: str
) -> None:
    dbvers.init(db_path)
    store = db_path.parent / ".dbvers"
    _set(store, section, key, value)
    before = (store / "config").read_bytes()
    for args in (["status"], ["log"], ["commit", "-m", "x", "--allow-empty"], ["fsck"]):
        r = run_cli(*args, cwd=db_path.parent)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        msg = lines[0]
        assert str(store / "config") in msg and f"[{section}] {key}" in msg and repr(value) in msg
        assert "must be" in msg
    assert (store / "config").read_bytes() == before
    with pytest.raises(dbvers.DbversError, match=rf"\[{section}\] {key}"):
        dbvers.open(db_path)


def test_percent_in_a_value_is_plain_text(db_path: Path) -> None:
    repo = dbvers.init(db_path)
    _set(repo.store_dir, "user", "name", "Grace 100% Hopper")
    _set(repo.store_dir, "user", "email", "grace@%(x)s.example")
    execute(db_path, "UPDATE orders SET qty = 7 WHERE id = 1")
    r = run_cli("commit", "-m", "percent", cwd=db_path.parent, env={"DBVERS_AUTHOR": ""})
    assert r.returncode == 0, r.stderr
    c = dbvers.open(db_path).log(n=1)[0]
    assert c.author == "Grace 100% Hopper <grace@%(x)s.example>"


def test_bad_lock_timeout_in_environment(db_path: Path) -> None:
    dbvers.init(db_path)
    r = run_cli("status", cwd=db_path.parent, env={"DBVERS_LOCK_TIMEOUT": "soon"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "$DBVERS_LOCK_TIMEOUT" in r.stderr and "[lock] timeout" in r.stderr


def test_unknown_settings_are_kept(db_path: Path) -> None:
    repo = dbvers.init(db_path)
    _set(repo.store_dir, "future", "knob", "%% odd")
    execute(db_path, "UPDATE orders SET qty = 8 WHERE id = 1")
    assert run_cli("commit", "-m", "x", cwd=db_path.parent).returncode == 0
    assert "knob = %% odd" in (repo.store_dir / "config").read_text()
