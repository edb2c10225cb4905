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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ArrayFn = Callable[[np.ndarray], np.ndarray]

# ---------------------------------------------------------------------------------------------
# Gaussian expectations
#
# Gauss-Hermite quadrature is the textbook choice, but it fails here: with 201 points it is off
# by 9% for E[selu'^2] at q = 1 (selu' jumps at 0) and by 67% for E[tanh'^2] at q = 100 (tanh'
# is a spike much narrower than the node spacing), and init sweeps reach q = 1e4 easily. So we
# fold the integral onto z > 0, where every activation here is smooth, and use the trapezoid
# rule in u = ln z. The integrand is analytic in the strip |Im u| < pi/4 (the Gaussian sets it),
# so the error falls like exp(-pi^2 / (2 h)) (Trefethen & Weideman 2014, "The exponentially
# convergent trapezoidal rule"; measured: 2e-11 at h = 0.2), and nodes spaced evenly in ln z
# resolve phi's features at |x| ~ 1, i.e. z ~ 1/sqrt(q), whatever q is.

_STEP = 0.05  # spacing in ln z: discretization error e^-99, so rounding (~1e-13) dominates
_LN_Z_TOP = 3.0  # z <= e^3 ~ 20; the normal density there is 1e-88
_LN_Z_DEPTH = 37.0  # nodes reach e^-37 ~ 1e-16 below min(1, 1/sqrt(q)): the mass left out
_X_TINY = 1e-300  # where f's one-sided limits at 0 are read


def gauss_expect(f: ArrayFn, q: float) -> float:
    """E[f(sqrt(q) z)] for z ~ N(0, 1).

    Computed as  integral_0^inf [f(sqrt(q) z) + f(-sqrt(q) z)] pdf(z) dz  by the trapezoid rule
    in ln z, exact to about 1e-13 relative for any q in [0, 1e300] when f is smooth on each side
    of 0 (a kink or a jump at 0, as in the ReLU family, costs nothing). `f` maps a numpy array
    elementwise. q = 0 and q = inf give the limits, (f(0+) + f(0-)) / 2 and (f(+inf) + f(-inf)) / 2,
    so that E[relu'^2] is 1/2 for every q.
    """
    if not q >= 0:  # also catches nan
        raise ValueError(f"variance q must be >= 0, got {q}")
    with np.errstate(over="ignore", invalid="ignore"):
        if q == 0 or math.isinf(q):
            x = _X_TINY if q == 0 else math.inf
            ends = f(np.array([x, -x]))
            return float(0.5 * (ends[0] + ends[1]))
        s = math.sqrt(q)
        ln_z = np.arange(-_LN_Z_DEPTH - max(0.0, math.log(s)), _LN_Z_TOP, _STEP)
        z = np.exp(ln_z)
        weight = _STEP * z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # dz = z du
        return float(np.sum(weight * (f(s * z) + f(-s * z))))


# ---------------------------------------------------------------------------------------------
# Activations: phi, phi', and for the positively homogeneous ones (ReLU, leaky ReLU, linear) the
# constant c with E[phi(sqrt(q) z)^2] = c q and E[phi'^2] = c, used in closed form.


@dataclass(frozen=True)
class _Activation:
    phi: ArrayFn
    dphi: ArrayFn
    gain: float | None = None  # c above, or None when expectations need quadrature


_REGISTRY: dict[str, Callable[[float | None], _Activation]] = {}


def _register(name: str):
    def add(factory: Callable[[float | None], _Activation]):
        _REGISTRY[name] = factory
        return factory

    return add


def _no_param(name: str, param: float | None) -> None:
    if param is not None:
        raise ValueError(f"activation {name!r} takes no parameter, got {param}")


def _step(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(float)


@_register("relu")
def _relu(param: float | None) -> _Activation:
    _no_param("relu", param)
    return _Activation(lambda x: np.maximum(x, 0.0), _step, gain=0.5)


@_register("leaky_relu")
def _leaky_relu(param: float | None) -> _Activation:
    a = 0.01 if param is None else param  # torch's default negative_slope
    return _Activation(
        lambda x: np.where(x > 0, x, a * x),
        lambda x: np.where(x > 0, 1.0, a),
        gain=(1 + a * a) / 2,
    )


@_register("tanh")
def _tanh(param: float | None) -> _Activation:
    _no_param("tanh", param)
    return _Activation(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2)


def _sigmoid_fn(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow in e^-x


@_register("sigmoid")
def _sigmoid(param: float | None) -> _Activation:
    _no_param("sigmoid", param)
    return _Activation(_sigmoid_fn, lambda x: _sigmoid_fn(x) * _sigmoid_fn(-x))


def _elu_like(alpha: float, scale: float) -> _Activation:
    # expm1/exp of min(x, 0): the unused branch of np.where must not overflow for large x.
    return _Activation(
        lambda x: scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
        lambda x: scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0))),
    )


@_register("elu")
def _elu(param: float | None) -> _Activation:
    return _elu_like(alpha=1.0 if param is None else param, scale=1.0)


# torch.nn.SELU's constants (Klambauer et al. 2017, "Self-Normalizing Neural Networks").
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@_register("selu")
def _selu(param: float | None) -> _Activation:
    _no_param("selu", param)
    return _elu_like(alpha=SELU_ALPHA, scale=SELU_SCALE)


_erf = np.frompyfunc(math.erf, 1, 1)  # numpy has no erf and scipy is not a dependency


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(x / math.sqrt(2)).astype(float))


def _gelu_grad(x: np.ndarray) -> np.ndarray:
    # Phi(x) + x pdf(x); x pdf(x) -> 0 at +-inf, where numpy would give inf * 0 = nan.
    x_pdf = np.where(np.isinf(x), 0.0, x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
    return _normal_cdf(x) + x_pdf


@_register("gelu")
def _gelu(param: float | None) -> _Activation:
    _no_param("gelu", param)
    return _Activation(lambda x: x * _normal_cdf(x), _gelu_grad)  # exact form, torch's default


@_register("linear")
def _linear(param: float | None) -> _Activation:
    _no_param("linear", param)
    return _Activation(lambda x: x, np.ones_like, gain=1.0)


ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)


def _get(activation: str, param: float | None) -> _Activation:
    if activation not in _REGISTRY:
        raise ValueError(
            f"unknown activation {activation!r}; known: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[activation](param)


def activation_functions(
    activation: str, *, activation_param: float | None = None
) -> tuple[ArrayFn, ArrayFn]:
    """(phi, phi') as elementwise numpy functions, for expectations this module does not offer
    (batch statistics under BatchNorm, bivariate correlation maps)."""
    act = _get(activation, activation_param)
    return act.phi, act.dphi


def _second_moment(act: _Activation, q: float) -> float:
    if act.gain is not None:
        return act.gain * q
    return gauss_expect(lambda x: act.phi(x) ** 2, q)


def _derivative_second_moment(act: _Activation, q: float) -> float:
    if act.gain is not None:
        return act.gain
    return gauss_expect(lambda x: act.dphi(x) ** 2, q)


def second_moment(activation: str, q: float, *, activation_param: float | None = None) -> float:
    """E[phi(sqrt(q) z)^2]: ReLU q/2, leaky ReLU (1 + a^2) q/2, linear q; else quadrature."""
    return _second_moment(_get(activation, activation_param), q)


def derivative_second_moment(
    activation: str, q: float, *, activation_param: float | None = None
) -> float:
    """E[phi'(sqrt(q) z)^2]: ReLU 1/2, leaky ReLU (1 + a^2)/2, linear 1; else quadrature."""
    return _derivative_second_moment(_get(activation, activation_param), q)


# ---------------------------------------------------------------------------------------------
# Fixed point, criticality, depth scale

_Q_DIVERGED = 1e30  # a length map still rising past this diverges: q* = inf (chi is at its limit)
_Q_ZERO = 1e-300  # a length map falling below this is reported as q* = 0


def _fixed_point(
    act: _Activation, sigma_w2: float, sigma_b2: float, q0: float, tol: float, max_iter: int
) -> float:
    if act.gain is not None:  # the map is affine: q -> rate q + sigma_b2
        rate = sigma_w2 * act.gain
        if math.isclose(rate, 1.0, rel_tol=1e-12):
            return q0 if sigma_b2 == 0 else math.inf  # every q is fixed / q grows linearly
        if rate < 1:
            return sigma_b2 / (1 - rate)
        return 0.0 if q0 == 0 and sigma_b2 == 0 else math.inf

    def excess(q: float) -> float:  # map(q) - q
        return sigma_w2 * _second_moment(act, q) + sigma_b2 - q

    # Every map here is increasing in q (phi(x)^2 + phi(-x)^2 grows with |x|), so iterating it
    # from q0 moves monotonically to the nearest fixed point on the side it first steps to. We
    # find that point by bisection: the same answer as iterating, in ~50 evaluations where
    # iteration near the critical line needs thousands (tanh at sigma_w2 = 1, sigma_b2 = 0
    # approaches q* = 0 like 1/(2 l)).
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
    for _ in range(max_iter):
        if hi - lo <= tol * hi:
            break
        # Split geometrically while the bracket spans decades (q* may be 1e-12), then linearly.
        mid = math.sqrt(lo * hi) if lo > 0 and hi > 4 * lo else 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


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
    precision `tol` in at most `max_iter` bisection steps; math.inf when the map diverges (ReLU
    with sigma_w2 > 2, or = 2 with sigma_b2 > 0). For ReLU with sigma_w2 = 2 and sigma_b2 = 0
    every q is fixed and q0 is returned.
    """
    if sigma_w2 < 0 or sigma_b2 < 0 or q0 < 0:
        raise ValueError("sigma_w2, sigma_b2 and q0 must be >= 0")
    act = _get(activation, activation_param)
    return _fixed_point(act, sigma_w2, sigma_b2, q0, tol, max_iter)


def _chi_star(act: _Activation, sigma_w2: float, sigma_b2: float, q0: float) -> float:
    q_star = _fixed_point(act, sigma_w2, sigma_b2, q0, tol=1e-12, max_iter=10_000)
    return sigma_w2 * _derivative_second_moment(act, q_star)


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
    act = _get(activation, activation_param)
    if act.gain is not None:
        return 1.0 / act.gain

    lo, hi = 0.0, 1.0  # chi* = 0 at sigma_w2 = 0
    while _chi_star(act, hi, sigma_b2, 1.0) < 1:
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            raise ValueError(f"no edge of chaos for {activation!r} with sigma_b2 = {sigma_b2}")
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        if _chi_star(act, mid, sigma_b2, 1.0) < 1:
            lo = mid
        else:
            hi = mid
    sigma_w2 = 0.5 * (lo + hi)
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
    act = _get(activation, activation_param)
    sigma_w2 = [n * v for n, v in zip(fan_in, weight_var, strict=True)]

    q = [sigma_w2[0] * input_second_moment + bias_var[0]]
    for i in range(1, depth):
        q.append(sigma_w2[i] * _second_moment(act, q[-1]) + bias_var[i])
    # chi of layer i + 1 uses the next layer's weights: they carry the gradient back to it.
    chi = [sigma_w2[i + 1] * _derivative_second_moment(act, q[i]) for i in range(depth - 1)]

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
    q_star = _fixed_point(act, sigma_w2[mid], bias_var[mid], q[0], tol=1e-10, max_iter=10_000)
    chi_star = sigma_w2[mid] * _derivative_second_moment(act, q_star)
    return Prediction(layers, chi_star, q_star, depth_scale(chi_star))


# ---------------------------------------------------------------------------------------------
# Correlations: the c-map and the correlation depth scale (Schoenholz et al. 2017, Sec. 3)
#
# Two inputs whose pre-activations at layer l have variance q* and correlation c_l leave layer
# l + 1 with correlation
#     c_{l+1} = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q*,  (u1, u2) ~ N(0, q* [[1, c], [c, 1]])
# whose slope is chi_c = sigma_w2 E[phi'(u1) phi'(u2)] (Price's theorem), equal to chi_1 at c = 1.
# c = 1 is always fixed; it attracts when chi_1 < 1 (ordered phase), otherwise correlations settle
# at a stable c* < 1 (chaotic phase). Near c*, |c_l - c*| ~ exp(-l / xi_c), xi_c = -1 / ln chi_c.
#
# E[f(u1) g(u2)] is a 2-D integral with kinks or jumps on the lines u1 = 0 and u2 = 0 (ReLU, its
# derivative). In polar coordinates of the whitened pair, z = r (cos t, sin t), the two lines are
# rays: u1 = s r cos t and u2 = s r cos(t - a), a = arccos c, s = sqrt(q). Splitting t at the four
# rays leaves, on each arc, an integrand smooth in t (Gauss-Legendre, exponentially convergent)
# and, for each t, smooth in ln r (the trapezoid rule of gauss_expect above, same strip argument).
# Measured against closed forms (ReLU's arc-cosine kernel, erf's arcsine kernel and its
# derivative's, linear; tests/test_correlation.py), c in [-1, 1]: ~2e-14 relative for q in
# [1e-6, 10]; 3e-10 at q = 100, where phi' is a spike narrower than the node spacing near a ray
# (32 nodes per arc: 4e-9 at q = 10). Phase diagrams need q* of a few at most.

_ANGLE_NODES = 64  # Gauss-Legendre nodes per arc: see the accuracy note above
_R_STEP = 0.1  # spacing in ln r: trapezoid error ~ exp(-pi^2 / (2 * 0.1)) ~ 1e-21
_LN_R_DEPTH = 18.5  # the mass at r < e^-18.5 is r^2 / 2 ~ 5e-17


def gauss_expect_2d(f: ArrayFn, g: ArrayFn, q: float, c: float) -> float:
    """E[f(u1) g(u2)] for centred jointly Gaussian u1, u2 with variance q and correlation c.

    Needs 0 < q < inf and -1 <= c <= 1; f, g map numpy arrays elementwise and should be smooth
    on each side of 0 (a kink or jump at 0 costs nothing). Accurate to ~1e-13 relative for
    q <= 10 (see the note above); about 2 ms.
    """
    if not (0 < q < math.inf) or not -1 <= c <= 1:
        raise ValueError(f"need 0 < q < inf and -1 <= c <= 1, got q = {q}, c = {c}")
    s, a = math.sqrt(q), math.acos(c)
    nodes, weights = np.polynomial.legendre.leggauss(_ANGLE_NODES)
    rays = [-0.5 * math.pi, a - 0.5 * math.pi, 0.5 * math.pi, a + 0.5 * math.pi, 1.5 * math.pi]
    arcs = list(zip(rays[:-1], rays[1:], strict=True))  # cos t, cos(t - a) keep their signs
    t = np.concatenate([0.5 * (hi - lo) * nodes + 0.5 * (hi + lo) for lo, hi in arcs])
    w_t = np.concatenate([0.5 * (hi - lo) * weights for lo, hi in arcs])
    ln_r = np.arange(-_LN_R_DEPTH - max(0.0, math.log(s)), _LN_Z_TOP, _R_STEP)
    r = np.exp(ln_r)
    w_r = _R_STEP * r * r * np.exp(-0.5 * r * r)  # r dr (polar) e^{-r^2/2}, dr = r d(ln r)
    x = s * r[None, :]  # [1, n_r]
    with np.errstate(over="ignore", invalid="ignore"):
        values = f(x * np.cos(t)[:, None]) * g(x * np.cos(t - a)[:, None])  # [n_t, n_r]
    return float(w_t @ values @ w_r / (2 * math.pi))


@dataclass(frozen=True)
class CorrelationFixedPoint:
    q_star: float  # the length map's fixed point (from q = 1)
    c_star: float  # the attracting fixed point of the c-map: 1 unless chaotic
    chi_1: float  # sigma_w2 E[phi'(u)^2] at q*: the gradient factor per layer
    chi_c: float  # slope of the c-map at c*
    depth_scale: float  # xi_c = -1 / ln chi_c; inf on the critical line

    @property
    def phase(self) -> str:
        if self.depth_scale == math.inf:
            return "critical"
        return "ordered" if self.chi_1 < 1 else "chaotic"


def _correlation_excess(act: _Activation, sigma_w2: float, sigma_b2: float, q: float, c: float):
    return (sigma_w2 * gauss_expect_2d(act.phi, act.phi, q, c) + sigma_b2) / q - c


def _stable_correlation(act: _Activation, sigma_w2: float, sigma_b2: float, q: float) -> float:
    # The c-map is increasing (its slope sigma_w2 E[phi' phi'] >= 0 for monotone phi), so
    # iterating it from c = -1 climbs to its smallest fixed point, the first crossing of
    # map(c) - c from + to -. We scan for that crossing, denser toward 1 where c* sits near the
    # critical line, then refine by regula falsi (Illinois variant: ~10 evaluations, not the
    # ~45 of bisection). No crossing before 1 - 1e-9: c* is 1 to that precision.
    def excess(c: float) -> float:
        return _correlation_excess(act, sigma_w2, sigma_b2, q, c)

    grid = [-1.0 + 0.1 * k for k in range(20)] + [1.0 - 10.0**-k for k in range(2, 10)]
    lo, f_lo = grid[0], excess(grid[0])
    for c in grid[1:]:
        f_c = excess(c)
        if f_c < 0:
            hi, f_hi = c, f_c
            break
        lo, f_lo = c, f_c
    else:
        return 1.0
    side = 0
    for _ in range(100):
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if hi - lo <= 1e-13 or not lo < mid < hi:
            break
        f_mid = excess(mid)
        if f_mid < 0:
            hi, f_hi = mid, f_mid
            f_lo, side = (0.5 * f_lo if side == -1 else f_lo), -1
        elif f_mid > 0:
            lo, f_lo = mid, f_mid
            f_hi, side = (0.5 * f_hi if side == 1 else f_hi), 1
        else:
            return mid
    return 0.5 * (lo + hi) if hi - lo <= 1e-13 else mid


def correlation_fixed_point(
    activation: str, sigma_w2: float, sigma_b2: float, *, activation_param: float | None = None
) -> CorrelationFixedPoint:
    """q*, c*, chi_1, chi_c and xi_c = -1/ln chi_c of Schoenholz et al. 2017 (Eqs. 4-9).

    Ordered phase (chi_1 < 1): c* = 1 and chi_c = chi_1, so xi_c is the gradient depth scale
    1/|ln chi_1|. That includes q* = 0 (tanh without bias), where the paper's formula still
    gives chi_1 = sigma_w2 although the net then turns linear and correlations freeze instead.
    chi_1 = 1: xi_c = inf. Chaotic phase: c* < 1 is found from the c-map at q* and
    chi_c = sigma_w2 E[phi'(u1) phi'(u2)] there (tanh without bias: c* = 0 by symmetry).
    Raises ValueError in the chaotic phase of an unbounded activation (ReLU with sigma_w2 > 2):
    q* is infinite and the c-map has no fixed point to linearise about.
    """
    if sigma_w2 < 0 or sigma_b2 < 0:
        raise ValueError("sigma_w2 and sigma_b2 must be >= 0")
    act = _get(activation, activation_param)
    q_star = _fixed_point(act, sigma_w2, sigma_b2, 1.0, tol=1e-12, max_iter=10_000)
    chi_1 = sigma_w2 * _derivative_second_moment(act, q_star)
    if chi_1 <= 1 + 1e-12:
        return CorrelationFixedPoint(q_star, 1.0, chi_1, chi_1, depth_scale(chi_1))
    if not 0 < q_star < math.inf:
        raise ValueError(
            f"{activation!r} with sigma_w2 = {sigma_w2}, sigma_b2 = {sigma_b2} is chaotic with "
            f"q* = {q_star}: the correlation map has no fixed point, so there is no xi_c"
        )
    c_star = _stable_correlation(act, sigma_w2, sigma_b2, q_star)
    chi_c = chi_1 if c_star == 1 else sigma_w2 * gauss_expect_2d(act.dphi, act.dphi, q_star, c_star)
    xi = math.inf if chi_c >= 1 else -1.0 / math.log(chi_c)
    return CorrelationFixedPoint(q_star, c_star, chi_1, chi_c, xi)


def correlation_map(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    c: float,
    *,
    activation_param: float | None = None,
) -> float:
    """One layer of the c-map at the length map's fixed point q* (needs 0 < q* < inf).

    Clipped to [-1, 1]: near c = 1 rounding can step past it, and iterating must not fail.
    """
    act = _get(activation, activation_param)
    q_star = _fixed_point(act, sigma_w2, sigma_b2, 1.0, tol=1e-12, max_iter=10_000)
    return min(1.0, max(-1.0, c + _correlation_excess(act, sigma_w2, sigma_b2, q_star, c)))


def correlation_depth_scale(
    activation: str, sigma_w2: float, sigma_b2: float, *, activation_param: float | None = None
) -> float:
    """xi_c: nets much deeper than ~6 xi_c do not train (Schoenholz et al. 2017, Fig. 5)."""
    point = correlation_fixed_point(
        activation, sigma_w2, sigma_b2, activation_param=activation_param
    )
    return point.depth_scale


def critical_line(
    activation: str, sigma_b2: Sequence[float], *, activation_param: float | None = None
) -> np.ndarray:
    """The ordered/chaotic boundary sigma_w2(sigma_b2) (chi_1 = 1) for a phase diagram.

    One critical_sigma_w2 per entry of sigma_b2; nan where there is no edge of chaos.
    """
    line = []
    for b2 in sigma_b2:
        try:
            line.append(critical_sigma_w2(activation, b2, activation_param=activation_param))
        except ValueError:
            line.append(math.nan)
    return np.array(line)
