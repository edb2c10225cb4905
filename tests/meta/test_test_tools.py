"""The scripts that check the tests (scripts/planted_bugs.py, scripts/mutation.py) keep up with
the code: every planted bug still applies, every module and test they name exists, and the
mutation score's interval and README table are what their definitions give."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import mutation  # noqa: E402
import mutation_report  # noqa: E402
import mutation_targets  # noqa: E402
import planted_bugs  # noqa: E402


@pytest.mark.parametrize("plant", planted_bugs.PLANTS, ids=lambda p: p.bug)
def test_every_planted_bug_still_applies(plant):
    """A plant whose text moved would stop the script; caught here, in CI, instead."""
    source = (REPO / plant.module).read_text()
    for old, _ in plant.edits:
        assert source.count(old) == 1, f"{plant.module} no longer has {old!r} once"
    assert plant.tests and len(planted_bugs.located(REPO, plant.tests)) == len(plant.tests)


def test_the_mutated_modules_and_their_tests_exist():
    """mutation.py leaves out tests it cannot find (for older --tests-ref): a renamed test
    would silently lower the scores, so here every name must exist but the old ones."""
    listed = {t for _, tests in mutation.MODULES.values() for t in tests} | set(mutation.DESELECT)
    for module, _ in mutation.MODULES.values():
        assert (REPO / module).is_file(), module
    wanted = sorted(listed - set(mutation.OLD_BATCHING))
    assert [t.rpartition("/")[2] for t in mutation.present(wanted, REPO)] == wanted


def test_wilson_interval():
    """The textbook example: 8 of 10 at 95% is 0.490 to 0.943 (Wilson 1927; Newcombe 1998,
    table I gives 0.4902-0.9433); a perfect score's upper end is 1."""
    low, high = mutation_report.wilson(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert mutation_report.wilson(5, 5)[1] == 1.0


def test_readme_block_reports_both_runs():
    """After per module, before and after on the same mutants, the survivors' changed lines."""
    after = {"probes": {"killed": 3, "survived": 1, "incompetent": 0, "candidates": 90,
                        "score": 0.75, "interval95": [0.3, 0.95], "seed": 16,
                        "survivors": [{"line": 7, "operator": "core/NumberReplacer",
                                       "diff": "--- a\n+++ b\n-    x = 1\n+    x = 2\n"}]}}
    text = mutation_report.readme_block(after, {"probes": (3, 1, 2)}, "main")
    assert "| probes | 4 (90) | 3/4 (75%) | 30-95% | 1 -> 2 of 3 |" in text
    assert "| all | 4 | 3/4 (75%) | | 1 -> 2 of 3 |" in text
    assert "- probes, line 7 (NumberReplacer): `x = 1` -> `x = 2`" in text


SOURCE = """X = 3


def f(a):
    if a > X:
        return (a +
                1)
    return 0


def never():
    return 1


@cache
def table():
    return [1, 2]
"""
# As coverage would record it: def lines and X run on import only; f's lines by two tests;
# the cached table's body by the first test that called it.
LINES = {"1": ["import"], "4": ["import"], "5": ["t::slow", "t::fast"], "6": ["t::slow"],
         "8": ["t::fast"], "11": ["import"], "15": ["import"], "17": ["t::fast"],
         "import": ["t::fast", "t::slow"]}


@pytest.mark.parametrize(("old", "new", "tests"), [
    ("if a > X", "if a >= X", ["t::slow", "t::fast"]),  # the line's own tests
    ("                1)", "                2)", ["t::slow"]),  # a statement's second line
    ("X = 3", "X = 4", ["t::fast", "t::slow"]),  # run on import: every test of the module
    ("    return 1", "    return 2", []),  # no test runs it: it cannot change what they see
    ("[1, 2]", "[1, 3]", ["t::fast", "t::slow"]),  # cached: every later test reads it too
])
def test_a_mutant_runs_the_tests_of_the_lines_it_changed(old, new, tests):
    mutated = SOURCE.replace(old, new, 1)
    assert mutated != SOURCE
    assert mutation_targets.tests_for_mutant(LINES, SOURCE, mutated) == tests


def test_full_block_tabulates_each_module_and_lists_what_is_left(tmp_path):
    """Per module: mutants, killed, survived, not run yet, the score; then the time the rest
    takes at the measured pace (10 mutants in 100 s; 10 per line of a 10-line module), what is
    not yet mutated and the survivors."""
    import json

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "result.json").write_text(json.dumps({
        "module": "winit_cli/a.py", "candidates": 12, "killed": 8, "survived": 2,
        "incompetent": 0, "not_run": 2, "score": 0.8, "interval95": [0.49, 0.94],
        "seconds": 100.0, "survivors": [
            {"line": 3, "operator": "core/NumberReplacer", "diff": "-    x = 1\n+    x = 2\n"},
            {"line": 5, "operator": "core/ReplaceTrueWithFalse",
             "diff": "-    y = True\n+    y = False\n"}]}))
    harmless = tmp_path / "explained.yaml"
    harmless.write_text("a:\n  - {line: 5, operators: [ReplaceTrueWithFalse], why: y is unread}\n"
                        "  - {line: 3, operators: [ReplaceTrueWithFalse], why: not this one}\n")
    (tmp_path / "test_map.json").write_text(json.dumps({"winit_cli/a.py": ["t"],
                                                        "winit_cli/b.py": ["t"]}))
    (tmp_path / "winit_cli").mkdir()
    (tmp_path / "winit_cli" / "a.py").write_text("x = 1\n" * 10)
    (tmp_path / "winit_cli" / "b.py").write_text("x = 1\n" * 5)
    text = mutation_report.full_block(tmp_path, ["a", "b", "c"], root=tmp_path,
                                      explanations=harmless)
    # one of the two survivors explained: 8 killed of 9 that count
    assert "| a | 12 | 8 | 2 | 1 | 2 | 80% | 49-94% | 89% |" in text
    # b: 5 lines at 1.2 mutants a line, and a's 2 not run: 8 more at 10 s each
    assert ("10 mutants run in 2 min (10.0 s each); the 1 modules not yet run and the rest of "
            "those cut short hold about 8 more (1.20 mutants per line so far): 1 min more at "
            "that pace.") in text
    assert "Not yet mutated: b." in text
    assert "No unit test runs any line of (left out): c." in text
    unexplained, explained = text.split("Survivors explained as harmless")
    assert "- a, line 3 (NumberReplacer): `x = 1` -> `x = 2`" in unexplained
    assert "- a, line 5 (ReplaceTrueWithFalse): `y = True` -> `y = False`. Harmless: y is unread" \
        in explained


@pytest.mark.integration  # starts the worker process
def test_the_warm_worker_runs_each_mutant_as_written(tmp_path):
    """mutation_worker forks one child per mutant after its imports: each child reads its own
    mutant (the module is imported after the fork), a failing test kills it, a passing one lets
    it survive, a mutant that hangs is stopped at the time limit, and the pristine source is
    back after each."""
    import os

    import mutation_worker

    pristine = "def double(x):\n    return 2 * x\n"
    (tmp_path / "double.py").write_text(pristine)
    (tmp_path / "test_double.py").write_text(
        "from double import double\n\n\ndef test_double():\n    assert double(3) == 6\n")
    worker = mutation_worker.Worker(tmp_path, {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        def run(source: str, timeout: float = 60.0) -> int | None:
            args = ["-q", "-p", "no:cacheprovider", "test_double.py"]
            return worker.run(tmp_path / "double.py", source, args, timeout)["code"]

        assert run(pristine.replace("2 * x", "2 + x")) == 1  # 5 != 6: killed
        assert run(pristine.replace("2 * x", "x + x")) == 0  # the same function: survives
        assert run(pristine.replace("2 * x", "2 ** x")) == 1  # a new mutant, read afresh
        assert run(pristine.replace("return 2 * x", "while True:\n        pass"), 1.0) is None
        assert (tmp_path / "double.py").read_text() == pristine
    finally:
        worker.close()


@pytest.mark.integration  # runs pytest, which starts a subprocess
def test_the_integration_map_counts_lines_a_subprocess_runs(tmp_path):
    """The integration tier runs winit as a whole process: a line only a test's subprocess runs
    is mapped to that test (its context passed down), not left as run by no test (whose mutants
    would survive without a run); a line no test runs stays unmapped."""
    import os

    copy = tmp_path / "map-checkout"  # where mutation.py makes the map, and line_map looks
    package = copy / "winit_cli"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "shout.py").write_text(
        "def shout(word):\n    return word.upper()\n\n\ndef whisper(word):\n"
        "    return word.lower()\n\n\nif __name__ == '__main__':\n    print(shout('hi'))\n")
    tests = copy / "tests" / "integration"
    tests.mkdir(parents=True)
    (tests / "test_shout.py").write_text(
        "import os, subprocess, sys\n\nimport pytest\n\n\n@pytest.mark.integration\n"
        "def test_shout_in_a_subprocess():\n"
        "    done = subprocess.run([sys.executable, '-m', 'winit_cli.shout'], env=os.environ,\n"
        "                          capture_output=True, text=True, check=True)\n"
        "    assert done.stdout == 'HI\\n'\n")
    (copy / "pytest.ini").write_text("[pytest]\nmarkers =\n    integration: x\n")
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("COVERAGE_PROCESS_START", None)
    mapped = mutation_targets.build(copy, tmp_path, env, "integration")
    test = "tests/integration/test_shout.py::test_shout_in_a_subprocess"
    assert mapped["winit_cli/shout.py"] == [test]
    lines = mutation_targets.line_map(tmp_path, "winit_cli/shout.py")
    assert lines["2"] == [test] and lines["10"] == [test]
    assert "6" not in lines  # whisper: no test runs it
    assert not list(tmp_path.glob("coverage.data.sub.*"))  # combined into the map
