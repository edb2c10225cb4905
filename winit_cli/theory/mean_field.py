"""Mean-field predictions of signal propagation at initialization.

Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos";
Schoenholz et al. 2017 (ICLR; arXiv 2016), "Deep Information Propagation".

The network is Linear layers l = 1..L, z_l = W_l h_{l-1} + b_l, h_l = phi(z_l) for l < L and
z_L the logits; h_0 = x. Layer l has fan_in n_{l-1}; its weights are i.i.d. with mean 0 and
variance v_l, its biases have variance vb_l. Write sigma_w2_l = n_{l-1} v_l (sigma_w^2 under
fan-in scaling) and z ~ N(0, 1). Then

    forward (length map)  q_1 = sigma_w2_1 m_0 + vb_1,     m_0 = mean_i E[x_i^2]
                          q_l = sigma_w2_l E[phi(sqrt(q_{l-1}) z)^2] + vb_l           (l >= 2)
    backward              E||dL/dz_l||^2 = chi_l E||dL/dz_{l+1}||^2
                          chi_l = sigma_w2_{l+1} E[phi'(sqrt(q_l) z)^2]            (l < L)

so log10(||dL/dz_l|| / ||dL/dz_L||) = 1/2 sum_{k=l}^{L-1} log10 chi_k. At the length map's
fixed point q*, chi* < 1 makes gradients vanish and chi* > 1 explode, over a depth scale
xi = 1/|ln chi*|; nets much deeper than about 6 xi do not train (Schoenholz et al.).

Assumptions, and where they break:

- Infinitely wide layers, so each pre-activation is Gaussian over the random weights. At width n
  every measured norm fluctuates by about 1/sqrt(n) per layer, and these compound: log-norms
  wander like sqrt(depth / width) (Hanin & Nica 2018), ~0.2 decades for a 20-layer, 512-wide
  ReLU net. Narrow nets scatter around the prediction.
- Weights independent of the activations they multiply and of each other, with zero mean. True at
  step 0 for the usual random inits; false for data-dependent inits (LSUV rescales each layer by
  what it measured), for trained weights after step 0, and for non-zero-mean weights (a mean-1
  init): the theory does not apply to those and its numbers should not be shown beside them.
  Activations need not be zero-mean (sigmoid): with zero-mean weights z is still centred.
- v_l is the variance the init actually produces (a^2/3 for U[-a, a]); the caller supplies it.
- The output gradient dL/dz_L (softmax minus one-hot) is not Gaussian, but it enters every
  layer's ratio to it as the same factor, so ratios are still predicted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from winit_cli.theory.activations import Activation, get_activation
from winit_cli.theory.roots import root

# ---------------------------------------------------------------------------------------------
# Fixed point, criticality, depth scale

_Q_DIVERGED = 1e30  # a length map still rising past this diverges: q* = inf (chi is at its limit)
_Q_ZERO = 1e-300  # a length map falling below this is reported as q* = 0


def fixed_point_of(
    act: Activation, sigma_w2: float, sigma_b2: float, q0: float, tol: float, max_iter: int
) -> float:
    """`fixed_point_q` for an Activation already looked up."""
    if act.gain is not None:  # the map is affine: q -> rate q + sigma_b2
        rate = sigma_w2 * act.gain
        if math.isclose(rate, 1.0, rel_tol=1e-12):
            return q0 if sigma_b2 == 0 else math.inf  # every q is fixed / q grows linearly
        if rate < 1:
            return sigma_b2 / (1 - rate)
        return 0.0 if q0 == 0 and sigma_b2 == 0 else math.inf

    def excess(q: float) -> float:  # map(q) - q
        return sigma_w2 * act.second_moment(q) + sigma_b2 - q

    # Every map here is increasing in q (phi(x)^2 + phi(-x)^2 grows with |x|), so iterating it
    # from q0 moves monotonically to the nearest fixed point on the side it first steps to: the
    # root of map(q) - q between q0 and where the map crosses the diagonal. The same answer as
    # iterating, in tens of evaluations where iteration near the critical line needs thousands
    # (tanh at sigma_w2 = 1, sigma_b2 = 0 approaches q* = 0 like 1/(2 l)).
    first = excess(q0)
    if first == 0:
        return q0
    if first < 0:  # falling; excess(0) = sigma_w2 phi(0)^2 + sigma_b2 >= 0 stops it
        if q0 <= _Q_ZERO or excess(_Q_ZERO) <= 0:
            return 0.0  # e.g. tanh with sigma_b2 = 0 and sigma_w2 < 1
        lo, hi = _Q_ZERO, q0
    else:  # rising: double until the map falls below the diagonal, or call it divergence
        lo, hi = q0, max(2 * q0, 1.0)
        while excess(hi) > 0:
            lo, hi = hi, 2 * hi
            if hi > _Q_DIVERGED:
                return math.inf
    return root(excess, lo, hi, rtol=tol, geometric=True, max_evals=max_iter)


def fixed_point_q(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    q0: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 10_000,
    *,
    activation_param: float | None = None,
) -> float:
    """The fixed point q* = sigma_w2 E[phi(sqrt(q*) z)^2] + sigma_b2 reached from q0.

    This is where the pre-activation variance of a deep net settles. It is found to relative
    precision `tol` in at most `max_iter` evaluations of the map (roots.py); math.inf when the
    map diverges (ReLU with sigma_w2 > 2, or = 2 with sigma_b2 > 0). For ReLU with
    sigma_w2 = 2 and sigma_b2 = 0 every q is fixed and q0 is returned.
    """
    if sigma_w2 < 0 or sigma_b2 < 0 or q0 < 0:
        raise ValueError("sigma_w2, sigma_b2 and q0 must be >= 0")
    act = get_activation(activation, activation_param)
    return fixed_point_of(act, sigma_w2, sigma_b2, q0, tol, max_iter)


def _chi_star(act: Activation, sigma_w2: float, sigma_b2: float, q0: float) -> float:
    q_star = fixed_point_of(act, sigma_w2, sigma_b2, q0, tol=1e-12, max_iter=10_000)
    return sigma_w2 * act.derivative_second_moment(q_star)


def critical_sigma_w2(
    activation: str, sigma_b2: float = 0.0, *, activation_param: float | None = None
) -> float:
    """The sigma_w^2 at the edge of chaos: chi = 1 at the fixed point q* (reached from q = 1).

    ReLU: 2 (He et al. 2015); leaky ReLU: 2 / (1 + a^2); linear: 1. For these chi = sigma_w2 c
    does not depend on q, so the answer holds for any sigma_b2, even though with sigma_b2 > 0
    the variance q then grows linearly with depth instead of settling. tanh with sigma_b2 = 0:
    1; with sigma_b2 > 0 it is found by bisection on sigma_w2 (Schoenholz et al., Fig. 1).
    Raises ValueError where chi* jumps across 1 without passing through it (the fixed point
    changes branch, e.g. GELU without bias), so that there is no edge of chaos to report.
    """
    if sigma_b2 < 0:
        raise ValueError(f"sigma_b2 must be >= 0, got {sigma_b2}")
    act = get_activation(activation, activation_param)
    if act.gain is not None:
        return 1.0 / act.gain

    def excess(sigma_w2: float) -> float:
        return _chi_star(act, sigma_w2, sigma_b2, 1.0) - 1

    lo, hi = 0.0, 1.0  # chi* = 0 at sigma_w2 = 0
    while (above := excess(hi)) < 0:
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            raise ValueError(f"no edge of chaos for {activation!r} with sigma_b2 = {sigma_b2}")
    sigma_w2 = root(excess, lo, hi, rtol=1e-12, f_lo=-1.0, f_hi=above)
    if abs(_chi_star(act, sigma_w2, sigma_b2, 1.0) - 1) > 1e-6:
        raise ValueError(f"no edge of chaos for {activation!r} with sigma_b2 = {sigma_b2}")
    return sigma_w2


def depth_scale(chi: float) -> float:
    """xi = 1 / |ln chi|: gradient norms change e-fold every xi layers (inf at chi = 1).

    Schoenholz et al.: xi = -1/ln chi for chi < 1 (vanishing), 1/ln chi for chi > 1
    (exploding); nets much deeper than about 6 xi do not train.
    """
    if not chi >= 0:
        raise ValueError(f"chi must be >= 0, got {chi}")
    if abs(chi - 1) < 1e-12:  # critical up to rounding (He: 2 * 0.5 computed in floats)
        return math.inf
    if chi == 0 or math.isinf(chi):
        return 0.0
    return 1.0 / abs(math.log(chi))


# ---------------------------------------------------------------------------------------------
# Layer-by-layer prediction for a concrete network


@dataclass(frozen=True)
class LayerPrediction:
    layer: int  # 1..L
    q: float  # predicted variance of z_l
    chi: float | None  # chi_l for l < L; None for the output layer
    log10_grad_ratio: float  # predicted log10 ||dL/dz_l|| / ||dL/dz_L||


@dataclass(frozen=True)
class Prediction:
    layers: list[LayerPrediction]
    # At the fixed point of the middle layer's (sigma_w2, sigma_b2) length map, reached from q_1;
    # nan when L = 1 (no hidden layer).
    chi_fixed_point: float
    q_fixed_point: float
    depth_scale: float  # 1 / |ln chi_fixed_point|

    def log10_first_to_last_hidden(self) -> float:
        """Predicted log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| = 1/2 sum_{l=1}^{L-2} log10 chi_l.

        The vanishing/exploding summary. It leaves out the output layer, whose gradient is
        softmax's, not a hidden layer's. 0 when there are fewer than two hidden layers; -inf
        for all-zero weights (chi = 0).
        """
        # Summed from the chis, not differenced from log10_grad_ratio: -inf - -inf would be nan.
        return sum((0.5 * _log10(layer.chi) for layer in self.layers[:-2]), 0.0)

    def to_rows(self) -> list[dict]:
        """Tidy rows, one per layer (predicted_chi is None for the output layer)."""
        return [
            {
                "layer": p.layer,
                "predicted_q": p.q,
                "predicted_chi": p.chi,
                "predicted_log10_grad_ratio": p.log10_grad_ratio,
            }
            for p in self.layers
        ]


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 else -math.inf


def predict(
    activation: str,
    fan_in: Sequence[int],
    weight_var: Sequence[float],
    bias_var: Sequence[float],
    input_second_moment: float,
    *,
    activation_param: float | None = None,
) -> Prediction:
    """Predict q_l, chi_l and the backpropagated gradient norms of an MLP at initialization.

    fan_in[i], weight_var[i], bias_var[i] describe layer i + 1 (n_{l-1}, v_l, vb_l), the last one
    being the output layer; input_second_moment is m_0 = mean_i E[x_i^2] of the real input.
    q is iterated layer by layer from the input rather than taken at the fixed point, because
    shallow nets never reach it. Example (10-layer ReLU MLP, He init, standardized input)::

        predict("relu", [784] + [512] * 9, [2 / 784] + [2 / 512] * 9, [0.0] * 10, 1.0)
    """
    depth = len(fan_in)
    if depth == 0 or len(weight_var) != depth or len(bias_var) != depth:
        raise ValueError(
            "fan_in, weight_var and bias_var need one entry per layer, got lengths "
            f"{len(fan_in)}, {len(weight_var)}, {len(bias_var)}"
        )
    if min(fan_in) < 1 or min(weight_var) < 0 or min(bias_var) < 0 or not input_second_moment >= 0:
        raise ValueError("fan-ins must be >= 1 and variances >= 0")
    act = get_activation(activation, activation_param)
    sigma_w2 = [n * v for n, v in zip(fan_in, weight_var, strict=True)]

    q = [sigma_w2[0] * input_second_moment + bias_var[0]]
    for i in range(1, depth):
        q.append(sigma_w2[i] * act.second_moment(q[-1]) + bias_var[i])
    # chi of layer i + 1 uses the next layer's weights: they carry the gradient back to it.
    chi = [sigma_w2[i + 1] * act.derivative_second_moment(q[i]) for i in range(depth - 1)]

    log_ratio = [0.0] * depth
    for i in reversed(range(depth - 1)):
        log_ratio[i] = log_ratio[i + 1] + 0.5 * _log10(chi[i])
    layers = [
        LayerPrediction(i + 1, q[i], chi[i] if i < depth - 1 else None, log_ratio[i])
        for i in range(depth)
    ]

    if depth == 1:  # no hidden layer, no activation: nothing propagates
        return Prediction(layers, math.nan, math.nan, math.nan)
    # Layers 2..L multiply phi(z); take the middle one's (sigma_w2, sigma_b2) as "the" network's.
    mid = depth // 2
    q_star = fixed_point_of(act, sigma_w2[mid], bias_var[mid], q[0], tol=1e-10, max_iter=10_000)
    chi_star = sigma_w2[mid] * act.derivative_second_moment(q_star)
    return Prediction(layers, chi_star, q_star, depth_scale(chi_star))
