"""The report's account of a configuration says where theory's verdict at init and the measured
verdict differ, from a summary table built by hand."""

from __future__ import annotations

import math

import pandas as pd

from winit_cli.views.report_text import basis, describe


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


def _order(rows: list[tuple[str, float, float, int]]) -> pd.DataFrame:
    """Configurations, best first: (label, mean test accuracy, its std, seeds)."""
    return pd.DataFrame([{"test_accuracy_mean": m, "test_accuracy_std": s, "n_seeds": n}
                         for _, m, s, n in rows], index=[r[0] for r in rows])


def test_one_seed_says_to_rerun_with_three():
    order = _order([("he", 0.91, math.nan, 1), ("xavier", 0.80, math.nan, 1)])
    text = basis(order, order.iloc[0], {"he": "he", "xavier": "xavier"})
    assert "Rests on 2 candidates, 1 seed each" in text
    assert "xavier next, 11.0 points behind" in text  # 0.91 - 0.80, in points
    assert "One seed: rerun with --seeds 3 before trusting this ranking." in text


def test_a_gap_within_the_spread_is_not_settled():
    order = _order([("a", 0.900, 0.02, 3), ("b", 0.890, 0.015, 3)])
    text = basis(order, order.iloc[0], {"a": "a", "b": "b"})
    assert "1.0 points behind, within the spread over seeds (std up to 2.0 points)" in text
    assert "rerun" not in text  # three seeds: enough


def test_a_gap_beyond_the_spread_is_stated_plainly():
    order = _order([("a", 0.95, 0.01, 3), ("b", 0.80, 0.01, 3)])
    text = basis(order, order.iloc[0], {"a": "a", "b": "b"})
    assert "15.0 points behind." in text and "not settled" not in text


def test_a_single_candidate_says_nothing_was_compared():
    order = _order([("mine", 0.87, math.nan, 1)])
    text = basis(order, order.iloc[0], {"mine": "user's init"})
    assert "Rests on 1 candidate, 1 seed: nothing was compared" in text


def test_chi_star_is_not_taken_for_italics():
    """chi* in a theory sentence and a *caveat* in one line: only the caveat is italic."""
    from winit_cli.views.doc import _inline

    text = _inline("Theory: chi* = 2 per layer. *Rests on 1 candidate.*")
    assert text == "Theory: chi* = 2 per layer. <em>Rests on 1 candidate.</em>"
