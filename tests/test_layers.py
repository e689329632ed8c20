"""The import contract of the package, enforced: layers, no cycles, no private names across modules,
small modules and functions, and a pinned public surface.

:data:`LAYERS` is the one table of which module sits in which layer (docs/architecture.md cites it).
A module may import only from its own layer or below, counting imports inside functions; imports
under ``if TYPE_CHECKING:`` are type-only and exempt. The import graph must have no cycle. No module
imports an underscore name of another dbvers module (``from .x import _y``, or ``x._y`` on a module
imported as ``x``). No module is over :data:`MAX_MODULE_LINES` lines; a function over
:data:`MAX_FUNCTION_LINES` lines carries a ``# long: <why>`` comment inside it.

:data:`KNOWN_VIOLATIONS` lists the violations that existed when the contract was introduced. It can
only shrink: a violation not in it fails the test, and so does an entry that no longer occurs.
"""

from __future__ import annotations

import ast
import io
import tokenize
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import dbvers

PACKAGE_DIR = Path(dbvers.__file__).parent
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
LONG_MARK = "# long:"

#: Module (dotted, relative to ``dbvers``; ``""`` is the package's ``__init__``) -> layer. A package
#: name covers every module inside it unless a longer entry names one. A module found in no entry
#: fails the test: a new module is placed here on purpose.
LAYERS: dict[str, int] = {
    # L0: the model and encodings; imports nothing above itself.
    "errors": 0, "boundary": 0, "formats": 0, "_version": 0, "display": 0, "fsutil": 0, "objects": 0, "values": 0,
    "rowidstream": 0,
    # L1: storage behind protocols, typed config, the two-library boundary.
    "storage": 1, "store": 1, "refs": 1, "config": 1, "sqlio": 1, "privatedb": 1,
    # L2: engines.
    "graph": 2, "revisions": 2, "states": 2, "worktree": 2, "status": 2, "capture": 2, "changes": 2,
    "tables": 2, "replay": 2, "rowdiff": 2, "sqlgen": 2, "frames": 2, "columnar": 2, "snapshots": 2,
    "schemadiff": 2, "rowmerge": 2, "mergeplan": 2, "conflicts": 2,
    # L3: operations (repo is the facade).
    "repo": 3, "refops": 3, "checkout": 3, "opening": 3, "diff": 3, "merge": 3, "history": 3, "maintenance": 3, "transfer": 3, "backup": 3,
    "archive": 3, "remotes": 3, "sync": 3, "receive": 3, "push": 3, "clone": 3, "watch": 3, "restore": 3, "interop": 3,
    # L4: presentation; render.display registers it with the L0 display hook.
    "render": 4,
    # L5: front ends and the package itself.
    "frontend": 5, "cli": 5, "magics": 5, "demo": 5, "": 5, "__main__": 5,
}

#: Violations that existed when this test was written, exactly as :func:`violations` words them;
#: the lead empties this list after the issue-11 branches are merged. Never add to it: fix the code.
KNOWN_VIOLATIONS: list[str] = []


# -- the analysis ---------------------------------------------------------------------------------


@dataclass
class Module:
    name: str  # dotted, relative to dbvers ("" for the package)
    rel: str  # the file, as dbvers/x.py
    is_package: bool
    tree: ast.Module
    source: str
    imports: set[str] = field(default_factory=set)  # modules imported at run time
    problems: list[str] = field(default_factory=list)


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def load_modules(root: Path = PACKAGE_DIR) -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        name, is_package = _module_name(root, path)
        source = path.read_text(encoding="utf-8")
        rel = "dbvers/" + path.relative_to(root).as_posix()
        mods[name] = Module(name, rel, is_package, ast.parse(source, str(path)), source)
    return mods


def layer_of(name: str) -> int | None:
    """The layer of module *name*: its own entry, else its nearest package's ("" is only itself)."""
    probe = name
    while probe not in LAYERS:
        if "." not in probe:
            return None
        probe = probe.rpartition(".")[0]
    return LAYERS[probe]


def shown(name: str) -> str:
    return "dbvers" + (f".{name}" if name else "")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of *tree* except those under an ``if TYPE_CHECKING:`` body (its else runs)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.append(node.test)
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve_base(mod: Module, node: ast.ImportFrom) -> str | None:
    """The dbvers module an ``ImportFrom`` reads from (relative to dbvers), or None if foreign."""
    if node.level == 0:
        target = node.module or ""
        if target != "dbvers" and not target.startswith("dbvers."):
            return None
        return target.removeprefix("dbvers").removeprefix(".")
    package = mod.name.split(".") if mod.name else []
    if not mod.is_package:
        package = package[:-1]
    up = node.level - 1
    if up > len(package):
        return None
    base = package[: len(package) - up]
    if node.module:
        base += node.module.split(".")
    return ".".join(base)


def _collect_imports(mod: Module, mods: dict[str, Module]) -> dict[str, str]:
    """Fill ``mod.imports`` and its ``from .x import _y`` problems; return the local names bound
    to dbvers modules."""
    aliases: dict[str, str] = {}
    for node in _runtime_nodes(mod.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "dbvers" or a.name.startswith("dbvers."):
                    target = a.name.removeprefix("dbvers").removeprefix(".")
                    mod.imports.add(target)
                    if a.asname:
                        aliases[a.asname] = target
                    else:
                        aliases["dbvers"] = ""
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(mod, node)
            if base is None:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                if sub in mods:
                    mod.imports.add(sub)
                    aliases[a.asname or a.name] = sub
                    continue
                mod.imports.add(base)
                if _is_private(a.name) and base != mod.name:
                    mod.problems.append(f"private: {shown(mod.name)} imports {shown(base)}.{a.name}")
    return aliases


def analyse(mods: dict[str, Module]) -> None:
    """Fill each module's run-time imports and its private-name problems."""
    for mod in mods.values():
        aliases = _collect_imports(mod, mods)
        # x._y where x is a dbvers module bound by an import of this module.
        for node in ast.walk(mod.tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            chain: list[str] = []
            value: ast.expr = node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if not isinstance(value, ast.Name) or value.id not in aliases:
                continue
            target = ".".join(filter(None, [aliases[value.id], *reversed(chain)]))
            if target in mods and target != mod.name:
                entry = f"private: {shown(mod.name)} uses {shown(target)}.{node.attr}"
                if entry not in mod.problems:
                    mod.problems.append(entry)
        mod.imports.discard(mod.name)


def _comment_lines(source: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def size_problems(mod: Module) -> list[str]:
    out = []
    if len(mod.source.splitlines()) > MAX_MODULE_LINES:
        out.append(f"module-size: {mod.rel} is over {MAX_MODULE_LINES} lines")
    comments = _comment_lines(mod.source)

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qual = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                if end - child.lineno + 1 > MAX_FUNCTION_LINES and not any(
                    comments.get(n, "").startswith(LONG_MARK) for n in range(child.lineno, end + 1)
                ):
                    out.append(f"function-size: {mod.rel} {qual} is over {MAX_FUNCTION_LINES} lines "
                               f"with no '{LONG_MARK}' comment")
                visit(child, f"{qual}.")
            else:
                visit(child, prefix)

    visit(mod.tree, "")
    return out


def cycles(mods: dict[str, Module]) -> list[tuple[list[str], list[str]]]:
    """The import graph's strongly connected components with a cycle: (members, one cycle path)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph has a few dozen nodes, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(mods[v].imports & mods.keys()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(mods):
        if v not in index:
            connect(v)
    return [(comp, _cycle_path(mods, comp)) for comp in sorted(comps)]


def _cycle_path(mods: dict[str, Module], comp: list[str]) -> list[str]:
    """The shortest cycle through the component's first module (breadth-first)."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(mods[v].imports & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [*comp, start]  # unreachable for a strongly connected component


def violations(root: Path = PACKAGE_DIR) -> tuple[list[str], dict[str, str]]:
    """Every violation of the contract (sorted), and for cycles the path that shows each."""
    mods = load_modules(root)
    analyse(mods)
    found: list[str] = []
    details: dict[str, str] = {}
    for mod in mods.values():
        mine = layer_of(mod.name)
        if mine is None:
            found.append(f"unplaced: {shown(mod.name)} is in no layer of LAYERS")
            continue
        for target in sorted(mod.imports):
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                found.append(f"upward: {shown(mod.name)} (L{mine}) imports {shown(target)} (L{theirs})")
        found.extend(mod.problems)
        found.extend(size_problems(mod))
    for members, path in cycles(mods):
        # Named by its members, so the entry is stable whichever edge a fix removes first.
        entry = "cycle: " + ", ".join(shown(m) for m in members)
        found.append(entry)
        details[entry] = " -> ".join(shown(m) for m in path)
    return sorted(found), details


# -- the tests ------------------------------------------------------------------------------------


def test_import_contract() -> None:
    found, details = violations()
    new = [v for v in found if v not in KNOWN_VIOLATIONS]
    gone = [v for v in KNOWN_VIOLATIONS if v not in found]
    report = [f"new violation: {v}" + (f"\n    ({details[v]})" if v in details else "") for v in new]
    report += [f"fixed, remove it from KNOWN_VIOLATIONS: {v}" for v in gone]
    assert not report, "\n".join(report)


def test_known_violations_have_no_duplicates() -> None:
    assert len(set(KNOWN_VIOLATIONS)) == len(KNOWN_VIOLATIONS)


def _package(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp / "dbvers" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp / "dbvers"


def test_the_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    root = _package(tmp_path, {
        "__init__.py": "",
        "errors.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .diff import Diff\n"
            "def f():\n    from . import repo\n    return repo._secret\n"
        ),
        "repo.py": "from .errors import _hidden\nimport dbvers.render.html as H\n",
        "render/__init__.py": "",
        "render/html.py": "from ..repo import x\nfrom .. import errors\n",
        "diff.py": "",
        "values.py": f"def big():\n{body}\ndef explained():\n    # long: a table\n{body}",
        "newthing.py": "",
    })
    mods = load_modules(root)
    analyse(mods)
    assert mods["errors"].imports == {"repo"}  # the TYPE_CHECKING import of diff is exempt
    assert mods["repo"].imports == {"errors", "render.html"}
    assert mods["render.html"].imports == {"repo", "errors"}
    found, details = violations(root)
    cycle = "cycle: dbvers.errors, dbvers.render.html, dbvers.repo"
    assert found == sorted([
        cycle,
        f"function-size: dbvers/values.py big is over {MAX_FUNCTION_LINES} lines with no "
        f"'{LONG_MARK}' comment",
        "private: dbvers.errors uses dbvers.repo._secret",
        "private: dbvers.repo imports dbvers.errors._hidden",
        "unplaced: dbvers.newthing is in no layer of LAYERS",
        "upward: dbvers.errors (L0) imports dbvers.repo (L3)",
        "upward: dbvers.repo (L3) imports dbvers.render.html (L4)",
    ])
    assert details[cycle] == "dbvers.errors -> dbvers.repo -> dbvers.errors"


# The public surface, pinned: adding or removing a name is a decision made here (httpx's rule).
PUBLIC = [
    "BackupInfo",
    "Commit",
    "DbversError",
    "FsckReport",
    "GcReport",
    "Repo",
    "SchemaChange",
    "Status",
    "SyncResult",
    "TableCounts",
    "__version__",
    "clone",
    "init",
    "open",
    "restore",
]
# Public attributes that are not the API: IPython's extension hooks, the __future__ import.
NOT_EXPORTED = {"annotations", "load_ipython_extension", "unload_ipython_extension"}


def test_all_is_pinned_and_complete() -> None:
    assert dbvers.__all__ == PUBLIC
    public = {
        n for n, v in vars(dbvers).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n not in NOT_EXPORTED
    }
    assert public == set(PUBLIC) - {"__version__"}


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_import(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dbvers import {name}", namespace)
    assert namespace[name] is getattr(dbvers, name)
