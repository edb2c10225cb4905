"""The Jacobian spectrum at small k (theory/spectra.py), where D^2's atoms reach the output:
orthogonal weights with ReLU give atoms (k = 1) or an inverse-square-root edge (k = 2, the
arcsine law), so the inverse map does not turn at the edge. Checked against closed forms
(free projections; phi'(h)^2 itself at k = 1) and against width-800 products in plain torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from winit_cli.theory import activation_functions, fixed_point_q
from winit_cli.theory.spectra import _law_spectrum, predicted_spectrum


def _moment(prediction, power):
    """E[s^power] from the cells and the atoms (an atom at 0 adds nothing)."""
    cells = prediction.density * np.gradient(prediction.log_sv)
    atoms = sum(mass * s**power for s, mass in prediction.atoms)
    return float(cells @ np.exp(power * prediction.log_sv)) + atoms


def _cdf(prediction, log_s):
    """The predicted share of s at or below e^log_s, above the zero cutoff (atoms included)."""
    widths = np.gradient(prediction.log_sv)  # the cells are equal (but the last)
    edges = np.concatenate([[prediction.log_sv[0] - widths[0] / 2],
                            prediction.log_sv + widths / 2])
    steps = np.concatenate([[0.0], np.cumsum(prediction.density * widths)])
    atoms = sum(mass * (math.log(s) <= log_s) for s, mass in prediction.atoms)
    return np.interp(log_s, edges, steps) + atoms


def test_orthogonal_relu_one_layer_is_two_atoms():
    """J = W_2 D_1 with W_2 sqrt(2) times orthogonal: s is sqrt(2) D_1's diagonal, 0 or sqrt(2)
    with probability 1/2 each; no density at all."""
    p = predicted_spectrum(1, "orthogonal", "relu", 2.0)
    assert p.zero_fraction == pytest.approx(0.5, abs=1e-9)
    np.testing.assert_allclose(p.atoms, [(math.sqrt(2), 0.5)], rtol=1e-12)
    assert p.max == pytest.approx(math.sqrt(2)) and p.spread == 0.0
    assert np.all(p.density == 0)


def test_orthogonal_relu_two_layers_is_the_arcsine_law():
    """J J^T = 4 P Q P for free projections of trace 1/2: half of it an atom at 0, the rest
    lambda = 4x with x arcsine on [0, 1] (density 1 / (pi sqrt(x (1 - x)))). So s = 2 sqrt(x):
    P(s <= t | s > 0) = (2 / pi) arcsin(t / 2), std of ln s = pi / sqrt(12) (var ln x is
    psi'(1/2) - psi'(1) = pi^2 / 3), E[s^2] = 1, E[s^4] = 16 (1/2)(3/8) = 3."""
    p = predicted_spectrum(2, "orthogonal", "relu", 2.0)
    assert p.max == pytest.approx(2.0, rel=1e-9)
    assert p.zero_fraction == pytest.approx(0.5, abs=1e-4)
    assert p.spread == pytest.approx(math.pi / math.sqrt(12), abs=2e-3)
    log_t = np.linspace(-6, math.log(2) - 0.01, 40)  # within a cell (0.005), interpolated
    expected = 0.5 * (2 / math.pi) * np.arcsin(np.exp(log_t) / 2)
    np.testing.assert_allclose([_cdf(p, t) for t in log_t], expected, atol=1e-3)
    assert (_moment(p, 2), _moment(p, 4)) == pytest.approx((1.0, 3.0), rel=2e-3)
    assert p.density.max() < 10  # each cell's average: the 1/sqrt edge is not a spike


def test_free_projections_of_trace_07_have_an_atom_at_one():
    """D^2 = 1 with probability 0.7, else 0, orthogonal weights, k = 2: P Q P for free
    projections of trace a = 0.7 has atoms 0.3 at 0 and 2a - 1 = 0.4 at 1, and density
    sqrt((l+ - x) x) / (2 pi x (1 - x)) on [0, l+ = 4a(1 - a)] (Voiculescu; the reference's
    mass, 0.3, checked here too)."""
    log_x, tail, atoms, edge = _law_spectrum(2, "orthogonal", 1.0, np.array([0.0, 1.0]),
                                             np.array([0.3, 0.7]), 1e-6)
    np.testing.assert_allclose(atoms, [(1.0, 0.4)], rtol=1e-9)
    top = 4 * 0.7 * 0.3
    assert edge == pytest.approx(1.0)  # the atom is the support's top
    # in u = sqrt(x) the density is smooth: sqrt(l+ - u^2) / (pi (1 - u^2)) per unit u
    u = np.linspace(0.0, math.sqrt(top), 2_000_001)
    per_u = np.sqrt(np.maximum(top - u * u, 0.0)) / (math.pi * (1 - u * u))
    steps = 0.5 * (per_u[1:] + per_u[:-1]) * np.diff(u)
    expected_tail = np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])
    assert expected_tail[0] == pytest.approx(0.3, abs=1e-6)
    inside = np.exp(log_x) < top
    expected = np.interp(np.sqrt(np.exp(log_x[inside])), u, expected_tail)
    np.testing.assert_allclose(tail[inside], expected, atol=1e-5)
    assert np.all(tail[~inside] == pytest.approx(0.0, abs=1e-6))


@pytest.mark.parametrize(("activation", "sigma_w2", "sigma_b2"), [
    ("tanh", 1.0, 0.05), ("tanh", 4.0, 0.0), ("elu", 1.5, 0.1), ("leaky_relu", 2.0, 0.0)])
def test_orthogonal_one_layer_is_the_law_of_the_slopes(activation, sigma_w2, sigma_b2):
    """k = 1: s = sigma_w |phi'(h)|, h ~ N(0, q*), nothing to convolve. Against that law taken
    at 200,000 quantiles of h in plain torch: spread, max and the CDF of ln s."""
    q = 1.0 if activation == "leaky_relu" else fixed_point_q(activation, sigma_w2, sigma_b2)
    h = torch.special.ndtri((torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000)
    s = math.sqrt(sigma_w2) * np.abs(activation_functions(activation)[1](math.sqrt(q) * h.numpy()))
    p = predicted_spectrum(1, "orthogonal", activation, sigma_w2, sigma_b2)
    assert p.max == pytest.approx(s.max(), rel=1e-6)
    assert p.spread == pytest.approx(np.std(np.log(s)), abs=2e-3)
    assert p.zero_fraction == pytest.approx(0.0, abs=1e-6)
    for level in np.quantile(np.log(s), [0.05, 0.3, 0.6, 0.9]):
        assert _cdf(p, level + 1e-3) >= np.mean(np.log(s) <= level) - 3e-3
        assert _cdf(p, level - 1e-3) <= np.mean(np.log(s) <= level) + 3e-3


def _product_singular_values(k, weights, activation, sigma_w2, q, width=800, seeds=4):
    """s of W_{k+1} D_k ... W_2 D_1 at width 800 in float64, pooled over 4 seeds: Haar
    orthogonal W from QR (columns' signs fixed by R's diagonal) or Gaussian. Each D holds
    phi'(h) at the N(0, q) quantiles (i + 1/2) / width in random order, not i.i.d. draws: with
    i.i.d. ReLU masks the ranks of D_1 and D_2 differ by ~sqrt(width) / 2, which pushes the
    smallest s off 0 (a Jacobi ensemble's hard edge) and moves the 10% quantile of ln s by
    0.1 at k = 2; the infinite-width law is the same either way."""
    _, dphi = activation_functions(activation)
    values = []
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        jac = torch.eye(width, dtype=torch.float64)
        for _ in range(k):
            u = (torch.randperm(width, generator=gen).double() + 0.5) / width
            d = torch.from_numpy(np.asarray(dphi(math.sqrt(q) * torch.special.ndtri(u).numpy()),
                                            dtype=float))
            g = torch.randn(width, width, generator=gen, dtype=torch.float64)
            if weights == "orthogonal":
                qr_q, qr_r = torch.linalg.qr(g)
                w = qr_q * torch.sign(torch.diagonal(qr_r)) * math.sqrt(sigma_w2)
            else:
                w = g * math.sqrt(sigma_w2 / width)
            jac = w @ (d[:, None] * jac)
        values.append(torch.linalg.svdvals(jac).numpy())
    return np.concatenate(values)


@pytest.mark.slow
@pytest.mark.parametrize(("k", "weights", "activation", "sigma_w2", "sigma_b2"), [
    (1, "orthogonal", "relu", 2.0, 0.0), (2, "orthogonal", "relu", 2.0, 0.0),
    (3, "orthogonal", "relu", 2.0, 0.0), (1, "gaussian", "relu", 2.0, 0.0),
    (2, "gaussian", "relu", 2.0, 0.0), (1, "gaussian", "linear", 1.0, 0.0),
    (2, "gaussian", "linear", 1.0, 0.0), (1, "orthogonal", "tanh", 1.0, 0.05),
    (2, "orthogonal", "tanh", 1.0, 0.05), (1, "gaussian", "tanh", 1.0, 0.05),
    (2, "gaussian", "tanh", 1.0, 0.05), (2, "orthogonal", "leaky_relu", 2.0, 0.0),
    (2, "orthogonal", "elu", 1.5, 0.1),
])
def test_small_depth_matches_width_800_products(k, weights, activation, sigma_w2, sigma_b2):
    """Zero share within 0.01 (at width 800 one s is 1/3200 of the pooled mass), the largest s
    within 3% (a Gaussian product's edge sits ~width^-2/3 below its limit: 1.5% measured at
    k = 2), the spread within 5% and the 10/50/90% quantiles of ln s within 0.05 (their spread
    over seeds, ~0.03 per seed at the k = 2, 3 ReLU hard edge, is halved by pooling four)."""
    scale_free = activation in ("relu", "leaky_relu", "linear")
    q = 1.0 if scale_free else fixed_point_q(activation, sigma_w2, sigma_b2)
    s = _product_singular_values(k, weights, activation, sigma_w2, q)
    p = predicted_spectrum(k, weights, activation, sigma_w2, sigma_b2)
    nonzero = s[s > 1e-6 * s.max()]
    assert p.zero_fraction == pytest.approx(1 - len(nonzero) / len(s), abs=0.01)
    assert p.max == pytest.approx(s.max(), rel=0.03)
    if p.spread > 0:
        assert p.spread == pytest.approx(np.std(np.log(nonzero)), rel=0.05)
    else:
        assert np.std(np.log(nonzero)) < 1e-9
    for share, level in zip((0.1, 0.5, 0.9), np.quantile(np.log(nonzero), [0.1, 0.5, 0.9]),
                            strict=True):
        nonzero_share = 1 - p.zero_fraction
        assert _cdf(p, level + 0.05) >= share * nonzero_share
        assert _cdf(p, level - 0.05) <= share * nonzero_share
