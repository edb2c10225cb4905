"""The per-layer LayerNorm and dropout predictions (theory/layernorm_dropout.py) on small ReLU
nets worked by hand: E[relu(y)^2] = E[relu'(y)^2] = 1/2 for y ~ N(0, 1), q_1 = sigma_1 m0 + b_1
(sigma_l = fan_in_l Var(W_l)), after LayerNorm q_l = sigma_l / 2 + b_l, chi_l = sigma_{l+1} / 2
/ q_l, and dropout's masks as Var(W_l) / keep on layers 2..L."""

from __future__ import annotations

import math

import pytest

from winit_cli.theory.layernorm_dropout import predict_dropout, predict_layernorm


def test_layernorm_per_layer_variances_and_ratios():
    """sigma = 2, 2, 4 with m0 = 3: q_1 = 6, q_2 = 1; chi_1 = 2 / 2 / 6 = 1/6,
    chi_2 = 4 / 2 / 1 = 2; ratios from the output: 0, 1/2 log10 2, that plus 1/2 log10 1/6."""
    p = predict_layernorm("relu", [10, 20, 20], [0.2, 0.1, 0.2], [0.0, 0.0, 0.0], 3.0)
    assert [layer.q for layer in p.layers] == pytest.approx([6.0, 1.0, 2.0])
    assert [layer.chi for layer in p.layers[:2]] == pytest.approx([1 / 6, 2.0])
    half_log2 = 0.5 * math.log10(2)
    assert [layer.log10_grad_ratio for layer in p.layers] == pytest.approx(
        [half_log2 + 0.5 * math.log10(1 / 6), half_log2, 0.0])


def test_layernorm_zero_weights_after_a_layer_stop_the_gradient():
    """Var(W_2) = 0: chi_1 = 0, so nothing reaches layer 1: its ratio is log10 0 = -inf."""
    p = predict_layernorm("relu", [10, 20, 20], [0.2, 0.0, 0.2], [0.0, 0.5, 0.0], 1.0)
    assert p.layers[0].chi == 0.0
    assert p.layers[0].log10_grad_ratio == -math.inf


def test_dropout_scales_the_later_layers_weight_variance_by_one_over_keep():
    """He (sigma = 2) with keep 1/2: layers 2 and 3 act as sigma = 4, chi = 4 / 2 = 2 per layer;
    first to last hidden (one factor at depth 3) 1/2 log10 2; layer 1's q is unscaled: 2 m0."""
    p = predict_dropout("relu", [100, 100, 100], [0.02] * 3, [0.0] * 3, 1.0, 0.5)
    assert p.layers[0].q == pytest.approx(2.0)
    assert p.layers[0].chi == pytest.approx(2.0)
    assert p.log10_first_to_last_hidden() == pytest.approx(0.5 * math.log10(2))


@pytest.mark.parametrize(("sigma_b2", "chi", "decades", "critical"), [
    (0.0, 1.0, "+0.000", True),  # ReLU without bias: (sigma / 2) / (sigma / 2) whatever sigma
    (1.0, 0.5, "-0.151", False),  # sigma_w2 = 2: (2 / 2) / (2 / 2 + 1)
])
def test_layernorms_deep_net_statement(sigma_b2, chi, decades, critical):
    from winit_cli.theory.layernorm_dropout import layernorm_theory

    theory = layernorm_theory("relu", 2.0, sigma_b2)
    assert theory.predicts is True
    assert theory.chi == pytest.approx(chi)
    assert f"({decades} decades)" in theory.statement
    assert ("critical (ReLU without bias" in theory.statement) is critical


def test_layernorm_with_all_zero_pre_activations_has_no_prediction():
    from winit_cli.theory.layernorm_dropout import layernorm_theory

    theory = layernorm_theory("relu", 0.0, 0.0)
    assert theory.predicts is False
    assert "-inf" not in theory.statement and "divides 0" in theory.statement
    # zero weights after a bias: the pre-activations are the bias, no gradient goes back
    biased = layernorm_theory("relu", 0.0, 1.0)
    assert biased.chi == 0.0 and "(-inf decades)" in biased.statement


@pytest.mark.parametrize("keep", [0.0, 1.0, 1.5])
def test_dropout_theory_needs_a_keep_rate_below_one(keep):
    from winit_cli.theory.layernorm_dropout import dropout_theory

    with pytest.raises(ValueError, match="keep rate must be in"):
        dropout_theory("tanh", 1.0, 0.0, keep)
