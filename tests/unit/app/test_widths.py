"""winit widths' tables from hand-built frames: the fitted slope of a known power law, the best
lr per width and its spread, the verdict; and the width theory's exponents against the values
Tensor Programs IV/V state (muP stable; SP with Adam growing; NTK with SGD frozen)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from winit_cli.app.widths import (
    WidthOptions,
    fitted_slope,
    lr_spread,
    slope_frame,
    verdicts,
    widths_spec,
)
from winit_cli.errors import ConfigError
from winit_cli.theory.width import predicted_slopes

WIDTHS = [128, 256, 512, 1024]


def _coord(exponents: dict[str, list[float]], steps=(0, 3)) -> pd.DataFrame:
    """coord = 2 * width^e per (parametrization, layer), the same at every step."""
    rows = [{"parametrization": p, "width": w, "lr": 1e-3, "layer": l + 1, "step": s,
             "coord": 2.0 * w ** e}
            for p, es in exponents.items() for l, e in enumerate(es) for w in WIDTHS
            for s in steps]
    return pd.DataFrame(rows)


def test_fitted_slope_of_a_power_law():
    w = np.array(WIDTHS, dtype=float)
    assert fitted_slope(w, 3 * w ** 0.97) == pytest.approx(0.97)
    assert math.isnan(fitted_slope(w[:1], w[:1]))
    assert fitted_slope(w, np.array([1.0, np.nan, 4.0, 8.0])) == pytest.approx(1.0)


def test_slopes_and_verdicts():
    coord = _coord({"standard": [0, 1, 2, 0.97], "mup": [0, 0, 0, 0.0]})
    slopes = slope_frame(coord, "adam", "relu")
    last = slopes[slopes.step == 3].set_index(["parametrization", "layer"])
    assert last.slope["standard"].tolist() == pytest.approx([0, 1, 2, 0.97])
    assert last.predicted_slope["standard"].tolist() == [0, 1, 2, 3]
    assert slopes[slopes.step == 0].predicted_slope.tolist()[:4] == [0, 0, 0, -0.5]  # mup first
    said = verdicts(slopes)
    assert said["standard"].startswith("standard: output scales as width^+0.97 after 3 steps")
    assert "blows up: layers 2 (width^+1.00), 3 (width^+2.00), 4 (width^+0.97)" \
        in said["standard"]
    assert "stable" in said["mup"]


def test_lr_spread_in_octaves():
    table = pd.DataFrame({"parametrization": ["standard"] * 3 + ["mup"] * 3,
                          "width": [128, 256, 512] * 2,
                          "lr": [4e-3, 2e-3, 1e-3, 2e-3, 2e-3, 2e-3], "best": [True] * 6})
    assert lr_spread(table) == {"mup": 0.0, "standard": pytest.approx(2.0)}


@pytest.mark.parametrize(("parametrization", "optimizer", "expected"), [
    ("mup", "adam", [0, 0, 0, 0]), ("mup", "sgd", [0, 0, 0, 0]),
    ("standard", "adam", [0, 1, 2, 3]),  # Delta W h sums n terms of size lr: x n per layer
    ("ntk", "sgd", [0, 0, 0, 0]),  # the kernel regime: stable, features frozen
])
def test_width_theory(parametrization, optimizer, expected):
    assert predicted_slopes(parametrization, optimizer, 4) == expected


def test_bounded_activations_saturate():
    # tanh(z) stays O(1) however large z grows: each layer grows by its own update only
    assert predicted_slopes("standard", "adam", 4, "tanh") == [0, 1, 1, 1]


def test_spec_refuses_one_width_and_unknown_parametrizations():
    with pytest.raises(ConfigError, match="two widths"):
        widths_spec(WidthOptions(widths=[128]))
    with pytest.raises(ConfigError, match="mup"):
        widths_spec(WidthOptions(parametrizations=["mu_p"]))
