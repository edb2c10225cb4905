"""Correlations at initialization: the correlation map of two inputs, its stable fixed point c*,
the slope chi_c there and the correlation depth scale xi_c (Poole et al. 2016; Schoenholz,
Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep Information Propagation", Sec. 3), with the
ordered/chaotic boundary for phase diagrams. One map serves the plain, LayerNorm and dropout
nets: they differ only in the variances it is evaluated at.

Two inputs whose pre-activations have variance q and correlation c leave one layer with

    c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q',    (u1, u2) ~ N(0, q [[1, c], [c, 1]])

whose slope is dc'/dc = sigma_w2 q E[phi'(u1) phi'(u2)] / q' (Price's theorem: d E[phi phi] /
d Cov = E[phi' phi']). q' is the next layer's variance: q* for a plain or dropout net at its
fixed point (so the slope at c = 1 is chi_1), the pre-LayerNorm variance under LayerNorm. The map
is increasing and, on [0, 1], convex (its power series in c has non-negative coefficients), and
c'(0) >= 0, so it crosses the diagonal at most once in [0, 1). Iterated from c just below 1 it
settles at c* = 1 when c = 1 is fixed and attracts (slope <= 1: the ordered phase), else at that
crossing (chaotic phase, or dropout, which makes c = 1 not fixed). Near c*, |c_l - c*| ~
exp(-l / xi_c) with xi_c = -1 / ln chi_c: mean_field.depth_scale of the slope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from winit_cli.theory.activations import activation_functions, derivative_second_moment
from winit_cli.theory.gaussian import bivariate_expect
from winit_cli.theory.mean_field import critical_sigma_w2, depth_scale, fixed_point_q
from winit_cli.theory.roots import root

_CLOSED_FORM = ("relu", "linear")  # closed-form E[phi phi] and E[phi' phi'] (no parameter)
_SAME = 1e-10  # c'(1) this close to 1: c = 1 is fixed
_TOP = 1 - 1e-9  # no crossing of the diagonal below this: c* is 1 to that precision
_ROUNDING = 1e-15  # c'(0) below this: 0 is fixed (odd phi without bias), up to rounding


def _relu_kernels(q: float, c: float) -> tuple[float, float]:
    # Cho & Saul 2009: E[relu relu] = q (sin t + (pi - t) cos t) / (2 pi), E[step step] =
    # (pi - t) / (2 pi), t = arccos c.
    t = math.acos(min(1.0, max(-1.0, c)))
    return q * (math.sin(t) + (math.pi - t) * c) / (2 * math.pi), (math.pi - t) / (2 * math.pi)


def kernels(
    activation: str, q: float, c: float, *, activation_param: float | None = None
) -> tuple[float, float]:
    """(E[phi(u1) phi(u2)], E[phi'(u1) phi'(u2)]) at variance q and correlation c."""
    if activation in _CLOSED_FORM and activation_param is None:
        return _relu_kernels(q, c) if activation == "relu" else (q * c, 1.0)
    phi, dphi = activation_functions(activation, activation_param=activation_param)
    return bivariate_expect(phi, phi, q, c), bivariate_expect(dphi, dphi, q, c)


def stable_correlation(cmap: Callable[[float], float], slope_at_one: float) -> float:
    """The fixed point c* that iterating c' = cmap(c) reaches from just below c = 1, for an
    increasing map convex on [0, 1] with cmap(0) >= 0 (module docstring); `slope_at_one` is the
    map's slope at c = 1, which decides whether c = 1 attracts when it is fixed."""
    if cmap(1.0) >= 1 - _SAME:
        if slope_at_one <= 1 + 1e-12:
            return 1.0
        hi = _TOP
    else:
        hi = 1.0
    above_hi = cmap(hi) - hi
    if above_hi >= 0:
        return 1.0
    above_zero = cmap(0.0)
    if above_zero <= _ROUNDING:
        return 0.0
    return root(lambda c: cmap(c) - c, 0.0, hi, xtol=1e-13, f_lo=above_zero, f_hi=above_hi)


def correlation_point(
    activation: str, sigma_w2: float, sigma_b2: float, q: float, q_next: float, *,
    activation_param: float | None = None,
) -> tuple[float, float]:
    """(c*, chi_c) of the map c' = (sigma_w2 E[phi phi](q, c) + sigma_b2) / q_next."""
    kw = {"activation_param": activation_param}

    def cmap(c: float) -> float:
        return min(1.0, (sigma_w2 * kernels(activation, q, c, **kw)[0] + sigma_b2) / q_next)

    def slope(c: float) -> float:
        return sigma_w2 * q * kernels(activation, q, c, **kw)[1] / q_next

    c_star = stable_correlation(cmap, slope(1.0))
    return c_star, slope(c_star)


def correlation_depth_scale_of(chi_c: float) -> float:
    """xi_c from the slope at a stable fixed point: depth_scale, with a slope that reads >= 1
    (the critical line, to the fixed point's precision) taken as 1, i.e. xi_c = inf."""
    return depth_scale(min(chi_c, 1.0))


@dataclass(frozen=True)
class CorrelationFixedPoint:
    q_star: float  # the length map's fixed point (from q = 1)
    c_star: float  # the attracting fixed point of the c-map: 1 unless chaotic
    chi_1: float  # sigma_w2 E[phi'(u)^2] at q*: the gradient factor per layer
    chi_c: float  # slope of the c-map at c*
    depth_scale: float  # xi_c = -1 / ln chi_c; inf on the critical line

    @property
    def phase(self) -> str:
        if self.depth_scale == math.inf:
            return "critical"
        return "ordered" if self.chi_1 < 1 else "chaotic"


def correlation_fixed_point(
    activation: str, sigma_w2: float, sigma_b2: float, *, activation_param: float | None = None
) -> CorrelationFixedPoint:
    """q*, c*, chi_1, chi_c and xi_c of a plain MLP (Schoenholz et al. 2017, Eqs. 4-9).

    Ordered phase (chi_1 < 1): c* = 1 and chi_c = chi_1, so xi_c is the gradient depth scale
    1/|ln chi_1|. That includes q* = 0 (tanh without bias), where the paper's formula still
    gives chi_1 = sigma_w2 although the net then turns linear and correlations freeze instead.
    chi_1 = 1: xi_c = inf. Chaotic phase: c* < 1 (tanh without bias: c* = 0 by symmetry).
    Raises ValueError in the chaotic phase of an unbounded activation (ReLU with sigma_w2 > 2):
    q* is infinite and the c-map has no fixed point to linearise about.
    """
    if sigma_w2 < 0 or sigma_b2 < 0:
        raise ValueError("sigma_w2 and sigma_b2 must be >= 0")
    kw = {"activation_param": activation_param}
    q_star = fixed_point_q(activation, sigma_w2, sigma_b2, 1.0, tol=1e-12, **kw)
    chi_1 = sigma_w2 * derivative_second_moment(activation, q_star, **kw)
    if chi_1 <= 1 + 1e-12:
        return CorrelationFixedPoint(q_star, 1.0, chi_1, chi_1, depth_scale(chi_1))
    if not 0 < q_star < math.inf:
        raise ValueError(
            f"{activation!r} with sigma_w2 = {sigma_w2}, sigma_b2 = {sigma_b2} is chaotic with "
            f"q* = {q_star}: the correlation map has no fixed point, so there is no xi_c"
        )
    c_star, chi_c = correlation_point(activation, sigma_w2, sigma_b2, q_star, q_star, **kw)
    return CorrelationFixedPoint(q_star, c_star, chi_1, chi_c, correlation_depth_scale_of(chi_c))


def correlation_map(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    c: float,
    *,
    activation_param: float | None = None,
) -> float:
    """One layer of the c-map at the length map's fixed point q* (needs 0 < q* < inf).

    Clipped to [-1, 1]: near c = 1 rounding can step past it, and iterating must not fail.
    """
    kw = {"activation_param": activation_param}
    q_star = fixed_point_q(activation, sigma_w2, sigma_b2, 1.0, tol=1e-12, **kw)
    c_next = (sigma_w2 * kernels(activation, q_star, c, **kw)[0] + sigma_b2) / q_star
    return min(1.0, max(-1.0, c_next))


def correlation_depth_scale(
    activation: str, sigma_w2: float, sigma_b2: float, *, activation_param: float | None = None
) -> float:
    """xi_c: nets much deeper than ~6 xi_c do not train (Schoenholz et al. 2017, Fig. 5)."""
    point = correlation_fixed_point(
        activation, sigma_w2, sigma_b2, activation_param=activation_param
    )
    return point.depth_scale


def critical_line(
    activation: str, sigma_b2: Sequence[float], *, activation_param: float | None = None
) -> np.ndarray:
    """The ordered/chaotic boundary sigma_w2(sigma_b2) (chi_1 = 1) for a phase diagram.

    One critical_sigma_w2 per entry of sigma_b2; nan where there is no edge of chaos.
    """
    line = []
    for b2 in sigma_b2:
        try:
            line.append(critical_sigma_w2(activation, b2, activation_param=activation_param))
        except ValueError:
            line.append(math.nan)
    return np.array(line)
