"""The widgets in a real browser: what a person sees in an exported notebook.

A notebook with ``%dbdiff`` and ``%dblog`` runs in a real kernel (nbclient keeps
the widget state), nbconvert exports it to HTML with that state embedded, the
widget JavaScript (``@jupyter-widgets/html-manager``) and ``require.js`` are
served from ``tests/browser/node_modules`` (the browser gets no network), and
headless Chromium, driven by Playwright (``tests/browser/look.js``), renders
it. The assertions are about the rendered page: tab labels, row colours, an
``old → new`` cell, the log's labels. Screenshots go to ``tests/artifacts/``.

Needs node and npm (the test runs ``npm ci`` in tests/browser itself when its
packages are missing) and Debian's chromium (``.ci/run`` installs it); skipped
with the reason when something is missing, and a failure under ``CI``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("nbconvert")

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

HERE = Path(__file__).parent
BROWSER = HERE / "browser"
MODULES = BROWSER / "node_modules"
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

EMBED = MODULES / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js"
REQUIRE = MODULES / "requirejs" / "require.js"

GREEN, RED, YELLOW = "rgb(218, 251, 225)", "rgb(255, 235, 233)", "rgb(255, 248, 197)"

CELLS = [
    """import sqlite3
con = sqlite3.connect("shop.db")
con.executescript('''
CREATE TABLE products(sku TEXT PRIMARY KEY, name TEXT, price REAL);
INSERT INTO products VALUES ('A-1', 'Grinder', 10.0), ('B-2', 'Kettle', 25.0), ('C-3', 'Scale', 30.0);
CREATE TABLE orders(id INTEGER PRIMARY KEY, sku TEXT, qty INTEGER);
INSERT INTO orders VALUES (1, 'A-1', 2), (2, 'B-2', 1);
''')
con.commit()""",
    "%load_ext dbvers",
    '%dbvers init shop.db -m "Import shop data"',
    """con.executescript('''
UPDATE products SET price = 12.5 WHERE sku = 'A-1';
DELETE FROM products WHERE sku = 'C-3';
INSERT INTO products VALUES ('D-4', 'Dripper', 8.0);
INSERT INTO orders VALUES (3, 'D-4', 4);
''')
con.commit()""",
    "%dbdiff",
    "%dbdiff -t products",
    '%dbcommit -m "New prices, drop the scale, add a dripper"',
    "%dblog",
    "%dbcheckout -b feature",
    """con.execute("UPDATE products SET price = 99.0, name = 'Kettle XL' WHERE sku = 'B-2'")
con.commit()""",
    '%dbcommit -m "feature: kettle price"',
    "%dbcheckout main",
    """con.execute("UPDATE products SET price = 50.0 WHERE sku = 'B-2'")
con.commit()""",
    '%dbcommit -m "main: kettle price"',
    "%dbmerge feature",
]


def _packages_present() -> bool:
    return EMBED.is_file() and REQUIRE.is_file() and (MODULES / "playwright-core").is_dir()


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not _packages_present() and shutil.which("npm"):
        # The README's test command sets up everything it can: the widget JavaScript and
        # playwright-core from the lockfile (Playwright never downloads a browser).
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BROWSER,
                       env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},
                       capture_output=True, timeout=600, check=False)
    if not _packages_present():
        return "npm packages missing: 'npm ci' in tests/browser failed or npm is not installed"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def _export(nb: nbformat.NotebookNode, out: Path) -> str:
    """The notebook as HTML whose scripts are all local files beside it."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.require_js_url = "require.js"
    exporter.widget_renderer_url = "@jupyter-widgets/html-manager/dist/embed-amd.js"
    exporter.mathjax_url = "mathjax.js"
    html, _ = exporter.from_notebook_node(nb)
    # Nothing may come from a CDN: the browser here has no network.
    remote = re.findall(r"""<(?:script|link)[^>]+(?:src|href)=["'](https?://[^"']+)""", html)
    assert not remote, f"the export still loads remote files: {remote}"
    shutil.copy(REQUIRE, out / "require.js")
    (out / "mathjax.js").write_text("// no formulas here\n")
    # embed-amd.js finds its chunks and fonts beside itself; its font CSS also asks
    # one level up, so the fonts go there too.
    dist = out / "@jupyter-widgets" / "html-manager" / "dist"
    shutil.copytree(EMBED.parent, dist, ignore=shutil.ignore_patterns("*.map"))
    for f in EMBED.parent.iterdir():
        if f.suffix in (".woff", ".woff2", ".ttf", ".eot", ".svg"):
            shutil.copy(f, out / "@jupyter-widgets" / f.name)
    page = out / "notebook.html"
    page.write_text(html, encoding="utf-8")
    return str(page)


@pytest.mark.slow
def test_widgets_in_a_real_browser(tmp_path: Path) -> None:
    if reason := _missing():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    work = tmp_path / "nb"
    work.mkdir()
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    assert state.get("state"), "nbclient kept no widget state"

    site = tmp_path / "site"
    site.mkdir()
    page = _export(nb, site)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-widgets.png"
    run = subprocess.run(["node", str(BROWSER / "look.js"), page, str(shot)], cwd=BROWSER,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    facts = json.loads(run.stdout.strip().splitlines()[-1].replace("\u00a0", " "))
    (ARTIFACTS / "browser-widgets.json").write_text(json.dumps(facts, indent=2, ensure_ascii=False))

    assert not facts["refused"], f"the page tried to reach the network: {facts['refused']}"
    assert not [e for e in facts["errors"] if "mathjax" not in e.lower()], facts["errors"]
    whole, products, in_log = facts["views"]
    assert not any(v["clippedTabs"] for v in facts["views"]), "a tab label is cut off"

    # %dbdiff: the summary and one tab per changed table with its counts; the first
    # tab (orders) is on screen with its one added row, green.
    assert "2 table(s) changed" in whole["header"]
    assert whole["tabs"] == ["orders (+1 ~0 −0)", "products (+1 ~1 −1)"]
    assert [(r["kind"], r["background"]) for r in whole["rows"]] == [("dbvers-added", GREEN)]
    assert "D-4" in whole["rows"][0]["text"]
    assert {"prev", "next", "skinny", "export to DataFrame"} <= {b.strip() for b in whole["buttons"]}

    # %dbdiff -t products: added green, removed red, modified yellow, price as old → new.
    assert products["tabs"] == ["products (+1 ~1 −1)"]
    colours = {r["kind"]: r["background"] for r in products["rows"]}
    assert colours == {"dbvers-added": GREEN, "dbvers-removed": RED, "dbvers-modified": YELLOW}
    assert products["changed"] == ["10.0 → 12.5"]
    modified = next(r for r in products["rows"] if r["kind"] == "dbvers-modified")
    assert "A-1" in modified["text"] and "10.0 → 12.5" in modified["text"]

    # %dblog: newest first with its labels; the selected commit's diff below it.
    assert facts["log"][0].split()[1:4] == ["(HEAD", "->", "main)"]
    assert "New prices, drop the scale, add a dripper" in facts["log"][0]
    assert "Import shop data" in facts["log"][1]
    assert any(b.startswith("check out main") for b in facts["checkout"])
    assert in_log["tabs"] == ["orders (+1 ~0 −0)", "products (+1 ~1 −1)"]
    assert shot.is_file() and shot.stat().st_size > 10_000

    # %dbmerge: the conflicts widget, a tab per table; base / ours / theirs side by side
    # with the cells each side changed coloured; take ours / theirs per row and table.
    conflicts = facts["conflicts"]
    assert "merge in progress" in conflicts["header"] and "1 conflicting rows" in conflicts["header"]
    assert conflicts["tabs"] == ["products (1)"]
    sides = {r["side"]: r for r in conflicts["rows"]}
    assert "50.0" in sides["ours"]["text"] and "99.0" in sides["theirs"]["text"]
    assert "25.0" in sides["base"]["text"]
    assert sides["ours"]["coloured"] == ["50.0"]
    assert sides["theirs"]["coloured"] == ["Kettle XL", "99.0"]
    assert {"take ours", "take theirs", "take ours for all", "take theirs for all", "Continue",
            "Abort"} <= set(conflicts["buttons"])
