"""The free-probability prediction beside each measured Jacobian spectrum in a report.

A run's config says what its weights were drawn from; where that is a family the theory covers
(theory/spectra.py: i.i.d. Gaussian or scaled orthogonal weights, one width throughout,
biases i.i.d. Gaussian), the predicted density of ln s for its k = depth - 2 weight matrices is
computed here, at the length map's fixed point q*, from the config alone. Elsewhere there is no
curve: the report says "no prediction" by drawing none rather than one outside the theory.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from winit_cli.errors import WinitError
from winit_cli.inits.registry import get_scheme
from winit_cli.theory.spectra import predicted_spectrum

# Schemes whose hidden weights are i.i.d. zero-mean Gaussian, or (semi-)orthogonal, with a
# variance the registry gives. Uniform and truncated draws are left out: at infinite width they
# have the same Marchenko-Pastur law, but finite-width curves would claim more than is known.
GAUSSIAN = ("normal", "he_normal", "xavier_normal", "lecun_normal", "mean_field", "critical")
ORTHOGONAL = ("orthogonal",)


def weight_family(scheme: str, params: dict) -> str | None:
    """"gaussian", "orthogonal" or None (no prediction), for a registered scheme's name."""
    if scheme == "critical" and params.get("orthogonal"):
        return "orthogonal"
    if scheme in GAUSSIAN:
        return "gaussian"
    return "orthogonal" if scheme in ORTHOGONAL else None


def predicted_curve(config: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(log10 s, density per unit log10 s) for this run's Jacobian z_1 -> z_{L-1}, or None
    where the theory does not apply (another family, nonzero-mean weights, unequal widths, not
    an MLP, too shallow), from its flattened config."""
    width, depth = config.get("model.width"), config.get("model.depth")
    if not isinstance(width, int) or not isinstance(depth, int) or depth < 3 \
            or config.get("model.kind", "mlp") != "mlp":
        return None
    try:
        scheme = get_scheme(str(config.get("init.scheme")))
        params = scheme.resolve({k.removeprefix("init.params."): v for k, v in config.items()
                                 if k.startswith("init.params.")})
        family = weight_family(scheme.name, params)
        activation = str(config.get("model.activation"))
        if family is None or scheme.weight_mean(params) != 0:
            return None
        # square hidden layers: sigma_w2 = n Var(W_ij), as the mean-field theory reads it
        variance, bias_variance = scheme.variance(width, width, activation, **params)
    except (WinitError, TypeError, ValueError):
        return None
    return _curve(depth - 2, family, activation, round(variance * width, 12),
                  round(bias_variance, 12))


@lru_cache(maxsize=64)
def _curve(layers: int, family: str, activation: str, sigma_w2: float, sigma_b2: float):
    try:
        p = predicted_spectrum(layers, family, activation, sigma_w2, sigma_b2)
    except (ValueError, ArithmeticError):
        return None
    if not np.all(np.isfinite(p.density)):  # every s the same: a spike, not a curve
        return None
    return p.log_sv / math.log(10), p.density * math.log(10)


def report_curves(runs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{run path: predicted curve} for the runs that recorded a spectrum and have a prediction."""
    curves = {}
    for run in runs:
        if run.spectrum is not None and len(run.spectrum):
            curve = predicted_curve(run.config)
            if curve is not None:
                curves[run.path] = curve
    return curves
