"""The verdict's readings for residual and BatchNorm nets, on tables built by hand: a residual
net's first-to-last ratio and zero count are the stream's (||dL/dh_b||, on the rows that carry
it), and a BatchNorm net's predicted verdict reads r_l = 1/2 sum_{k=l}^{L-1} log10 chi_k."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from winit_cli.diagnosis.verdict import (
    STREAM,
    measured_first_to_last_hidden,
    predicted_verdict,
    zero_gradient_layers,
)

NAN = math.nan


def residual_step0(stream: list[float]) -> pd.DataFrame:
    """Six Linear layers; the stream's gradient on the input projection's and each block's last
    layer's rows (nan on the others), the per-layer act_grad_norm deliberately different."""
    return pd.DataFrame({"layer": range(1, 7), "act_grad_norm": [5.0, 0.0, 1.0, 0.0, 2.0, 1.0],
                         STREAM: stream})


def test_a_residual_nets_ratio_and_zero_count_are_the_streams():
    step0 = residual_step0([40.0, NAN, 8.0, NAN, 0.4, NAN])
    assert measured_first_to_last_hidden(step0) == pytest.approx(math.log10(40.0 / 0.4))
    assert zero_gradient_layers(step0) == 0  # act_grad_norm's two zeros are branches' own
    assert zero_gradient_layers(residual_step0([40.0, NAN, 0.0, NAN, 0.0, NAN])) == 2
    assert measured_first_to_last_hidden(residual_step0([40.0] + [NAN] * 5)) == 0.0


@pytest.mark.parametrize(("chi", "verdict"), [(10.0, "exploding"), (0.1, "vanishing"),
                                              (1.0, "healthy")])
def test_a_batchnorm_nets_predicted_verdict_sums_its_per_layer_rates(chi, verdict):
    """Depth 7, the rate on layers 1..5: r_1 = 5 x 0.5 log10 chi = +-2.5 decades, past the
    2-decade thresholds; the two layers nearest the output carry no rate (a factor of 1)."""
    rows = pd.DataFrame({"predicted_chi": [chi] * 5 + [NAN] * 2},
                        index=pd.Index(range(1, 8), name="layer"))
    result = predicted_verdict(rows)
    assert result.verdict == verdict
    assert result.log10_ratio_init == pytest.approx(2.5 * np.log10(chi))


def test_a_plain_nets_zero_count_is_its_layers_with_exactly_zero_gradient():
    step0 = pd.DataFrame({"layer": range(1, 7), "act_grad_norm": [5.0, 0.0, 3.0, 0.0, 2.0, 1.5]})
    assert zero_gradient_layers(step0) == 2


@pytest.mark.parametrize("undefined", [2, 6])  # 6: the last hidden layer
def test_no_predicted_verdict_where_theory_leaves_any_hidden_layers_ratio_undefined(undefined):
    ratio = [3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0]
    ratio[undefined - 1] = NAN
    rows = pd.DataFrame({"predicted_log10_grad_ratio": ratio},
                        index=pd.Index(range(1, 8), name="layer"))
    assert predicted_verdict(rows) is None
