"""The README's first command runs the demo: it must keep working end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import dump_state, run_cli

import dbvers
from dbvers import demo

PACKAGE_PARENT = str(Path(dbvers.__file__).resolve().parent.parent)


def _in_process_run(argv: list[str], *, cwd: Path, env: dict[str, str], check: bool) -> Any:
    """What the demo's ``subprocess.run`` of ``python -m dbvers ARGS`` does, through the CLI's
    entry point in this process (27 interpreter starts made this test take 25 s). The demo
    still builds the command line and environment a real process would get."""
    assert argv[:3] == [sys.executable, "-m", "dbvers"] and not check, argv
    assert env["PYTHONPATH"].split(os.pathsep)[0] == PACKAGE_PARENT  # the child imports this copy
    r = run_cli(*argv[3:], cwd=cwd, env=env)
    sys.stdout.write(r.stdout)  # the demo's children write to its own terminal
    sys.stderr.write(r.stderr)
    return r


def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    demo_dir = tmp_path / "demo"
    monkeypatch.setattr(demo, "subprocess",
                        SimpleNamespace(run=_in_process_run, CompletedProcess=subprocess.CompletedProcess))
    code = demo.main(["--dir", str(demo_dir)])
    out, err = capsys.readouterr()
    assert code == 0, out[-2000:] + err[-2000:]
    for shown in ("$ dbvers init", "$ dbvers commit", "$ dbvers log --oneline", "$ dbvers checkout main",
                  "$ dbvers merge", "$ dbvers push -u", "$ dbvers clone", "$ dbvers pull"):
        assert shown in out
    assert "Traceback" not in out + err
    # The demo leaves a real repository behind: its history checks out cleanly.
    repo = dbvers.open(demo_dir / "shop.db")
    assert repo.fsck().ok
    assert len(repo.log()) >= 4
    assert dump_state(demo_dir / "shop.db")["tables"]["products"]
    # ... and the colleague's clone holds the same state as the pulled main.
    assert dump_state(demo_dir / "colleague" / "shop.db") == dump_state(demo_dir / "shop.db")


def test_demo_is_a_runnable_module(tmp_path: Path) -> None:
    # The README's command itself, as a real process (the tour above runs in this one): here
    # it refuses a directory that already holds a demo, through main's exit code.
    taken = tmp_path / "taken"
    (taken / ".dbvers").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "dbvers.demo", "--dir", str(taken)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "already holds a demo" in proc.stderr, proc.stderr
