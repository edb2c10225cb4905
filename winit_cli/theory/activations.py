"""The activations mean-field theory knows: phi and phi' as elementwise numpy functions, and for
the positively homogeneous ones (ReLU, leaky ReLU, linear) the closed forms of their Gaussian
moments; the others go through gaussian.py's quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from winit_cli.theory.gaussian import ArrayFn, gauss_expect

# ---------------------------------------------------------------------------------------------
# Activations: phi, phi', and for the positively homogeneous ones (ReLU, leaky ReLU, linear) the
# constant c with E[phi(sqrt(q) z)^2] = c q and E[phi'^2] = c, used in closed form.


@dataclass(frozen=True)
class Activation:
    phi: ArrayFn
    dphi: ArrayFn
    gain: float | None = None  # c above, or None when expectations need quadrature

    def second_moment(self, q: float) -> float:
        """E[phi(sqrt(q) z)^2]."""
        if self.gain is not None:
            return self.gain * q
        return gauss_expect(lambda x: self.phi(x) ** 2, q)

    def derivative_second_moment(self, q: float) -> float:
        """E[phi'(sqrt(q) z)^2]."""
        if self.gain is not None:
            return self.gain
        return gauss_expect(lambda x: self.dphi(x) ** 2, q)


_REGISTRY: dict[str, Callable[[float | None], Activation]] = {}


def _register(name: str):
    def add(factory: Callable[[float | None], Activation]):
        _REGISTRY[name] = factory
        return factory

    return add


def _no_param(name: str, param: float | None) -> None:
    if param is not None:
        raise ValueError(f"activation {name!r} takes no parameter, got {param}")


def _step(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(float)


@_register("relu")
def _relu(param: float | None) -> Activation:
    _no_param("relu", param)
    return Activation(lambda x: np.maximum(x, 0.0), _step, gain=0.5)


@_register("leaky_relu")
def _leaky_relu(param: float | None) -> Activation:
    a = 0.01 if param is None else param  # torch's default negative_slope
    return Activation(
        lambda x: np.where(x > 0, x, a * x),
        lambda x: np.where(x > 0, 1.0, a),
        gain=(1 + a * a) / 2,
    )


@_register("tanh")
def _tanh(param: float | None) -> Activation:
    _no_param("tanh", param)
    return Activation(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2)


def _sigmoid_fn(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow in e^-x


@_register("sigmoid")
def _sigmoid(param: float | None) -> Activation:
    _no_param("sigmoid", param)
    return Activation(_sigmoid_fn, lambda x: _sigmoid_fn(x) * _sigmoid_fn(-x))


def _elu_like(alpha: float, scale: float) -> Activation:
    # expm1/exp of min(x, 0): the unused branch of np.where must not overflow for large x.
    return Activation(
        lambda x: scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
        lambda x: scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0))),
    )


@_register("elu")
def _elu(param: float | None) -> Activation:
    return _elu_like(alpha=1.0 if param is None else param, scale=1.0)


# torch.nn.SELU's constants (Klambauer et al. 2017, "Self-Normalizing Neural Networks").
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@_register("selu")
def _selu(param: float | None) -> Activation:
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
def _gelu(param: float | None) -> Activation:
    _no_param("gelu", param)
    return Activation(lambda x: x * _normal_cdf(x), _gelu_grad)  # exact form, torch's default


@_register("linear")
def _linear(param: float | None) -> Activation:
    _no_param("linear", param)
    return Activation(lambda x: x, np.ones_like, gain=1.0)


ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)


def get_activation(activation: str, param: float | None = None) -> Activation:
    """The activation registered as `activation`, with its parameter (leaky ReLU's slope)."""
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
    act = get_activation(activation, activation_param)
    return act.phi, act.dphi


def second_moment(activation: str, q: float, *, activation_param: float | None = None) -> float:
    """E[phi(sqrt(q) z)^2]: ReLU q/2, leaky ReLU (1 + a^2) q/2, linear q; else quadrature."""
    return get_activation(activation, activation_param).second_moment(q)


def derivative_second_moment(
    activation: str, q: float, *, activation_param: float | None = None
) -> float:
    """E[phi'(sqrt(q) z)^2]: ReLU 1/2, leaky ReLU (1 + a^2)/2, linear 1; else quadrature."""
    return get_activation(activation, activation_param).derivative_second_moment(q)
