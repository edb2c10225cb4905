"""Mean-field theory against winit's own measurements at step 0, on real MNIST (issue 3).

sigma_w^2 is set through He's `gain` (Var = gain^2 / fan_in, so sigma_w^2 = gain^2); each run's
summary carries the predicted and measured log10 ||dL/dz_1|| / ||dL/dz_{L-1}||.
"""

from __future__ import annotations

import math

import pytest

from winit_cli.config import validate
from winit_cli.runner.group import load_splits, run_group

pytestmark = pytest.mark.mnist


def runs(activation: str, sigma_w2s: list[float], tmp_path) -> list[dict]:
    configs = [validate({
        "name": f"{activation}-{s}", "output_dir": str(tmp_path),
        "model": {"depth": 20, "width": 512, "activation": activation},
        "init": {"scheme": "he_normal", "params": {"gain": math.sqrt(s)}},
        "train": {"steps": 1, "batch_size": 256}, "data": {"subset": 1024, "val_size": 0},
        "record": {"every": 1},
    }) for s in sigma_w2s]
    outcomes = run_group(configs, load_splits(configs[0]))
    return [o.record.theory.model_dump() for o in outcomes]


@pytest.mark.usefixtures("winit_data_dir")
@pytest.mark.parametrize(("activation", "sigma_w2s", "tolerance"), [
    ("relu", [1.0, 2.0, 3.0], 0.2),
    ("tanh", [0.5, 1.0, 2.0], 0.4),
])
def test_measured_gradient_ratio_at_init_matches_mean_field(activation, sigma_w2s, tolerance,
                                                            tmp_path):
    theories = runs(activation, sigma_w2s, tmp_path)
    for sigma_w2, theory in zip(sigma_w2s, theories, strict=True):
        assert theory["applicable"], theory
        predicted, measured = theory["predicted_log10_ratio"], theory["measured_log10_ratio"]
        assert abs(measured - predicted) < tolerance, (activation, sigma_w2, theory)
        assert theory["difference"] == pytest.approx(measured - predicted)
    # and the predictions differ enough across sigma_w^2 that the check means something
    if activation == "relu":
        ratios = [t["predicted_log10_ratio"] for t in theories]
        assert ratios[0] < -2 and abs(ratios[1]) < 1e-9 and ratios[2] > 1.5
