"""Which fast tests run each module of winit, for the full mutation run (scripts/mutation.py
--full): the unit tier runs once under coverage, with each test's lines recorded apart, and a
module's targeted tests are those that ran any line of it, fastest first. A mutant then runs
those tests only (seconds), not the whole tier.

Also a pytest plugin (loaded with `-p mutation_targets` and WINIT_TEST_MAP set): it records,
per test node id, the lines of winit_cli it runs and the seconds it takes.
"""

from __future__ import annotations

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _coverage is None:
        yield
        return
    _coverage.switch_context(item.nodeid)
    started = time.perf_counter()
    yield
    _seconds[item.nodeid] = time.perf_counter() - started
    _coverage.switch_context("")


def pytest_unconfigure(config):
    if _coverage is not None:
        _coverage.stop()
        _coverage.save()
        Path(os.environ["WINIT_TEST_MAP"] + ".seconds.json").write_text(json.dumps(_seconds))


def build(copy: Path, out: Path, env: dict) -> dict[str, list[str]]:
    """Module path (as in the repository) -> the unit tests' node ids that run any of its lines,
    fastest first. Run once per --out (test_map.json): the tests of `copy`, unmutated."""
    cached = out / "test_map.json"
    if cached.exists():
        return json.loads(cached.read_text())
    data_file = out / "coverage.data"
    scripts = str(Path(__file__).resolve().parent)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutation_targets",
         "-m", "unit", "tests/unit"], cwd=copy, capture_output=True, text=True,
        env={**env, "WINIT_TEST_MAP": str(data_file),
             "PYTHONPATH": os.pathsep.join([str(copy), scripts])})
    if run.returncode != 0:
        raise SystemExit(f"the unit tier fails before any mutation:\n{run.stdout[-3000:]}")
    import coverage

    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    seconds = json.loads(Path(f"{data_file}.seconds.json").read_text())
    targets = {}
    for measured in data.measured_files():
        tests = set()
        for contexts in data.contexts_by_lineno(measured).values():
            tests.update(c for c in contexts if c)
        module = Path(measured).resolve().relative_to(copy.resolve()).as_posix()
        targets[module] = sorted(tests, key=lambda t: (seconds.get(t, 0.0), t))
    cached.write_text(json.dumps(targets, indent=1, sort_keys=True))
    return targets


def every_module(root: Path) -> list[str]:
    """Every module of the package, as a repository path."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "winit_cli").rglob("*.py"))
