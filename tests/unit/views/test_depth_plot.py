"""The dz-ratio-versus-depth figure draws the measured means as points (with the std over
seeds) and theory's predictions as a line, per activation; numbers from a hand-built table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from winit_cli.views.depth_plot import dz_ratio_vs_depth

pytestmark = pytest.mark.unit


def _row(activation, scheme, depth, measured, std, predicted):
    return {"dataset": "mnist", "model_kind": "mlp", "activation": activation, "width": 64,
            "scheme": scheme, "depth": depth, "log10_first_to_last_measured_mean": measured,
            "log10_first_to_last_measured_std": std,
            "log10_first_to_last_predicted_mean": predicted}


def test_points_are_measured_and_lines_are_theory_per_activation():
    rows = [_row("relu", "xavier_normal", d, -0.13 * d, 0.05, -0.14 * d) for d in (5, 10, 20)]
    rows += [_row("tanh", "he_normal", d, 0.03 * d, None, None) for d in (5, 20)]
    fig = dz_ratio_vs_depth(pd.DataFrame(rows), {"xavier_normal": "#2ca02c",
                                                 "he_normal": "#1f77b4"})
    relu, tanh = fig.axes[:2]
    assert "relu" in relu.get_title() and "tanh" in tanh.get_title()
    points = next(line for line in relu.get_lines() if line.get_marker() == "o")
    np.testing.assert_allclose(points.get_xdata(), [5, 10, 20])
    np.testing.assert_allclose(points.get_ydata(), [-0.65, -1.3, -2.6])
    theory = [line for line in relu.get_lines() if line.get_linestyle() == "--"]
    np.testing.assert_allclose(theory[0].get_ydata(), [-0.7, -1.4, -2.8])
    # no prediction for tanh here: points, no dashed line but the legend's key
    assert not [line for line in tanh.get_lines() if line.get_linestyle() == "--"
                and len(line.get_xdata())]
