"""Impossible values in a run's tables (records/plausible.py table_problem) on tables built by
hand: a fraction outside [0, 1] (1 itself allowed), a negative count or norm, a second row for
the same step and layer, each named with its file line (the header is line 1); text columns
passed over; a table with none of these has no problem. And in summary.json (record_problem) and
layers.csv against it (layers_problem), on records built by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from winit_cli.records.plausible import (
    layers_problem,
    layers_suspects,
    record_problem,
    table_problem,
)
from winit_cli.records.schema import Environment, RunRecord


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


def _record(**fields) -> RunRecord:
    environment = Environment(python="3.12", torch="2.13.0", winit="0", platform="linux",
                              device="cpu", threads=1, flush_subnormals=True)
    return RunRecord(**{"run_id": "r", "name": "r", "config_hash": "0", "status": "complete",
                        "started_at": "2026-01-01T00:00:00", "scheme": "he_normal",
                        "activation": "relu", "depth": 3, "width": 8, "seed": 0,
                        "environment": environment, **fields})


@pytest.mark.parametrize(("fields", "problem"), [
    ({"depth": 1, "width": 1}, None),  # one Linear layer of one unit: the smallest net there is
    ({"width": [1, 4]}, None),
    ({"depth": 0}, "summary.json: depth 0 (at least 1)"),
    ({"width": [4, 0]}, "summary.json: width 4-0 (positive)"),
    ({"width": []}, "summary.json: width  (positive)"),
])
def test_record_problem_bounds_depth_and_width_at_one(fields, problem):
    assert record_problem(_record(**fields)) == problem


def _layers(*numbers: int) -> pd.DataFrame:
    return pd.DataFrame({"step": [0] * len(numbers), "layer": list(numbers)})


def test_an_mlps_layer_rows_are_its_depths():
    """An MLP of depth d has rows for layers 1 to d exactly; the problem names the layers found,
    first and last, and how many."""
    assert layers_problem(_record(depth=3), _layers(1, 2, 3)) is None
    assert layers_problem(_record(depth=5), _layers(1, 2, 3)) == \
        "layers.csv: rows for layers 1 to 3 (3 of them), but depth is 5"
    assert layers_problem(_record(depth=3), _layers(0, 1, 2)) == \
        "layers.csv: layer 0 (numbered from 1)"


def test_a_residual_nets_layer_rows_are_not_held_to_an_mlps():
    """A resmlp numbers its rows by block and stream, not 1 to depth: only numbering from 1 is
    checked."""
    assert layers_problem(_record(depth=5, model_kind="resmlp"), _layers(1, 2, 3)) is None


def test_the_batched_layer_check_flags_exactly_the_runs_with_a_problem():
    """layers_suspects reads many runs' layers.csv rows at once (a cold report's pass): it
    flags each run, worked out by hand below, in which a layer is missing, repeated in place of
    another, below 1, not whole or not finite, and flags no run whose rows are right (an MLP
    numbered 1 to its depth over several steps; a resmlp numbered from 1, however far)."""
    runs = {  # owner: (depth, is an MLP, layer column over its rows, flagged)
        0: (3, True, [1, 2, 3, 1, 2, 3], False),
        1: (3, True, [1, 2], True),  # layer 3 missing
        2: (3, True, [0, 1, 2, 3], True),  # a layer 0
        3: (3, True, [1, 2.5, 3], True),  # not whole
        4: (3, False, [1, 2, 3, 4, 5], False),  # resmlp: blocks and streams
        5: (3, False, [0, 1], True),
        6: (2, True, [1, np.nan, 2], True),  # not finite
        7: (3, True, [1, 1, 3], True),  # layer 2 missing, 1 twice
        8: (3, True, [2, 3], True),  # layer 1 missing
        9: (3, False, [1, 2, 3], False),  # a resmlp that happens to look like an MLP
    }
    owner = np.array([o for o, (_, _, layers, _) in runs.items() for _ in layers])
    layer = np.array([x for _, _, layers, _ in runs.values() for x in layers], dtype=float)
    depth = np.array([d for d, _, _, _ in runs.values()])
    mlp = np.array([m for _, m, _, _ in runs.values()])
    assert layers_suspects(layer, owner, depth, mlp) == {o for o, run in runs.items() if run[3]}
