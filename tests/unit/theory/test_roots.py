"""The theory's root finder (theory/roots.py) by what it promises: the root, to the tolerance
asked, in the number of evaluations its docstring states (regula falsi, Illinois variant: ~10 to
1e-13 where bisection needs ~45), a geometric split only when asked for, each counted here."""

from __future__ import annotations

import math

import pytest

from winit_cli.theory.roots import root


def counted(f):
    calls = []

    def wrapped(x):
        calls.append(x)
        return f(x)

    return wrapped, calls


def test_a_linear_function_is_solved_by_one_regula_falsi_step():
    """The secant through the ends of a line hits its root: f(lo), f(hi), f(root) = 0. Splitting
    geometrically (not asked for) would first try sqrt(0.01 * 100) = 1."""
    f, calls = counted(lambda x: x - 0.5)
    assert root(f, 0.01, 100.0) == 0.5
    assert len(calls) == 3


def test_geometric_splitting_reaches_a_tiny_root_in_few_evaluations():
    """A root at 1e-12 in [1e-15, 1]: halving the exponent's range each step. Regula falsi alone
    would crawl from the top of the bracket (hundreds of evaluations)."""
    f, calls = counted(lambda x: math.log(x / 1e-12))
    assert root(f, 1e-15, 1.0, rtol=1e-10, geometric=True) == pytest.approx(1e-12, rel=1e-9)
    assert len(calls) <= 20


@pytest.mark.parametrize(("f", "lo", "hi", "expected"), [
    (lambda x: x**3 - 2, 0.0, 2.0, 2 ** (1 / 3)),
    (lambda x: math.exp(x) - 10, -5.0, 5.0, math.log(10)),
    (lambda x: math.tanh(3 * x) - 0.2, -1.0, 4.0, math.atanh(0.2) / 3),
])
def test_smooth_functions_converge_superlinearly(f, lo, hi, expected):
    """Within 1e-13 of the closed-form root in at most 16 evaluations (bisection: ~45); the
    Illinois halving of the stale end is what keeps regula falsi from crawling on convex f."""
    g, calls = counted(f)
    assert root(g, lo, hi, xtol=1e-13) == pytest.approx(expected, abs=2e-13)
    assert len(calls) <= 16


def test_a_secant_point_lost_to_overflow_falls_back_to_the_midpoint():
    """Values near float64's limit: lo f(hi) overflows, the secant point is inf, and the step
    bisects the bracket instead; the root is still found (to 1e-12) with the bracket's ends
    never leaving [10, 12]."""
    f, calls = counted(lambda x: 1e308 * math.tanh(x - 10.5))
    assert root(f, 10.0, 12.0, xtol=1e-12) == pytest.approx(10.5, abs=1e-12)
    assert all(10.0 <= x <= 12.0 for x in calls)
