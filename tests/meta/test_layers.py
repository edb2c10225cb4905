"""The layers are what the docs' Architecture page (docs/architecture.md) says: every module of
winit_cli sits in exactly one layer, and its imports (at the top, inside functions, under
TYPE_CHECKING alike) point only to its own layer or below. Two packages of one layer import each
other only where SAME_LAYER lists it, with the reason; views draw what records hold and import
nothing else.
test_layout.py checks that no module and no package imports in a circle.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "winit_cli"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

# Top to bottom. A unit is a subpackage or a top-level module of winit_cli.
LAYERS: list[tuple[str, ...]] = [
    # `import winit_cli` (winit.watch), `python -m winit_cli`, watch as a Lightning callback
    ("__init__", "__main__", "lightning"),
    ("cli",),  # parse, call the application, render, map errors to exit codes
    ("app",),  # run, compare, report, phase, schemes: orchestration and executor choice
    ("sweeps", "watcher"),  # many runs of a grid; winit.watch on a user's own loop
    ("runner",),  # train one group of members and write its run folders
    ("training",),  # the loop: K members at once, steps, schedule, threads
    ("diagnosis",),  # the verdict, and a run's config mapped onto the theory
    ("measure",),  # per-layer quantities of a recorded step, Jacobian spectra
    ("views",),  # tables, plots, report text: drawn from records
    ("records",),  # run folders, summary.json's schema, runs.csv, atomic writes
    ("config",),  # the schema every layer speaks
    ("datasets", "inits"),  # what the data and the initial weights are
    ("models",),  # the model kinds behind one interface
    ("theory",),  # mean field and random matrices: numpy only
    ("registry", "yamlfile", "interrupts", "status", "_version"),  # leaves of plumbing
    ("errors", "bounded"),  # the library's error types; the one bounded file reader
]
# Imports between two units of one layer, each with the reason it does not point down.
SAME_LAYER: dict[tuple[str, str], str] = {}
VIEWS_MAY_IMPORT = {"records", "errors"}
THEORY_MAY_IMPORT: set[str] = set()  # every prediction checkable on its own
# A warning, not a failure: a module is split where its concepts part, not at a line count.
MODULE_LINES_WARNING = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def unit_of(path: Path) -> str:
    """winit_cli/models/mlp.py -> models; winit_cli/config.py -> config."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_units(path: Path) -> set[str]:
    """The winit_cli units `path` imports, lazily or not."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; write winit_cli.… in full")
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "winit_cli" and len(parts) > 1 and parts[1] in LAYER_OF:
                found.add(parts[1])
    return found


LAYER_OF = {unit: depth for depth, layer in enumerate(LAYERS) for unit in layer}


def test_every_module_is_in_exactly_one_layer() -> None:
    units = [unit for layer in LAYERS for unit in layer]
    assert len(units) == len(set(units)), "a unit is listed in two layers"
    missing = sorted({unit_of(p) for p in modules()} - set(units))
    assert not missing, (f"modules in no layer: {missing}; add them to LAYERS and "
                         "docs/architecture.md")
    stale = sorted(set(units) - {unit_of(p) for p in modules()})
    assert not stale, f"LAYERS lists units that do not exist: {stale}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    here = unit_of(path)
    for target in imported_units(path) - {here}:
        if here == "views":
            assert target in VIEWS_MAY_IMPORT, f"{path.name}: a view imports {target}"
        if here == "theory":
            assert target in THEORY_MAY_IMPORT, f"{path.name}: theory imports {target}"
        if LAYER_OF[target] == LAYER_OF[here]:
            assert (here, target) in SAME_LAYER, (
                f"{path.relative_to(PACKAGE)} imports {target}, of its own layer: list it in "
                "SAME_LAYER with the reason, or move one of them")
        else:
            assert LAYER_OF[target] > LAYER_OF[here], (
                f"{path.relative_to(PACKAGE)} ({here}) imports {target}, a layer above it")


def test_every_listed_same_layer_import_exists() -> None:
    """An entry of SAME_LAYER whose import is gone is struck off, so the list stays true."""
    used = {(unit_of(p), t) for p in modules() for t in imported_units(p)}
    assert set(SAME_LAYER) <= used, f"stale: {sorted(set(SAME_LAYER) - used)}"


def test_the_docs_list_the_layers_in_this_order() -> None:
    """The Architecture page's layer list (a line per layer, `1. cli`, `2. app`, ...) names the
    same units in the same order, so that what a reader is told is what this test checks."""
    text = ARCHITECTURE.read_text()
    section = text[text.index("## The layers"):]
    listed = re.findall(r"^\d+\. `([^`]+)`", section, flags=re.M)
    expected = [", ".join(layer) for layer in LAYERS]
    assert listed == expected


def test_modules_are_split_by_concept_not_length() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in modules()
            if (n := len(p.read_text().splitlines())) > MODULE_LINES_WARNING}
    if long:
        warnings.warn(f"modules over {MODULE_LINES_WARNING} lines (split them only where "
                      f"their concepts part): {long}", stacklevel=1)


def test_functions_fit_on_a_screen() -> None:
    too_long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines})")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
