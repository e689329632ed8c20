"""The README's first command runs the demo: it must keep working end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import dump_state


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "dbvers.demo", "--dir", str(demo_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for shown in ("$ dbvers init", "$ dbvers commit", "$ dbvers log --oneline", "$ dbvers checkout main",
                  "$ dbvers merge", "$ dbvers push -u", "$ dbvers clone", "$ dbvers pull"):
        assert shown in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    # The demo leaves a real repository behind: its history checks out cleanly.
    import dbvers

    repo = dbvers.open(demo_dir / "shop.db")
    assert repo.fsck().ok
    assert len(repo.log()) >= 4
    assert dump_state(demo_dir / "shop.db")["tables"]["products"]
    # ... and the colleague's clone holds the same state as the pulled main.
    assert dump_state(demo_dir / "colleague" / "shop.db") == dump_state(demo_dir / "shop.db")
