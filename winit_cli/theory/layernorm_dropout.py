"""What mean-field theory says about LayerNorm and dropout MLPs at initialization.

LayerNorm (Ba, Kiros & Hinton 2016), placed as BatchNorm is, on the pre-activations:

    z_l = W_l h_{l-1} + b_l,   y_l = LN(z_l) over the n units of each input,   h_l = phi(y_l)

LN has gamma = 1, beta = 0 at init. In the wide limit LN divides each input's z_l by its own
deterministic scale sqrt(q_l) (the mean over units is O(1/sqrt n) for zero-mean weights, and the
two directions LN's Jacobian removes are 2 of n), so y_l has variance exactly 1 at every layer:
the length map is pinned at q = 1 and

    q_l   = sigma_l E[phi(z)^2] + vb_l      (variance of z_l, l >= 2;  q_1 = sigma_1 m_0 + vb_1)
    chi_l = sigma_{l+1} E[phi'(z)^2] / q_l  (E||dL/dz_l||^2 / E||dL/dz_{l+1}||^2),  z ~ N(0, 1)

With equal layers and no bias chi = E[phi'(z)^2] / E[phi(z)^2], whatever the weight scale: 1 for
ReLU (critical for every init), 1.18 for tanh (mild explosion, 0.036 decades per layer). This is
the plain theory with sigma_w^2 replaced by sigma_w^2 / q_l; it is derived here, not quoted.

Dropout (Schoenholz et al. 2017, "Deep Information Propagation", their section on dropout), on
hidden activations, inverted as torch.nn.Dropout (keep rate rho, mask / rho):

    z_{l+1} = W_{l+1} (m_l * phi(z_l) / rho) + b_{l+1}

gives q_{l+1} = (sigma_w^2 / rho) E[phi(sqrt(q_l) z)^2] + sigma_b^2 (the 1/rho from E[(m/rho)^2])
while two inputs' independent masks leave the covariance map without it. So the correlation map
at q* sends c = 1 to 1 - (1/rho - 1) sigma_w^2 E[phi^2] / q* < 1: c = 1 is no longer a fixed point,
there is no critical point, and inputs decorrelate to c* < 1 over a finite depth xi_c. Backward,
the same mask multiplies the gradient: chi = (sigma_w^2 / rho) E[phi'(sqrt(q*) z)^2].
BatchNorm, residual connections or LayerNorm together with dropout: no prediction here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from winit_cli.theory.activations import derivative_second_moment, second_moment
from winit_cli.theory.correlation import correlation_depth_scale_of, correlation_point
from winit_cli.theory.mean_field import (
    LayerPrediction,
    Prediction,
    depth_scale,
    fixed_point_q,
    predict,
)

# activations.py's closed-form activations: positively homogeneous, so their correlation map
# does not depend on q and stays defined when q* is 0 or infinite.
HOMOGENEOUS = ("relu", "leaky_relu", "linear")


@dataclass(frozen=True)
class FamilyTheory:
    """What theory says about one architecture feature, for a run's theory block."""

    family: str  # "layernorm" or "dropout"
    predicts: bool
    statement: str  # plain words: the prediction, or why there is none
    chi: float | None = None  # per-layer factor of E||dL/dz||^2 deep in the net
    depth_scale: float | None = None  # 1 / |ln chi|
    c_star: float | None = None  # correlation fixed point reached from c = 1
    chi_c: float | None = None  # slope of the correlation map at c*
    correlation_depth_scale: float | None = None  # xi_c = -1 / ln chi_c
    details: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def layernorm_theory(
    activation: str, sigma_w2: float, sigma_b2: float = 0.0, *,
    activation_param: float | None = None,
) -> FamilyTheory:
    """Deep-net prediction for Linear -> LayerNorm -> phi with equal layers (module docstring).

    q is pinned at 1 after every LN; chi = sigma_w2 E[phi'^2] / (sigma_w2 E[phi^2] + sigma_b2)
    at unit variance. The correlation map has c = 1 fixed: c* = 1 when chi <= 1, else the lower
    root (chaotic phase). Example: layernorm_theory("relu", 2.0).chi == 1.0 for any sigma_w2.
    """
    if sigma_w2 < 0 or sigma_b2 < 0:
        raise ValueError("sigma_w2 and sigma_b2 must be >= 0")
    q_pre = sigma_w2 * second_moment(activation, 1.0, activation_param=activation_param)
    q_pre += sigma_b2
    if q_pre == 0:
        return FamilyTheory("layernorm", False, "no prediction: every pre-activation is 0, so "
                            "LayerNorm divides 0 by its eps")
    dsm = derivative_second_moment(activation, 1.0, activation_param=activation_param)
    chi = sigma_w2 * dsm / q_pre
    c_star, chi_c = correlation_point(activation, sigma_w2, sigma_b2, 1.0, q_pre,
                                      activation_param=activation_param)
    statement = (
        f"LayerNorm pins the pre-activation variance at 1 after every layer, whatever the init; "
        f"deep in the net gradients change by chi = {chi:.4g} per layer "
        f"({0.5 * math.log10(chi) if chi > 0 else -math.inf:+.3f} decades)"
        + (", critical (ReLU without bias is critical at every weight scale)"
           if abs(chi - 1) < 1e-9 else "")
        + f"; correlations settle at c* = {c_star:.4g} (chi_c = {chi_c:.4g})."
    )
    return FamilyTheory("layernorm", True, statement, chi, depth_scale(chi), c_star, chi_c,
                        correlation_depth_scale_of(chi_c),
                        {"q_normalized": 1.0, "q_pre_norm": q_pre})


def predict_layernorm(
    activation: str,
    fan_in: Sequence[int],
    weight_var: Sequence[float],
    bias_var: Sequence[float],
    input_second_moment: float,
    *,
    activation_param: float | None = None,
) -> Prediction:
    """Layer-by-layer q (of z_l, before LN) and gradient ratios of a LayerNorm MLP at init.

    Same arguments and result type as predict; LN sits on layers 1..L-1 (not the logits).
    m_0 enters only q_1, hence chi_1: LN divides each input by its own norm, so with inputs of
    unequal norm chi_1 is sigma_2 E[phi'^2] E_x[1 / q_1(x)], which is more than at the mean q_1
    (Jensen): layer 1's measured ratio sits above this prediction, by 0.5 log10 of
    E_x[1 / m_0(x)] E_x[m_0(x)] when the gradient reaching layer 2 does not depend on the
    input's norm (after LN it does not). The fixed-point fields describe the
    middle layer (q_fixed_point is its pre-LN variance; the normalized one is 1).
    """
    depth = len(fan_in)
    if depth == 0 or len(weight_var) != depth or len(bias_var) != depth:
        raise ValueError("fan_in, weight_var and bias_var need one entry per layer")
    kw = {"activation_param": activation_param}
    sigma = [n * v for n, v in zip(fan_in, weight_var, strict=True)]
    sm = second_moment(activation, 1.0, **kw)  # E[phi(y)^2], y ~ N(0, 1) after LN
    dsm = derivative_second_moment(activation, 1.0, **kw)
    q = [sigma[0] * input_second_moment + bias_var[0]]
    q += [s * sm + vb for s, vb in zip(sigma[1:], bias_var[1:], strict=True)]
    if min(q[:-1]) <= 0:
        raise ValueError("a LayerNorm layer with all-zero pre-activations has no prediction")
    chi = [sigma[i + 1] * dsm / q[i] for i in range(depth - 1)]
    ratio = [0.0] * depth
    for i in reversed(range(depth - 1)):
        ratio[i] = (ratio[i + 1] + 0.5 * math.log10(chi[i])) if chi[i] > 0 else -math.inf
    layers = [LayerPrediction(i + 1, q[i], chi[i] if i < depth - 1 else None, ratio[i])
              for i in range(depth)]
    if depth == 1:
        return Prediction(layers, math.nan, math.nan, math.nan)
    mid = depth // 2
    chi_mid = sigma[mid] * dsm / q[mid]
    return Prediction(layers, chi_mid, q[mid], depth_scale(chi_mid))


def _dropout_variance(activation, sigma_w2, sigma_b2, keep, q0, param
                      ) -> tuple[float, float, float, str]:
    """(q*, the q at which to evaluate the maps, the bias variance that still matters, a note)."""
    q_star = fixed_point_q(activation, sigma_w2 / keep, sigma_b2, q0,
                                  activation_param=param)
    if 0 < q_star < math.inf:
        return q_star, q_star, sigma_b2, f"q* = {q_star:.4g}"
    if activation not in HOMOGENEOUS:
        return q_star, math.nan, math.nan, (
            f"no prediction: the variance {'grows without bound' if q_star else 'dies out'} "
            f"(q* = {q_star}) and {activation}'s correlation map depends on q"
        )
    # Homogeneous phi: q cancels from the correlation map; a bias is negligible as q -> inf, and
    # q* = 0 happens only without one.
    growth = "grows without bound" if q_star else "dies out"
    return q_star, 1.0, 0.0, f"the variance {growth} (q* = {q_star}); correlations do not need it"


def dropout_theory(
    activation: str, sigma_w2: float, sigma_b2: float, keep: float, *, q0: float = 1.0,
    activation_param: float | None = None,
) -> FamilyTheory:
    """Deep-net prediction for an MLP with dropout (keep rate `keep`) on hidden activations.

    Schoenholz et al. 2017: q* = (sigma_w2/keep) E[phi(sqrt(q*) z)^2] + sigma_b2 (reached from
    q0), c* < 1 the fixed point of c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*, its slope
    chi_c = sigma_w2 E[phi'(u1) phi'(u2)] < 1 and xi_c = -1/ln chi_c finite: no critical point.
    Gradient factor chi = (sigma_w2/keep) E[phi'(sqrt(q*) z)^2]. For keep = 1 (no dropout) use
    mean_field.predict and mean_field.critical_sigma_w2.
    """
    if not 0 < keep < 1:
        raise ValueError(f"keep rate must be in (0, 1) for dropout, got {keep}")
    if sigma_w2 <= 0 or sigma_b2 < 0:
        raise ValueError("sigma_w2 must be > 0 and sigma_b2 >= 0")
    kw = {"activation_param": activation_param}
    q_star, q, b2, note = _dropout_variance(activation, sigma_w2, sigma_b2, keep, q0,
                                            activation_param)
    if math.isnan(q):
        return FamilyTheory("dropout", False, note)
    q_next = sigma_w2 / keep * second_moment(activation, q, **kw) + b2  # q* if finite
    chi = sigma_w2 / keep * derivative_second_moment(activation, q, **kw)
    c_star, chi_c = correlation_point(activation, sigma_w2, b2, q, q_next, **kw)
    xi_c = correlation_depth_scale_of(chi_c)
    statement = (
        f"Dropout (keep {keep:g}) removes the critical point (Schoenholz et al. 2017): {note}; "
        f"two inputs' correlation falls to c* = {c_star:.4g} at rate chi_c = {chi_c:.4g}, over "
        f"xi_c = {xi_c:.3g} layers (nets much deeper than ~6 xi_c do not train); gradients change "
        f"by chi = {chi:.4g} per layer."
    )
    return FamilyTheory("dropout", True, statement, chi, depth_scale(chi), c_star, chi_c,
                        xi_c, {"keep": keep, "q_star": q_star})


def predict_dropout(
    activation: str,
    fan_in: Sequence[int],
    weight_var: Sequence[float],
    bias_var: Sequence[float],
    input_second_moment: float,
    keep: float,
    *,
    activation_param: float | None = None,
) -> Prediction:
    """predict for an MLP with dropout on every hidden activation (not the input).

    The masks enter both passes as E[(m/keep)^2] = 1/keep on the weights that multiply them,
    so this is the plain prediction with Var(W_l) / keep for layers 2..L (module docstring).
    Its fixed-point fields are those of the dropout length map.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep rate must be in (0, 1], got {keep}")
    scaled = [weight_var[0], *(v / keep for v in weight_var[1:])]
    return predict(activation, fan_in, scaled, bias_var, input_second_moment,
                          activation_param=activation_param)
