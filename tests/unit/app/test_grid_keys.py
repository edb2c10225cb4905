"""Which config keys are grid columns of a report (app/report.grid_keys): the keys whose values
differ among the runs, told apart as JSON text tells them (1, 1.0 and True are three; -0.0 is
not 0.0; NaN is NaN), over hand-written configs whose answer is read off them."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from winit_cli.app.report import grid_keys
from winit_cli.records.reader import Run

BASE = {"train.lr": 0.1, "train.optimizer": "sgd", "train.steps": 40, "train.epochs": 3,
        "model.depth": 4, "model.bias": True, "output_dir": "results", "train.seed": 0}


def _runs(*changes: dict, grid: tuple[str, ...] = ()) -> list[Run]:
    return [Run(Path(f"r{i}"), f"r{i}", None, {**BASE, **change}, None, grid)
            for i, change in enumerate(changes)]


@pytest.mark.parametrize("a, b", [(1, 1.0), (1, True), (1.0, True), (0.0, -0.0), (0.1, 0.2),
                                  ("1", 1), (None, 0), (None, "null")])
def test_values_json_tells_apart_make_a_grid_key(a, b):
    many = [{"train.momentum": a}] * 5 + [{"train.momentum": b}]
    assert grid_keys(_runs(*many)) == ["train.momentum"]
    assert grid_keys(_runs(*reversed(many))) == ["train.momentum"]


@pytest.mark.parametrize("value", [0.1, -0.0, float("nan"), float("inf"), 3, True, "adam", None,
                                   "[1, 2]"])
def test_the_same_value_everywhere_is_no_grid_key(value):
    assert grid_keys(_runs(*[{"train.momentum": value}] * 4)) == []


def test_a_missing_key_reads_as_null():
    assert grid_keys(_runs({"train.momentum": None}, {})) == []
    assert grid_keys(_runs({"train.momentum": 0.9}, {})) == ["train.momentum"]


def test_a_value_json_cannot_write_is_compared_as_its_text():
    day = datetime.date(2026, 1, 1)
    assert grid_keys(_runs({"data.until": day}, {"data.until": "2026-01-01"})) == []
    assert grid_keys(_runs({"data.until": day}, {"data.until": "2026-01-02"})) == ["data.until"]


def test_epochs_count_only_where_steps_do_not_override_them():
    assert grid_keys(_runs({"train.epochs": 3}, {"train.epochs": 5})) == []
    assert grid_keys(_runs({"train.steps": None, "train.epochs": 3},
                           {"train.steps": None, "train.epochs": 5})) == ["train.epochs"]
    assert grid_keys(_runs({"train.steps": None}, {})) == ["train.epochs", "train.steps"]


def test_bookkeeping_and_own_columns_are_never_grid_keys():
    assert grid_keys(_runs({"output_dir": "a", "model.depth": 2, "train.seed": 1},
                           {"output_dir": "b", "model.depth": 8, "train.seed": 2})) == []


def test_a_sweep_axis_is_a_grid_key_even_where_its_runs_share_a_value():
    assert grid_keys(_runs({}, {}, grid=("train.lr", "not.in.any.config"))) == ["train.lr"]


def test_watched_runs_and_runs_without_a_config_add_none():
    runs = _runs({"train.momentum": 0.9}, {"train.momentum": 0.5, "source": "winit.watch"},
                 {"train.momentum": 0.9})
    runs.append(Run(Path("bare"), "bare", None, {}, None))
    assert grid_keys(runs) == []
