"""Every notebook in notebooks/ runs top to bottom in a real kernel with no error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "time-travel.ipynb", "sharing.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The notebooks work in tempfile.mkdtemp() folders: keep those inside tmp_path.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    assert time.perf_counter() - start < 60, "notebooks must stay quick to run"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in text and "UsageError" not in text, text
    if path.stem == "quickstart":
        # The widgets were built (their state is kept for static exports) and the
        # auto-commit cell committed.
        state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        assert any(m["model_name"] == "TabModel" for m in state.values())
        assert any("auto-committed" in o.get("text", "") for o in outputs if o.output_type == "stream")
    if path.stem == "sharing":
        # %dbvers push showed its progress as a widget; the refused push said to pull.
        state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        assert any(m["model_name"] == "IntProgressModel" for m in state.values())
        shown = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
        assert "refused:" in shown and "pull first" in shown
        assert "[new branch]" in shown and "ahead of 'origin/main'" in shown
        # The commands' output is the cell's text, as in a terminal (Jupyter renders its
        # colour codes there), not a display of its own per line.
        streamed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        displayed = "".join(o.get("data", {}).get("text/plain", "") for o in outputs
                            if o.output_type == "display_data")
        assert "[new branch]" in streamed and "On branch" in streamed and "On branch" not in displayed
