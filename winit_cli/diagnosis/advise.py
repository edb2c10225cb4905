"""Advice before anything trains: for a config's network, what theory predicts of every init
scheme (or of those asked for), and which one to use (`winit advise`).

Each scheme is set in the config in turn and handed to the same bridge a run's record uses
(predict.predict_rows) with the network's layer shapes and no measurement, so that the predicted
first-to-last ratio is the quantity and sign of a run's measured `log10_first_to_last`, and the
predicted verdict is the measured verdict's rule and thresholds (verdict.predicted_verdict) on
the predicted ratios. Where theory cannot say (non-zero-mean weights, data-dependent schemes,
combinations no theory here covers), the scheme gets "no prediction" and the reason.

No data is read: the length map starts from the input's second moment of a standardized
dataset (STANDARDIZED_SECOND_MOMENT).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from winit_cli.config import Config
from winit_cli.datasets import get_dataset
from winit_cli.diagnosis.predict import layer_variances, predict_rows
from winit_cli.diagnosis.verdict import predicted_verdict
from winit_cli.errors import ConfigError
from winit_cli.inits import SCHEMES, check_init_for_model, check_scheme, get_scheme
from winit_cli.models import get_model_kind
from winit_cli.records.files import finite
from winit_cli.theory import depth_scale
from winit_cli.theory.correlation import correlation_depth_scale_of, correlation_fixed_point

# m_0 = mean_i E[x_i^2] of the training inputs. datasets/splits.py standardizes every input with
# the training images' own pixel mean and std, so m_0 is 1 up to the validation split: measured
# on MNIST's 55,000 training inputs (val_size 5000, runner.group.SPLIT_SEED), 0.99999725.
STANDARDIZED_SECOND_MOMENT = 1.0
# Trainable depth: nets much deeper than about 6 xi_c do not train (Schoenholz et al. 2017).
TRAINABLE_DEPTH_FACTOR = 6
NO_PREDICTION = "no prediction"


@dataclass(frozen=True)
class SchemeAdvice:
    """What theory predicts of one scheme on the config's network."""

    scheme: str
    verdict: str  # healthy | vanishing | exploding | no prediction
    log10_ratio: float | None = None  # predicted log10 ||dL/dz_1|| / ||dL/dz_{L-1}||; -inf: 0
    layer: int | None = None  # where the predicted vanishing or explosion starts
    chi: float | None = None  # per-layer factor deep in the net (per block for resmlp)
    chi_per_layer: list[float | None] = field(default_factory=list)  # theory's chi_l, l = 1..L
    depth_scale: float | None = None  # xi = 1 / |ln chi|; inf at chi = 1
    trainable_depth: float | None = None  # 6 xi_c; inf: any depth; None: not defined
    family: str | None = None  # plain | layernorm | dropout | batchnorm | residual
    reason: str = ""  # why there is no prediction, or why no trainable depth

    @property
    def predicts(self) -> bool:
        return self.verdict != NO_PREDICTION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["any_depth"] = self.trainable_depth == math.inf
        for key in ("log10_ratio", "chi", "depth_scale", "trainable_depth"):
            d[key] = finite(d[key])
        d["chi_per_layer"] = [finite(c) for c in self.chi_per_layer]
        return d


@dataclass(frozen=True)
class Advice:
    network: str  # the network in words
    depth: int  # Linear layers
    input_second_moment: float
    vanish_decades: float
    explode_decades: float
    schemes: list[SchemeAdvice]
    recommendation: str | None  # a scheme's name, or None when theory predicts none
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "depth": self.depth,
                "input_second_moment": self.input_second_moment,
                "vanish_decades": self.vanish_decades, "explode_decades": self.explode_decades,
                "schemes": [s.to_dict() for s in self.schemes],
                "recommendation": self.recommendation, "reason": self.reason}


def advise(config: Config, schemes: list[str] | None = None,
           input_second_moment: float = STANDARDIZED_SECOND_MOMENT) -> Advice:
    """Theory's prediction for each scheme (default: every registered one) on `config`'s
    network, and the recommendation (`recommend`)."""
    names = [get_scheme(n, where="--schemes").name for n in schemes] if schemes \
        else list(SCHEMES)
    step0 = step0_shapes(config)
    advice = [advise_scheme(config, name, step0, input_second_moment) for name in names]
    best, reason = recommend(advice, config.model.depth, config.init.scheme)
    return Advice(network_words(config), len(step0), input_second_moment,
                  config.diagnose.vanish_decades, config.diagnose.explode_decades, advice,
                  best, reason)


def step0_shapes(config: Config) -> pd.DataFrame:
    """Step-0 rows as a run would record them, without the measurements: the Linear layers'
    fans from the model the config builds (no data read; the dataset's shape from its spec)."""
    spec = get_dataset(config.data.dataset)
    shapes = get_model_kind(config.model.kind).layer_shapes(config.model, spec.input_size,
                                                            spec.classes)
    return pd.DataFrame({"layer": range(1, len(shapes) + 1), "step": 0,
                         "fan_in": [s[0] for s in shapes], "fan_out": [s[1] for s in shapes],
                         "act_grad_norm": np.nan, "weight_norm": np.nan})


def advise_scheme(config: Config, name: str, step0: pd.DataFrame, m0: float) -> SchemeAdvice:
    """One scheme on the config's network: its own parameters if it is the config's scheme,
    else its defaults."""
    scheme = get_scheme(name)
    params = dict(config.init.params) if scheme.name == config.init.scheme else {}
    why_not = _outside_theory(config, scheme, params)
    if why_not:
        return SchemeAdvice(scheme.name, NO_PREDICTION, reason=why_not)
    trial = config.model_copy(deep=True)
    try:
        trial.init.params = params
        trial.init.scheme = scheme.name
        check_scheme(scheme.name, params, config.model.activation)
        check_init_for_model(trial)
    except ConfigError as e:
        return SchemeAdvice(scheme.name, NO_PREDICTION, reason=str(e))
    try:
        rows, summary = predict_rows(trial, step0, m0)
    except ValueError as e:  # a theory's own refusal (LayerNorm of all-zero pre-activations)
        return SchemeAdvice(scheme.name, NO_PREDICTION, reason=str(e))
    if rows is None or not summary.get("applicable"):
        return SchemeAdvice(scheme.name, NO_PREDICTION, family=summary.get("family"),
                            reason=str(summary.get("reason") or "theory does not apply"))
    verdict = predicted_verdict(rows, vanish_decades=config.diagnose.vanish_decades,
                                explode_decades=config.diagnose.explode_decades)
    family = summary.get("family", "plain")
    if verdict is None:
        return SchemeAdvice(scheme.name, NO_PREDICTION, family=family, reason=(
            "the predicted variance leaves the finite range, so the ratios are undefined"))
    ratio = summary.get("predicted_log10_ratio")
    if ratio is None:  # finite() wrote an infinite ratio as None: the gradient is exactly 0
        ratio = -math.inf if verdict.verdict == "vanishing" else None
    xi_c, why = trainable_scale(trial, family, summary, step0)
    chi = summary.get("chi")
    per_layer = rows.get("predicted_chi", pd.Series(dtype=float))
    return SchemeAdvice(
        scheme.name, verdict.verdict, ratio, verdict.layer, chi,
        [None if pd.isna(c) else float(c) for c in per_layer],
        None if chi is None else depth_scale(chi),
        None if xi_c is None else TRAINABLE_DEPTH_FACTOR * xi_c, family, why)


def _outside_theory(config: Config, scheme, params: dict) -> str:
    """Why theory cannot say for this scheme on this network, in words shared by every scheme
    it holds for (so the view lists them once); "" when it may."""
    if scheme.needs_branches and config.model.kind != "resmlp":
        return ("defined on residual branches, which this network has none of "
                "(model.kind: resmlp has them)")
    if scheme.data_dependent:
        return ("the weights are set from data; winit.advise(model, inputs) measures them on a "
                "batch")
    if scheme.weight_mean(params) != 0:
        return "non-zero-mean weights: mean-field theory assumes zero mean"
    if scheme.name == "zeros" and config.model.norm != "none":
        return "all-zero weights: the normalization divides 0 by its eps, outside its theory"
    return ""


def trainable_scale(config: Config, family: str, summary: dict, step0: pd.DataFrame
                    ) -> tuple[float | None, str]:
    """(xi_c, ""), or (None, why there is none): the correlation depth scale of the middle
    layer's (sigma_w^2, sigma_b^2), as theory.predict takes "the" network's."""
    if family in ("layernorm", "dropout"):
        chi_c = summary.get("chi_c")
        return (None, "no correlation fixed point") if chi_c is None \
            else (correlation_depth_scale_of(chi_c), "")
    if family != "plain":
        return None, f"no correlation depth scale for {family} nets here"
    weight_var, bias_var, _ = layer_variances(config, step0)
    mid = len(weight_var) // 2
    try:
        point = correlation_fixed_point(config.model.activation,
                                        int(step0.fan_in.iloc[mid]) * weight_var[mid],
                                        bias_var[mid])
    except ValueError as e:
        return None, str(e)
    return point.depth_scale, ""


def recommend(advice: list[SchemeAdvice], depth: int, current: str = ""
              ) -> tuple[str | None, str]:
    """(the scheme to use, why): predicted healthy first; then one trainable to this depth
    (6 xi_c above it) before one of unknown and one of smaller trainable depth; then the
    smallest |first-to-last ratio| (to a hundredth of a decade); on a tie the config's own
    scheme (`current`), then the registry's order."""
    candidates = [a for a in advice if a.predicts]
    if not candidates:
        return None, ("theory predicts none of these schemes for this network; "
                      "winit.advise(model, inputs) measures it on a batch instead")

    def key(a: SchemeAdvice) -> tuple:
        reach = 1 if a.trainable_depth is None else 0 if a.trainable_depth > depth else 2
        ratio = math.inf if a.log10_ratio is None else round(abs(a.log10_ratio), 2)
        return a.verdict != "healthy", reach, ratio, a.scheme != current

    best = min(candidates, key=key)
    healthy = [a for a in candidates if a.verdict == "healthy"]
    ratio = _decades(best.log10_ratio)
    if best.verdict != "healthy":
        return best.scheme, (f"no scheme is predicted healthy at depth {depth}; {best.scheme} "
                             f"comes closest ({best.verdict}, {ratio} first to last)")
    return best.scheme, (f"predicted healthy ({ratio} first to last), "
                         f"{_reach(best.trainable_depth, depth)}; {len(healthy)} of "
                         f"{len(candidates)} schemes theory predicts are healthy")


def _decades(x: float | None) -> str:
    return "undefined" if x is None else f"{x:+.2f} decades"


def _reach(trainable: float | None, depth: int) -> str:
    if trainable is None:
        return "trainable depth not defined for this net"
    if trainable == math.inf:
        return "trainable at any depth (xi_c infinite: critical)"
    return f"trainable to about {trainable:.0f} layers (6 xi_c) for {depth} here"


def network_words(config: Config) -> str:
    """`30-layer relu mlp, width 256`, with its norm, dropout and branches."""
    m = config.model
    width = f"widths {','.join(map(str, m.widths))}" if m.widths else f"width {m.width}"
    extras = [f"{m.norm}norm" if m.norm != "none" else "",
              f"dropout {m.dropout:g}" if m.dropout else "",
              f"{m.branch_layers}-layer branches, alpha {m.branch_scale:g}"
              if m.kind == "resmlp" else "", "no bias" if not m.bias else ""]
    return ", ".join([f"{m.depth}-layer {m.activation} {m.kind}", width,
                      *[e for e in extras if e]])
