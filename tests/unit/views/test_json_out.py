"""`--json` documents built from hand-made inputs (stand-ins with the attributes the app's
results have), compared field by field with the document written out by hand: strict JSON,
plain Python values, and null for what could not be measured."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from winit_cli.views.json_out import (
    comparison_result,
    cost_estimate,
    dumps,
    phase_result,
    records,
    report_result,
    run_result,
)


def test_records_turn_table_cells_into_plain_values_and_unmeasured_into_null() -> None:
    """ints, floats and strings pass through as Python's own; NaN, inf, None and pd.NA become
    null; numpy scalars become Python scalars; paths become strings."""
    frame = pd.DataFrame({
        "scheme": ["he", "lsuv", "orthogonal"],
        "runs": [3, 1, 2],
        "accuracy": [0.5, math.nan, math.inf],
        "steps": pd.array([10, pd.NA, 7], dtype="Int64"),
        "ratio": pd.Series([np.float32(0.25), np.int64(4), None], dtype=object),
        "where": [Path("/r/a"), Path("/r/b"), "plain"],
    })
    assert records(frame) == [
        {"scheme": "he", "runs": 3, "accuracy": 0.5, "steps": 10, "ratio": 0.25, "where": "/r/a"},
        {"scheme": "lsuv", "runs": 1, "accuracy": None, "steps": None, "ratio": 4,
         "where": "/r/b"},
        {"scheme": "orthogonal", "runs": 2, "accuracy": None, "steps": 7, "ratio": None,
         "where": "plain"},
    ]
    plain = records(frame)
    assert type(plain[1]["ratio"]) is int and type(plain[0]["ratio"]) is float
    assert type(plain[0]["steps"]) is int and type(plain[0]["runs"]) is int


def test_dumps_writes_strict_json_indented_by_two() -> None:
    """numpy scalars, paths and pd.NA are written as plain values (pd.NA as null); the layout is
    two-space indented."""
    text = dumps({"n": np.int64(3), "x": np.float32(0.5), "path": Path("/a/b"), "none": None,
                  "na": pd.NA})
    assert text == ('{\n  "n": 3,\n  "x": 0.5,\n  "path": "/a/b",\n  "none": null,\n'
                    '  "na": null\n}')


def test_dumps_refuses_nan_rather_than_write_what_json_readers_reject() -> None:
    """NaN is not JSON: a value that slipped past `records` is an error, not `NaN` on stdout."""
    with pytest.raises(ValueError):
        dumps({"accuracy": math.nan})


def test_run_result_names_the_run_and_its_report() -> None:
    outcome = SimpleNamespace(run_dir=Path("/results/run-1"),
                              record=SimpleNamespace(to_json=lambda: {"status": "finished"}))
    assert run_result(outcome, Path("/results/run-1/report")) == {
        "run_dir": "/results/run-1", "report_dir": "/results/run-1/report",
        "record": {"status": "finished"}}
    assert run_result(outcome, None)["report_dir"] is None


def test_comparison_result_lists_the_runs_or_none() -> None:
    plan = SimpleNamespace(directory=Path("/results/sweep"))
    frame = pd.DataFrame({"scheme": ["he"], "test_accuracy": [0.9]})
    done = SimpleNamespace(plan=plan, path=Path("/results/sweep/comparison.csv"), frame=frame)
    assert comparison_result(done) == {
        "sweep_dir": "/results/sweep", "comparison_csv": "/results/sweep/comparison.csv",
        "runs": [{"scheme": "he", "test_accuracy": 0.9}]}
    empty = SimpleNamespace(plan=plan, path=Path("/results/sweep/comparison.csv"), frame=None)
    assert comparison_result(empty)["runs"] == []


def phase_diagram() -> SimpleNamespace:
    return SimpleNamespace(
        comparison=SimpleNamespace(plan=SimpleNamespace(directory=Path("/results/phase"))),
        grid_path=Path("/results/phase/grid.csv"), figure_path=Path("/results/phase/phase.png"),
        options=SimpleNamespace(c=6.0),
        grid=pd.DataFrame({"depth": [10], "trained": [True]}))


def test_phase_result_reports_agreement_and_the_fitted_c() -> None:
    """right/total are the agreement's (right, total); best_c is the fit's interval, its open
    end (inf) written as null."""
    fit = SimpleNamespace(low=2.5, high=math.inf, right=7, total=9)
    assert phase_result(phase_diagram(), (5, 9), fit, "5 of 9 cells agree") == {
        "sweep_dir": "/results/phase", "grid_csv": "/results/phase/grid.csv",
        "figure": "/results/phase/phase.png", "c": 6.0, "right": 5, "total": 9,
        "best_c": {"low": 2.5, "high": None, "right": 7, "total": 9},
        "agreement": "5 of 9 cells agree", "cells": [{"depth": 10, "trained": True}]}
    assert phase_result(phase_diagram(), (5, 9), None, "")["best_c"] is None


def test_report_result_strips_markdown_and_keeps_one_entry_per_group() -> None:
    """Each group: its title, its recommendation and labels without markdown, its
    configurations without the members column; skipped runs with path and reason."""
    configs = pd.DataFrame({"scheme": ["he", "lsuv"], "members": [["a"], ["b"]]}, index=[4, 7])
    report = SimpleNamespace(
        out=Path("/results/report"), files=[Path("/results/report/report.md")],
        groups={"relu, depth 10": configs},
        recommendations=["use **`he`**: healthy"],
        labels={4: "`he`", 7: "`lsuv`"},
        summary=pd.DataFrame({"run": ["a", "b"], "test_accuracy": [0.9, math.nan]}),
        skipped=[SimpleNamespace(path="/results/broken", reason="no summary.json")])
    assert report_result(report) == {
        "out": "/results/report", "files": ["/results/report/report.md"],
        "groups": [{"title": "relu, depth 10", "recommendation": "use he: healthy",
                    "configurations": [{"scheme": "he", "label": "he"},
                                       {"scheme": "lsuv", "label": "lsuv"}]}],
        "runs": [{"run": "a", "test_accuracy": 0.9}, {"run": "b", "test_accuracy": None}],
        "not_included": [{"path": "/results/broken", "reason": "no summary.json"}]}


def cost(startup: float | None, contention) -> SimpleNamespace:
    group = SimpleNamespace(label="he", members=3, steps=100, recorded=10, evaluated=5000,
                            timing=SimpleNamespace(plain=0.01, recorded=0.05), extrapolated=True,
                            seconds=1.5)
    return SimpleNamespace(parts=lambda: {"start-up": startup or 0.0, "data": 0.4},
                           startup=startup, missing=("fashion_mnist",), threads=2,
                           contention=contention, groups=[group])


def test_cost_estimate_says_what_was_measured() -> None:
    """startup_measured is whether start-up was timed; the CPU contention fields are null when
    it was not looked at."""
    doc = cost_estimate(cost(0.8, SimpleNamespace(others=3, fair_share=0.5)))
    assert doc == {
        "seconds_by_part": {"start-up": 0.8, "data": 0.4}, "startup_measured": True,
        "data_not_on_machine": ["fashion_mnist"], "threads": 2,
        "other_runnable_threads": 3, "fair_cpu_share": 0.5,
        "groups": [{"label": "he", "runs": 3, "steps": 100, "recorded_steps": 10,
                    "evaluated_examples": 5000, "step_seconds": 0.01,
                    "recorded_step_seconds": 0.05, "extrapolated": True, "seconds": 1.5}]}
    unmeasured = cost_estimate(cost(None, None))
    assert unmeasured["startup_measured"] is False
    assert unmeasured["other_runnable_threads"] is None and unmeasured["fair_cpu_share"] is None
    assert json.loads(dumps(unmeasured))["fair_cpu_share"] is None
