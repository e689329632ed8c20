"""Smoke tests of the real executables: the ``dbvers`` console script, ``python -m dbvers``
and ``python -m dbvers.cli``, each a process of its own. Every other CLI test runs the
same entry point in-process (``conftest.run_cli``); the last test checks that the two
ways give the same result, so the in-process runner can stand in for a process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import execute, run_cli, run_cli_subprocess

import dbvers

SCRIPT = Path(sys.executable).with_name("dbvers")


def script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``dbvers`` console script (the pyproject entry point)."""
    if not SCRIPT.exists():
        pytest.skip(f"no dbvers console script beside {sys.executable}")
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("how", ["script", "-m dbvers", "-m dbvers.cli"])
def test_version_from_every_executable(how: str, tmp_path: Path) -> None:
    if how == "script":
        r = script("--version", cwd=tmp_path)
    else:
        r = subprocess.run([sys.executable, *how.split(), "--version"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"dbvers {dbvers.__version__}\n", "")


def test_console_script_init_commit_log(db_path: Path) -> None:
    d = db_path.parent
    r = script("init", db_path.name, "-m", "first", cwd=d)
    assert r.returncode == 0 and "Initialized dbvers repository" in r.stdout, r.stderr
    execute(db_path, "UPDATE orders SET qty = 9 WHERE id = 1")
    r = script("commit", "-m", "nine", cwd=d)
    assert r.returncode == 0 and "nine" in r.stdout and r.stderr == "", r.stderr
    r = script("log", "--oneline", cwd=d)
    assert [line.split(" ", 1)[1] for line in r.stdout.splitlines()] == ["nine", "first"]


def test_console_script_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    r = script("status", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("dbvers: error: ") and "Traceback" not in r.stderr


def test_console_script_diff_exit_code(repo: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "DELETE FROM orders WHERE id = 2")
    r = script("diff", "--exit-code", "--stat", cwd=db_path.parent)
    assert r.returncode == 1 and " orders | +0 ~0 -1" in r.stdout, r.stderr


@pytest.mark.parametrize("argv", [
    ["status"], ["log"], ["show", "--format", "json"], ["diff"], ["branch", "-f"], ["log", "-n", "x"],
], ids=["status", "log", "show-json", "diff", "usage-error", "parse-error"])
def test_in_process_runner_matches_a_real_process(argv: list[str], repo: dbvers.Repo, db_path: Path) -> None:
    execute(db_path, "UPDATE orders SET note = 'zoë\x07' WHERE id = 3; INSERT INTO events VALUES ('x', 1)")
    repo.commit("second")
    execute(db_path, "DELETE FROM orders WHERE id = 1")
    inside = run_cli(*argv, cwd=db_path.parent)
    real = run_cli_subprocess(*argv, cwd=db_path.parent)
    assert (inside.returncode, inside.stdout, inside.stderr) == (real.returncode, real.stdout, real.stderr)
