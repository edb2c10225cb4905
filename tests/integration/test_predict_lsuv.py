"""The theory beside an LSUV run uses the variance LSUV actually set, measured from the calibrated
weights, not the formula of its orthonormal start (1 / max(fan_in, fan_out)), which for a ReLU
net is about half of it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from winit_cli.config import validate
from winit_cli.datasets import make_splits
from winit_cli.runner.group import input_second_moment, run_group
from winit_cli.training.step import setup

pytestmark = pytest.mark.mnist


@pytest.fixture(scope="module")
def splits(mnist_raw):
    return make_splits(mnist_raw, val_size=100, subset=640, seed=0)


def test_lsuv_theory_uses_the_measured_weight_variance(splits, tmp_path):
    """Protects diagnosis/predict.layer_variances for data-dependent schemes: each predicted chi
    of a ReLU net is sigma_w2 / 2 of the layer above, with sigma_w2 = fan_in Var(W) read off the
    calibrated weights (built here a second time), and q_1 = sigma_w2_1 E[x^2]."""
    config = validate({"model": {"depth": 5, "width": 64, "activation": "relu"},
                       "init": {"scheme": "lsuv", "params": {"batch_size": 256}},
                       "train": {"steps": 1, "batch_size": 64},
                       "data": {"subset": 640, "val_size": 100}, "output_dir": str(tmp_path)})
    (outcome,) = run_group([config], splits)
    assert outcome.record.theory.variance_source.startswith("measured")
    layers = pd.read_csv(outcome.run_dir / "layers.csv")
    step0 = layers[layers.step == 0].set_index("layer")

    calibrated = setup([config], splits, torch.device("cpu")).model.linears()
    sigma_w2 = [float(layer.weight[0].detach().double().pow(2).mean()) * layer.fan_in
                for layer in calibrated]
    for l in range(1, len(calibrated)):  # chi_l, l = 1 .. L-1, uses layer l + 1's weights
        assert step0.predicted_chi[l] == pytest.approx(sigma_w2[l] / 2, rel=1e-5), l
    assert step0.predicted_q[1] == pytest.approx(sigma_w2[0] * input_second_moment(splits),
                                                 rel=1e-5)
    # Premise: the formula's variance would predict visibly different numbers.
    formula = [layer.fan_in / max(layer.fan_in, layer.fan_out) for layer in calibrated]
    assert all(abs(m / f - 1) > 0.2 for m, f in zip(sigma_w2[1:-1], formula[1:-1], strict=True))
