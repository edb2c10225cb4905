"""The report's ranking fields on tables built by hand: the step at which a run first reaches the
target validation accuracy (records/rows.py `steps_to`, the steps_to_target column), how many of
a configuration's runs reached it, and the order configurations are ranked in (best mean test
accuracy first, missing last), each written out here from its documented definition."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from winit_cli.records.rows import TARGET_ACCURACY, aggregate, ranked, steps_to

NAN = math.nan


def test_steps_to_target_is_the_first_evaluated_step_at_or_above_the_target():
    """metrics.csv has a row per recorded step; validation runs on its own schedule, so most rows
    have no val_accuracy. The accuracy reaches 0.9 exactly at step 60 (>= counts), falls back,
    and passes it again; train accuracy passes it first, at step 20, and must not count."""
    assert TARGET_ACCURACY == 0.9
    metrics = pd.DataFrame({
        "step": [0, 10, 20, 30, 40, 50, 60, 70, 80, 90],
        "train_accuracy": [0.1, 0.5, 0.92, 0.95, 0.96, 0.97, 0.97, 0.98, 0.98, 0.99],
        "val_accuracy": [0.1, NAN, 0.85, NAN, 0.899, NAN, 0.9, NAN, 0.88, 0.95],
    })
    assert steps_to(metrics, TARGET_ACCURACY) == 60
    assert steps_to(metrics, 0.95) == 90
    assert steps_to(metrics, 0.96) is None  # never reached
    assert steps_to(metrics.drop(columns="val_accuracy"), TARGET_ACCURACY) is None


def _runs(rows: list[tuple[str, int, float, float, float]]) -> pd.DataFrame:
    """Finished runs (one configuration per scheme): scheme, seed, val and test accuracy,
    steps_to_target (nan: not reached)."""
    return pd.DataFrame([{
        "dataset": "mnist", "model_kind": "mlp", "activation": "relu", "depth": 10,
        "width": "64", "scheme": scheme, "seed": seed, "status": "complete",
        "verdict": "healthy", "config_hash": f"{scheme}-{seed}", "val_accuracy": val,
        "test_accuracy": test, "steps_to_target": reach,
        **{c: 0.0 for c in ("log10_ratio_init", "log10_ratio_end",
                            "log10_first_to_last_measured", "log10_first_to_last_predicted",
                            "log10_first_to_last_end", "train_accuracy", "train_seconds")},
    } for scheme, seed, val, test, reach in rows])


def test_ranking_is_by_mean_test_accuracy_and_counts_the_runs_that_reached_the_target():
    """Validation accuracy would rank these the other way round: b's val accuracy is the best
    and its test accuracy the worst. c has no test accuracy: ranked last."""
    runs = _runs([
        ("a", 0, 0.80, 0.91, 100), ("a", 1, 0.82, 0.93, NAN),
        ("b", 0, 0.99, 0.70, 40), ("b", 1, 0.98, 0.72, 60),
        ("c", 0, 0.99, NAN, 20),
        ("d", 0, 0.50, 0.85, NAN), ("d", 1, 0.50, 0.87, NAN),
    ])
    configs = aggregate(runs, [])
    labels = {i: configs.scheme[i] for i in configs.index}
    by_scheme = configs.set_index("scheme")
    assert by_scheme.reached_target.to_dict() == {"a": 1, "b": 2, "c": 1, "d": 0}
    assert by_scheme.steps_to_target_mean.to_dict() == pytest.approx(
        {"a": 100, "b": 50, "c": 20, "d": NAN}, nan_ok=True)
    assert by_scheme.test_accuracy_mean.to_dict() == pytest.approx(
        {"a": 0.92, "b": 0.71, "c": NAN, "d": 0.86}, nan_ok=True)
    assert ranked(configs, labels).scheme.tolist() == ["a", "d", "b", "c"]
