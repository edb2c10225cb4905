"""act_std (measure/quantities.py) on activations built by hand, against torch's float64 std:
the fast form sum(h^2) - n mean^2 cancels digits where |mean| >> std, whatever the mean's sign,
and a layer the step kept no h for stays NaN beside one it did."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from winit_cli.measure.quantities import act_std


def _inputs(posts):
    views = [SimpleNamespace(post=p) for p in posts]
    sums = np.array([[np.nan] if p is None else [float((p.float() ** 2).sum())] for p in posts])
    means = np.array([[np.nan] if p is None else [float(p.double().mean())] for p in posts])
    return views, sums, means


@pytest.mark.parametrize("mean", [0.5, -0.5])
def test_exact_where_the_mean_dwarfs_the_spread_of_either_sign(mean):
    """h = mean +- 0.002 in float32 (one member, batch 64, 128 units): sum(h^2) in float32
    keeps about 7 digits of 16384 x 0.25, too few for a variance of 4e-6."""
    h = (mean + 0.002 * torch.randn(1, 64, 128, generator=torch.Generator().manual_seed(0))
         ).float()
    std = act_std(*_inputs([h]))
    assert std[0, 0] == pytest.approx(h.double().std().item(), rel=1e-6, abs=0)


def test_a_layer_without_h_stays_nan_beside_one_with():
    h = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    std = act_std(*_inputs([None, h]))
    assert math.isnan(std[0, 0])
    assert std[1, 0] == pytest.approx(h.std().item(), rel=1e-6, abs=0)  # sums in float32


def test_a_spread_the_fast_form_cancels_to_zero_is_recomputed():
    """sum(h^2) that rounded to exactly n mean^2 (float32 keeps 7 digits; the spread here is
    1e-7 of the mean): the fast form's variance is 0, below the band, and the mean dwarfs it,
    so the std comes from the centred values."""
    h = (0.5 + 5e-8 * torch.randn(1, 64, 128, generator=torch.Generator().manual_seed(2),
                                  dtype=torch.float64))
    views, _, means = _inputs([h])
    cancelled = h[0].numel() * means**2
    std = act_std(views, cancelled, means)
    assert std[0, 0] == pytest.approx(h.std().item(), rel=1e-6, abs=0)
