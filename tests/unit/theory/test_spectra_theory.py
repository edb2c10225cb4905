"""Tests for winit_cli.theory.spectra: free-probability Jacobian spectra vs samples."""

import math

import numpy as np
import pytest
import torch

from winit_cli.measure.jacobian import jacobian_spectrum
from winit_cli.theory import activation_functions, critical_sigma_w2, fixed_point_q
from winit_cli.theory.spectra import predicted_moments, predicted_spectrum


def _fuss_catalan(k, phi):
    """The Fuss-Catalan density of lambda = s^2 for a product of k square Ginibre matrices, in
    closed parametric form (Haagerup & Moller 2012; Neuschel 2014): lambda(phi), rho(phi) for
    0 < phi < pi / (k + 1). Its moments are binom((k + 1) j, j) / (k j + 1), checked below."""
    lam = np.sin((k + 1) * phi) ** (k + 1) / (np.sin(phi) * np.sin(k * phi) ** k)
    rho = np.sin(phi) ** 2 * np.sin(k * phi) ** (k - 1) / np.sin((k + 1) * phi) ** k / math.pi
    return lam, rho


def _sampled_singular_values(k, weights, activation, sigma_w2, q, width=400, reps=3, seed=0):
    """s of W_k D_k ... W_1 D_1 at width 400: the free-probability model, drawn directly
    (D = diag(phi'(h)), h ~ N(0, q) i.i.d.), with no network and no shared code."""
    gen = torch.Generator().manual_seed(seed)
    _, dphi = activation_functions(activation)
    values = []
    for _ in range(reps):
        jac = torch.eye(width, dtype=torch.float64)
        for _ in range(k):
            h = torch.randn(width, generator=gen, dtype=torch.float64) * math.sqrt(q)
            d = torch.from_numpy(np.asarray(dphi(h.numpy()), dtype=float))
            g = torch.randn(width, width, generator=gen, dtype=torch.float64)
            w = g * math.sqrt(sigma_w2 / width)
            if weights == "orthogonal":
                w = torch.linalg.qr(g)[0] * math.sqrt(sigma_w2)
            jac = w @ (d[:, None] * jac)
        values.append(torch.linalg.svdvals(jac).numpy())
    return np.concatenate(values)


def _predicted_cdf(prediction, log_s):
    steps = 0.5 * (prediction.density[1:] + prediction.density[:-1]) * np.diff(prediction.log_sv)
    cdf = np.concatenate([[0.0], np.cumsum(steps)])
    return np.interp(log_s, prediction.log_sv, cdf) / cdf[-1]


# ---------------------------------------------------------------------------------------------
# Linear nets: Fuss-Catalan and the orthogonal delta


def test_fuss_catalan_reference_has_the_right_moments():
    """The closed form used below, against the Fuss-Catalan numbers (k = 3: 1, 4, 22)."""
    k = 3
    phi = np.linspace(1e-6, math.pi / (k + 1) - 1e-9, 200_001)
    lam, rho = _fuss_catalan(k, phi)
    dlam = -np.gradient(lam, phi)
    moments = [np.trapezoid(rho * lam**j * dlam, phi) for j in (1, 2, 3)]
    assert moments == pytest.approx([1, 4, 22], rel=1e-4)


@pytest.mark.parametrize("k", [1, 2, 5, 10, 30])
def test_gaussian_linear_is_fuss_catalan(k):
    """Edge (k + 1)^(k + 1) / k^k, density to 1e-3 inside the bulk, moments (1, k + 1)."""
    prediction = predicted_spectrum(k, "gaussian")
    assert prediction.max**2 == pytest.approx((k + 1) ** (k + 1) / k**k, rel=1e-9)
    phi = np.linspace(0.2, 0.95, 10) * math.pi / (k + 1)  # the edge is a sqrt: interpolation
    lam, rho = _fuss_catalan(k, phi)
    ours = np.interp(0.5 * np.log(lam), prediction.log_sv, prediction.density) / (2 * lam)
    np.testing.assert_allclose(ours, rho, rtol=1e-3)
    assert (prediction.mean_sq, prediction.var_sq) == pytest.approx((1.0, float(k)))
    lam_grid = np.exp(2 * prediction.log_sv)
    assert np.trapezoid(lam_grid * prediction.density, prediction.log_sv) == pytest.approx(
        1.0, rel=1e-3
    )


def test_orthogonal_linear_is_a_single_value():
    """Every singular value is sigma_w^k: no spread, nothing at zero."""
    prediction = predicted_spectrum(6, "orthogonal", "linear", sigma_w2=1.21)
    assert prediction.max == pytest.approx(1.1**6)
    assert prediction.mean_sq == pytest.approx(1.21**6)
    assert prediction.spread == 0.0 and prediction.zero_fraction == 0.0


def test_orthogonal_relu_edge_and_moments_by_hand():
    """Orthogonal weights, ReLU at sigma_w^2 = 2, k = 3: D^2 is 0 or 1 with probability 1/2, so
    M_D(zeta) = 1 / (2 (zeta - 1)) and the module doc's inverse is z(m) = (2m + 1)^3 / (m (1 +
    m)^2), least at m = 1 (d ln z / dm = 6 / (2m + 1) - 1/m - 2 / (1 + m) = 0): the edge is
    lambda = 27/4, at zeta = 3/2, nearer max(d) = 1 than max(d) itself. Half of D's diagonal is
    zero, so at least half of the s are 0. The density's own moments are the exact ones,
    E[s^2] = (sigma_w^2 / 2)^3 = 1 and E[s^4] = 1 + k (0 + 2 - 1) = 4."""
    prediction = predicted_spectrum(3, "orthogonal", "relu", 2.0, zero_rtol=1e-2)
    assert prediction.max == pytest.approx(math.sqrt(27 / 4), rel=1e-6)
    assert 0.5 <= prediction.zero_fraction < 0.55  # the rest: s below 1e-2 of the edge
    lam = np.exp(2 * prediction.log_sv)
    moments = [np.trapezoid(lam**j * prediction.density, prediction.log_sv) for j in (1, 2)]
    assert moments == pytest.approx([1.0, 4.0], rel=1e-2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="known: gaussian, orthogonal"):
        predicted_spectrum(3, "uniform")
    with pytest.raises(ValueError, match="layers must be >= 1"):
        predicted_spectrum(0, "gaussian")
    with pytest.raises(ValueError, match="must be finite"):
        predicted_moments(3, "gaussian", "elu", sigma_w2=4.0)  # q* = inf


# ---------------------------------------------------------------------------------------------
# Against sampled matrices at width 400


@pytest.mark.slow
@pytest.mark.parametrize(
    ("k", "weights", "activation", "sigma_b2"),
    [
        (2, "gaussian", "linear", 0.0),
        (5, "gaussian", "linear", 0.0),
        (8, "gaussian", "relu", 0.0),
        (8, "orthogonal", "tanh", 0.05),  # critical line: broad
        (8, "gaussian", "tanh", 0.05),
        (16, "orthogonal", "tanh", 1e-3),  # critical, small q*: near isometry
    ],
)
def test_density_matches_sampled_products(k, weights, activation, sigma_b2):
    """3 draws of width 400: the CDF of ln s within 0.03 (Kolmogorov-Smirnov distance), the
    spread within 7%, the zero share within 0.03, var(s^2) within 10% (heavy tails)."""
    sigma_w2 = 2.0 if activation == "relu" else critical_sigma_w2(activation, sigma_b2)
    q = 1.0 if activation != "tanh" else fixed_point_q(activation, sigma_w2, sigma_b2)
    prediction = predicted_spectrum(k, weights, activation, sigma_w2, sigma_b2)
    s = _sampled_singular_values(k, weights, activation, sigma_w2, q)
    nonzero = np.sort(s[s > 1e-6 * s.max()])
    empirical = (np.arange(len(nonzero)) + 0.5) / len(nonzero)
    assert np.abs(_predicted_cdf(prediction, np.log(nonzero)) - empirical).max() < 0.03
    assert prediction.spread == pytest.approx(np.std(np.log(nonzero)), rel=0.07)
    assert prediction.zero_fraction == pytest.approx(1 - len(nonzero) / len(s), abs=0.03)
    var_sq = np.mean(s**4) / np.mean(s**2) ** 2 - 1
    assert prediction.var_sq == pytest.approx(var_sq, rel=0.1)
    assert prediction.mean_sq == pytest.approx(np.mean(s**2), rel=0.15)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("weights", "sigma_b2", "spread_range"),
    [("orthogonal", 1e-3, (0.2, 0.6)), ("gaussian", 1e-3, (2.5, 4.0))],
)
def test_a_real_tanh_net_at_criticality_follows_the_prediction(weights, sigma_b2, spread_range):
    """A 10-layer, 256-wide tanh net on the critical line, inputs at q*, measured by
    jacobian_spectrum: spread within 10% of the prediction. Orthogonal weights keep the
    spectrum concentrated; Gaussian ones spread it (Pennington et al. 2017, Fig. 2)."""
    sigma_w2 = critical_sigma_w2("tanh", sigma_b2)
    q = fixed_point_q("tanh", sigma_w2, sigma_b2)
    gen, width, depth = torch.Generator().manual_seed(0), 256, 10
    net = []
    for _ in range(depth - 2):
        g = torch.randn(width, width, generator=gen, dtype=torch.float64)
        w = torch.linalg.qr(g)[0] * sigma_w2**0.5 if weights == "orthogonal" else g
        w = w if weights == "orthogonal" else g * (sigma_w2 / width) ** 0.5
        net.append((w, torch.randn(width, generator=gen, dtype=torch.float64) * sigma_b2**0.5))
    z1 = torch.randn(16, width, generator=gen, dtype=torch.float64) * q**0.5
    measured = jacobian_spectrum([w for w, _ in net], [b for _, b in net], "tanh", z1)
    prediction = predicted_spectrum(depth - 2, weights, "tanh", sigma_w2, sigma_b2)
    assert measured.spread == pytest.approx(prediction.spread, rel=0.1)
    assert spread_range[0] < prediction.spread < spread_range[1]
