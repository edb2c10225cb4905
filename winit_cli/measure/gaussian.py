"""Gaussian expectations of the activations winit knows: the one-dimensional integrals
E[f(sqrt(q) z)] that mean-field theory is built from (theory.py), and the activation registry
with the closed forms where they exist (ReLU, leaky ReLU, linear)."""

from __future__ import annotations

import math
from collections.abc import Callable
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
