"""No import cycles in src/rnnbench, and no private helper imported from another module.

The graph is read from the source with `ast`, without importing anything:

- a node is a module: `pkg/mod.py` is `pkg.mod`, `pkg/__init__.py` is `pkg`;
- an edge A -> B for every `import` statement in A that names B, wherever it stands (module
  level, or inside a function or class: a lazy import postpones a dependency, it does not
  remove it), except inside an `if TYPE_CHECKING:` block, which never runs;
- `from X import n` (X absolute or relative) is an edge to `X.n` when `X.n` is a module of the
  package (`from . import losses` means the submodule), otherwise to `X`;
  `import X.Y` is an edge to the longest prefix of `X.Y` that is a module;
- importing `pkg.sub` is an edge to `pkg.sub` only, not to `pkg`. Python does run
  `pkg/__init__.py` first, but a package `__init__` that imports its submodules (to register
  them, or to re-export their names) is the normal layout, and counting the parent would make
  every such package a cycle. The rule still catches a submodule that imports its own package
  (`from . import register_cell` in `models/rnn.py` while `models/__init__.py` imports
  `models.rnn`): the name lives in `pkg`, so the edge goes to `pkg`.

Imports of other packages (torch, numpy, ...) are ignored.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "rnnbench"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every module of `package` under `root`."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, skipping the bodies of `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the `else:` branch does run
            continue
        stack.extend(ast.iter_child_nodes(node))


def _longest_module(dotted: str, modules) -> str | None:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in modules:
            return name
    return None


def imports_of(name: str, path: Path, modules) -> set[str]:
    """The package's modules that module `name` (file `path`) imports, by the rule above."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]  # what `from .` refers to
    targets = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _longest_module(alias.name, modules)
                if target:
                    targets.add(target)
            continue
        if node.level:
            base_parts = here.split(".")
            base_parts = base_parts[:len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in modules:
                targets.add(sub)
            else:
                target = _longest_module(base, modules)
                if target:
                    targets.add(target)
    targets.discard(name)
    return targets


def import_graph(root: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of `graph`, each as a closed path [a, ..., a]: in every strongly connected
    component (Tarjan's algorithm), the shortest cycle through each of its nodes, rotated to
    start at its smallest name, without repeats; sorted."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = set()
    for component in components:
        for start in component:
            cycle = _shortest_cycle(start, component, graph)
            i = cycle.index(min(cycle))
            cycles.add(tuple(cycle[i:] + cycle[:i]))
    return [list(c) + [c[0]] for c in sorted(cycles)]


def _shortest_cycle(start: str, component: set[str], graph) -> list[str]:
    """The nodes of a shortest cycle through `start` inside `component` (breadth-first)."""
    parent, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return path[::-1]
            if w in component and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError("a strongly connected component without a cycle")


def format_cycle(cycle: list[str]) -> str:
    return " -> ".join(cycle)


# --- the finder itself ---------------------------------------------------------------------
def test_find_cycles_on_a_synthetic_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"b"},
             "e": {"f"}, "f": {"e"}, "g": {"g"}, "h": {"a"}}
    cycles = [format_cycle(c) for c in find_cycles(graph)]
    assert cycles == ["a -> b -> c -> a", "b -> c -> d -> b", "e -> f -> e", "g -> g"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_rule_on_a_synthetic_package(tmp_path):
    """`from . import name` of a package's own name is an edge to the package (a cycle when the
    package imports that submodule); `from . import sub` is an edge to the submodule only;
    imports under `if TYPE_CHECKING:` and of other packages are not edges, lazy ones are."""
    pkg = tmp_path / "pkg"
    (pkg / "reg").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text(
        "import numpy\nfrom typing import TYPE_CHECKING\nfrom . import b\n"
        "if TYPE_CHECKING:\n    from . import c\n"
        "def f():\n    from .reg import thing\n")
    (pkg / "b.py").write_text("import pkg.reg.cell\n")
    (pkg / "c.py").write_text("from .a import f\n")
    (pkg / "reg" / "__init__.py").write_text("thing = 1\nfrom . import cell\n")
    (pkg / "reg" / "cell.py").write_text("from . import thing\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg.reg"}, "pkg.b": {"pkg.reg.cell"},
                     "pkg.c": {"pkg.a"}, "pkg.reg": {"pkg.reg.cell"},
                     "pkg.reg.cell": {"pkg.reg"}}
    assert [format_cycle(c) for c in find_cycles(graph)] == ["pkg.reg -> pkg.reg.cell -> pkg.reg"]


# --- the package ---------------------------------------------------------------------------
def test_graph_covers_the_package():
    graph = import_graph()
    assert {"rnnbench", "rnnbench.train", "rnnbench.models", "rnnbench.reference"} <= set(graph)
    assert "rnnbench.config" in graph["rnnbench.train"]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    if cycles:
        pytest.fail("import cycles in src/rnnbench:\n"
                    + "\n".join(format_cycle(c) for c in cycles))


def private_imports(root: Path = SRC, package: str = PACKAGE) -> list[str]:
    """`from X import _name` where X is a module of the package and `_name` is neither a module
    nor a dunder: a private helper used outside its module, i.e. code whose home is elsewhere."""
    modules = module_names(root, package)
    found = []
    for name, path in modules.items():
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 0 and not (node.module or "").startswith(package):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and not any(m.endswith("." + alias.name) for m in modules):
                    found.append(f"{name}: from {'.' * node.level}{node.module or ''} "
                                 f"import {alias.name}")
    return sorted(found)


def test_no_module_imports_a_private_name_of_another():
    found = private_imports()
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_private_import_finder_on_a_synthetic_package(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from ._version import __version__\n")
    (pkg / "_version.py").write_text("__version__ = '1'\n")
    (pkg / "a.py").write_text("def _helper():\n    pass\n")
    (pkg / "b.py").write_text("from .a import _helper\nfrom numpy import _globals\n")
    assert private_imports(tmp_path, "pkg") == ["pkg.b: from .a import _helper"]
