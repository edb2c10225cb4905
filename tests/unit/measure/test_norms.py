"""The norm helpers of the record (measure/norms.py) on values built by hand: which values
count as outside float32's safe band, which are recomputed in float64 (a 2-norm's squares
under- and overflow; a sum of |x| only overflows), and one |x| buffer reused across dtypes,
each checked against torch's own norms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from winit_cli.measure.norms import AbsStats, out_of_band, redo_in_float64, to_host


def test_the_safe_band_is_1e_minus_12_to_1e12_inclusive():
    values = np.array([0.0, 1e-13, 1e-12, 1.0, 1e12, 1e13, np.inf, np.nan])
    assert out_of_band(values).tolist() == [True, True, False, False, False, True, True, True]


def test_nothing_to_move_is_an_empty_array():
    assert to_host([]).shape == (0,)


def test_only_a_two_norm_is_redone_for_a_tiny_value():
    """A value of 5e-13 stands where the true norm is 3e-13 (a float32 result that lost its
    squares): for a 2-norm it is out of the band and recomputed; a sum of |x| that small is
    exact in float32, so only a non-finite one is recomputed."""
    tensor = torch.tensor([[1e-13, 2e-13]], dtype=torch.float64)  # one member
    for order, expected in ((2, torch.linalg.vector_norm(tensor, 2).item()), (1, 5e-13)):
        values = np.array([[5e-13]])
        redo_in_float64(values, [tensor], [0], order)
        assert values[0, 0] == pytest.approx(expected, rel=1e-12, abs=0), order
    values = np.array([[np.inf]])
    redo_in_float64(values, [tensor], [0], 1)
    assert values[0, 0] == pytest.approx(3e-13, rel=1e-12, abs=0)


def test_one_buffer_serves_float32_then_float64():
    """The buffer is remade when the dtype changes, even to smaller tensors: the float64 sums
    are float64's, not float32's rounding of them."""
    stats = AbsStats()
    with torch.no_grad():
        stats([torch.ones(1, 64, dtype=torch.float32)], 1)
        x = torch.full((1, 8), 1.0 + 2**-40, dtype=torch.float64)
        sums, largest = stats([x], 1)
    assert sums.dtype == torch.float64
    assert sums.item() == 8 * (1.0 + 2**-40)
    assert largest.item() == 1.0 + 2**-40
