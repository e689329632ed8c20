"""fsutil's files: the usual permissions, and no process-wide umask change to find them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from dbvers.fsutil import temp_path, write_atomic


def test_published_files_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "f", b"x")
        tmp = temp_path(tmp_path, ".db")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o640
    assert tmp.name.endswith(".db") and tmp.stat().st_size == 0


def test_temp_names_are_fresh(tmp_path: Path) -> None:
    names = {temp_path(tmp_path) for _ in range(50)}
    assert len(names) == 50 and all(p.exists() for p in names)


def test_importing_and_writing_never_sets_the_umask(tmp_path: Path) -> None:
    # os.umask can only be read by setting it: for an instant every thread would create files
    # with the wrong mode. dbvers must never call it.
    code = (
        "import os, sys\n"
        "calls = []\n"
        "real = os.umask\n"
        "os.umask = lambda m: (calls.append(m), real(m))[1]\n"
        "import dbvers\n"
        "from dbvers.fsutil import write_atomic\n"
        f"write_atomic(__import__('pathlib').Path({str(tmp_path / 'g')!r}), b'y')\n"
        "print(calls)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
