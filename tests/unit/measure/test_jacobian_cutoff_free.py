"""The Jacobian spectrum's cutoff-free summaries (issue 26, item 6): var(s^2) / mean(s^2)^2
and percentiles of s, zeros included, against a hand-built spectrum and against numpy on the
singular values of an explicitly multiplied Jacobian; no zero cutoff moves them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from winit_cli.measure.jacobian import cutoff_free, jacobian_spectrum


def test_hand_built_spectrum():
    # s = 0, 1, 2, 3 equally weighted: s^2 = 0, 1, 4, 9, mean 3.5, variance 12.25
    ratio, q = cutoff_free(torch.tensor([2.0, 0.0, 3.0, 1.0]), torch.full((4,), 0.25))
    assert ratio == pytest.approx(12.25 / 3.5**2)
    assert q == {"q10": 0.0, "q50": 1.0, "q90": 3.0}


def test_weights_that_do_not_sum_to_one_are_normalised():
    """s = 1, 2, 3 with weights 2, 2, 4 (a quarter, a quarter, a half): s^2 = 1, 4, 9, mean
    5.75, variance 0.25 x 4.75^2 + 0.25 x 1.75^2 + 0.5 x 3.25^2 = 11.6875; cumulative weight
    0.25, 0.5, 1 puts q10 at 1, q50 at 2 (reached exactly), q90 at 3."""
    ratio, q = cutoff_free(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([4.0, 2.0, 2.0]))
    assert ratio == pytest.approx(11.6875 / 5.75**2)
    assert q == {"q10": 1.0, "q50": 2.0, "q90": 3.0}


def test_against_numpy_and_independent_of_the_cutoff():
    g = torch.Generator().manual_seed(3)
    n, depth, inputs = 24, 6, 4
    ws = [torch.randn(n, n, generator=g, dtype=torch.float64) / n**0.5 for _ in range(depth)]
    z1 = torch.randn(inputs, n, generator=g, dtype=torch.float64)
    singular = []
    for x in z1:  # J = W_L D ... W_2 D_1 with D = diag(relu'(z)), z_l = W_l relu(z_{l-1})
        jac, z = torch.eye(n, dtype=torch.float64), x
        for w in ws:
            jac = w @ torch.diag((z > 0).double()) @ jac
            z = w @ torch.relu(z)
        singular.append(torch.linalg.svdvals(jac).numpy())
    lam = np.concatenate(singular) ** 2
    expected = lam.var() / lam.mean() ** 2
    loose = jacobian_spectrum(ws, None, "relu", z1, method="exact", zero_rtol=1e-3)
    tight = jacobian_spectrum(ws, None, "relu", z1, method="exact", zero_rtol=1e-12)
    assert loose.var_ratio == pytest.approx(expected, rel=1e-6)
    assert tight.var_ratio == loose.var_ratio and tight.quantiles == loose.quantiles
    assert loose.quantiles["q50"] == pytest.approx(np.quantile(np.sqrt(lam), 0.5,
                                                               method="inverted_cdf"))
    assert loose.to_summary()["jacobian_spread_zero_rtol"] == 1e-3
