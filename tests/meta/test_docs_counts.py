"""Counts the docs state about the test suite are the suite's own: the reliability page's number
of fault tests is what pytest collects from the test_faults_*.py files (it once said 73 where 74
ran)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_reliability_page_counts_the_fault_tests():
    files = sorted(str(p) for p in (REPO / "tests").rglob("test_faults_*.py"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *files], cwd=REPO, capture_output=True,
                          text=True)
    collected = sum("::" in line for line in proc.stdout.splitlines())
    stated = re.search(r"the `test_faults_\*\.py` tests, (\d+) of them",
                       " ".join((REPO / "docs" / "reliability.md").read_text().split()))
    assert stated, "the reliability page no longer states the count"
    assert int(stated.group(1)) == collected > 0
