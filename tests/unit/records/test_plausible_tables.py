"""Impossible values in a run's tables (records/plausible.py table_problem) on tables built by
hand: a fraction outside [0, 1] (1 itself allowed), a negative count or norm, a second row for
the same step and layer, each named with its file line (the header is line 1); text columns
passed over; a table with none of these has no problem."""

from __future__ import annotations

import pandas as pd
import pytest

from winit_cli.records.plausible import table_problem


def _frame(**columns) -> pd.DataFrame:
    base = {"note": ["a", "b", "c"], "step": [0, 10, 20], "layer": [1, 1, 1],
            "train_accuracy": [0.1, 1.0, 0.5], "weight_norm": [1.0, 2.0, 3.0]}
    return pd.DataFrame({**base, **columns})


def test_a_plausible_table_has_no_problem():
    assert table_problem("metrics.csv", _frame()) is None  # an accuracy of exactly 1 included


@pytest.mark.parametrize(("columns", "problem"), [
    ({"train_accuracy": [0.1, 1.5, 0.5]},
     "metrics.csv line 3: train_accuracy 1.5 is not a fraction in [0, 1]"),
    ({"train_accuracy": [0.1, 0.2, -0.5]},
     "metrics.csv line 4: train_accuracy -0.5 is not a fraction in [0, 1]"),
    ({"weight_norm": [1.0, -2.0, 3.0]}, "metrics.csv line 3: weight_norm -2 is negative"),
    ({"step": [0, -10, 20]}, "metrics.csv line 3: step -10 is negative"),
    ({"step": [0, 10, 10]}, "metrics.csv line 4: a second row for step 10, layer 1"),
])
def test_an_impossible_value_is_named_with_its_line(columns, problem):
    assert table_problem("metrics.csv", _frame(**columns)) == problem
