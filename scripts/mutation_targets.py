"""Which fast tests run each module of winit, and each line of it, for the full mutation run
(scripts/mutation.py --full): the unit tier runs once under coverage, with each test's lines
recorded apart. A module's targeted tests are those that ran any line of it, fastest first; a
mutant runs only the tests that ran the lines it changed (`tests_for_mutant`, which
scripts/mutation_worker.py runs against each mutant; seconds, not the whole tier). A line only
import runs (a constant, a default, a decorator) gets every test of the module; a line no test
runs cannot change what any test sees, so its mutant survives without a run.

Also a pytest plugin (loaded with `-p mutation_targets` and WINIT_TEST_MAP set): it records,
per test node id, the lines of winit_cli it runs and the seconds it takes. The integration tier
(`build(..., tier="integration")`) runs winit in subprocesses too (the CLI as a whole process):
with WINIT_TEST_MAP_SUBPROCESSES set, each Python subprocess a test starts is measured as well
(coverage's start-up hook, COVERAGE_PROCESS_START), under the test's node id as its context
(passed down in WINIT_TEST_CONTEXT), and its data is combined into the test's.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

_coverage = None
_seconds: dict[str, float] = {}
if os.environ.get("WINIT_TEST_MAP"):
    # Started on import, before any test module imports winit_cli.
    import coverage

    _coverage = coverage.Coverage(data_file=os.environ["WINIT_TEST_MAP"], source=["winit_cli"],
                                  branch=False)
    _coverage.start()
    if os.environ.get("WINIT_TEST_MAP_SUBPROCESSES"):
        # Set here, not in the pytest process's own environment: its start-up hook would
        # measure pytest itself twice.
        _rc = Path(os.environ["WINIT_TEST_MAP"] + ".subprocess.rc")
        _rc.write_text("[run]\nsource = winit_cli\nparallel = true\n"
                       f"data_file = {os.environ['WINIT_TEST_MAP']}.sub\n"
                       "context = ${WINIT_TEST_CONTEXT}\n")
        os.environ["COVERAGE_PROCESS_START"] = str(_rc)

# The tests of each tier: (paths, marker expression). The integration tier leaves out the Ray
# cluster and Chromium tests (a cluster or a browser started per mutant: minutes each).
TIERS = {"unit": (["tests/unit"], "unit"),
         "integration": (["tests/integration"], "integration and not cluster and not browser")}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _coverage is None:
        yield
        return
    _coverage.switch_context(item.nodeid)
    os.environ["WINIT_TEST_CONTEXT"] = item.nodeid
    started = time.perf_counter()
    yield
    _seconds[item.nodeid] = time.perf_counter() - started
    _coverage.switch_context("")


def pytest_unconfigure(config):
    if _coverage is not None:
        _coverage.stop()
        _coverage.save()
        Path(os.environ["WINIT_TEST_MAP"] + ".seconds.json").write_text(json.dumps(_seconds))


def build(copy: Path, out: Path, env: dict, tier: str = "unit") -> dict[str, list[str]]:
    """Module path (as in the repository) -> the node ids of the tier's tests that run any of
    its lines, fastest first. Run once per --out (test_map.json): the tests of `copy`,
    unmutated."""
    cached = out / "test_map.json"
    if cached.exists():
        return json.loads(cached.read_text())
    _record(copy, env, TIERS[tier][0], out / "coverage.data", tier)
    return _derive(copy, out)


def extend(copy: Path, out: Path, env: dict, tests: list[str],
           tier: str = "unit") -> dict[str, list[str]]:
    """The map with `tests` (test files added since it was built) recorded into it too: rerun
    survivors then meet the tests written to kill them."""
    import coverage

    extra = out / "coverage.extra"
    _record(copy, env, tests, extra, tier)
    data = coverage.CoverageData(basename=str(out / "coverage.data"))
    data.read()
    added = coverage.CoverageData(basename=str(extra))
    added.read()
    data.update(added)
    data.write()
    seconds = out / "coverage.data.seconds.json"
    seconds.write_text(json.dumps({**json.loads(seconds.read_text()),
                                   **json.loads(Path(f"{extra}.seconds.json").read_text())}))
    return _derive(copy, out)


def _record(copy: Path, env: dict, tests: list[str], data_file: Path, tier: str) -> None:
    """Run the tier's tests among `tests` in `copy` under this plugin, into `data_file` (with
    the subprocesses they start, for the integration tier)."""
    import coverage

    scripts = str(Path(__file__).resolve().parent)
    measured = {**env, "WINIT_TEST_MAP": str(data_file),
                "PYTHONPATH": os.pathsep.join([str(copy), scripts])}
    if tier != "unit":
        measured["WINIT_TEST_MAP_SUBPROCESSES"] = "1"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutation_targets",
         "-m", TIERS[tier][1], *tests], cwd=copy, capture_output=True, text=True, env=measured)
    if run.returncode != 0:
        raise SystemExit(f"the {tier} tests fail before any mutation:\n{run.stdout[-3000:]}")
    parts = sorted(data_file.parent.glob(f"{data_file.name}.sub.*"))
    if parts:
        data = coverage.CoverageData(basename=str(data_file))
        data.read()
        for part in parts:
            found = coverage.CoverageData(basename=str(part))
            found.read()
            data.update(found)
            part.unlink()
        data.write()


def _derive(copy: Path, out: Path) -> dict[str, list[str]]:
    import coverage

    data = coverage.CoverageData(basename=str(out / "coverage.data"))
    data.read()
    seconds = json.loads((out / "coverage.data.seconds.json").read_text())
    targets = {}
    for measured in data.measured_files():
        tests = set()
        for contexts in data.contexts_by_lineno(measured).values():
            tests.update(c for c in contexts if c)
        module = Path(measured).resolve().relative_to(copy.resolve()).as_posix()
        targets[module] = sorted(tests, key=lambda t: (seconds.get(t, 0.0), t))
    (out / "test_map.json").write_text(json.dumps(targets, indent=1, sort_keys=True))
    return targets


def line_map(out: Path, module: str) -> dict[str, list[str]]:
    """Line number (as text) -> the node ids of the tests that ran it, fastest first, for one
    module, from the coverage data `build` left in `out`; "import" -> every test of the
    module (for lines only import runs)."""
    import coverage

    data = coverage.CoverageData(basename=str(out / "coverage.data"))
    data.read()
    seconds = json.loads((out / "coverage.data.seconds.json").read_text())
    measured = [f for f in data.measured_files()
                if Path(f).as_posix().endswith("/map-checkout/" + module)]
    lines: dict[str, list[str]] = {}
    for file in measured:
        for line, contexts in data.contexts_by_lineno(file).items():
            tests = sorted({c for c in contexts if c}, key=lambda t: (seconds.get(t, 0.0), t))
            lines[str(line)] = tests if tests else ["import"]
    every = sorted({t for tests in lines.values() for t in tests if t != "import"},
                   key=lambda t: (seconds.get(t, 0.0), t))
    return {**lines, "import": every}


def statement_lines(source: str) -> dict[int, int | None]:
    """Each line of a statement -> the line coverage reports it under (the innermost statement's
    first), or None for a def or class header (decorators, defaults: run on import) and for the
    whole of a function under a cache decorator (`cache`, `lru_cache`): it runs once per
    process, under whichever test calls it first, and every later test reads its result."""
    first: dict[int, int | None] = {}
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.stmt)]
    for node in sorted(nodes, key=lambda n: n.lineno):
        header = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        for line in range(start, (node.end_lineno or node.lineno) + 1):
            first[line] = None if header and line < node.body[0].lineno else node.lineno
    for node in nodes:
        if any("cache" in ast.unparse(d) for d in getattr(node, "decorator_list", [])):
            first.update(dict.fromkeys(range(node.lineno, (node.end_lineno or 0) + 1)))
    return first


def tests_for_mutant(lines: dict[str, list[str]], pristine: str, mutated: str) -> list[str]:
    """The tests that ran any line the mutant changed; every test of the module for a line run
    on import; none for a line no test runs."""
    statement = statement_lines(pristine)
    changed = set()
    matcher = difflib.SequenceMatcher(None, pristine.splitlines(), mutated.splitlines(),
                                      autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag != "equal":
            changed.update(range(i1 + 1, max(i2, i1 + 1) + 1))
    tests: list[str] = []
    for line in sorted(changed):
        first = statement.get(line)
        found = ["import"] if first is None else lines.get(str(first), [])
        for test in (lines["import"] if found == ["import"] else found):
            if test not in tests:
                tests.append(test)
    return tests


def _trees(repo: Path, tests_ref: str | None) -> dict[str, str]:
    """The git trees of winit_cli/ and tests/ (from `tests_ref` if given)."""
    def tree(ref: str, folder: str) -> str:
        return subprocess.run(["git", "rev-parse", f"{ref}:{folder}"], cwd=repo,
                              capture_output=True, text=True, check=True).stdout.strip()
    return {"winit_cli": tree("HEAD", "winit_cli"), "tests": tree(tests_ref or "HEAD", "tests")}


def record_trees(repo: Path, out: Path, tests_ref: str | None) -> None:
    """Note which code and tests the map in `out` was made on (see `mapped_seconds`)."""
    (out / "map_trees.json").write_text(json.dumps(_trees(repo, tests_ref)))


def mapped_seconds(repo: Path, out: Path, tests_ref: str | None,
                   tests: list[str]) -> float | None:
    """The seconds `tests` took when the map in `out` was made, if it was made on this very
    code and these tests (they passed then: a map is made only from a passing tier, so that
    stands for the unmutated check); else None."""
    record = out / "map_trees.json"
    if not record.exists() or json.loads(record.read_text()) != _trees(repo, tests_ref):
        return None
    known = json.loads((out / "coverage.data.seconds.json").read_text())
    return sum(known.get(t, 0.0) for t in tests)


def every_module(root: Path) -> list[str]:
    """Every module of the package, as a repository path."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "winit_cli").rglob("*.py"))
