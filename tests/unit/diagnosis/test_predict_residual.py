"""A resmlp run's summary (diagnosis/predict_families.py) on a config and step-0 table built by
hand: ReLU branches, whose chi_branch = sigma_w^2 / 2 whatever the stream's variance, so each
block's factor 1 + alpha^2 sigma_w^2 / 2 is known without theory and every block's differs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from winit_cli.config import load_config
from winit_cli.diagnosis.predict_families import predict_family

WIDTH = 64
SIGMA_W2 = [0.4, 0.8, 1.2, 1.6, 2.0]  # the five blocks' branches, input side first
FACTORS = [1 + s / 2 for s in SIGMA_W2]  # alpha = 1: 1.2, 1.4, 1.6, 1.8, 2.0
STREAM_NORMS = [8.0, 6.0, 5.0, 4.0, 3.0, 2.0]  # ||dL/dh_b||, b = 0..5, as measured


def test_a_residual_summary_by_hand():
    """chi is the middle (third) block's factor, the statement's whole-stream figure is half the
    log10 of their product (norms, not squares), and difference is measured - predicted with the
    measured ratio log10 ||dL/dh_0|| / ||dL/dh_5|| = log10 4."""
    config = load_config(None, ["model.kind=resmlp", "model.depth=7", "model.branch_layers=1",
                                f"model.width={WIDTH}", "model.activation=relu"])
    # layers: the input projection (h_0), five branch_out layers (h_1..h_5), the output
    step0 = pd.DataFrame({"layer": range(1, 8), "fan_in": [784] + [WIDTH] * 6,
                          "act_grad_norm": [1.0] * 7,
                          "stream_grad_norm": [*STREAM_NORMS, np.nan]})
    weight_var = [2 / 784] + [s / WIDTH for s in SIGMA_W2] + [1 / WIDTH]
    _, summary = predict_family("residual", config, step0, weight_var, [0.0] * 7, False, 1.0)
    predicted = 0.5 * math.log10(math.prod(FACTORS))  # 0.4929
    assert summary["chi"] == pytest.approx(FACTORS[2])
    assert f"10^{predicted:+.2f} in gradient norm" in summary["statement"]
    assert summary["predicted_log10_ratio"] == pytest.approx(predicted)
    assert summary["difference"] == pytest.approx(math.log10(8.0 / 2.0) - predicted)
