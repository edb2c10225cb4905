"""Theory beside measurement for the kinds beyond the plain MLP: which theory applies to a run
(`theory_for`), its per-layer predictions at step 0 and its summary block, or "no prediction"
with the reason.

| model                          | theory                                                      |
|--------------------------------|-------------------------------------------------------------|
| mlp, dropout                   | theory_layernorm_dropout.predict_dropout + dropout_theory   |
| mlp, norm: layer               | predict_layernorm + layernorm_theory                        |
| mlp, norm: batch               | theory_batchnorm.bn_gradient_rate (the per-layer rate)      |
| resmlp, no norm, no dropout    | theory_residual.predict_resmlp                              |
| anything combined beyond these | no prediction, with the reason                              |

Each summary has the plain block's keys (chi, depth_scale, predicted_log10_ratio,
measured_log10_ratio, difference: see predict.py) plus `family` and a `statement` in words.
For resmlp, chi is per block (the factor 1 + alpha^2 chi_branch of E||dL/dh||^2 across the
middle block), the depth scale is in blocks, and the first-to-last ratio is the stream's,
log10 ||dL/dh_0|| / ||dL/dh_B|| (layers.csv's stream_grad_norm). For BatchNorm, chi is Yang et
al.'s rate lambda per layer, and the measured rate is fitted over the middle layers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from winit_cli import theory
from winit_cli.config import Config
from winit_cli.diagnosis.verdict import STREAM_RATIO, measured_first_to_last_hidden
from winit_cli.inits import get_scheme, initial_branch_scale, layer_factors
from winit_cli.models.registry import layer_roles
from winit_cli.records.files import finite
from winit_cli.theory.batchnorm import bn_gradient_rate
from winit_cli.theory.layernorm_dropout import (
    dropout_theory,
    layernorm_theory,
    predict_dropout,
    predict_layernorm,
)
from winit_cli.theory.residual import predict_resmlp


def theory_for(config: Config) -> tuple[str | None, str]:
    """(the family whose theory applies, or None; why none does)."""
    m = config.model
    features = [f for f, on in (("dropout", m.dropout > 0), (f"{m.norm}norm", m.norm != "none"),
                                ("residual", m.kind == "resmlp")) if on]
    if m.kind not in ("mlp", "resmlp"):
        return None, f"no theory for model.kind {m.kind}"
    if len(features) == 1:
        return features[0], ""
    if not features:
        return "plain", ""
    return None, (f"no prediction: {' + '.join(features)} together is outside every theory here "
                  "(each covers one of them in an otherwise plain net)")


def _layer_roles(config: Config) -> list[tuple[str, int]]:
    """(role, block) of each Linear layer of a resmlp config (models.LinearView's)."""
    k = config.model.branch_layers
    return layer_roles((config.model.depth - 2) // k, k)


def roles_of(config: Config) -> list[str]:
    """Each Linear layer's role (models.LinearView.role) for a resmlp config."""
    return [role for role, _ in _layer_roles(config)]


def with_roles(config: Config, layers: pd.DataFrame) -> pd.DataFrame:
    """resmlp: each row's residual block (0 for the input projection, B + 1 for the output) and
    role, so that layers.csv says which Linear layer is which; other kinds unchanged."""
    if config.model.kind != "resmlp":
        return layers
    roles = _layer_roles(config)
    index = layers.layer.astype(int) - 1
    return layers.assign(block=[roles[i][1] for i in index], role=[roles[i][0] for i in index])


def predict_family(family: str, config: Config, step0: pd.DataFrame, weight_var: list[float],
                   bias_var: list[float], formula: bool, m0: float
                   ) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """(per-layer predicted columns indexed by layer, or None; the summary's family keys)."""
    fan_in = step0.fan_in.astype(int).tolist()
    activation = config.model.activation
    if family == "residual":
        return _residual(config, step0, fan_in, weight_var, bias_var, formula, m0)
    if family == "batchnorm":
        return _batchnorm(config, step0)
    middle = len(fan_in) // 2
    sigma_w2 = fan_in[middle] * weight_var[middle]
    if family == "layernorm":
        prediction = predict_layernorm(activation, fan_in, weight_var, bias_var, m0)
        words = layernorm_theory(activation, sigma_w2, bias_var[middle])
    else:
        keep = 1.0 - config.model.dropout
        prediction = predict_dropout(activation, fan_in, weight_var, bias_var, m0, keep)
        words = dropout_theory(activation, sigma_w2, bias_var[middle], keep, q0=m0)
    rows = pd.DataFrame(prediction.to_rows()).set_index("layer")
    predicted = prediction.log10_first_to_last_hidden()
    measured = measured_first_to_last_hidden(step0)
    summary = {"family": family, "statement": words.statement,
               "chi": finite(prediction.chi_fixed_point),
               "q_fixed_point": finite(prediction.q_fixed_point),
               "depth_scale": finite(prediction.depth_scale), **_extras(words),
               "predicted_log10_ratio": finite(predicted), "measured_log10_ratio": finite(measured),
               "difference": finite(measured - predicted)}
    return rows, summary


def _extras(words) -> dict[str, Any]:
    keys = ("c_star", "chi_c", "correlation_depth_scale")
    return {k: finite(getattr(words, k)) for k in keys}


def _residual(config, step0, fan_in, weight_var, bias_var, formula, m0):
    scheme, params = get_scheme(config.init.scheme), config.init.params
    roles = roles_of(config)
    if formula:  # what fill drew, then Fixup / zero_last's factors (measured weights have them)
        factors = layer_factors(scheme, params, roles, config.init.zero_last)
        weight_var = [v * f * f for v, f in zip(weight_var, factors, strict=True)]
        bias_var = [v * f * f for v, f in zip(bias_var, factors, strict=True)]
    alpha = initial_branch_scale(scheme, params, config.model.branch_scale)
    pred = predict_resmlp(config.model.activation, fan_in, weight_var, bias_var, m0,
                          branch_layers=config.model.branch_layers, branch_scale=alpha)
    rows = pd.DataFrame(pred.to_rows()).set_index("layer")
    rows["predicted_chi"] = np.nan
    out = rows.role == "branch_out"
    rows.loc[out, "predicted_chi"] = [b.grad_factor for b in pred.blocks]
    # The stream's log10 ||dL/dh_b|| / ||dL/dz_L|| on the rows that carry h_b (the input
    # projection's, each block's last), as layers.csv's stream_grad_norm: the verdict reads it.
    rows[STREAM_RATIO] = np.nan
    rows.loc[(rows.role == "input") | out, STREAM_RATIO] = pred.stream_log10_grad_ratio
    middle = pred.blocks[len(pred.blocks) // 2]
    predicted = pred.log10_input_to_last_block()
    measured = measured_first_to_last_hidden(step0)
    total = sum(math.log10(b.grad_factor) for b in pred.blocks)
    statement = (
        f"Residual blocks (Yang & Schoenholz 2017): each multiplies E||dL/dh||^2 by 1 + alpha^2 "
        f"chi_branch = {middle.grad_factor:.4g} (middle block; alpha = {alpha:g}), "
        f"10^{0.5 * total:+.2f} in gradient norm from the last block to the first over "
        f"{len(pred.blocks)} blocks" + (": every block is the identity at init, no growth"
                                        if total == 0 else "") + ".")
    summary = {"family": "residual", "statement": statement, "chi": finite(middle.grad_factor),
               "q_fixed_point": None, "depth_scale": finite(theory.depth_scale(middle.grad_factor)),
               "branch_scale_init": alpha, "blocks": len(pred.blocks),
               "predicted_log10_ratio": finite(predicted), "measured_log10_ratio": finite(measured),
               "difference": finite(measured - predicted)}
    return rows, summary


def _batchnorm(config, step0):
    depth, batch = len(step0), config.train.batch_size
    try:
        rate = bn_gradient_rate(config.model.activation, batch)
    except ValueError as e:
        return None, {"family": "batchnorm", "applicable": False, "reason": f"no prediction: {e}"}
    per_layer = 0.5 * math.log10(rate)
    rows = pd.DataFrame({"predicted_chi": [rate] * (depth - 2) + [np.nan] * 2},
                        index=pd.Index(range(1, depth + 1), name="layer"))
    predicted = per_layer * (depth - 2)
    measured = measured_first_to_last_hidden(step0)
    fitted, window = fitted_rate(step0)
    statement = (
        f"BatchNorm (Yang et al. 2019): at init every layer multiplies E||dL/dz||^2 by lambda = "
        f"{rate:.4g} going back (batch {batch}, {config.model.activation}), whatever the weight "
        f"init: 10^{per_layer:+.3f} per layer, 10^{predicted:+.2f} from layer {depth - 1} to 1. "
        f"The rate is a deep-network limit: the layers nearest the input and the output, where "
        f"the batch's statistics have not settled, grow at other rates, so in a net of a few "
        f"layers the whole-net figure can be off even in sign.")
    summary = {"family": "batchnorm", "statement": statement, "chi": rate, "q_fixed_point": None,
               "depth_scale": finite(theory.depth_scale(rate)),
               "predicted_decades_per_layer": per_layer, "measured_decades_per_layer":
               finite(fitted), "fit_layers": window,
               "predicted_log10_ratio": finite(predicted), "measured_log10_ratio": finite(measured),
               "difference": finite(measured - predicted)}
    return rows, summary


def fitted_rate(step0: pd.DataFrame) -> tuple[float | None, str | None]:
    """The measured log10 growth of ||dL/dz_l|| per layer toward the input, fitted over the
    middle layers (a fifth of the depth left out at each end, where the batch's Gram matrix has
    not converged and the logits are near), as the rate is defined deep in the net."""
    norms = step0.sort_values("layer").act_grad_norm.to_numpy(float)
    depth = len(norms)
    skip = max(2, round(depth / 5))
    layers = np.arange(skip + 1, depth - skip + 1)
    if len(layers) < 3 or not (norms[layers - 1] > 0).all() or \
            not np.isfinite(norms[layers - 1]).all():
        return None, None
    slope = np.polyfit(layers, np.log10(norms[layers - 1]), 1)[0]
    return float(-slope), f"{layers[0]}-{layers[-1]}"


def explain(verdict: str, step: int | None, theory_block: dict[str, Any]) -> str:
    """What the family's theory says about a verdict it predicts ("" otherwise): appended to the
    verdict's sentence, so that a BatchNorm net's explosion is put down to BatchNorm, a residual
    net's to its blocks. The theory is about initialization: it explains an explosion or a
    vanishing found at step 0 in the direction it predicts, or a divergence where it predicts
    growth; not what training did later."""
    if not theory_block.get("applicable") or theory_block.get("family") in (None, "plain"):
        return ""
    predicted = theory_block.get("predicted_log10_ratio")
    if predicted is None:
        return ""
    agrees = {"exploding": step == 0 and predicted > 0, "vanishing": step == 0 and predicted < 0,
              "diverged": predicted > 0}
    return f"; theory: {theory_block['statement']}" if agrees.get(verdict) else ""
