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
