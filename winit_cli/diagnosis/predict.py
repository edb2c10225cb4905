"""Theory beside measurement: a run's mean-field prediction, set against its step-0 record; and
what a scheme gives a square layer in theory (`scheme_mean_field`, for `winit schemes`).

The variances fed to the theory are those the scheme actually produces (`Scheme.variance`); for
data-dependent schemes (LSUV) they are read off the step-0 weight norms instead,
Var(W_l) ~ ||W_l||^2 / (fan_in fan_out). The theory assumes zero-mean weights: for other schemes
(mean-1 normal) no prediction is made, and the summary says why. Residual MLPs, normalization
and dropout go to their own theories (predict_families.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from winit_cli import theory
from winit_cli.config import Config
from winit_cli.diagnosis.predict_families import predict_family, theory_for, with_roles
from winit_cli.diagnosis.verdict import measured_first_to_last_hidden, predicted_verdict
from winit_cli.errors import ConfigError
from winit_cli.inits import Scheme, get_scheme
from winit_cli.records.files import finite

PREDICTED = ("predicted_q", "predicted_chi", "predicted_log10_grad_ratio")


def layer_variances(config: Config, step0: pd.DataFrame) -> tuple[list[float], list[float], str]:
    """Per-layer weight and bias variances, and where they came from."""
    scheme = get_scheme(config.init.scheme)
    params = scheme.resolve(config.init.params)
    if scheme.data_dependent:
        w = (step0.weight_norm ** 2 / (step0.fan_in * step0.fan_out)).tolist()
        return w, [0.0] * len(w), "measured at step 0 (data-dependent scheme)"
    weights, biases = [], []
    for fan_in, fan_out in zip(step0.fan_in, step0.fan_out, strict=True):
        v, vb = scheme.variance(int(fan_in), int(fan_out), config.model.activation, **params)
        weights.append(v)
        biases.append(vb if config.model.bias else 0.0)
    return weights, biases, "scheme formula"


def predict_run(config: Config, layers: pd.DataFrame, input_second_moment: float
                ) -> tuple[pd.DataFrame, dict]:
    """layers.csv with predicted columns on the step-0 rows (and, for resmlp, each layer's
    block and role on every row), and summary.json's `theory`, which also holds the verdict
    theory predicts (verdict.predicted_verdict: the measured verdict's rule and thresholds on
    the predicted ratios)."""
    layers = with_roles(config, layers.copy())
    for column in PREDICTED:
        layers[column] = np.nan
    step0 = layers[layers.step == 0].sort_values("layer")
    rows, summary = predict_rows(config, step0, input_second_moment)
    _fill(layers, rows)
    if rows is not None and summary.get("applicable"):
        v = predicted_verdict(rows, vanish_decades=config.diagnose.vanish_decades,
                              explode_decades=config.diagnose.explode_decades)
        if v is not None:
            summary.update(predicted_verdict=v.verdict, predicted_verdict_layer=v.layer)
    return layers, summary


def predict_rows(config: Config, step0: pd.DataFrame, input_second_moment: float
                 ) -> tuple[pd.DataFrame | None, dict]:
    """Theory's per-layer columns (indexed by layer; None where there are none) and the theory
    summary, for a run's step-0 rows (layer, fan_in, fan_out, and for data-dependent schemes
    weight_norm; act_grad_norm, where present, is set beside the prediction)."""
    scheme = get_scheme(config.init.scheme)
    if not len(step0):
        return None, {"applicable": False, "reason": "no step-0 record"}
    if scheme.weight_mean(config.init.params) != 0:
        return None, {"applicable": False,
                      "reason": f"{scheme.name} draws non-zero-mean weights; mean-field theory "
                                "assumes zero mean"}
    weight_var, bias_var, source = layer_variances(config, step0)
    family, reason = theory_for(config)
    if family is None:
        return None, {"applicable": False, "reason": reason}
    if family != "plain":
        rows, summary = predict_family(family, config, step0, weight_var, bias_var,
                                       source == "scheme formula", input_second_moment)
        summary.setdefault("applicable", True)
        return rows, {"applicable": summary.pop("applicable"), "variance_source": source,
                      "input_second_moment": input_second_moment, **summary}
    prediction = theory.predict(
        config.model.activation, step0.fan_in.astype(int).tolist(), weight_var, bias_var,
        input_second_moment,
    )
    measured = measured_first_to_last_hidden(step0)
    predicted = prediction.log10_first_to_last_hidden()
    summary = {
        "applicable": True, "variance_source": source,
        "input_second_moment": input_second_moment,
        "chi": finite(prediction.chi_fixed_point), "q_fixed_point": finite(
            prediction.q_fixed_point),
        "depth_scale": finite(prediction.depth_scale),
        "predicted_log10_ratio": finite(predicted), "measured_log10_ratio": finite(measured),
        "difference": finite(measured - predicted),
    }
    return pd.DataFrame(prediction.to_rows()).set_index("layer"), summary


def _fill(layers: pd.DataFrame, rows: pd.DataFrame | None) -> None:
    """The step-0 rows' predicted columns, in place, from `rows` (indexed by layer)."""
    if rows is None:
        return
    at_step0 = layers.step == 0
    for column in PREDICTED:
        if column in rows:
            layers.loc[at_step0, column] = layers.loc[at_step0, "layer"].map(
                rows[column]).to_numpy(dtype=float, na_value=np.nan)


@dataclass(frozen=True)
class MeanField:
    """What one scheme gives a square width x width layer, for `winit schemes`."""

    sigma_w2: float | None  # fan_in * Var(W); None when data-dependent or not defined
    sigma_b2: float | None
    chi: float | None  # sigma_w2 E[phi'(sqrt(q*) z)^2] at the fixed point; None: n/a
    note: str = ""  # why a value is missing


def scheme_mean_field(scheme: Scheme, activation: str, width: int,
                      params: dict[str, Any] | None = None) -> MeanField:
    """sigma_w^2, sigma_b^2 and chi at the fixed point q* (reached from q = 1) for a scheme.

    chi is left out (None) for data-dependent schemes, whose weights are measured not derived,
    and for non-zero-mean weights, where the theory does not apply.
    """
    resolved = scheme.resolve(params or {})
    if scheme.data_dependent:
        return MeanField(None, None, None, "data-dependent")
    try:
        var_w, var_b = scheme.variance(width, width, activation, **resolved)
    except ConfigError:
        return MeanField(None, None, None, "no edge of chaos")
    sigma_w2 = width * var_w
    if scheme.weight_mean(params) != 0:
        return MeanField(sigma_w2, var_b, None, "non-zero mean")
    q_star = theory.fixed_point_q(activation, sigma_w2, var_b)
    chi = sigma_w2 * theory.derivative_second_moment(activation, q_star)
    return MeanField(sigma_w2, var_b, chi)
