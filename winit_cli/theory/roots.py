"""The one root finder of the theory: fixed points (q* of the length map, c* of the correlation
map) and the edge of chaos (chi* = 1) are all roots of a scalar function on a bracket.

Each evaluation costs a quadrature (a 2-D one for the correlation map: ~2 ms), so the number of
evaluations is what matters. Regula falsi in its Illinois variant (Dowell & Jarratt 1971)
converges superlinearly where the function is smooth: ~10 evaluations to 1e-13 where bisection
needs ~45. Two safeguards keep its worst case near bisection's: a bracket that spans decades is
first split geometrically (q* may be 1e-12 with the bracket's top at 1), and a step that fails to
halve the bracket over two evaluations is followed by a bisection (chi* can jump across 1 where
the length map's fixed point changes branch, and regula falsi crawls toward a jump).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def root(f: Callable[[float], float], lo: float, hi: float, *, xtol: float = 0.0,
         rtol: float = 0.0, f_lo: float | None = None, f_hi: float | None = None,
         geometric: bool = False, max_evals: int = 400) -> float:
    """A root of f in [lo, hi], given that f(lo) and f(hi) differ in sign (either may be 0).

    Stops when the bracket is narrower than xtol + rtol * max(|lo|, |hi|) and returns its
    midpoint (or an end or point where f is exactly 0). `geometric` (for lo > 0): split at
    sqrt(lo hi) while hi > 4 lo. f_lo and f_hi, when the caller has them, save two evaluations.
    """
    f_lo = f(lo) if f_lo is None else f_lo
    f_hi = f(hi) if f_hi is None else f_hi
    if f_lo == 0:
        return lo
    if f_hi == 0:
        return hi
    if (f_lo > 0) == (f_hi > 0):
        raise ValueError(f"no sign change on [{lo}, {hi}]: f = {f_lo}, {f_hi}")
    kept = 0  # +1: the last step kept lo (moved hi), -1: kept hi; for Illinois's halving
    widths = [math.inf, math.inf]  # the bracket's width before the last two steps
    for _ in range(max_evals):
        if hi - lo <= xtol + rtol * max(abs(lo), abs(hi)):
            break
        if geometric and lo > 0 and hi > 4 * lo:
            mid = math.sqrt(lo * hi)
        elif hi - lo > 0.5 * widths[0]:  # regula falsi stalled: bisect
            mid = 0.5 * (lo + hi)
        else:
            mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
            if not lo < mid < hi:  # rounding at a narrow bracket
                mid = 0.5 * (lo + hi)
        widths = [widths[1], hi - lo]
        f_mid = f(mid)
        if f_mid == 0:
            return mid
        if (f_mid > 0) == (f_lo > 0):  # the root is above mid
            lo, f_lo = mid, f_mid
            f_hi, kept = (0.5 * f_hi if kept == -1 else f_hi), -1
        else:
            hi, f_hi = mid, f_mid
            f_lo, kept = (0.5 * f_lo if kept == 1 else f_lo), 1
    return 0.5 * (lo + hi)
