"""Residual-MLP mean-field theory (theory_residual) against hand formulas and simulated nets.

The simulated nets are written out in plain torch, block by block as in the module docstring,
fed real MNIST, and measured at initialization.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from winit_cli.datasets import make_splits
from winit_cli.theory import ACTIVATIONS, gauss_expect
from winit_cli.theory.residual import predict_resmlp, residual_block

WIDTH = 512
PHI = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda t: t}


@pytest.fixture(scope="module")
def mnist_batch(mnist_raw):
    splits = make_splits(mnist_raw, val_size=0, subset=256)
    return splits.x_train, splits.y_train


def simulate(x, y, activation, branch_layers, blocks, sigma_w2, alpha, seed, zero_last=False):
    """One residual net at init; per Linear output: log10 second moment and log10 grad norm."""
    gen = torch.Generator().manual_seed(seed)
    phi = PHI[activation]

    def linear(h, fan_out, zero=False):
        w = torch.randn(fan_out, h.shape[1], generator=gen) * math.sqrt(sigma_w2 / h.shape[1])
        out = h @ (w * 0 if zero else w).T
        out.retain_grad()
        outputs.append(out)
        return out

    outputs, stream = [], []
    h = linear(x.clone().requires_grad_(), WIDTH)
    stream.append(h)
    for _ in range(blocks):
        t = h
        for j in range(branch_layers):
            t = linear(phi(t), WIDTH, zero=zero_last and j == branch_layers - 1)
        h = h + alpha * t
        h.retain_grad()
        stream.append(h)
    logits = linear(phi(h), 10)
    F.cross_entropy(logits, y).backward()
    top = logits.grad.norm()
    q = [math.log10(float((o.detach() ** 2).mean())) for o in stream]
    grads = [math.log10(o.grad.norm() / top) if o.grad.norm() > 0 else -math.inf
             for o in outputs]
    stream_grads = [math.log10(s.grad.norm() / top) for s in stream]
    return np.array(q), np.array(grads), np.array(stream_grads)


def prediction(x, activation, branch_layers, blocks, sigma_w2, alpha, zero_last=False):
    depth = 2 + branch_layers * blocks
    weight_var = [sigma_w2 / 784] + [sigma_w2 / WIDTH] * (depth - 1)
    if zero_last:
        for b in range(blocks):
            weight_var[(b + 1) * branch_layers] = 0.0
    return predict_resmlp(activation, [784] + [WIDTH] * (depth - 1), weight_var, [0.0] * depth,
                          float((x**2).mean()), branch_layers=branch_layers, branch_scale=alpha)


def test_relu_and_linear_blocks_follow_the_hand_formulas():
    """The closed forms: ReLU chi_branch = prod sigma_j / 2, q' = q + alpha^2 (sigma2 (sigma1 q/2
    + vb1)/2 + vb2); linear chi_branch = prod sigma_j."""
    q, s1, s2, vb1, vb2, alpha = 1.7, 2.0, 3.0, 0.1, 0.2, 0.6
    relu = residual_block("relu", q, [s1, s2], [vb1, vb2], alpha)
    assert relu.chi_branch == pytest.approx(s1 * s2 / 4, rel=1e-14)
    assert relu.grad_factor == pytest.approx(1 + alpha**2 * s1 * s2 / 4, rel=1e-14)
    assert relu.q_out == pytest.approx(q + alpha**2 * (s2 * (s1 * q / 2 + vb1) / 2 + vb2))
    lin = residual_block("linear", q, [s1], [vb1], alpha)
    assert lin.grad_factor == pytest.approx(1 + alpha**2 * s1)
    assert lin.q_out == pytest.approx(q + alpha**2 * (s1 * q + vb1))
    # He init, alpha = 1: both q and the mean squared gradient double per block.
    he = residual_block("relu", 3.0, [2.0, 2.0], [0.0, 0.0], 1.0)
    assert (he.q_out, he.grad_factor) == (6.0, 2.0)


def test_tanh_block_matches_direct_quadrature():
    """The quadrature path against the recursion written out with gauss_expect by hand."""
    q, s1, s2, alpha = 0.8, 1.5, 2.5, 0.7
    block = residual_block("tanh", q, [s1, s2], [0.0, 0.0], alpha)
    p1 = s1 * gauss_expect(lambda x: np.tanh(x) ** 2, q)
    d0 = gauss_expect(lambda x: (1 - np.tanh(x) ** 2) ** 2, q)
    d1 = gauss_expect(lambda x: (1 - np.tanh(x) ** 2) ** 2, p1)
    p2 = s2 * gauss_expect(lambda x: np.tanh(x) ** 2, p1)
    assert block.branch_q == pytest.approx((p1, p2), rel=1e-12)
    assert block.grad_factor == pytest.approx(1 + alpha**2 * s1 * d0 * s2 * d1, rel=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_zero_last_layer_and_zero_scale_give_factor_exactly_one(activation):
    """Fixup / zero-init (last branch layer 0) and SkipInit / ReZero (alpha = 0): the block is
    the identity in both passes, for every activation."""
    for sigma_w2, alpha in (([2.0, 0.0], 1.0), ([2.0, 3.0], 0.0), ([0.0], 1.0)):
        block = residual_block(activation, 1.3, sigma_w2, [0.0] * len(sigma_w2), alpha)
        assert block.grad_factor == 1.0 and block.q_out == 1.3


@pytest.mark.mnist
def test_predicted_growth_and_gradients_match_a_simulated_he_relu_resnet(mnist_batch):
    """He-init ReLU, 24 two-layer blocks (50 Linear layers), width 512, real MNIST, 3 seeds:
    log10 q of the stream grows 7.5 decades and log10 ||dL/dh_0|| / ||dL/dh_B|| 3.6 decades as
    predicted, within 0.15 decades everywhere (measured: 0.08 and 0.07 at worst)."""
    x, y = mnist_batch
    runs = [simulate(x, y, "relu", 2, 24, 2.0, 1.0, seed) for seed in range(3)]
    q, grads, stream = (np.mean([r[i] for r in runs], axis=0) for i in range(3))
    pred = prediction(x, "relu", 2, 24, 2.0, 1.0)
    pred_q = np.log10(pred.stream_q)
    assert pred_q[-1] - pred_q[0] == pytest.approx(24 * math.log10(2), abs=0.02)
    assert np.abs(q - pred_q).max() < 0.15
    pred_stream = np.array(pred.stream_log10_grad_ratio)
    assert pred.log10_input_to_last_block() == pytest.approx(12 * math.log10(2))
    assert np.abs((stream - stream[-1]) - (pred_stream - pred_stream[-1])).max() < 0.15
    per_layer = np.array([row["predicted_log10_grad_ratio"] for row in pred.to_rows()])
    assert np.abs(grads - per_layer).max() < 0.2


@pytest.mark.mnist
def test_tanh_one_layer_branches_with_small_scale_match_simulation(mnist_batch):
    """tanh, sigma_w^2 = 2, alpha = 0.5, 48 one-layer blocks: every Linear output's gradient
    ratio (the branch outputs carry the factor alpha) within 0.06 decades (measured 0.02)."""
    x, y = mnist_batch
    runs = [simulate(x, y, "tanh", 1, 48, 2.0, 0.5, seed) for seed in range(3)]
    q, grads = np.mean([r[0] for r in runs], axis=0), np.mean([r[1] for r in runs], axis=0)
    pred = prediction(x, "tanh", 1, 48, 2.0, 0.5)
    assert np.abs(q - np.log10(pred.stream_q)).max() < 0.03
    per_layer = np.array([row["predicted_log10_grad_ratio"] for row in pred.to_rows()])
    assert np.abs(grads - per_layer).max() < 0.06


@pytest.mark.mnist
def test_zero_initialised_branches_leave_the_stream_unchanged(mnist_batch):
    """Fixup-style zero last layers: measured stream q and gradient are the same at every block,
    as predicted (factor 1), while the same net with He branches grows by 2x per block."""
    x, y = mnist_batch
    q, _, stream = simulate(x, y, "relu", 2, 10, 2.0, 1.0, seed=0, zero_last=True)
    pred = prediction(x, "relu", 2, 10, 2.0, 1.0, zero_last=True)
    assert np.ptp(q) < 1e-6 and np.ptp(stream) < 1e-6
    assert all(block.grad_factor == 1.0 for block in pred.blocks)
    assert pred.log10_input_to_last_block() == 0.0
    assert np.ptp(pred.stream_q) == 0.0


def test_layout_errors_are_reported():
    """Depths that are not 2 + k B and a branch_scale list of the wrong length are refused."""
    with pytest.raises(ValueError, match="2 \\+ k B"):
        predict_resmlp("relu", [4] * 5, [1.0] * 5, [0.0] * 5, 1.0, branch_layers=2,
                       branch_scale=1.0)
    with pytest.raises(ValueError, match="one entry per block"):
        predict_resmlp("relu", [4] * 6, [1.0] * 6, [0.0] * 6, 1.0, branch_layers=2,
                       branch_scale=[1.0])
