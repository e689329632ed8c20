"""fsutil's files: the usual permissions, and no process-wide umask change to find them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dbvers.fsutil import WriteBehind, temp_path, write_atomic


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


def test_write_behind_keeps_every_byte_and_reports_a_failed_write_back(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages go to disk while the file grows (an fdatasync in the background past each *every*
    bytes); the file is exactly what was written, and a write-back that failed is raised at the
    end, not forgotten (Linux may report the next fsync of that file as a success)."""
    import errno

    synced: list[int] = []
    datasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or datasync(fd))
    data = [bytes([i]) * 1000 for i in range(50)]
    with open(tmp_path / "f", "wb") as out, WriteBehind(out, every=4000) as behind:
        for piece in data:
            behind.write(piece)
    assert (tmp_path / "f").read_bytes() == b"".join(data) and synced

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output"), open(tmp_path / "g", "wb") as out, \
            WriteBehind(out, every=10) as behind:
        behind.write(b"x" * 100)
