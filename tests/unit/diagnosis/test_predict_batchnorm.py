"""A BatchNorm run's whole-network prediction (diagnosis/predict_families.py) against a net
simulated here in plain torch: the per-layer rate is checked in tests/unit/theory; this checks
how many layers it is applied over, and that the figure is the one the summary and the verdict
compare with what was measured (log10 ||dL/dz_1|| / ||dL/dz_{L-1}||)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from winit_cli.config import load_config
from winit_cli.diagnosis.predict_families import predict_family

DEPTH, WIDTH, BATCH, SEEDS = 4, 2048, 4, 8


def simulated_gradient_norms(seed: int) -> list[float]:
    """||dL/dz_l|| for l = 1..DEPTH of Linear -> BatchNorm (training mode, biased variance) ->
    identity, on a batch of BATCH Gaussian inputs, with a Gaussian gradient at the logits (the
    isotropic start the rate is the eigenvalue of). The identity activation keeps every layer's
    batch Gram matrix at the fixed point from the first layer on, so every layer grows at the
    rate: no end effects blur the count."""
    generator = torch.Generator().manual_seed(seed)
    h = torch.randn(BATCH, WIDTH, generator=generator, dtype=torch.float64)
    zs = []
    for layer in range(DEPTH):
        w = torch.randn(WIDTH, WIDTH, generator=generator, dtype=torch.float64) / WIDTH**0.5
        z = (h @ w.T).requires_grad_(True)
        zs.append(z)
        if layer < DEPTH - 1:
            h = (z - z.mean(0)) / z.var(0, unbiased=False).sqrt()
    top = torch.randn(BATCH, WIDTH, generator=generator, dtype=torch.float64)
    return [float(g.norm()) for g in torch.autograd.grad((zs[-1] * top).sum(), zs)]


def test_whole_network_prediction_counts_the_layers_between_the_first_and_last_hidden():
    """Linear activation, batch 4: lambda = (B-2)/(B-3) = 2, 0.151 decades per layer. The
    simulated nets' log10 ||dL/dz_1|| / ||dL/dz_3|| (2 layers apart) has a median of 0.33 over
    8 seeds (single seeds spread by 0.05: the rate's variance is infinite at B = 4); the
    prediction, 0.30, must be within half a layer's 0.151 of it, so one layer more or fewer
    (0.45 or 0.15) fails."""
    norms = np.array([simulated_gradient_norms(seed) for seed in range(SEEDS)])
    measured = float(np.median(np.log10(norms[:, 0] / norms[:, DEPTH - 2])))
    per_layer = 0.5 * math.log10((BATCH - 2) / (BATCH - 3))
    config = load_config(None, [f"model.depth={DEPTH}", f"model.width={WIDTH}",
                                "model.norm=batch", "model.activation=linear",
                                f"train.batch_size={BATCH}"])
    step0 = pd.DataFrame({"layer": range(1, DEPTH + 1), "fan_in": [784] + [WIDTH] * (DEPTH - 1),
                          "act_grad_norm": norms[0]})
    rows, summary = predict_family("batchnorm", config, step0, [1.0] * DEPTH, [0.0] * DEPTH,
                                   True, 1.0)
    assert summary["predicted_decades_per_layer"] == pytest.approx(per_layer, rel=1e-12)
    assert summary["predicted_log10_ratio"] == pytest.approx(measured, abs=per_layer / 2)
    # the rows carry the rate on the layers it applies to, and the measured ratio is step0's
    assert rows.predicted_chi.notna().sum() == DEPTH - 2
    assert summary["measured_log10_ratio"] == pytest.approx(
        math.log10(norms[0, 0] / norms[0, DEPTH - 2]), rel=1e-12)


def test_below_a_batch_of_four_there_is_no_prediction():
    """Under BatchNorm the mean squared gradient is infinite below a batch of 4
    (E[1/chi^2_(B-1)] diverges): no rate, so no prediction, said so."""
    config = load_config(None, ["model.depth=4", "model.norm=batch", "model.activation=linear",
                                "train.batch_size=3"])
    step0 = pd.DataFrame({"layer": range(1, 5), "fan_in": [784, 64, 64, 64],
                          "act_grad_norm": [8.0, 4.0, 2.0, 1.0]})
    rows, summary = predict_family("batchnorm", config, step0, [1.0] * 4, [0.0] * 4, True, 1.0)
    assert rows is None
    assert summary["applicable"] is False and "batch size 3" in summary["reason"]


def test_the_statement_counts_from_the_last_hidden_layer_to_the_first():
    """Depth 5, batch 8, linear: lambda = (B - 2) / (B - 3) = 6/5, 0.5 log10 1.2 decades per
    layer over the 3 layers from layer 4 to 1, as the statement says."""
    config = load_config(None, ["model.depth=5", "model.norm=batch", "model.activation=linear",
                                "train.batch_size=8"])
    step0 = pd.DataFrame({"layer": range(1, 6), "fan_in": [784, 64, 64, 64, 64],
                          "act_grad_norm": [8.0, 4.0, 2.0, 1.0, 1.0]})
    _, summary = predict_family("batchnorm", config, step0, [1.0] * 5, [0.0] * 5, True, 1.0)
    per_layer = 0.5 * math.log10(6 / 5)
    assert f"10^{per_layer:+.3f} per layer, 10^{3 * per_layer:+.2f} from layer 4 to 1." \
        in summary["statement"]
