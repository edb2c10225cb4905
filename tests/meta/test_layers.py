"""The layers stay what the README's architecture section says: imports point down, modules
are readable in one sitting, functions fit on a screen (test_layout.py checks import cycles).

Layers, top to bottom: cli -> app, sweeps and watcher (orchestration) -> core (config, datasets,
models, inits, measure, training) -> records (files on disk) -> views (read records only). A
module may import from its own layer and the layers below, except that views never import
anything that trains or orchestrates: they draw what records hold.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "winit_cli"
MAX_MODULE_LINES = 320
MAX_FUNCTION_LINES = 60
# Longer on purpose, with the reason.
LONG_MODULES: dict[str, str] = {}

# config (the schema every layer speaks) and errors are shared by all layers.
LAYER = {"cli": 0, "app": 1, "sweeps": 1, "watcher": 1, "datasets": 2, "models": 2, "inits": 2,
         "measure": 2, "training": 2, "records": 3, "views": 4}
# views sit below records but must not reach back into what trains or orchestrates
VIEWS_MAY_IMPORT = {"records", "views"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    """The winit_cli subpackages or top-level modules `path` imports, lazily or not."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "winit_cli" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] == "winit_cli" and isinstance(node, ast.ImportFrom):
                found.update(a.name for a in node.names if a.name in LAYER)
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    here = _part(path)
    if here not in LAYER:  # __init__, __main__, errors: the package's own plumbing
        return
    for target in _imports(path) - {here}:
        if target not in LAYER:
            continue
        if here == "views":
            assert target in VIEWS_MAY_IMPORT, f"{path.name}: a view imports {target}"
        else:
            assert LAYER[target] >= LAYER[here], f"{path.name} ({here}) imports {target}"


def test_modules_are_readable_in_one_sitting() -> None:
    long = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in modules()}
    too_long = {p: n for p, n in long.items() if n > MAX_MODULE_LINES and p not in LONG_MODULES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_functions_fit_on_a_screen() -> None:
    too_long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines})")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
