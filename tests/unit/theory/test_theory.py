"""Tests for winit_cli.theory: closed forms, quadrature, fixed points, and a real network."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from winit_cli.theory import (
    ACTIVATIONS,
    critical_sigma_w2,
    depth_scale,
    derivative_second_moment,
    fixed_point_q,
    gauss_expect,
    predict,
    second_moment,
)

# ---------------------------------------------------------------------------------------------
# Registry


def test_activations_and_unknown_name():
    assert set(ACTIVATIONS) == {
        "relu",
        "leaky_relu",
        "tanh",
        "sigmoid",
        "elu",
        "selu",
        "gelu",
        "linear",
    }
    with pytest.raises(ValueError, match="known: elu, gelu, leaky_relu, linear, relu"):
        second_moment("swish", 1.0)
    with pytest.raises(ValueError, match="takes no parameter"):
        second_moment("tanh", 1.0, activation_param=0.2)


# ---------------------------------------------------------------------------------------------
# Gaussian expectations


@pytest.mark.parametrize("q", [1e-200, 1e-8, 0.3, 1.0, 7.0, 1e4, 1e12, 1e200])
def test_quadrature_matches_closed_forms(q):
    """Functions with a kink or a jump at 0 and known expectations, over 400 decades of q."""
    s = math.sqrt(q)
    cases = [
        (lambda x: np.maximum(x, 0.0) ** 2, q / 2),  # relu^2
        (lambda x: (x > 0).astype(float), 0.5),  # relu'^2
        (np.abs, s * math.sqrt(2 / math.pi)),
        (lambda x: x**4, 3 * q * q),
    ]
    if q < 100:  # E[e^x; x < 0] = e^(q/2) Phi(-sqrt q)
        tail = math.exp(q / 2) * 0.5 * math.erfc(s / math.sqrt(2))
        cases.append((lambda x: np.where(x < 0, np.exp(np.minimum(x, 0.0)), 0.0), tail))
    for f, exact in cases:
        assert gauss_expect(f, q) == pytest.approx(exact, rel=1e-10)


def test_quadrature_resolves_a_spike_narrower_than_the_gaussian():
    # E[sech^2(sqrt(q) z)] -> (integral of sech^2 = 2) * pdf(0) / sqrt(q) as q grows. A fixed
    # Gauss-Hermite rule puts one node inside the spike and is off by ~10x here.
    q = 1e10
    expected = 2 / math.sqrt(2 * math.pi * q)
    assert gauss_expect(lambda x: 1 - np.tanh(x) ** 2, q) == pytest.approx(expected, rel=1e-9)


def test_gauss_expect_limits_and_bad_q():
    step = lambda x: (x > 0).astype(float)  # noqa: E731
    assert gauss_expect(step, 0.0) == 0.5  # the jump at 0 counts half from each side
    assert gauss_expect(step, math.inf) == 0.5
    assert gauss_expect(np.tanh, 0.0) == 0.0
    assert derivative_second_moment("tanh", math.inf) == 0.0
    assert derivative_second_moment("gelu", math.inf) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        gauss_expect(np.tanh, -1.0)
    with pytest.raises(ValueError):
        gauss_expect(np.tanh, math.nan)


_TORCH_ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "elu": F.elu,
    "selu": F.selu,
}


@pytest.mark.parametrize("name", sorted(_TORCH_ACTIVATIONS))
@pytest.mark.parametrize("q", [0.5, 4.0])
def test_moments_match_monte_carlo_with_torch_activations(name, q):
    """torch's own activation and autograd's derivative, 1e6 samples: within 5 standard errors."""
    gen = torch.Generator().manual_seed(0)
    x = (math.sqrt(q) * torch.randn(1_000_000, generator=gen, dtype=torch.float64)).requires_grad_()
    y = _TORCH_ACTIVATIONS[name](x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    for sample, predicted in [
        (y.detach() ** 2, second_moment(name, q)),
        (dy**2, derivative_second_moment(name, q)),
    ]:
        stderr = sample.std().item() / math.sqrt(sample.numel())
        assert abs(sample.mean().item() - predicted) < 5 * stderr


# ---------------------------------------------------------------------------------------------
# Closed forms, fixed points, criticality


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 2.0, 3.0])
def test_relu_family_and_linear_closed_forms(sigma_w2):
    for q in [0.1, 1.0, 50.0]:
        assert second_moment("relu", q) == q / 2
        assert second_moment("linear", q) == q
        assert second_moment("leaky_relu", q, activation_param=0.2) == pytest.approx(0.52 * q)
    assert sigma_w2 * derivative_second_moment("relu", 3.0) == sigma_w2 / 2  # chi
    assert sigma_w2 * derivative_second_moment("linear", 3.0) == sigma_w2
    assert derivative_second_moment("leaky_relu", 3.0) == pytest.approx((1 + 0.01**2) / 2)


def test_relu_fixed_points():
    assert fixed_point_q("relu", 1.0, 0.1) == pytest.approx(0.2)  # q = q/2 + 0.1
    assert fixed_point_q("relu", 2.0, 0.0, q0=3.7) == 3.7  # He: every q is a fixed point
    assert fixed_point_q("relu", 2.0, 0.1) == math.inf  # grows by sigma_b2 per layer
    assert fixed_point_q("relu", 3.0, 0.0) == math.inf
    assert fixed_point_q("linear", 0.5, 0.1) == pytest.approx(0.2)


def test_fixed_point_from_zero_and_bad_input():
    """q0 = 0 (an all-zero input) is a valid start: the bias lifts it to the same q*; negative
    variances are refused."""
    assert fixed_point_q("relu", 1.0, 0.1, q0=0.0) == pytest.approx(0.2)
    assert fixed_point_q("tanh", 0.5, 0.1, q0=0.0) == pytest.approx(
        fixed_point_q("tanh", 0.5, 0.1), rel=1e-8)
    for bad in ((-0.1, 0.0, 1.0), (1.0, -0.1, 1.0), (1.0, 0.0, -0.1)):
        with pytest.raises(ValueError, match="must be >= 0"):
            fixed_point_q("tanh", bad[0], bad[1], q0=bad[2])


@pytest.mark.parametrize("sigma_w2", [0.5, 0.9, 1.0])
def test_tanh_without_bias_collapses_to_zero(sigma_w2):
    # q* = 0 and chi* = sigma_w2 phi'(0)^2 = sigma_w2. At sigma_w2 = 1 iteration creeps toward 0
    # like 1/(2 l), so the solver must not rely on iterating.
    q_star = fixed_point_q("tanh", sigma_w2, 0.0)
    assert q_star < 1e-6
    chi_star = sigma_w2 * derivative_second_moment("tanh", q_star)
    assert chi_star == pytest.approx(sigma_w2, abs=1e-3)


@pytest.mark.parametrize(
    ("activation", "sigma_w2", "sigma_b2"),
    [
        ("tanh", 1.5, 0.05),
        ("tanh", 0.7, 0.01),
        ("tanh", 3.0, 0.0),
        ("sigmoid", 4.0, 0.1),
        ("elu", 1.5, 0.1),
        ("selu", 1.0, 0.0),
        ("gelu", 1.5, 0.1),
    ],
)
def test_fixed_point_is_where_iteration_goes(activation, sigma_w2, sigma_b2):
    q = 1.0
    for _ in range(1000):
        q = sigma_w2 * second_moment(activation, q) + sigma_b2
    assert fixed_point_q(activation, sigma_w2, sigma_b2) == pytest.approx(q, rel=1e-8)


def test_selu_self_normalizes():
    # Klambauer et al.: with sigma_w2 = 1 and no bias, SELU's variance fixed point is 1.
    assert fixed_point_q("selu", 1.0, 0.0, q0=3.0) == pytest.approx(1.0, rel=1e-6)


def test_critical_sigma_w2_closed_forms():
    assert critical_sigma_w2("relu") == 2.0
    assert critical_sigma_w2("relu", 0.1) == 2.0
    assert critical_sigma_w2("leaky_relu", activation_param=0.2) == pytest.approx(2 / 1.04)
    assert critical_sigma_w2("linear") == 1.0
    assert critical_sigma_w2("tanh") == pytest.approx(1.0, abs=1e-3)


def _hermite_chi_star(sigma_w2, sigma_b2, steps=500):
    """chi* for tanh by a different route: Gauss-Hermite quadrature and plain iteration."""
    z, w = np.polynomial.hermite_e.hermegauss(201)
    w = w / math.sqrt(2 * math.pi)
    q = 1.0
    for _ in range(steps):
        q = sigma_w2 * np.sum(w * np.tanh(math.sqrt(q) * z) ** 2) + sigma_b2
    return sigma_w2 * np.sum(w * (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2)


def test_critical_tanh_with_bias():
    values = []
    for sigma_b2 in [0.01, 0.05, 0.1]:
        sigma_w2 = critical_sigma_w2("tanh", sigma_b2)
        assert sigma_w2 > 1
        q_star = fixed_point_q("tanh", sigma_w2, sigma_b2)
        assert sigma_w2 * derivative_second_moment("tanh", q_star) == pytest.approx(1, abs=1e-3)
        assert _hermite_chi_star(sigma_w2, sigma_b2) == pytest.approx(1, abs=1e-4)
        assert (
            _hermite_chi_star(0.98 * sigma_w2, sigma_b2)
            < 1
            < _hermite_chi_star(1.02 * sigma_w2, sigma_b2)
        )
        values.append(sigma_w2)
    assert values == sorted(values)  # the critical line rises with sigma_b2
    assert values[1] == pytest.approx(1.76, abs=0.01)


def test_no_edge_of_chaos_is_an_error():
    # GELU without bias: the fixed point jumps from 0 to infinity, and chi* jumps over 1.
    with pytest.raises(ValueError, match="no edge of chaos"):
        critical_sigma_w2("gelu")


def test_depth_scale():
    assert depth_scale(1.0) == math.inf
    assert depth_scale(0.5) == pytest.approx(1 / math.log(2))
    assert depth_scale(2.0) == pytest.approx(1 / math.log(2))
    assert depth_scale(0.0) == 0.0
    with pytest.raises(ValueError):
        depth_scale(-0.1)


# ---------------------------------------------------------------------------------------------
# predict


def test_predict_by_hand_for_a_small_relu_net():
    p = predict("relu", [4, 3, 2], [0.5, 1.0, 0.25], [0.1, 0.0, 0.2], input_second_moment=2.0)
    # q1 = 4 * 0.5 * 2 + 0.1; q2 = 3 * 1 * q1 / 2; q3 = 2 * 0.25 * q2 / 2 + 0.2
    assert [layer.q for layer in p.layers] == pytest.approx([4.1, 6.15, 1.7375])
    # chi_1 = sigma_w2_2 / 2 = 1.5, chi_2 = sigma_w2_3 / 2 = 0.25
    assert [layer.chi for layer in p.layers] == [1.5, 0.25, None]
    expected = [0.5 * math.log10(1.5 * 0.25), 0.5 * math.log10(0.25), 0.0]
    assert [layer.log10_grad_ratio for layer in p.layers] == pytest.approx(expected)
    assert p.log10_first_to_last_hidden() == pytest.approx(0.5 * math.log10(1.5))
    # the middle of layers 2..3 is layer 2: sigma_w2 = 3 > 2 explodes
    assert p.chi_fixed_point == 1.5
    assert p.q_fixed_point == math.inf
    assert p.depth_scale == pytest.approx(1 / math.log(1.5))
    assert p.to_rows()[2] == {
        "layer": 3,
        "predicted_q": pytest.approx(1.7375),
        "predicted_chi": None,
        "predicted_log10_grad_ratio": 0.0,
    }


def test_predict_shallow_and_bad_input():
    one = predict("tanh", [784], [1 / 784], [0.0], 1.0)
    assert len(one.layers) == 1 and math.isnan(one.chi_fixed_point)
    assert one.log10_first_to_last_hidden() == 0.0
    two = predict("tanh", [784, 100], [1 / 784, 1 / 100], [0.0, 0.0], 1.0)
    assert two.log10_first_to_last_hidden() == 0.0
    assert two.layers[0].chi is not None
    for weights, biases in (([1 / 784], [0.0, 0.0]), ([1 / 784, 0.01, 0.01], [0.0, 0.0]),
                            ([1 / 784, 0.01], [0.0]), ([1 / 784, 0.01], [0.0, 0.0, 0.0])):
        with pytest.raises(ValueError, match="one entry per layer"):  # too few or too many
            predict("tanh", [784, 100], weights, biases, 1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        predict("swish", [784], [1 / 784], [0.0], 1.0)


def test_predict_zero_weights_and_activation_param():
    fan_in = [784, 512, 512, 512]
    zeros = predict("tanh", fan_in, [0.0] * 4, [0.0] * 4, 1.0)
    assert zeros.log10_first_to_last_hidden() == -math.inf  # W = 0 passes no gradient back
    assert zeros.chi_fixed_point == 0.0 and zeros.depth_scale == 0.0
    leaky = predict(
        "leaky_relu", fan_in, [1 / n for n in fan_in], [0.0] * 4, 1.0, activation_param=0.2
    )
    assert leaky.layers[0].chi == pytest.approx(0.52)
    with pytest.raises(ValueError, match="takes no parameter"):
        predict("relu", fan_in, [1 / n for n in fan_in], [0.0] * 4, 1.0, activation_param=0.2)


def test_he_init_is_critical():
    fan_in = [784] + [512] * 9
    p = predict("relu", fan_in, [2 / n for n in fan_in], [0.0] * 10, 1.0)
    assert p.chi_fixed_point == 1.0 and p.depth_scale == math.inf
    assert p.log10_first_to_last_hidden() == 0.0


_TORCH_PHI = {"tanh": torch.tanh, "relu": torch.relu}


# Decades of agreement asked for: the gradient ratio first-to-last hidden, and each hidden
# layer's variance. A finite-width net's norms are products of per-layer random factors, so
# log-norms wander like sqrt(depth / width) (Hanin & Nica 2018); for ReLU, whose inputs become
# correlated with depth so that the batch average does not help, that is ~0.2 decades here.
@pytest.mark.parametrize(
    ("activation", "sigma_w2", "sigma_b2", "grad_tol", "q_tol"),
    [
        ("tanh", 0.5, 0.0, 0.3, 0.1),
        ("tanh", 1.0, 0.0, 0.3, 0.1),
        ("tanh", 2.0, 0.0, 0.3, 0.1),
        ("tanh", 1.76, 0.05, 0.3, 0.1),
        ("relu", 1.0, 0.0, 0.2, 0.35),
        ("relu", 2.0, 0.0, 0.2, 0.35),
        ("relu", 3.0, 0.0, 0.2, 0.35),
    ],
)
def test_predict_matches_a_real_network(activation, sigma_w2, sigma_b2, grad_tol, q_tol):
    """A 20-layer, 512-wide MLP at init: measured dL/dz norms and variances against predict."""
    depth, width, batch = 20, 512, 128
    gen = torch.Generator().manual_seed(1)
    sizes = [784] + [width] * (depth - 1) + [10]
    x = torch.randn(batch, 784, generator=gen, requires_grad=True)

    h, zs = x, []
    for l in range(1, depth + 1):
        fan_in = sizes[l - 1]
        weight = torch.randn(sizes[l], fan_in, generator=gen) * math.sqrt(sigma_w2 / fan_in)
        bias = torch.randn(sizes[l], generator=gen) * math.sqrt(sigma_b2)
        z = h @ weight.T + bias  # (batch, n_l)
        z.retain_grad()
        zs.append(z)
        h = _TORCH_PHI[activation](z) if l < depth else z
    zs[-1].backward(torch.randn(batch, 10, generator=gen))  # a random output gradient

    p = predict(
        activation,
        sizes[:-1],
        [sigma_w2 / n for n in sizes[:-1]],
        [sigma_b2] * depth,
        input_second_moment=x.pow(2).mean().item(),
    )
    measured = math.log10(zs[0].grad.norm().item() / zs[-2].grad.norm().item())
    assert measured == pytest.approx(p.log10_first_to_last_hidden(), abs=grad_tol)
    # The output layer has 10 units, too few to estimate a variance from.
    for z, layer in zip(zs[:-1], p.layers[:-1], strict=True):
        assert math.log10(z.detach().var().item() / layer.q) == pytest.approx(0, abs=q_tol)
