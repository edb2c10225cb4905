"""Gaussian expectations, the integrals mean-field theory is built from: the one-dimensional
E[f(sqrt(q) z)] (length map, chi) and the two-dimensional E[f(u1) g(u2)] of a correlated pair
(correlation map, chi_c). One rule each; every theory module calls these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np

ArrayFn = Callable[[np.ndarray], np.ndarray]

# ---------------------------------------------------------------------------------------------
# Gaussian expectations
#
# Gauss-Hermite quadrature is the textbook choice, but it fails here: with 201 points it is off
# by 9% for E[selu'^2] at q = 1 (selu' jumps at 0) and by 67% for E[tanh'^2] at q = 100 (tanh'
# is a spike much narrower than the node spacing), and init sweeps reach q = 1e4 easily. So we
# fold the integral onto z > 0, where every activation here is smooth, and use the trapezoid
# rule in u = ln z. The integrand is analytic in the strip |Im u| < pi/4 (the Gaussian sets it),
# so the error falls like exp(-pi^2 / (2 h)) (Trefethen & Weideman 2014, "The exponentially
# convergent trapezoidal rule"; measured: 2e-11 at h = 0.2), and nodes spaced evenly in ln z
# resolve phi's features at |x| ~ 1, i.e. z ~ 1/sqrt(q), whatever q is.

_STEP = 0.05  # spacing in ln z: discretization error e^-99, so rounding (~1e-13) dominates
_LN_Z_TOP = 3.0  # z <= e^3 ~ 20; the normal density there is 1e-88
_LN_Z_DEPTH = 37.0  # nodes reach e^-37 ~ 1e-16 below min(1, 1/sqrt(q)): the mass left out
_X_TINY = 1e-300  # where f's one-sided limits at 0 are read


def gauss_expect(f: ArrayFn, q: float) -> float:
    """E[f(sqrt(q) z)] for z ~ N(0, 1).

    Computed as  integral_0^inf [f(sqrt(q) z) + f(-sqrt(q) z)] pdf(z) dz  by the trapezoid rule
    in ln z, exact to about 1e-13 relative for any q in [0, 1e300] when f is smooth on each side
    of 0 (a kink or a jump at 0, as in the ReLU family, costs nothing). `f` maps a numpy array
    elementwise. q = 0 and q = inf give the limits, (f(0+) + f(0-)) / 2 and (f(+inf) + f(-inf)) / 2,
    so that E[relu'^2] is 1/2 for every q.
    """
    if not q >= 0:  # also catches nan
        raise ValueError(f"variance q must be >= 0, got {q}")
    with np.errstate(over="ignore", invalid="ignore"):
        if q == 0 or math.isinf(q):
            x = _X_TINY if q == 0 else math.inf
            ends = f(np.array([x, -x]))
            return float(0.5 * (ends[0] + ends[1]))
        s = math.sqrt(q)
        ln_z = np.arange(-_LN_Z_DEPTH - max(0.0, math.log(s)), _LN_Z_TOP, _STEP)
        z = np.exp(ln_z)
        weight = _STEP * z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # dz = z du
        return float(np.sum(weight * (f(s * z) + f(-s * z))))




# ---------------------------------------------------------------------------------------------
# Two dimensions: E[f(u1) g(u2)], (u1, u2) centred Gaussian, variances q, correlation c
#
# The integrand has kinks or jumps on the lines u1 = 0 and u2 = 0 (ReLU, its derivative). In
# polar coordinates of the whitened pair, z = r (cos t, sin t), those lines are four rays:
# u1 = s r cos t and u2 = s r cos(t - b), b = arccos c, s = sqrt(q). Split at the rays, each
# arc's integrand is smooth in t and, for each t, smooth in ln r (the trapezoid rule of
# gauss_expect, for the same strip argument). On each arc the angles follow the tanh-sinh rule
# (Takahasi & Mori 1974): its nodes crowd the arc's ends double-exponentially, where a large q
# puts the features (tanh' is a spike of angular width ~1 / (sqrt(q) r) beside each ray) that
# evenly spaced or Gauss-Legendre nodes step over (24 Gauss-Legendre nodes per arc were 9% off
# for E[tanh'^2] at q = 1e4). Accuracy (tests/unit/theory/test_correlation.py): ~1e-13
# relative against the closed forms (ReLU's arc-cosine kernels, erf' and linear ones) for q up
# to 100, and tanh'^2 within 3e-13 of the one-dimensional rule at c = 1 for q up to 1e6.

_ARC_STEP, _ARC_SPAN = 0.08, 3.3  # tanh-sinh step and half-range: 83 nodes per arc, the tail
# weight at the ends ~1e-18; at step 0.1 the rule was 2e-9 off for erf' at c = -1, here 2e-14
_R_STEP = 0.1  # spacing in ln r: trapezoid error ~ exp(-pi^2 / (2 * 0.1)) ~ 1e-21
_LN_R_DEPTH = 18.5  # the mass at r < e^-18.5 is r^2 / 2 ~ 5e-17


@cache
def _tanh_sinh() -> tuple[np.ndarray, np.ndarray]:
    """Nodes in (-1, 1) and weights of the tanh-sinh rule."""
    t = np.arange(-_ARC_SPAN, _ARC_SPAN + _ARC_STEP / 2, _ARC_STEP)
    arg = 0.5 * math.pi * np.sinh(t)
    return np.tanh(arg), _ARC_STEP * 0.5 * math.pi * np.cosh(t) / np.cosh(arg) ** 2


def _angle_rule(b: float) -> tuple[np.ndarray, np.ndarray]:
    """Angles and weights over the circle, split at the rays where u1 = 0 or u2 = 0."""
    rays = [-0.5 * math.pi, b - 0.5 * math.pi, 0.5 * math.pi, b + 0.5 * math.pi, 1.5 * math.pi]
    lo, hi = np.array(rays[:-1])[:, None], np.array(rays[1:])[:, None]
    x, w = _tanh_sinh()
    return (0.5 * (hi - lo) * x + 0.5 * (hi + lo)).ravel(), (0.5 * (hi - lo) * w).ravel()


def bivariate_expect(f: ArrayFn, g: ArrayFn, q: float, c: float) -> float:
    """E[f(u1) g(u2)] for centred jointly Gaussian u1, u2 with variance q and correlation c.

    Needs 0 < q < inf and -1 <= c <= 1; f, g map numpy arrays elementwise and should be smooth
    on each side of 0 (a kink or jump at 0 costs nothing). About 2 ms.
    """
    if not (0 < q < math.inf) or not -1 <= c <= 1:
        raise ValueError(f"need 0 < q < inf and -1 <= c <= 1, got q = {q}, c = {c}")
    s, b = math.sqrt(q), math.acos(c)
    t, w_t = _angle_rule(b)
    ln_r = np.arange(-_LN_R_DEPTH - max(0.0, math.log(s)), _LN_Z_TOP, _R_STEP)
    r = np.exp(ln_r)
    w_r = _R_STEP * r * r * np.exp(-0.5 * r * r)  # r dr (polar) e^{-r^2/2}, dr = r d(ln r)
    x = s * r[None, :]  # [1, n_r]
    with np.errstate(over="ignore", invalid="ignore"):
        values = f(x * np.cos(t)[:, None]) * g(x * np.cos(t - b)[:, None])  # [n_t, n_r]
    return float(w_t @ values @ w_r / (2 * math.pi))
