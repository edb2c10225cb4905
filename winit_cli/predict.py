"""Theory beside measurement: a run's mean-field prediction, set against its step-0 record.

The variances fed to the theory are those the scheme actually produces (`Scheme.variance`); for
data-dependent schemes (LSUV) they are read off the step-0 weight norms instead,
Var(W_l) ~ ||W_l||^2 / (fan_in fan_out). The theory assumes zero-mean weights: for other schemes
(mean-1 normal) no prediction is made, and the summary says why.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import theory
from .config import Config
from .inits import get_scheme

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
    """layers.csv with predicted columns on the step-0 rows, and summary.json's `theory`."""
    layers = layers.copy()
    for column in PREDICTED:
        layers[column] = np.nan
    step0 = layers[layers.step == 0].sort_values("layer")
    scheme = get_scheme(config.init.scheme)
    if not len(step0):
        return layers, {"applicable": False, "reason": "no step-0 record"}
    if scheme.weight_mean(config.init.params) != 0:
        return layers, {"applicable": False,
                        "reason": f"{scheme.name} draws non-zero-mean weights; mean-field theory "
                                  "assumes zero mean"}
    weight_var, bias_var, source = layer_variances(config, step0)
    prediction = theory.predict(
        config.model.activation, step0.fan_in.astype(int).tolist(), weight_var, bias_var,
        input_second_moment,
    )
    rows = pd.DataFrame(prediction.to_rows()).set_index("layer")
    at_step0 = layers.step == 0
    for column in PREDICTED:
        layers.loc[at_step0, column] = layers.loc[at_step0, "layer"].map(rows[column]).to_numpy(
            dtype=float, na_value=np.nan)
    measured = measured_first_to_last_hidden(step0)
    predicted = prediction.log10_first_to_last_hidden()
    summary = {
        "applicable": True, "variance_source": source,
        "input_second_moment": input_second_moment,
        "chi": _finite(prediction.chi_fixed_point), "q_fixed_point": _finite(
            prediction.q_fixed_point),
        "depth_scale": _finite(prediction.depth_scale),
        "predicted_log10_ratio": _finite(predicted), "measured_log10_ratio": _finite(measured),
        "difference": _finite(measured - predicted),
    }
    return layers, summary


def measured_first_to_last_hidden(step0: pd.DataFrame) -> float:
    """log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| at step 0 (0 when there is one hidden layer or none)."""
    norms = step0.sort_values("layer").act_grad_norm.to_numpy()
    if len(norms) < 3:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log10(norms[0] / norms[-2]))


def _finite(x: float) -> float | None:
    """JSON has no inf/NaN: an unbounded depth scale or a zero gradient is written as null."""
    return float(x) if x is not None and math.isfinite(x) else None
