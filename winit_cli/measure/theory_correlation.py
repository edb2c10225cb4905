"""The correlation map of two inputs, its fixed point c* and its slope chi_c there.

Poole et al. 2016; Schoenholz et al. 2017, "Deep Information Propagation". Two inputs whose
pre-activations have variance q and correlation c are carried by one layer to

    c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q'          (u1, u2 ~ N(0, q [[1, c], [c, 1]]))

with slope dc'/dc = sigma_w2 q E[phi'(u1) phi'(u2)] / q' (Price's theorem: d E[phi phi] / d Cov =
E[phi' phi']). Here q' is whatever the next layer's variance is: q* for a plain or dropout net at
its fixed point, the pre-LayerNorm variance under LayerNorm. The correlation depth scale is
xi_c = -1 / ln chi_c at the fixed point c* the map reaches from c = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np

from winit_cli.measure.theory import ArrayFn, activation_functions

# In polar coordinates z = r (cos t, sin t) the two arguments are u1 = sqrt(q) r cos t and
# u2 = sqrt(q) r cos(t - b), cos b = c. The activations' kinks and jumps sit at 0, i.e. on four
# rays t = +-pi/2, b +- pi/2: split the circle there and the integrand is smooth in t on each
# closed arc, and in ln r (the trapezoid rule of theory.gauss_expect, for the same reasons).
# On each arc we use tanh-sinh quadrature (Takahasi & Mori 1974): its nodes crowd the ends double-
# exponentially, where a large q puts the features (tanh' is a spike of angular width
# ~1 / (sqrt(q) r) beside each ray) that evenly spaced nodes would step over (24 Gauss-Legendre
# nodes per arc were 9% off for E[tanh'^2] at q = 1e4). Measured: relu and its step-function
# slope within 2e-10 of the arc-cosine kernels (the mass cut off below r = e^-11), tanh'^2
# within 4e-9 of theory.gauss_expect for q up to 1e6.
_ARC_STEP, _ARC_SPAN = 0.06, 3.4  # tanh-sinh step and half-range: 114 nodes per arc
_STEP, _DEPTH, _TOP = 0.1, 11.0, 3.0  # ln r grid from e^-11 (mass 1e-10 below) to e^3 (1e-88)
_CLOSED_FORM = ("relu", "linear")  # closed-form E[phi phi] and E[phi' phi'] (no parameter)


@cache
def _tanh_sinh() -> tuple[np.ndarray, np.ndarray]:
    """Nodes in (-1, 1) and weights of the tanh-sinh rule."""
    t = np.arange(-_ARC_SPAN, _ARC_SPAN + _ARC_STEP / 2, _ARC_STEP)
    arg = 0.5 * math.pi * np.sinh(t)
    return np.tanh(arg), _ARC_STEP * 0.5 * math.pi * np.cosh(t) / np.cosh(arg) ** 2


def _angle_rule(b: float) -> tuple[np.ndarray, np.ndarray]:
    cuts = np.sort(np.mod([math.pi / 2, -math.pi / 2, b + math.pi / 2, b - math.pi / 2],
                          2 * math.pi))
    edges = np.append(cuts, cuts[0] + 2 * math.pi)
    x, w = _tanh_sinh()
    lo, hi = edges[:-1, None], edges[1:, None]
    return (0.5 * (hi - lo) * x + 0.5 * (hi + lo)).ravel(), (0.5 * (hi - lo) * w).ravel()


def bivariate_expect(f: ArrayFn, g: ArrayFn, q: float, c: float) -> float:
    """E[f(u1) g(u2)] for (u1, u2) centred Gaussian with variances q and correlation c."""
    if not q > 0 or not -1 <= c <= 1:
        raise ValueError(f"need q > 0 and -1 <= c <= 1, got q = {q}, c = {c}")
    s = math.sqrt(q)
    t, wt = _angle_rule(math.acos(c))
    ln_r = np.arange(-_DEPTH - max(0.0, math.log(s)), _TOP, _STEP)
    r = np.exp(ln_r)
    wr = _STEP * r * r * np.exp(-0.5 * r * r) / (2 * math.pi)  # r dr = r^2 d(ln r), / 2 pi
    u1 = s * r[:, None] * np.cos(t)[None, :]
    u2 = s * r[:, None] * np.cos(t - math.acos(c))[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        return float(wr @ (f(u1) * g(u2)) @ wt)


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


def correlation_fixed_point(cmap: Callable[[float], float], tol: float = 1e-10) -> float:
    """The fixed point c* that iterating c' = cmap(c) reaches from just below c = 1.

    cmap is increasing and convex on [0, 1] (its power series in c has non-negative
    coefficients) and cmap(0) >= 0, so cmap(c) - c has one root in [0, 1) where it turns
    negative, found here by bisection. When c = 1 is itself fixed (no dropout) it is the answer
    if it attracts (slope <= 1, checked a step of 1e-4 below it), else the root below it is.
    """
    hi = 1.0
    if cmap(1.0) >= 1.0 - tol:  # c = 1 is fixed: is it left for a lower root?
        hi = 1.0 - 1e-4
        if cmap(hi) >= hi:  # slope <= 1 at c = 1 (within the step): 1 is where we stay
            return 1.0
    lo = 0.0
    if cmap(lo) <= lo:
        return 0.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if cmap(mid) > mid:
            lo = mid
        else:
            hi = mid
    # Never above the diagonal past 0 (odd phi without bias: cmap(0) = 0 up to rounding): c* = 0.
    return 0.0 if lo == 0.0 else 0.5 * (lo + hi)


def depth_scale_c(chi_c: float) -> float:
    """xi_c = -1 / ln chi_c for chi_c < 1; inf at chi_c >= 1 (critical); 0 at chi_c = 0."""
    if chi_c <= 0:
        return 0.0
    return math.inf if chi_c >= 1 - 1e-12 else -1.0 / math.log(chi_c)
