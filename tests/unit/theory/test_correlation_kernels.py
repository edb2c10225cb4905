"""The c-map's closed-form kernels and its fixed point (theory/correlation.py) at values by hand:
ReLU's arc-cosine kernels (Cho & Saul 2009) at c = -1, 0, 1/2, 1, the linear net's, the
attracting point of simple maps, and the refusal of a negative variance."""

from __future__ import annotations

import math

import pytest

from winit_cli.theory.correlation import correlation_fixed_point, kernels, stable_correlation

Q = 2.0


@pytest.mark.parametrize(("c", "both", "slopes"), [
    (-1.0, 0.0, 0.0),  # u2 = -u1: never both positive
    (0.0, 1 / (2 * math.pi), 0.25),  # E[relu]^2 = (1 / sqrt(2 pi))^2; P(both > 0) = 1/4
    (0.5, (math.sqrt(3) / 2 + math.pi / 3) / (2 * math.pi), 1 / 3),  # t = pi / 3
    (1.0, 0.5, 0.5),  # E[relu(u)^2] = 1/2; P(u > 0) = 1/2
])
def test_relu_kernels_by_hand(c, both, slopes):
    """(E[relu(u1) relu(u2)], E[step(u1) step(u2)]) at variance Q: Q (sin t + (pi - t) c)
    / (2 pi) and (pi - t) / (2 pi) with t = arccos c."""
    assert kernels("relu", Q, c) == pytest.approx((Q * both, slopes), abs=1e-15)


def test_linear_kernels_are_the_covariance():
    assert kernels("linear", Q, 0.3) == pytest.approx((Q * 0.3, 1.0), abs=1e-15)


def test_a_map_with_a_fixed_point_at_one_of_slope_one_keeps_it():
    """c' = c (ReLU at the critical sigma_w^2 = 2 without bias): every c is fixed; from just
    below 1 the iteration stays at 1."""
    assert stable_correlation(lambda c: c, 1.0) == 1.0


def test_a_contraction_reaches_its_interior_fixed_point():
    """c' = c / 2 + 1/4: the fixed point c = 1/2, by hand."""
    assert stable_correlation(lambda c: 0.5 * c + 0.25, 0.5) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(("sigma_w2", "sigma_b2"), [(-0.5, 0.0), (1.0, -0.5)])
def test_a_negative_variance_is_refused(sigma_w2, sigma_b2):
    with pytest.raises(ValueError, match="sigma_w2 and sigma_b2 must be >= 0"):
        correlation_fixed_point("tanh", sigma_w2, sigma_b2)
