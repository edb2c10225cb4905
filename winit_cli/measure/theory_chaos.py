"""Correlations at initialization: the c-map, its fixed point c*, the slope chi_c there and the
correlation depth scale xi_c (Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep
Information Propagation", Sec. 3), with the ordered/chaotic boundary for phase diagrams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from winit_cli.measure.gaussian import (
    _LN_Z_TOP,
    ArrayFn,
    _Activation,
    _derivative_second_moment,
    _get,
)
from winit_cli.measure.theory import _fixed_point, critical_sigma_w2, depth_scale

# ---------------------------------------------------------------------------------------------
# Correlations: the c-map and the correlation depth scale (Schoenholz et al. 2017, Sec. 3)
#
# Two inputs whose pre-activations at layer l have variance q* and correlation c_l leave layer
# l + 1 with correlation
#     c_{l+1} = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*,  (u1, u2) ~ N(0, q* [[1, c], [c, 1]])
# whose slope is chi_c = sigma_w2 E[phi'(u1) phi'(u2)] (Price's theorem), equal to chi_1 at c = 1.
# c = 1 is always fixed; it attracts when chi_1 < 1 (ordered phase), otherwise correlations settle
# at a stable c* < 1 (chaotic phase). Near c*, |c_l - c*| ~ exp(-l / xi_c), xi_c = -1 / ln chi_c.
#
# E[f(u1) g(u2)] is a 2-D integral with kinks or jumps on the lines u1 = 0 and u2 = 0 (ReLU, its
# derivative). In polar coordinates of the whitened pair, z = r (cos t, sin t), the two lines are
# rays: u1 = s r cos t and u2 = s r cos(t - a), a = arccos c, s = sqrt(q). Splitting t at the four
# rays leaves, on each arc, an integrand smooth in t (Gauss-Legendre, exponentially convergent)
# and, for each t, smooth in ln r (the trapezoid rule of gauss_expect above, same strip argument).
# Measured against closed forms (ReLU's arc-cosine kernel, erf's arcsine kernel and its
# derivative's, linear; tests/test_correlation.py), c in [-1, 1]: ~2e-14 relative for q in
# [1e-6, 10]; 3e-10 at q = 100, where phi' is a spike narrower than the node spacing near a ray
# (32 nodes per arc: 4e-9 at q = 10). Phase diagrams need q* of a few at most.

_ANGLE_NODES = 64  # Gauss-Legendre nodes per arc: see the accuracy note above
_R_STEP = 0.1  # spacing in ln r: trapezoid error ~ exp(-pi^2 / (2 * 0.1)) ~ 1e-21
_LN_R_DEPTH = 18.5  # the mass at r < e^-18.5 is r^2 / 2 ~ 5e-17


def gauss_expect_2d(f: ArrayFn, g: ArrayFn, q: float, c: float) -> float:
    """E[f(u1) g(u2)] for centred jointly Gaussian u1, u2 with variance q and correlation c.

    Needs 0 < q < inf and -1 <= c <= 1; f, g map numpy arrays elementwise and should be smooth
    on each side of 0 (a kink or jump at 0 costs nothing). Accurate to ~1e-13 relative for
    q <= 10 (see the note above); about 2 ms.
    """
    if not (0 < q < math.inf) or not -1 <= c <= 1:
        raise ValueError(f"need 0 < q < inf and -1 <= c <= 1, got q = {q}, c = {c}")
    s, a = math.sqrt(q), math.acos(c)
    nodes, weights = np.polynomial.legendre.leggauss(_ANGLE_NODES)
    rays = [-0.5 * math.pi, a - 0.5 * math.pi, 0.5 * math.pi, a + 0.5 * math.pi, 1.5 * math.pi]
    arcs = list(zip(rays[:-1], rays[1:], strict=True))  # cos t, cos(t - a) keep their signs
    t = np.concatenate([0.5 * (hi - lo) * nodes + 0.5 * (hi + lo) for lo, hi in arcs])
    w_t = np.concatenate([0.5 * (hi - lo) * weights for lo, hi in arcs])
    ln_r = np.arange(-_LN_R_DEPTH - max(0.0, math.log(s)), _LN_Z_TOP, _R_STEP)
    r = np.exp(ln_r)
    w_r = _R_STEP * r * r * np.exp(-0.5 * r * r)  # r dr (polar) e^{-r^2/2}, dr = r d(ln r)
    x = s * r[None, :]  # [1, n_r]
    with np.errstate(over="ignore", invalid="ignore"):
        values = f(x * np.cos(t)[:, None]) * g(x * np.cos(t - a)[:, None])  # [n_t, n_r]
    return float(w_t @ values @ w_r / (2 * math.pi))


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


def _correlation_excess(act: _Activation, sigma_w2: float, sigma_b2: float, q: float, c: float):
    return (sigma_w2 * gauss_expect_2d(act.phi, act.phi, q, c) + sigma_b2) / q - c


def _stable_correlation(act: _Activation, sigma_w2: float, sigma_b2: float, q: float) -> float:
    # The c-map is increasing (its slope sigma_w2 E[phi' phi'] >= 0 for monotone phi), so
    # iterating it from c = -1 climbs to its smallest fixed point, the first crossing of
    # map(c) - c from + to -. We scan for that crossing, denser toward 1 where c* sits near the
    # critical line, then refine by regula falsi (Illinois variant: ~10 evaluations, not the
    # ~45 of bisection). No crossing before 1 - 1e-9: c* is 1 to that precision.
    def excess(c: float) -> float:
        return _correlation_excess(act, sigma_w2, sigma_b2, q, c)

    grid = [-1.0 + 0.1 * k for k in range(20)] + [1.0 - 10.0**-k for k in range(2, 10)]
    lo, f_lo = grid[0], excess(grid[0])
    for c in grid[1:]:
        f_c = excess(c)
        if f_c < 0:
            hi, f_hi = c, f_c
            break
        lo, f_lo = c, f_c
    else:
        return 1.0
    side = 0
    for _ in range(100):
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if hi - lo <= 1e-13 or not lo < mid < hi:
            break
        f_mid = excess(mid)
        if f_mid < 0:
            hi, f_hi = mid, f_mid
            f_lo, side = (0.5 * f_lo if side == -1 else f_lo), -1
        elif f_mid > 0:
            lo, f_lo = mid, f_mid
            f_hi, side = (0.5 * f_hi if side == 1 else f_hi), 1
        else:
            return mid
    return 0.5 * (lo + hi) if hi - lo <= 1e-13 else mid


def correlation_fixed_point(
    activation: str, sigma_w2: float, sigma_b2: float, *, activation_param: float | None = None
) -> CorrelationFixedPoint:
    """q*, c*, chi_1, chi_c and xi_c = -1/ln chi_c of Schoenholz et al. 2017 (Eqs. 4-9).

    Ordered phase (chi_1 < 1): c* = 1 and chi_c = chi_1, so xi_c is the gradient depth scale
    1/|ln chi_1|. That includes q* = 0 (tanh without bias), where the paper's formula still
    gives chi_1 = sigma_w2 although the net then turns linear and correlations freeze instead.
    chi_1 = 1: xi_c = inf. Chaotic phase: c* < 1 is found from the c-map at q* and
    chi_c = sigma_w2 E[phi'(u1) phi'(u2)] there (tanh without bias: c* = 0 by symmetry).
    Raises ValueError in the chaotic phase of an unbounded activation (ReLU with sigma_w2 > 2):
    q* is infinite and the c-map has no fixed point to linearise about.
    """
    if sigma_w2 < 0 or sigma_b2 < 0:
        raise ValueError("sigma_w2 and sigma_b2 must be >= 0")
    act = _get(activation, activation_param)
    q_star = _fixed_point(act, sigma_w2, sigma_b2, 1.0, tol=1e-12, max_iter=10_000)
    chi_1 = sigma_w2 * _derivative_second_moment(act, q_star)
    if chi_1 <= 1 + 1e-12:
        return CorrelationFixedPoint(q_star, 1.0, chi_1, chi_1, depth_scale(chi_1))
    if not 0 < q_star < math.inf:
        raise ValueError(
            f"{activation!r} with sigma_w2 = {sigma_w2}, sigma_b2 = {sigma_b2} is chaotic with "
            f"q* = {q_star}: the correlation map has no fixed point, so there is no xi_c"
        )
    c_star = _stable_correlation(act, sigma_w2, sigma_b2, q_star)
    chi_c = chi_1 if c_star == 1 else sigma_w2 * gauss_expect_2d(act.dphi, act.dphi, q_star, c_star)
    xi = math.inf if chi_c >= 1 else -1.0 / math.log(chi_c)
    return CorrelationFixedPoint(q_star, c_star, chi_1, chi_c, xi)


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
    act = _get(activation, activation_param)
    q_star = _fixed_point(act, sigma_w2, sigma_b2, 1.0, tol=1e-12, max_iter=10_000)
    return min(1.0, max(-1.0, c + _correlation_excess(act, sigma_w2, sigma_b2, q_star, c)))


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
