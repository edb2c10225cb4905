"""A residual MLP's per-layer prediction (theory/residual.py predict_resmlp) worked by hand for
ReLU (E[relu(x)^2] = q / 2, E[relu'(x)^2] = 1 / 2): input projection sigma 1, two blocks of two
branch layers with sigma 2 then 4, output sigma 4, no bias, alpha = 1/2, m0 = 3. A branch of
(2, 4) maps q to (q, 2q), chi_branch = 1 x 2 = 2, so a block gives q_out = q + q / 2 and the
gradient factor 1 + 2 / 4 = 1.5; into h_B through the output layer 1/2 log10(4 / 2)."""

from __future__ import annotations

import math

import pytest

from winit_cli.theory.residual import predict_resmlp, residual_block

FAN_IN = [10, 20, 20, 20, 20, 20]
WEIGHT_VAR = [0.1, 0.1, 0.2, 0.1, 0.2, 0.2]  # sigma = 1, 2, 4, 2, 4, 4


def _predict(**changes):
    args = {"activation": "relu", "fan_in": FAN_IN, "weight_var": WEIGHT_VAR,
            "bias_var": [0.0] * 6, "input_second_moment": 3.0, "branch_layers": 2,
            "branch_scale": 0.5, **changes}
    return predict_resmlp(**args)


def test_stream_and_rows_by_hand():
    p = _predict()
    assert p.stream_q == pytest.approx([3.0, 4.5, 6.75])
    last = 0.5 * math.log10(2.0)
    block = 0.5 * math.log10(1.5)
    assert p.stream_log10_grad_ratio == pytest.approx([last + 2 * block, last + block, last])
    assert p.log10_input_to_last_block() == pytest.approx(2 * block)
    half, inner = math.log10(0.5), 0.5 * math.log10(2.0)
    expected = [(1, 0, "input", 3.0, last + 2 * block),
                (2, 1, "branch_inner", 3.0, half + inner + last + block),
                (3, 1, "branch_out", 6.0, half + last + block),
                (4, 2, "branch_inner", 4.5, half + inner + last),
                (5, 2, "branch_out", 9.0, half + last),
                (6, 3, "output", 13.5, 0.0)]
    found = [(r.layer, r.block, r.role, r.q, r.log10_grad_ratio) for r in p.layers]
    for row, want in zip(found, expected, strict=True):
        assert row[:3] == want[:3]
        assert row[3:] == pytest.approx(want[3:], abs=1e-12), row


def test_a_zero_second_moment_input_is_accepted():
    assert _predict(input_second_moment=0.0).stream_q == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("changes", [
    {"bias_var": [0.0] * 5},  # one entry short
    {"weight_var": WEIGHT_VAR[:5]},
    {"bias_var": [0.0, -0.5, 0.0, 0.0, 0.0, 0.0]},  # a negative variance
    {"fan_in": [1], "weight_var": [0.1], "bias_var": [0.0]},  # no room for an output layer
    {"input_second_moment": -1.0},
])
def test_an_impossible_layout_or_variance_is_refused(changes):
    with pytest.raises(ValueError):
        _predict(**changes)


@pytest.mark.parametrize(("sigma_w2", "bias_var"), [([2.0, -0.5], [0.0, 0.0]),
                                                    ([2.0], [0.0, 0.0]), ([2.0, 2.0], [0.0])])
def test_a_branch_with_mismatched_or_negative_variances_is_refused(sigma_w2, bias_var):
    with pytest.raises(ValueError):
        residual_block("relu", 1.0, sigma_w2, bias_var, 1.0)


def test_one_layer_branches_with_biases_and_a_scale_per_block():
    """sigma 1, 2, 2, 4 with bias variance 0.1 everywhere, m0 = 3, alpha = 1/2 then 1:
    q_0 = 3 + 0.1; block 1: u = 2 x 3.1 / 2 + 0.1 = 3.2, h_1 = 3.1 + 3.2 / 4 = 3.9, factor
    1 + 1 / 4; block 2: u = 3.9 + 0.1 = 4, h_2 = 7.9, factor 1 + 1 = 2; no inner rows."""
    p = _predict(fan_in=[10, 20, 20, 20], weight_var=[0.1, 0.1, 0.1, 0.2], bias_var=[0.1] * 4,
                 branch_layers=1, branch_scale=[0.5, 1.0])
    assert p.stream_q == pytest.approx([3.1, 3.9, 7.9])
    last = 0.5 * math.log10(2.0)
    assert p.stream_log10_grad_ratio == pytest.approx(
        [last + 0.5 * math.log10(2.0) + 0.5 * math.log10(1.25), last + 0.5 * math.log10(2.0),
         last])
    assert [r.role for r in p.layers] == ["input", "branch_out", "branch_out", "output"]
    assert [r.q for r in p.layers] == pytest.approx([3.1, 3.2, 4.0, 4 * 7.9 / 2 + 0.1])


def test_a_negative_bias_variance_outside_the_branches_is_refused():
    with pytest.raises(ValueError, match="variances >= 0"):
        _predict(bias_var=[-0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
