"""The weight and bias variances fed to the theory (diagnosis/predict.py `layer_variances`), on
step-0 tables built by hand: LSUV's are read off the measured weight norms,
Var(W_l) = ||W_l||^2 / (fan_in fan_out), with no bias; a formula scheme's are its own
(mean_field: sigma_w^2 / fan_in, sigma_b^2), and a net without biases has bias variance 0
whatever the scheme's."""

from __future__ import annotations

import pandas as pd
import pytest

from winit_cli.config import load_config
from winit_cli.diagnosis.predict import layer_variances

STEP0 = pd.DataFrame({"layer": [1, 2, 3], "fan_in": [784, 100, 50], "fan_out": [100, 50, 10],
                      "weight_norm": [3.0, 7.0, 0.5]})


def test_lsuv_variances_are_the_measured_ones():
    config = load_config(None, ["init.scheme=lsuv", "model.depth=3"])
    weights, biases, source = layer_variances(config, STEP0)
    assert weights == pytest.approx([9.0 / 78400, 49.0 / 5000, 0.25 / 500], rel=1e-12)
    assert biases == [0.0, 0.0, 0.0]
    assert "measured" in source


@pytest.mark.parametrize(("bias", "expected"), [(True, 0.01), (False, 0.0)])
def test_a_formula_schemes_variances_and_a_net_without_bias(bias, expected):
    config = load_config(None, ["init.scheme=mean_field", "init.params.sigma_w2=2.0",
                                "init.params.sigma_b2=0.01", "model.depth=3",
                                f"model.bias={str(bias).lower()}"])
    weights, biases, _ = layer_variances(config, STEP0)
    assert weights == pytest.approx([2.0 / 784, 2.0 / 100, 2.0 / 50], rel=1e-12)
    assert biases == pytest.approx([expected] * 3)
