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


def _layers() -> pd.DataFrame:
    """Two recorded steps of a 3-layer net; at step 0 ||dL/dz|| = 8, 2, 1."""
    return pd.DataFrame({"step": [0, 0, 0, 10, 10, 10], "layer": [1, 2, 3] * 2,
                         "fan_in": [784, 100, 50] * 2, "fan_out": [100, 50, 10] * 2,
                         "weight_norm": [3.0, 7.0, 0.5] * 2,
                         "act_grad_norm": [8.0, 2.0, 1.0, 4.0, 4.0, 4.0]})


def test_a_runs_prediction_sits_on_its_step0_rows_beside_what_was_measured():
    """ReLU at sigma_w^2 = 2, no bias, inputs of second moment 1: q_l = 2 on every layer,
    chi = 2 x 1/2 = 1, every predicted ratio 0 (by hand). The summary's difference is the
    measured log10 8/2 minus that 0; the step-10 rows get no prediction."""
    from winit_cli.diagnosis.predict import predict_run

    config = load_config(None, ["init.scheme=mean_field", "init.params.sigma_w2=2.0",
                                "init.params.sigma_b2=0.0", "model.depth=3",
                                "model.activation=relu"])
    layers, summary = predict_run(config, _layers(), 1.0)
    step0, later = layers[layers.step == 0], layers[layers.step == 10]
    assert step0.predicted_q.tolist() == pytest.approx([2.0, 2.0, 2.0])
    assert step0.predicted_chi.tolist()[:2] == pytest.approx([1.0, 1.0])
    assert step0.predicted_log10_grad_ratio.tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert later[["predicted_q", "predicted_chi", "predicted_log10_grad_ratio"]].isna().all().all()
    assert summary["applicable"] is True
    assert summary["measured_log10_ratio"] == pytest.approx(0.60206, abs=1e-5)
    assert summary["difference"] == pytest.approx(0.60206, abs=1e-5)


def test_the_summary_difference_is_measured_minus_predicted():
    """ReLU at sigma_w^2 = 1, no bias: chi = sigma_w^2 E[relu'(z)^2] = 1/2 on every layer, so
    depth 3's predicted log10 ||dL/dz_1|| / ||dL/dz_2|| is 1/2 log10 chi_1 = -0.150515 (by hand,
    the theory's one hidden-to-hidden step); measured log10 8/2 = 0.60206; the difference is the
    measured minus the predicted, 0.752575 (not their sum: a predicted ratio of 0, as in the
    test above, cannot tell)."""
    from winit_cli.diagnosis.predict import predict_run

    config = load_config(None, ["init.scheme=mean_field", "init.params.sigma_w2=1.0",
                                "init.params.sigma_b2=0.0", "model.depth=3",
                                "model.activation=relu"])
    _, summary = predict_run(config, _layers(), 1.0)
    assert summary["chi"] == pytest.approx(0.5)
    assert summary["predicted_log10_ratio"] == pytest.approx(0.5 * -0.30103, abs=1e-5)
    assert summary["difference"] == pytest.approx(0.60206 + 0.150515, abs=1e-5)


@pytest.mark.parametrize(("overrides", "reason"), [
    (["init.scheme=mean1_normal"], "non-zero-mean"),
    # mean-field theory assumes zero-mean weights: a negative mean is outside it too
    (["init.scheme=mean1_normal", "init.params.mean=-1.0"], "non-zero-mean"),
    (["model.norm=batch", "model.dropout=0.1"], "no prediction"),
])
def test_no_prediction_is_said_so(overrides, reason):
    from winit_cli.diagnosis.predict import predict_run

    config = load_config(None, ["model.depth=3", *overrides])
    layers, summary = predict_run(config, _layers(), 1.0)
    assert summary["applicable"] is False and reason in summary["reason"]
    assert layers.predicted_q.isna().all()
    _, empty = predict_run(config, _layers().iloc[3:], 1.0)
    assert empty == {"applicable": False, "reason": "no step-0 record"}
