"""No test uses a private name of the package: tests assert what a user sees, through public names.

Checked on the source of every test file (``tests/**/*.py``, helpers and benchmarks included):

* an import of an underscore name from dbvers (``from dbvers.x import _y``, ``import dbvers._x``);
* an underscore attribute read or written (``obj._y``), unless the object is a module the file
  imported from outside dbvers (``os._exit``, ``sys._getframe``), the attribute is a test
  class's own (``self._y`` where a class of the file defines ``_y``), or it is a foreign
  library's in :data:`FOREIGN_ATTRIBUTES`;
* ``setattr``/``getattr``/``monkeypatch.setattr``/``delattr`` naming an underscore attribute
  (``monkeypatch.setattr(diff, "_ROWS", 1)``, ``monkeypatch.setattr("dbvers.diff._ROWS", 1)``).

Dunder names are fine, so are the display protocols (``_repr_html_``, ``_repr_pretty_``,
``_ipython_*``), namedtuple's public API (``_asdict``, ``_replace``, ``_fields``, ``_make``) and
``dbvers._version``, the one private module that is meant to be imported. A name a test needs
gets a public seam in the package (a read-only property, a documented function or parameter).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS_DIR = Path(__file__).parent
#: Underscore names that are protocols or public API of the standard library, not privates.
ALLOWED = re.compile(r"_repr_\w+_|_ipython_\w+|_asdict|_replace|_fields|_make")
ALLOWED_MODULES = {"dbvers._version"}
#: Private attributes of other libraries' objects that tests read, and why there is no public way.
FOREIGN_ATTRIBUTES = {
    "_actions": "argparse: a parser's arguments can't be listed publicly (test_cli_docs)",
}
ATTR_FUNCTIONS = {"setattr", "getattr", "delattr", "hasattr"}


def _private(name: str) -> bool:
    return (name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            and not ALLOWED.fullmatch(name))


def _is_dbvers(module: str) -> bool:
    return module == "dbvers" or module.startswith("dbvers.")


def _foreign_modules(tree: ast.AST) -> set[str]:
    """Local names bound to modules (or their members) imported from outside dbvers."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not _is_dbvers(a.name):
                    out.add(a.asname or a.name.partition(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not _is_dbvers(node.module or ""):
            out.update(a.asname or a.name for a in node.names)
    return out


def _own_attributes(tree: ast.AST) -> set[str]:
    """Names a class of the test file defines: methods, class attributes, ``self.x = ...``."""
    out: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.add(node.id)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                out.add(node.attr)
    return out


def _dotted_private(text: str) -> bool:
    """``"dbvers.diff._ROWS"``: monkeypatch's dotted-string form naming a private of dbvers."""
    parts = text.split(".")
    return len(parts) > 1 and parts[0] == "dbvers" and any(_private(p) for p in parts[1:]) \
        and ".".join(parts[:2]) not in ALLOWED_MODULES


def _import_problems(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [f"imports {a.name}" for a in node.names if _is_dbvers(a.name)
                and a.name not in ALLOWED_MODULES and any(_private(p) for p in a.name.split("."))]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_dbvers(node.module or ""):
        module = node.module or ""
        if module not in ALLOWED_MODULES and any(_private(p) for p in module.split(".")):
            return [f"imports from {module}"]
        return [f"imports {module}.{a.name}" for a in node.names
                if _private(a.name) and f"{module}.{a.name}" not in ALLOWED_MODULES]
    return []


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each use of a private name in the test source *source*."""
    tree = ast.parse(source)
    foreign = _foreign_modules(tree)
    own = _own_attributes(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        found += [(node.lineno, p) for p in _import_problems(node)]
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if not (base in foreign or (base in ("self", "cls") and node.attr in own)
                    or node.attr in FOREIGN_ATTRIBUTES):
                found.append((node.lineno, f"uses .{node.attr}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name not in ATTR_FUNCTIONS:
                continue
            texts = [a.value for a in node.args[:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for text in texts:
                if _private(text) or _dotted_private(text):
                    found.append((node.lineno, f"{name}(..., {text!r})"))
    return sorted(set(found))


def test_no_test_uses_a_private_name() -> None:
    report = []
    for path in sorted(TESTS_DIR.rglob("*.py")):
        if "node_modules" in path.parts:  # the browser test's npm packages, not ours
            continue
        rel = path.relative_to(TESTS_DIR.parent).as_posix()
        report += [f"{rel}:{line}: {what}" for line, what in private_uses(path.read_text(encoding="utf-8"))]
    assert not report, "tests use private names of dbvers (give them a public seam):\n" + "\n".join(report)


def test_the_checker_finds_each_kind() -> None:
    source = (
        "import os, sys\n"
        "import dbvers._version\n"
        "import dbvers._secret\n"
        "from dbvers import _version, backup as bk\n"
        "from dbvers.diff import _ROWS, Diff\n"
        "from dbvers._hidden import thing\n"
        "from os import _exit\n"
        "class Machine:\n"
        "    def _pick(self): return self._seen\n"
        "    def run(self, other): self._seen = 1; return self._pick(), other._pick(), self._other\n"
        "def test(monkeypatch, d, lock, parser):\n"
        "    os._exit(0); sys._getframe(); d.__class__; d._repr_html_(); d._ipython_display_()\n"
        "    nt._asdict()\n"
        "    assert lock._depth == 0\n"
        "    monkeypatch.setattr(bk, '_now', None)\n"
        "    monkeypatch.setattr('dbvers.diff._ROWS', 1)\n"
        "    monkeypatch.setattr('dbvers.diff.ROWS', 1)\n"
        "    getattr(d, 'public')\n"
        "    bk._now = None\n"
        "    parser._actions\n"
    )
    assert private_uses(source) == [
        (3, "imports dbvers._secret"),
        (5, "imports dbvers.diff._ROWS"),
        (6, "imports from dbvers._hidden"),
        (10, "uses ._other"),
        (10, "uses ._pick"),  # another object's, not self's
        (14, "uses ._depth"),
        (15, "setattr(..., '_now')"),
        (16, "setattr(..., 'dbvers.diff._ROWS')"),
        (19, "uses ._now"),
    ]
