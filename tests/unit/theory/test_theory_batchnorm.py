"""BatchNorm gradient-explosion rate (theory_batchnorm) against Monte Carlo and simulated nets.

The simulated nets are nn.Linear -> nn.BatchNorm1d (training mode) -> activation, He init, on
real MNIST batches; the per-layer log10 growth of ||dL/dz_l|| is fitted over layers 10..40 of
50, away from the input (where the batch's Gram matrix has not yet converged) and the logits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from winit_cli.datasets import make_splits
from winit_cli.theory.batchnorm import (
    _monte_carlo_rate,
    bn_gradient_rate,
    large_batch_rate,
    relu_rate,
)

DEPTH, WIDTH, FIT = 50, 512, slice(9, 40)  # fit over layers 10..40


@pytest.fixture(scope="module")
def mnist_batch(mnist_raw):
    splits = make_splits(mnist_raw, val_size=0, subset=512)
    return splits.x_train, splits.y_train


def measured_rate(x, y, batch, seed, activation=torch.nn.ReLU, weight_gain=1.0):
    """Fitted per-layer log10 growth of ||dL/dz_l|| toward the input, one BN net at init."""
    torch.manual_seed(seed)
    rows = torch.randperm(len(x))[:batch]
    h, outputs = x[rows], []
    for layer in range(DEPTH):
        linear = torch.nn.Linear(h.shape[1], WIDTH if layer < DEPTH - 1 else 10)
        torch.nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        with torch.no_grad():
            linear.weight.mul_(weight_gain)
        z = linear(h)
        z.retain_grad()
        outputs.append(z)
        if layer < DEPTH - 1:
            h = activation()(torch.nn.BatchNorm1d(WIDTH).train()(z))
    F.cross_entropy(z, y[rows]).backward()
    log_norms = np.array([math.log10(z.grad.norm()) for z in outputs])
    layers = np.arange(1, DEPTH + 1)
    return -np.polyfit(layers[FIT], log_norms[FIT], 1)[0]


@pytest.mark.parametrize("batch", [4, 5, 8, 32, 128])
def test_relu_closed_form_matches_monte_carlo(batch):
    """The closed form against Monte Carlo of the same expectation (200k batches, relative
    standard error ~5e-4): the algebra of every term in relu_rate."""
    relu, step = (lambda x: np.maximum(x, 0.0)), (lambda x: (x > 0).astype(float))
    samples = 200_000 if batch <= 32 else 50_000
    estimate = _monte_carlo_rate(relu, step, batch, samples, seed=1)
    assert relu_rate(batch) == pytest.approx(estimate, rel=3e-3)


def test_linear_rate_and_large_batch_limits():
    """Linear: Monte Carlo against (B-2)/(B-3). B -> inf: ReLU's closed form tends to
    pi/(pi-1), which the quadrature E[phi'^2]/Var(phi) also gives; linear tends to 1."""
    one = np.ones_like
    assert bn_gradient_rate("linear", 6) == 4 / 3
    assert _monte_carlo_rate(lambda x: x, one, 6, 20_000, seed=0) == pytest.approx(4 / 3, 1e-9)
    assert relu_rate(1e9) == pytest.approx(math.pi / (math.pi - 1), rel=1e-8)
    assert large_batch_rate("relu") == pytest.approx(math.pi / (math.pi - 1), rel=1e-10)
    assert bn_gradient_rate("relu", math.inf) == pytest.approx(math.pi / (math.pi - 1))
    assert large_batch_rate("linear") == pytest.approx(1.0, rel=1e-10)


@pytest.mark.mnist
@pytest.mark.parametrize(("batch", "tolerance"), [(8, 0.05), (32, 0.05)])
def test_relu_rate_matches_a_simulated_bn_relu_net(mnist_batch, batch, tolerance):
    """Depth 50, width 512, He init, 3 seeds: the fitted log10 rate per layer is within 5% of
    0.5 log10 lambda (measured: 0.1246 vs 0.1262 at B = 8, 0.0903 vs 0.0912 at B = 32)."""
    x, y = mnist_batch
    measured = np.mean([measured_rate(x, y, batch, seed) for seed in range(3)])
    predicted = 0.5 * math.log10(bn_gradient_rate("relu", batch))
    assert measured == pytest.approx(predicted, rel=tolerance)


@pytest.mark.mnist
def test_rate_does_not_depend_on_the_weight_scale(mnist_batch):
    """Weights 4x smaller or 4x larger than He give the same explosion: BN removes the scale."""
    x, y = mnist_batch
    rates = [np.mean([measured_rate(x, y, 16, seed, weight_gain=g) for seed in range(2)])
             for g in (0.25, 4.0)]
    predicted = 0.5 * math.log10(bn_gradient_rate("relu", 16))
    assert rates == pytest.approx([predicted, predicted], rel=0.05)


@pytest.mark.mnist
def test_monte_carlo_rate_for_tanh_matches_a_simulated_bn_tanh_net(mnist_batch):
    """The numerical path (no closed form): tanh at B = 32 within 5% (measured 0.0413 vs
    0.0412); and distinct from ReLU's rate, so the check has teeth."""
    x, y = mnist_batch
    measured = np.mean([measured_rate(x, y, 32, s, activation=torch.nn.Tanh) for s in range(3)])
    predicted = 0.5 * math.log10(bn_gradient_rate("tanh", 32))
    assert measured == pytest.approx(predicted, rel=0.05)
    assert predicted < 0.5 * 0.5 * math.log10(bn_gradient_rate("relu", 32))


def test_batches_below_four_have_no_finite_rate():
    """E[1/chi^2_(B-1)] diverges for B <= 3: the function refuses rather than returning a number."""
    for batch in (1, 2, 3):
        with pytest.raises(ValueError, match="batch of 4"):
            bn_gradient_rate("relu", batch)


def test_relus_large_batch_rate_is_pi_over_pi_minus_one():
    """ReLU at B = inf: E[relu'(z)^2] / Var relu(z) = (1/2) / (1/2 - 1/(2 pi)) = pi / (pi - 1),
    from the closed form's own limit and from the quadrature."""
    from winit_cli.theory.batchnorm import bn_gradient_rate

    assert relu_rate(math.inf) == pytest.approx(math.pi / (math.pi - 1), rel=1e-12)
    assert bn_gradient_rate("relu", math.inf) == pytest.approx(math.pi / (math.pi - 1),
                                                               rel=1e-9)


def test_tanhs_large_batch_rate_by_a_fine_grid():
    """E[sech(z)^4] / Var tanh(z), z ~ N(0, 1), by the trapezoid rule on a grid of 200001
    points over [-12, 12] (the Gaussian's tails beyond are below 1e-31)."""
    from winit_cli.theory.batchnorm import large_batch_rate

    z = np.linspace(-12.0, 12.0, 200_001)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    dphi_sq = np.trapezoid((1 - np.tanh(z) ** 2) ** 2 * pdf, z)
    var = np.trapezoid(np.tanh(z) ** 2 * pdf, z)  # E[tanh] = 0 by symmetry
    assert large_batch_rate("tanh") == pytest.approx(dphi_sq / var, rel=1e-8)
