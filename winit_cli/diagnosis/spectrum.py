"""A run's config mapped onto the free-probability theory of its Jacobian spectrum
(theory/spectra.py): where its weights are a family the theory covers (i.i.d. Gaussian or scaled
orthogonal, one width throughout, biases i.i.d. Gaussian), the prediction for its k = depth - 2
weight matrices at the length map's fixed point q*; elsewhere None ("no prediction" rather
than one outside the theory). The run record's predicted var(s^2) / mean(s^2)^2
(runner/member.py) and the report's predicted curves (app/spectrum_theory.py) both come here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from winit_cli.errors import WinitError
from winit_cli.inits.registry import get_scheme
from winit_cli.theory.spectra import SpectrumPrediction, predicted_spectrum

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


def predicted_for(config: dict) -> SpectrumPrediction | None:
    """The prediction for this run's Jacobian z_1 -> z_{L-1}, or None where the theory does not
    apply (another family, nonzero-mean weights, unequal widths, not an MLP, too shallow, a
    parametrization that rescales the init), from its flattened config (dotted keys)."""
    width, depth = config.get("model.width"), config.get("model.depth")
    if not isinstance(width, int) or not isinstance(depth, int) or depth < 3 \
            or config.get("model.kind", "mlp") != "mlp" or config.get("model.widths"):
        return None
    if config.get("model.parametrization", "standard") != "standard" \
            and config.get("model.base_width") not in (None, width):
        return None  # mup rescales the biases the theory reads
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
    return _predicted(depth - 2, family, activation, round(variance * width, 12),
                      round(bias_variance, 12))


@lru_cache(maxsize=64)
def _predicted(layers: int, family: str, activation: str, sigma_w2: float, sigma_b2: float
               ) -> SpectrumPrediction | None:
    try:
        p = predicted_spectrum(layers, family, activation, sigma_w2, sigma_b2)
    except (ValueError, ArithmeticError):
        return None
    return p if np.isfinite(p.var_sq) else None
