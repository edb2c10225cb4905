"""Edges of the mean-field length map (theory/mean_field.py), by hand: a zero input stays zero
under ReLU whatever the weights (relu(0) = 0, no bias); an unbounded activation past its
critical point has no finite fixed point; a layer of no inputs is refused."""

from __future__ import annotations

import math

import pytest

from winit_cli.theory.mean_field import fixed_point_q, predict


def test_a_zero_input_stays_zero_without_bias_even_when_chaotic():
    assert fixed_point_q("relu", 3.0, 0.0, 0.0) == 0.0
    assert fixed_point_q("relu", 3.0, 0.1, 0.0) == math.inf  # the bias starts it growing


def test_selu_far_past_its_critical_point_diverges():
    """SELU is linear for x > 0 at slope 1.0507: at sigma_w2 = 10 each layer multiplies q by
    more than 10 x 1.0507^2 / 2 > 5, so q grows without bound."""
    assert fixed_point_q("selu", 10.0, 0.0, 1.0) == math.inf


def test_a_layer_without_inputs_is_refused():
    with pytest.raises(ValueError, match="fan-ins must be >= 1"):
        predict("relu", [0, 10], [0.1, 0.1], [0.0, 0.0], 1.0)
