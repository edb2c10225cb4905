"""The free-probability curve the report draws beside a measured Jacobian spectrum
(app/spectrum_theory.py, views/spectrum_plot.py): which runs get one, that it is the theory
module's density for the run's own sigma_w2, sigma_b2 and depth, and that the figure draws it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from winit_cli.app.spectrum_theory import predicted_curve, report_curves
from winit_cli.theory import critical_sigma_w2
from winit_cli.theory.spectra import predicted_spectrum
from winit_cli.views.spectrum_plot import SpectrumLine, spectrum_density


def _config(scheme: str, activation: str = "tanh", depth: int = 12, width=256, **params):
    return {"model.depth": depth, "model.width": width, "model.activation": activation,
            "init.scheme": scheme, **{f"init.params.{k}": v for k, v in params.items()}}


@pytest.mark.slow
def test_critical_orthogonal_tanh_is_the_theory_modules_density_in_log10():
    """A depth-12 net's J has k = 10 weight matrices; the curve is predicted_spectrum's density
    of ln s for the critical sigma_w2 at this sigma_b2, moved to log10 s (x / ln 10, density x
    ln 10), so it integrates to the same mass above the zero cutoff."""
    curve = predicted_curve(_config("critical", sigma_b2=1e-3, orthogonal=True))
    expected = predicted_spectrum(10, "orthogonal", "tanh", critical_sigma_w2("tanh", 1e-3), 1e-3)
    x, density, atoms = curve
    assert atoms.shape == (0, 2)
    np.testing.assert_allclose(x, expected.log_sv / math.log(10), rtol=1e-6)
    np.testing.assert_allclose(density, expected.density * math.log(10), rtol=1e-6,
                               atol=1e-9)
    assert np.trapezoid(density, x) == pytest.approx(1 - expected.zero_fraction, abs=1e-3)


@pytest.mark.slow
def test_each_weight_family_reads_its_variance_from_the_scheme():
    """He normal with ReLU is Gaussian with sigma_w2 = 2; `orthogonal` with gain g is orthogonal
    with sigma_w2 = g^2 on square layers; critical without `orthogonal` is Gaussian."""
    he = predicted_curve(_config("he_normal", activation="relu"))
    np.testing.assert_allclose(he[0], predicted_spectrum(10, "gaussian", "relu", 2.0, 0.0).log_sv
                               / math.log(10), rtol=1e-6)
    orth = predicted_curve(_config("orthogonal", activation="linear", depth=6, gain=1.2))
    assert len(orth[0]) == len(orth[1]) == 0  # every s is 1.2^4: one atom, no density
    np.testing.assert_allclose(orth[2], [[4 * math.log10(1.2), 1.0]])
    orth_tanh = predicted_curve(_config("orthogonal", depth=6, gain=1.2))
    np.testing.assert_allclose(
        orth_tanh[1], predicted_spectrum(4, "orthogonal", "tanh", 1.44, 0.0).density
        * math.log(10), rtol=1e-6, atol=1e-9)
    gauss = predicted_curve(_config("critical", sigma_b2=1e-3))
    np.testing.assert_allclose(gauss[1], predicted_spectrum(
        10, "gaussian", "tanh", critical_sigma_w2("tanh", 1e-3), 1e-3).density * math.log(10),
        rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("config", [
    _config("xavier_uniform"),  # uniform: no finite-width claim
    _config("mean1_normal", activation="relu"),  # nonzero mean: outside the theory
    _config("lsuv"),  # data-calibrated weights
    _config("he_normal", width=[256, 128, 256]),  # unequal widths
    _config("he_normal", depth=2),  # no z_1 -> z_{L-1} chain
    {**_config("he_normal"), "model.kind": "resnet"},
])
def test_no_curve_outside_the_theory(config):
    """Where the theory's assumptions do not hold, no curve (the figure then draws none)."""
    assert predicted_curve(config) is None


def test_report_curves_only_for_runs_with_a_spectrum():
    """Keyed by run path; a run without spectrum.csv, or without a prediction, gets none."""
    spectrum = pd.DataFrame({"value": [1.0], "weight": [1.0]})
    runs = [SimpleNamespace(path="a", spectrum=spectrum, config=_config("he_normal", "relu")),
            SimpleNamespace(path="b", spectrum=None, config=_config("he_normal", "relu")),
            SimpleNamespace(path="c", spectrum=spectrum, config=_config("xavier_uniform"))]
    assert list(report_curves(runs)) == ["a"]


def test_the_figure_draws_the_curve_dashed_in_the_lines_colour():
    """spectrum_density adds the theory as a dashed line with the given points (inside the
    histogram's range) and says in the legend what the dashes are."""
    rng = np.random.default_rng(0)
    values = 10 ** rng.normal(0, 0.5, 400)
    spectrum = pd.DataFrame({"value": values, "weight": np.full(400, 1 / 400)})
    x = np.linspace(-1, 1, 50)
    theory = (x, np.exp(-x**2))
    fig = spectrum_density([SpectrumLine("measured", "#d62728", [spectrum], theory)], "t")
    (ax,) = fig.axes
    dashed = [line for line in ax.lines if line.get_linestyle() == "--" and len(line.get_xdata())]
    (curve,) = dashed
    inside = (x >= np.log10(values.min())) & (x <= np.log10(values.max()))
    np.testing.assert_allclose(curve.get_xdata(), x[inside])
    assert curve.get_color() == "#d62728"
    assert any("free-probability" in t.get_text() for t in ax.get_legend().get_texts())


def test_an_atom_is_drawn_as_the_bar_a_histogram_would_show():
    """Depth 3, orthogonal, ReLU (k = 1): J = sqrt(2) W D, so half the s are 0 and half sqrt(2)
    (an atom, no density). The curve carries the atom; the figure draws it dashed at log10
    sqrt(2), as tall as a histogram bin holding mass 1/2 (the measured s are all sqrt(2), so the
    60 bins span 0.2 decades: height 0.5 / (0.2 / 60) = 150), not as a spike or nothing."""
    x, density, atoms = predicted_curve(_config("orthogonal", activation="relu", depth=3,
                                                gain=math.sqrt(2)))
    assert np.all(density == 0)
    np.testing.assert_allclose(atoms, [[0.5 * math.log10(2), 0.5]], rtol=1e-9)
    spectrum = pd.DataFrame({"value": [0.0] * 4 + [math.sqrt(2)] * 4, "weight": [1 / 8] * 8})
    fig = spectrum_density([SpectrumLine("orth", "#1f77b4", [spectrum], (x, density, atoms))],
                           "t")
    (ax,) = fig.axes
    (bar,) = [line for line in ax.lines if line.get_linestyle() == "--"
              and len(line.get_xdata()) == 2]
    np.testing.assert_allclose(bar.get_xdata(), [0.5 * math.log10(2)] * 2)
    np.testing.assert_allclose(bar.get_ydata(), [0.0, 150.0], rtol=1e-9)
