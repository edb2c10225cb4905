"""Tests for the correlation map and xi_c in winit_cli.theory (Schoenholz et al. 2017)."""

import math

import numpy as np
import pytest

from winit_cli.theory import (
    critical_sigma_w2,
    derivative_second_moment,
    fixed_point_q,
    gauss_expect,
)
from winit_cli.theory.correlation import (
    correlation_depth_scale,
    correlation_fixed_point,
    correlation_map,
    critical_line,
)
from winit_cli.theory.gaussian import bivariate_expect
from winit_cli.theory.layernorm_dropout import dropout_theory

_erf = np.frompyfunc(math.erf, 1, 1)


def _erf_fn(x):
    return _erf(x).astype(float)


def _erf_grad(x):
    return 2 / math.sqrt(math.pi) * np.exp(-x * x)


def _relu(x):
    return np.maximum(x, 0.0)


def _step(x):
    return (x > 0).astype(float)


def _identity(x):
    return x


# ---------------------------------------------------------------------------------------------
# The 2-D Gaussian expectation


def _closed_forms(q, c):
    """(f, g, E[f(u1) g(u2)]) with known values: Cho & Saul 2009 (arc-cosine kernels of degree
    1 and 0), Williams 1997 (erf), the Gaussian integral 1 / sqrt(det(I + 2 Sigma)) (erf')."""
    a = math.acos(c)
    return [
        (_relu, _relu, q / (2 * math.pi) * (math.sin(a) + (math.pi - a) * c)),
        (_step, _step, (math.pi - a) / (2 * math.pi)),
        (_identity, _identity, q * c),
        (_erf_fn, _erf_fn, 2 / math.pi * math.asin(2 * q * c / (1 + 2 * q))),
        (_erf_grad, _erf_grad, 4 / math.pi / math.sqrt((1 + 2 * q) ** 2 - (2 * q * c) ** 2)),
    ]


@pytest.mark.parametrize("q", [1e-6, 0.3, 1.0, 4.0, 10.0])
@pytest.mark.parametrize("c", [-1.0, -0.6, 0.0, 0.35, 0.9, 1 - 1e-7, 1.0])
def test_2d_expectation_matches_closed_forms(q, c):
    """Kinks and jumps on both rays (ReLU, step), smooth and spiky (erf') integrands, c = +-1."""
    for f, g, exact in _closed_forms(q, c):
        scale = max(abs(exact), q * 1e-3, 1e-3)  # values that vanish (c = -1) read absolutely
        assert abs(bivariate_expect(f, g, q, c) - exact) <= 1e-12 * scale


@pytest.mark.parametrize("phi", [np.tanh, _relu, _erf_grad])
def test_2d_expectation_reduces_to_1d_at_c_0_and_1(phi):
    """c = 1: E[f(u) g(u)]; c = 0: E[f] E[g], each by theory's 1-D quadrature."""
    for q in [0.01, 1.0, 7.0]:
        assert bivariate_expect(phi, phi, q, 1.0) == pytest.approx(
            gauss_expect(lambda x: phi(x) ** 2, q), rel=1e-12
        )
        assert bivariate_expect(phi, phi, q, 0.0) == pytest.approx(
            gauss_expect(phi, q) ** 2, rel=1e-12, abs=1e-15
        )


def test_2d_expectation_matches_monte_carlo_for_tanh():
    """Brute force with a fixed seed: within 5 standard errors (~1e-3 relative)."""
    rng = np.random.default_rng(0)
    q, c, n = 2.0, 0.6, 2_000_000
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    for f in [np.tanh, lambda x: 1 - np.tanh(x) ** 2]:
        samples = f(u1) * f(u2)
        error = 5 * samples.std() / math.sqrt(n)
        assert abs(bivariate_expect(f, f, q, c) - samples.mean()) < error


def test_2d_expectation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0 < q < inf"):
        bivariate_expect(np.tanh, np.tanh, 0.0, 0.5)
    with pytest.raises(ValueError, match="-1 <= c <= 1"):
        bivariate_expect(np.tanh, np.tanh, 1.0, 1.5)


# ---------------------------------------------------------------------------------------------
# An independent reference for tanh: Gauss-Hermite product grids and plain iteration


def _hermite_tanh_reference(sigma_w2, sigma_b2, layers=3000):
    """(q*, c*, chi_c) by iterating maps built on a 120 x 120 Gauss-Hermite grid, with chi_c as
    the finite-difference slope of the c-map: no shared code with the module under test."""
    z, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / math.sqrt(2 * math.pi)
    q = 1.0
    for _ in range(layers):
        q = sigma_w2 * np.sum(w * np.tanh(math.sqrt(q) * z) ** 2) + sigma_b2

    def c_map(c):
        u1 = math.sqrt(q) * z[:, None]
        u2 = math.sqrt(q) * (c * z[:, None] + math.sqrt(1 - c * c) * z[None, :])
        both = np.tanh(u1) * np.tanh(u2)
        return (sigma_w2 * np.einsum("i,ij,j->", w, both, w) + sigma_b2) / q

    c = 0.5
    for _ in range(layers):
        c = c_map(c)
    h = 1e-5
    return q, c, (c_map(c + h) - c_map(c - h)) / (2 * h)


@pytest.mark.parametrize(("sigma_w2", "sigma_b2"), [(2.0, 0.05), (3.0, 0.05), (2.5, 0.0)])
def test_chaotic_tanh_against_hermite_reference(sigma_w2, sigma_b2):
    """q*, c* < 1 and chi_c (Price's theorem) against the brute-force route, to 1e-6."""
    q_ref, c_ref, chi_ref = _hermite_tanh_reference(sigma_w2, sigma_b2)
    point = correlation_fixed_point("tanh", sigma_w2, sigma_b2)
    assert point.phase == "chaotic" and point.chi_1 > 1
    assert point.q_star == pytest.approx(q_ref, rel=1e-8)
    assert point.c_star == pytest.approx(c_ref, abs=1e-6)
    assert point.chi_c == pytest.approx(chi_ref, rel=1e-6)
    assert point.depth_scale == pytest.approx(-1 / math.log(chi_ref), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# The c-map's fixed point and depth scale


def _iterate(activation, sigma_w2, sigma_b2, c, until_gap, target=1.0):
    """c_0 = c, c_1, ... by correlation_map, until two in a row are within until_gap of target
    (so it fails, by running out of layers, if they do not converge there)."""
    path = [c]
    while len(path) < 2 or max(abs(path[-1] - target), abs(path[-2] - target)) >= until_gap:
        path.append(correlation_map(activation, sigma_w2, sigma_b2, path[-1]))
        assert len(path) < 1000
    return np.array(path)


@pytest.mark.parametrize(("sigma_w2", "sigma_b2"), [(1.2, 0.05), (0.8, 0.1)])
def test_ordered_phase_correlations_converge_at_the_gradient_rate(sigma_w2, sigma_b2):
    """Iterating the c-map (E[phi phi]) sends c to 1 with 1 - c shrinking by chi_1 per layer."""
    point = correlation_fixed_point("tanh", sigma_w2, sigma_b2)
    q_star = fixed_point_q("tanh", sigma_w2, sigma_b2)
    chi_1 = sigma_w2 * derivative_second_moment("tanh", q_star)
    assert point.phase == "ordered" and point.c_star == 1.0
    assert point.chi_c == pytest.approx(chi_1, rel=1e-9)  # fixed_point_q's default tolerance
    assert point.depth_scale == pytest.approx(1 / abs(math.log(chi_1)), rel=1e-8)

    # Far from c = 1 the map is curved; close to it, linear with slope chi_1. Read the ratio
    # where the gap is small but still far above rounding (~1e-14).
    gap = 1 - _iterate("tanh", sigma_w2, sigma_b2, 0.5, until_gap=1e-5)
    assert gap[-1] / gap[-2] == pytest.approx(chi_1, rel=1e-4)


def test_chaotic_phase_correlations_converge_at_chi_c():
    """From either side, c_l -> c* < 1 with |c_l - c*| shrinking by chi_c per layer."""
    point = correlation_fixed_point("tanh", 3.0, 0.05)
    for start in [0.95, -0.5]:
        gap = _iterate("tanh", 3.0, 0.05, start, until_gap=1e-4, target=point.c_star)
        gap = gap - point.c_star
        assert gap[-1] / gap[-2] == pytest.approx(point.chi_c, rel=1e-3)


def test_tanh_without_bias_decorrelates_to_zero():
    """Odd phi, no bias: c* = 0, and chi_c = sigma_w2 E[phi'(u)]^2 there."""
    point = correlation_fixed_point("tanh", 2.0, 0.0)
    assert point.c_star == pytest.approx(0.0, abs=1e-10)
    mean_slope = gauss_expect(lambda x: 1 - np.tanh(x) ** 2, point.q_star)
    assert point.chi_c == pytest.approx(2.0 * mean_slope**2, rel=1e-10)


@pytest.mark.parametrize("sigma_b2", [0.01, 0.05, 0.2])
def test_xi_c_diverges_on_the_critical_line(sigma_b2):
    """xi_c ~ A / |sigma_w2 - critical|, with the same A on both sides."""
    critical = critical_sigma_w2("tanh", sigma_b2)
    assert correlation_depth_scale("tanh", critical, sigma_b2) > 1e8
    products = []
    for side in [1, -1]:
        for eps in [1e-3, 1e-4]:
            products.append(
                eps * correlation_depth_scale("tanh", critical * (1 + side * eps), sigma_b2)
            )
    assert max(products) / min(products) < 1.05


def test_relu_depth_scales():
    """Ordered: 1/|ln(sigma_w2 / 2)|; critical: inf; chaotic: q* = inf, so no xi_c."""
    assert correlation_depth_scale("relu", 1.5, 0.1) == pytest.approx(1 / math.log(2 / 1.5))
    assert correlation_depth_scale("relu", 2.0, 0.1) == math.inf
    with pytest.raises(ValueError, match="no fixed point"):
        correlation_depth_scale("relu", 2.5, 0.1)


def test_critical_line():
    """The boundary agrees with critical_sigma_w2, rises with sigma_b2; nan without an edge."""
    sigma_b2 = [0.0, 0.05, 0.1, 0.5]
    line = critical_line("tanh", sigma_b2)
    assert line == pytest.approx([critical_sigma_w2("tanh", b2) for b2 in sigma_b2])
    assert np.all(np.diff(line) > 0)
    assert line[1] == pytest.approx(1.76, abs=0.01)  # Schoenholz et al., Fig. 1
    assert np.isnan(critical_line("gelu", [0.0])).all()


def test_dropout_tends_to_the_plain_net_as_keep_tends_to_one():
    """Dropout's c* and xi_c (layernorm_dropout.py) approach the plain net's as keep -> 1 (they
    differ by O(1 - keep)): the same correlation map evaluated at another variance."""
    for sigma_w2, sigma_b2 in [(3.0, 0.05), (1.2, 0.05)]:  # chaotic, ordered
        ours = correlation_fixed_point("tanh", sigma_w2, sigma_b2)
        dropout = dropout_theory("tanh", sigma_w2, sigma_b2, keep=1 - 1e-6)
        assert dropout.c_star == pytest.approx(ours.c_star, abs=1e-4)
        assert dropout.correlation_depth_scale == pytest.approx(ours.depth_scale, rel=1e-4)
