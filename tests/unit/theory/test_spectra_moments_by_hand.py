"""The Jacobian spectrum's exact moments (theory/spectra.py predicted_spectrum) by hand: with
D = phi'(z)^2 of moments mu1, mu2 and per-layer W^T W of mean sigma_w2 and normalised variance
v_w (1 for a square Gaussian, Marchenko-Pastur; 0 for a scaled orthogonal), L layers give
E[s^2] = (sigma_w2 mu1)^L and var(s^2) / E[s^2]^2 = L (v_w + mu2 / mu1^2 - 1). ReLU: D is 0 or
1 with probability 1/2 (mu1 = mu2 = 1/2); linear: D = 1; tanh at q* = 0 (sigma_w2 < 1, no
bias): D = tanh'(0)^2 = 1."""

from __future__ import annotations

import pytest

from winit_cli.theory.spectra import predicted_moments, predicted_spectrum


@pytest.mark.parametrize(("layers", "family", "activation", "sigma_w2", "mean_sq", "var_sq"), [
    (4, "gaussian", "relu", 2.0, 1.0, 4 * (1 + 2 - 1)),
    (4, "orthogonal", "relu", 2.0, 1.0, 4 * (0 + 2 - 1)),
    (3, "gaussian", "linear", 1.0, 1.0, 3 * 1),
    (3, "gaussian", "tanh", 0.5, 0.5**3, 3 * 1),
    (3, "orthogonal", "tanh", 0.5, 0.5**3, 0.0),
])
def test_moments_by_hand(layers, family, activation, sigma_w2, mean_sq, var_sq):
    p = predicted_spectrum(layers, family, activation, sigma_w2, 0.0)
    assert (p.mean_sq, p.var_sq) == pytest.approx((mean_sq, var_sq), abs=1e-9)
    assert predicted_moments(layers, family, activation, sigma_w2=sigma_w2) == pytest.approx(
        (mean_sq, var_sq), abs=1e-9)
