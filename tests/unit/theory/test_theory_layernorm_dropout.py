"""LayerNorm and dropout theory, and the correlation map behind them, against closed forms and
plain-torch nets on real MNIST (width 512, depth 20, 3 seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from winit_cli.datasets import make_splits
from winit_cli.theory import derivative_second_moment, fixed_point_q, gauss_expect
from winit_cli.theory.correlation import stable_correlation
from winit_cli.theory.gaussian import bivariate_expect
from winit_cli.theory.layernorm_dropout import (
    dropout_theory,
    layernorm_theory,
    predict_dropout,
    predict_layernorm,
)

DEPTH, WIDTH = 20, 512
PHI = {"relu": torch.relu, "tanh": torch.tanh}


@pytest.fixture(scope="module")
def mnist_batch(mnist_raw):
    splits = make_splits(mnist_raw, val_size=0, subset=256)
    return splits.x_train, splits.y_train


def simulate(x, y, activation, sigma_w2, sigma_b2, seed, layer_norm=False, keep=1.0):
    """Measured log10 ||dL/dz_1|| / ||dL/dz_{L-1}||, and the last hidden layer's correlation
    (mean off-diagonal E[z_a z_b] over mean E[z_a^2], the mean-field c) for one net at init."""
    torch.manual_seed(seed)
    h, outputs = x.clone().requires_grad_(), []
    for layer in range(DEPTH):
        fan_out = WIDTH if layer < DEPTH - 1 else 10
        w = torch.randn(fan_out, h.shape[1]) * math.sqrt(sigma_w2 / h.shape[1])
        z = h @ w.T + torch.randn(fan_out) * math.sqrt(sigma_b2)
        z.retain_grad()
        outputs.append(z)
        if layer < DEPTH - 1:
            h = PHI[activation](F.layer_norm(z, (WIDTH,)) if layer_norm else z)
            h = F.dropout(h, p=1 - keep, training=True) if keep < 1 else h
    F.cross_entropy(z, y).backward()
    ratio = math.log10(outputs[0].grad.norm() / outputs[-2].grad.norm())
    gram = (outputs[-2] @ outputs[-2].T).detach() / WIDTH
    n = len(gram)
    return ratio, float((gram.sum() - gram.trace()) / (n * (n - 1)) / gram.diagonal().mean())


def plain_layers(sigma_w2, sigma_b2):
    return [784] + [WIDTH] * (DEPTH - 1), [sigma_w2 / 784] + [sigma_w2 / WIDTH] * (DEPTH - 1), \
        [sigma_b2] * DEPTH


# ---------------------------------------------------------------------------------------------
# The bivariate quadrature and the fixed point


@pytest.mark.parametrize("q", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize("c", [-0.9, 0.0, 0.5, 0.99, 1.0])
def test_bivariate_quadrature_matches_arc_cosine_kernels(q, c):
    """Cho & Saul's kernels: E[relu relu] = q (sin t + (pi - t) c) / (2 pi) and the jumping
    slope's E[step step] = (pi - t) / (2 pi), t = arccos c, over 12 decades of q."""
    t = math.acos(c)
    relu, step = (lambda x: np.maximum(x, 0.0)), (lambda x: (x > 0).astype(float))
    assert bivariate_expect(relu, relu, q, c) == pytest.approx(
        q * (math.sin(t) + (math.pi - t) * c) / (2 * math.pi), rel=1e-9)
    assert bivariate_expect(step, step, q, c) == pytest.approx((math.pi - t) / (2 * math.pi),
                                                               rel=1e-9)


@pytest.mark.parametrize("q", [0.01, 2.0, 1e4])
def test_bivariate_quadrature_reduces_to_one_dimension(q):
    """c = 1 gives E[f g] and c = 0 gives E[f] E[g], each by theory.gauss_expect (smooth f,
    including tanh'^2, a spike of width 1/sqrt(q) at q = 1e4)."""
    dtanh = lambda x: 1 - np.tanh(x) ** 2  # noqa: E731
    sigmoid = lambda x: 0.5 * (1 + np.tanh(0.5 * x))  # noqa: E731
    assert bivariate_expect(dtanh, dtanh, q, 1.0) == pytest.approx(
        gauss_expect(lambda x: dtanh(x) ** 2, q), rel=1e-8)
    assert bivariate_expect(sigmoid, dtanh, q, 0.0) == pytest.approx(
        gauss_expect(sigmoid, q) * gauss_expect(dtanh, q), rel=1e-8)


def test_stable_correlation_against_iteration():
    """The root finder agrees with plain iteration of a ReLU dropout map from c = 1 (keep 0.8),
    and of a chaotic tanh net's map, where c = 1 is fixed but repels."""
    def cmap(c):
        t = math.acos(min(1.0, c))
        return 0.8 * (math.sin(t) + (math.pi - t) * c) / math.pi

    c = 1.0
    for _ in range(2000):
        c = cmap(c)
    assert stable_correlation(cmap, slope_at_one=0.8) == pytest.approx(c, abs=1e-9)

    q_star = fixed_point_q("tanh", 3.0, 0.05)
    tanh = np.tanh

    def chaotic(c):
        return min(1.0, (3.0 * bivariate_expect(tanh, tanh, q_star, c) + 0.05) / q_star)

    c = 0.999
    for _ in range(300):
        c = chaotic(c)
    chi_1 = 3.0 * derivative_second_moment("tanh", q_star)
    assert chi_1 > 1
    assert stable_correlation(chaotic, slope_at_one=chi_1) == pytest.approx(c, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# LayerNorm


def test_layernorm_chi_is_the_unit_variance_ratio_whatever_the_weight_scale():
    """chi = E[phi'^2] / E[phi^2] at q = 1 without bias: 1 for ReLU, 1.178 for tanh (computed
    here by gauss_expect), the same for sigma_w^2 = 0.5 and 4."""
    tanh_ratio = gauss_expect(lambda x: (1 - np.tanh(x) ** 2) ** 2, 1.0) / gauss_expect(
        lambda x: np.tanh(x) ** 2, 1.0)
    for sigma_w2 in (0.5, 4.0):
        assert layernorm_theory("relu", sigma_w2).chi == pytest.approx(1.0, rel=1e-14)
        tanh = layernorm_theory("tanh", sigma_w2)
        assert tanh.chi == pytest.approx(tanh_ratio, rel=1e-12) and tanh.chi > 1.17
        assert tanh.c_star == 0.0 and tanh.correlation_depth_scale < math.inf  # chaotic


@pytest.mark.mnist
@pytest.mark.parametrize(("activation", "sigma_w2", "sigma_b2"), [
    ("tanh", 1.0, 0.0), ("tanh", 4.0, 0.0), ("relu", 0.5, 0.0), ("relu", 2.0, 0.1),
])
def test_layernorm_prediction_matches_a_simulated_net(mnist_batch, activation, sigma_w2, sigma_b2):
    """Linear -> LayerNorm -> phi, measured log10 ||dL/dz_1|| / ||dL/dz_19|| within 0.1 decades
    of predict_layernorm (measured differences 0.01-0.05); the tanh rows predict the same +0.44
    for sigma_w^2 = 1 and 4 and the nets agree, which a plain tanh net would not."""
    x, y = mnist_batch
    fan_in, weight_var, bias_var = plain_layers(sigma_w2, sigma_b2)
    pred = predict_layernorm(activation, fan_in, weight_var, bias_var, float((x**2).mean()))
    measured = np.mean([simulate(x, y, activation, sigma_w2, sigma_b2, s, layer_norm=True)[0]
                        for s in range(3)])
    assert measured == pytest.approx(pred.log10_first_to_last_hidden(), abs=0.1)


# ---------------------------------------------------------------------------------------------
# Dropout


@pytest.mark.mnist
@pytest.mark.parametrize(("activation", "sigma_w2", "sigma_b2", "keep"), [
    ("relu", 2.0, 0.0, 0.8), ("relu", 1.6, 0.0, 0.8), ("tanh", 1.0, 0.05, 0.7),
])
def test_dropout_prediction_matches_a_simulated_net(mnist_batch, activation, sigma_w2, sigma_b2,
                                                    keep):
    """Gradient ratio within 0.1 decades of predict_dropout (He + keep 0.8 explodes by +0.87
    decades; sigma_w^2 = 2 keep is critical for ReLU), and the last hidden layer's correlation
    within 0.05 of c* (measured 0.45-0.47 vs 0.473 for ReLU keep 0.8, 0.32 vs 0.324 for tanh)."""
    x, y = mnist_batch
    fan_in, weight_var, bias_var = plain_layers(sigma_w2, sigma_b2)
    pred = predict_dropout(activation, fan_in, weight_var, bias_var, float((x**2).mean()), keep)
    runs = [simulate(x, y, activation, sigma_w2, sigma_b2, s, keep=keep) for s in range(3)]
    assert np.mean([r[0] for r in runs]) == pytest.approx(pred.log10_first_to_last_hidden(),
                                                          abs=0.1)
    theory = dropout_theory(activation, sigma_w2, sigma_b2, keep)
    assert np.mean([r[1] for r in runs]) == pytest.approx(theory.c_star, abs=0.05)


def test_dropout_has_no_critical_point():
    """Across weight scales, biases and keep rates: c* < 1, chi_c < 1 and xi_c finite, where the
    same nets without dropout (ReLU at sigma_w^2 = 2, tanh at 1) are critical."""
    for activation, sigma_w2, sigma_b2 in [("relu", 2.0, 0.0), ("relu", 1.0, 0.1),
                                           ("tanh", 1.0, 0.05), ("tanh", 2.0, 0.0)]:
        for keep in (0.5, 0.9, 0.99):
            theory = dropout_theory(activation, sigma_w2, sigma_b2, keep)
            assert theory.predicts, theory
            assert theory.c_star < 1 and theory.chi_c < 1
            assert 0 < theory.correlation_depth_scale < math.inf
    assert dropout_theory("relu", 2.0, 0.0, 0.8).chi == pytest.approx(1 / 0.8)


def test_dropout_says_no_prediction_where_the_variance_dies_for_a_non_homogeneous_phi():
    """tanh with sigma_w^2 / keep < 1 and no bias: q* = 0, the correlation map is undefined."""
    theory = dropout_theory("tanh", 0.5, 0.0, 0.9)
    assert not theory.predicts and theory.statement.startswith("no prediction")
    assert theory.c_star is None and theory.chi is None
    with pytest.raises(ValueError, match="keep rate"):
        dropout_theory("relu", 2.0, 0.0, 1.0)


# Non-uniform widths, weight scales and biases: each layer's sigma_w^2 = fan_in Var(W) and
# sigma_b^2 differ from its neighbours', so a chi_l built from another layer's sigma (which
# sigma multiplies which layer's derivative) gives another profile.
FAN_IN = [784, 300, 900, 500, 1200, 400, 700]
SIGMA_W2 = [1.0, 3.0, 0.5, 2.0, 4.0, 1.5, 1.0]
SIGMA_B2 = [0.0, 0.2, 0.0, 0.5, 0.1, 0.0, 0.3]


def layernorm_gradient_norms(x, activation, seed):
    """||dL/dz_l|| of a plain-torch Linear -> LayerNorm -> phi net with the layers above, for a
    Gaussian gradient at the last layer's z (whose fan-out is the next fan-in, or 10)."""
    generator = torch.Generator().manual_seed(seed)
    h, zs = x, []
    for layer, (n, s_w, s_b) in enumerate(zip(FAN_IN, SIGMA_W2, SIGMA_B2, strict=True)):
        fan_out = FAN_IN[layer + 1] if layer + 1 < len(FAN_IN) else 10
        w = torch.randn(fan_out, n, generator=generator, dtype=torch.float64) * math.sqrt(s_w / n)
        b = torch.randn(fan_out, generator=generator, dtype=torch.float64) * math.sqrt(s_b)
        z = (h @ w.T + b).requires_grad_(True)
        zs.append(z)
        if layer + 1 < len(FAN_IN):
            h = PHI[activation](F.layer_norm(z, (fan_out,)))
    top = torch.randn(zs[-1].shape, generator=generator, dtype=torch.float64)
    return [float(g.norm()) for g in torch.autograd.grad((zs[-1] * top).sum(), zs)]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_layernorm_per_layer_chi_with_non_uniform_layers_matches_a_simulated_net(activation):
    """Each hidden layer's log10 ||dL/dz_l|| / ||dL/dz_{L-1}||, l = 2..L-1, within 0.08 decades
    of predict_layernorm's, on Gaussian inputs (batch 256, 3 seeds; measured within 0.06).
    chi_l = sigma_{l+1} E[phi'^2] / q_l: with sigma_l in its place the profile moves by 0.1 to
    0.4 decades. Layer 1 is left out: its chi_1 holds m_0 and is approximate
    (predict_layernorm's doc); here it is measured 0.06 (tanh) to 0.1 (ReLU) decades below."""
    x = torch.randn(256, FAN_IN[0], generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64) * 0.7
    norms = np.array([layernorm_gradient_norms(x, activation, seed) for seed in range(3)])
    last_hidden = len(FAN_IN) - 2
    measured = np.log10(norms[:, 1:last_hidden + 1] / norms[:, [last_hidden]]).mean(axis=0)
    pred = predict_layernorm(activation, FAN_IN, [s / n for s, n in zip(SIGMA_W2, FAN_IN,
                                                                         strict=True)],
                             SIGMA_B2, float((x**2).mean()))
    ratio = np.array([layer.log10_grad_ratio for layer in pred.layers])
    np.testing.assert_allclose(measured, ratio[1:last_hidden + 1] - ratio[last_hidden],
                               atol=0.08)
