"""A dry run's members table: the first rows shown, every other member counted by status, so a
10,000-member sweep prints a screenful and still accounts for every run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from winit_cli.views.terminal import DRY_RUN_ROWS, dry_run_table

pytestmark = pytest.mark.unit


def plan_of(n: int, done: set[int], interrupted: set[int]):
    members = [SimpleNamespace(train=SimpleNamespace(seed=i), scheme=f"s{i % 3}")
               for i in range(n)]
    hashes = [f"h{i}" for i in range(n)]
    return SimpleNamespace(members=members, hashes=hashes,
                           done={f"h{i}" for i in done},
                           unfinished={f"h{i}": "interrupted" for i in interrupted})


def printed(n: int, done: set[int], interrupted: set[int]) -> str:
    console = Console(record=True, width=120)
    spec = SimpleNamespace(grid={"init.scheme": ["s0", "s1", "s2"]})
    dry_run_table(console, spec, plan_of(n, done, interrupted), lambda c, k: c.scheme)
    return console.export_text()


def test_a_large_sweep_shows_the_first_rows_and_counts_the_rest() -> None:
    n = 1000
    text = printed(n, done={1, 500, 501}, interrupted={2, 700})
    rows = [line for line in text.splitlines() if line.strip().startswith(("s0", "s1", "s2"))]
    assert len(rows) == DRY_RUN_ROWS
    # beyond the shown rows, by hand: 500 and 501 done, 700 interrupted, the rest to run
    rest = n - DRY_RUN_ROWS
    assert (f"... and {rest:,} more runs (2 done, {rest - 3:,} to run, 1 to run (was "
            "interrupted))") in " ".join(text.split())
    assert "to run (was interrupted)" in rows[2] and "done" in rows[1]


def test_a_small_sweep_shows_every_run_and_no_count() -> None:
    text = printed(5, done=set(), interrupted=set())
    assert sum(line.strip().startswith(("s0", "s1", "s2")) for line in text.splitlines()) == 5
    assert "more runs" not in text
