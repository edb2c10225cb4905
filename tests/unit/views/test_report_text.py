"""The report's account of a configuration says where theory's verdict at init and the measured
verdict differ, from a summary table built by hand."""

from __future__ import annotations

import math

import pandas as pd

from winit_cli.views.report_text import describe


def members(predicted: list, measured: list, steps: list) -> pd.DataFrame:
    n = len(measured)
    return pd.DataFrame({
        "verdict": measured, "verdict_step": steps, "verdict_layer": [3.0] * n,
        "verdict_fraction_of_steps": [1.0] * n, "theory_predicted_verdict": predicted,
        "log10_first_to_last_measured": [-1.0] * n, "log10_first_to_last_predicted": [-1.0] * n,
        "log10_first_to_last_end": [-1.0] * n, "zero_grad_layers_init": [0.0] * n,
        "test_accuracy": [0.9] * n})


AGG = pd.Series({"test_accuracy_mean": 0.9, "test_accuracy_std": math.nan, "runs": 1, "n_seeds": 1})


def test_agreement_says_nothing_more():
    text = describe("he", members(["healthy"] * 2, ["healthy"] * 2, [math.nan] * 2), AGG)
    assert "differs" not in text


def test_a_disagreement_is_counted_and_named():
    frame = members(["healthy", "healthy", None], ["exploding", "healthy", "vanishing"],
                    [0.0, math.nan, 0.0])
    text = describe("xavier", frame, AGG)
    # the run without a prediction is not counted; step 0 is init, said without a step
    assert ("Theory's verdict at init differs from the measured one in 1 of 2 runs (healthy "
            "predicted, exploding measured).") in text


def test_a_verdict_that_arose_in_training_says_when():
    text = describe("normal", members(["healthy"], ["diverged"], [120.0]), AGG)
    assert "in 1 of 1 run (healthy predicted, diverged measured from step 120)" in text


def test_runs_of_before_the_prediction_have_no_column():
    frame = members(["healthy"], ["exploding"], [0.0]).drop(columns="theory_predicted_verdict")
    assert "differs" not in describe("old", frame, AGG)
