"""Two helpers of the family theories (diagnosis/predict_families.py), on values built by hand:
`fitted_rate`, the measured growth per layer fitted over the middle layers (a fifth of the
depth, at least 2, left out at each end), against a least-squares slope computed here; and
`explain`, which appends a family's statement only to a verdict it predicts (at step 0, in the
predicted direction; a divergence where it predicts growth)."""

from __future__ import annotations

import pandas as pd
import pytest

from winit_cli.diagnosis.predict_families import explain, fitted_rate

DEPTH = 15  # a fifth is 3 layers left out at each end: the fit runs over layers 4..12


def _step0(log10_norms: list[float]) -> pd.DataFrame:
    # in reverse order: the fit must sort by layer
    layers = list(range(1, len(log10_norms) + 1))[::-1]
    return pd.DataFrame({"layer": layers, "act_grad_norm": [10 ** log10_norms[i - 1]
                                                            for i in layers]})


def _least_squares_slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


def test_a_geometric_growth_is_its_rate_over_the_middle_layers():
    """||dL/dz_l|| = 10^(0.3 (DEPTH - l)): 0.3 decades per layer toward the input."""
    rate, window = fitted_rate(_step0([0.3 * (DEPTH - l) for l in range(1, DEPTH + 1)]))
    assert rate == pytest.approx(0.3)
    assert window == "4-12"


def test_the_fit_reads_each_layers_own_norm():
    """log10 norms curved (0.01 l^2) and wild at the ends: the slope is the least-squares one
    over layers 4..12 of exactly those layers' values."""
    logs = [0.01 * l * l for l in range(1, DEPTH + 1)]
    logs[0], logs[-1] = 9.0, -9.0  # outside the window: must not count
    rate, _ = fitted_rate(_step0(logs))
    middle = list(range(4, 13))
    assert rate == pytest.approx(-_least_squares_slope(middle, [logs[l - 1] for l in middle]))


@pytest.mark.parametrize("zero_layer", [5, 12])
def test_no_rate_when_a_middle_layers_gradient_is_zero(zero_layer):
    norms = _step0([0.3 * (DEPTH - l) for l in range(1, DEPTH + 1)])
    norms.loc[norms.layer == zero_layer, "act_grad_norm"] = 0.0
    assert fitted_rate(norms) == (None, None)


def test_no_rate_for_a_net_too_shallow_to_have_a_middle():
    assert fitted_rate(_step0([0.1 * l for l in range(6)])) == (None, None)


def _block(predicted: float) -> dict:
    return {"applicable": True, "family": "batchnorm", "statement": "S",
            "predicted_log10_ratio": predicted}


@pytest.mark.parametrize(("verdict", "step", "predicted", "explained"), [
    ("exploding", 0, 1.5, True),
    ("exploding", 40, 1.5, False),  # found later: training's doing, not the init's
    ("exploding", 0, -1.5, False),  # the theory predicts the other direction
    ("vanishing", 0, -1.5, True),
    ("vanishing", 0, 0.5, False),
    ("vanishing", 0, -0.5, True),
    ("vanishing", 3, -1.5, False),
    ("diverged", 200, 1.5, True),
    ("diverged", 200, -1.5, False),
    ("healthy", 0, 0.0, False),
])
def test_the_statement_explains_only_what_the_theory_predicts(verdict, step, predicted,
                                                              explained):
    assert explain(verdict, step, _block(predicted)) == ("; theory: S" if explained else "")


def test_no_statement_without_a_family_prediction():
    assert explain("exploding", 0, {**_block(1.5), "applicable": False}) == ""
    assert explain("exploding", 0, {**_block(1.5), "family": "plain"}) == ""
    assert explain("exploding", 0, {**_block(1.5), "predicted_log10_ratio": None}) == ""
