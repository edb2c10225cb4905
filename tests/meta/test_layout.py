"""The package's import graph: every module imports on its own, and nothing imports in a circle.

Edges are read from the source with `ast`: every `import` statement anywhere in a module, at the
top, inside functions and under `if TYPE_CHECKING:` alike, since each says "this module depends
on that one" to a reader. An import of a package (`from winit_cli.models import Trace`) is an
edge to the package's `__init__`; importing a submodule is not counted as importing its parent.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import winit_cli

PACKAGE = Path(winit_cli.__file__).resolve().parent

def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """The winit_cli modules `path` (module `name`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..models import y
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from pkg import submodule` imports the submodule; `from pkg import name`, pkg.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def graph() -> dict[str, set[str]]:
    return {name: imported(name, path) for name, path in MODULES.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None: depth-first search, a back edge closes a cycle."""
    state: dict[str, str] = {}  # "open" while on the stack, then "done"
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_of(module: str) -> str:
    """winit_cli.models.mlp -> winit_cli.models; a top-level module (winit_cli.config) is its own
    unit."""
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, targets in modules.items():
        unit = package_of(module)
        edges.setdefault(unit, set()).update(package_of(t) for t in targets)
        edges[unit].discard(unit)
    return edges


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cyclic_sets(edges: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected sets of more than one node: nodes that reach each other."""
    reach = {node: reachable(edges, node) for node in edges}
    return {frozenset({a} | {b for b in reach[a] if a in reach.get(b, ())})
            for a in edges if a in reach[a]}


def test_the_search_finds_a_cycle_and_reads_relative_imports(tmp_path):
    """Guards the guard: a planted cycle is found, a tree passes, relative imports resolve."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert cyclic_sets({"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set()}) == {
        frozenset("abc")}
    assert cyclic_sets({"a": {"b"}, "b": set()}) == set()
    source = tmp_path / "x.py"
    source.write_text("from . import registry\nfrom .base import Trace\n"
                      "def f():\n    from winit_cli.inits import get_scheme\n")
    assert imported("winit_cli.models.x", source) == {
        "winit_cli.models.registry", "winit_cli.models.base", "winit_cli.inits"}


def test_no_module_imports_in_a_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_subpackages_import_in_one_direction():
    """No cycle between subpackages (models -> inits -> models), none whitelisted."""
    found = cyclic_sets(package_graph(graph()))
    assert not found, f"cycles between subpackages: {sorted(map(sorted, found))}"


def test_models_depend_on_nothing_above_them():
    """The model kinds are the bottom of the core: they never import inits, measure, training,
    config (which imports them to validate `model.kind`) or anything above; only the package's
    plumbing (errors, and the registry helper that holds the kinds)."""
    for name, targets in graph().items():
        if name.startswith("winit_cli.models"):
            outside = {t for t in targets if not t.startswith("winit_cli.models")}
            assert outside <= {"winit_cli.errors", "winit_cli.registry"}, \
                f"{name} imports {outside}"


@pytest.mark.integration
@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter():
    """An import cycle can work from one side and fail from the other (a partially initialised
    module): each module is imported with no winit_cli module loaded before it. A module of an
    optional extra (winit_cli.lightning) may fail only with its ImportError naming the extra."""
    names = sorted(m for m in MODULES if not m.endswith("__main__"))
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('winit_cli')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as e:\n"
        "        if \"pip install 'winit[\" not in str(e):\n"
        "            raise\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=PACKAGE.parent, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
