"""Init schemes: a registry of named functions that fill a Linear layer's weight and bias in place.

Each scheme is one function, in the style of `torch/nn/init.py`: its docstring names the paper and
gives the formula; it reuses `torch.nn.init` where that already has the scheme. Its keyword
parameters (with defaults) are what a config's `init.params` may set; `variance` gives the
per-element weight and bias variances it produces, which the mean-field theory uses.

    @register("he_normal", variance=...)
    def he_normal(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0)
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import ConfigError

# Arguments every scheme receives from the model builder; everything else is a user parameter.
_SUPPLIED = ("weight", "bias", "activation", "generator")


@dataclass(frozen=True)
class Scheme:
    name: str
    fill: Callable[..., None]
    variance: Callable[..., tuple[float, float]]  # (fan_in, fan_out, activation, **params)
    defaults: dict[str, Any]
    zero_mean: bool  # mean-field theory assumes zero-mean weights

    @property
    def summary(self) -> str:
        return inspect.getdoc(self.fill).splitlines()[0]

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fill)

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **params}


SCHEMES: dict[str, Scheme] = {}


def register(name: str, *, variance: Callable[..., tuple[float, float]],
             zero_mean: bool = True) -> Callable:
    """Add a scheme; its user parameters are the function's keyword parameters with defaults."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(fn)
        own = {
            p.name: p.default
            for p in signature.parameters.values()
            if p.name not in _SUPPLIED and p.default is not inspect.Parameter.empty
        }
        SCHEMES[name] = Scheme(name, fn, variance, own, zero_mean)
        return fn

    return decorate


def get_scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        close = difflib.get_close_matches(name, SCHEMES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"init.scheme: unknown scheme {name!r}; {hint}known: {', '.join(sorted(SCHEMES))}"
        )
    return SCHEMES[name]


def check_scheme(name: str, params: dict[str, Any], activation: str) -> None:
    """Validate a scheme name and its parameters against the registry (types from defaults)."""
    scheme = get_scheme(name)
    for key, value in params.items():
        if key not in scheme.defaults:
            accepted = ", ".join(sorted(scheme.defaults)) or "none"
            raise ConfigError(
                f"init.params.{key}: {name} does not take {key!r} (it takes: {accepted})"
            )
        default = scheme.defaults[key]
        numeric = isinstance(default, float) or (default is None and key in _NUMERIC_OR_NONE)
        if default is None and value is None:
            continue  # `gain: null` asks for the default explicitly: from the activation
        if numeric and not (isinstance(value, int | float) and not isinstance(value, bool)):
            raise ConfigError(f"init.params.{key}: expected a number (got {value!r})")
        if isinstance(default, str) and value not in _CHOICES.get(key, (value,)):
            raise ConfigError(
                f"init.params.{key}: {value!r} is not one of {', '.join(_CHOICES[key])}"
            )
        if key in ("std", "l2") and value < 0:
            raise ConfigError(f"init.params.{key}: must be >= 0 (got {value!r})")


_NUMERIC_OR_NONE = ("gain",)
_CHOICES = {"mode": ("fan_in", "fan_out")}


def activation_gain(activation: str) -> float:
    """The gain `torch.nn.init.calculate_gain` recommends for an activation.

    ELU and GELU have no entry there; they behave like ReLU on the positive half and are given
    its gain, sqrt(2), as is common practice.
    """
    name = {"elu": "relu", "gelu": "relu"}.get(activation, activation)
    return torch.nn.init.calculate_gain(name)


def _fans(fan_in: int, fan_out: int, mode: str) -> int:
    return fan_in if mode == "fan_in" else fan_out


def _fill_bias(bias: torch.Tensor | None, value: float) -> None:
    if bias is not None:
        torch.nn.init.constant_(bias, value)


# --- the schemes ------------------------------------------------------------------------------


def _normal_variance(fan_in, fan_out, activation, *, std, **_):
    return std**2, 0.0


@register("normal", variance=_normal_variance)
def normal(weight, bias, *, activation, generator, std=0.01, mean=0.0, bias_value=0.0):
    """Normal N(mean, std^2) with a fixed std, independent of the layer's size (default std 0.01).

    The "small random numbers" init of early deep-learning practice. Since each layer multiplies
    the backpropagated gradient's variance by fan_in * std^2 * E[phi'(z)^2], a std of 0.01 at
    width 512 shrinks it by ~20x per layer: deep nets vanish (Glorot & Bengio 2010).

    Example: ``init: {scheme: normal, params: {std: 0.01}}``
    """
    torch.nn.init.normal_(weight, mean, std, generator=generator)
    _fill_bias(bias, bias_value)


@register("mean1_normal", variance=_normal_variance, zero_mean=False)
def mean1_normal(weight, bias, *, activation, generator, std=1.0, mean=1.0, bias_value=0.0):
    """Normal N(1, std^2): every weight positive on average (the classic exploding case).

    With mean 1 each unit sums fan_in positive contributions, so activations and gradients grow by
    about fan_in per layer and overflow float32 within a few layers of width 512. Mean-field
    theory assumes zero-mean weights and does not apply.

    Example: ``init: {scheme: mean1_normal, params: {std: 1.0}}``
    """
    torch.nn.init.normal_(weight, mean, std, generator=generator)
    _fill_bias(bias, bias_value)


@register("normal_l2", variance=_normal_variance)
def normal_l2(weight, bias, *, activation, generator, std=0.01, mean=0.0, bias_value=0.0, l2=1e-3):
    """Zero-mean normal N(0, std^2) init, plus L2 regularization (weight decay `l2`) in training.

    Initialization sets where training starts; L2 regularization adds `l2 * W` to every weight
    gradient during training, pulling weights towards zero. The two are independent knobs: this
    scheme pairs the `normal` init with a penalty so the two can be compared. The recorded
    gradients are those of the data loss alone; `l2` is added to `train.weight_decay`.

    Example: ``init: {scheme: normal_l2, params: {std: 0.01, l2: 0.001}}``
    """
    torch.nn.init.normal_(weight, mean, std, generator=generator)
    _fill_bias(bias, bias_value)


def _xavier_variance(fan_in, fan_out, activation, *, gain, **_):
    return gain**2 * 2.0 / (fan_in + fan_out), 0.0


@register("xavier_uniform", variance=_xavier_variance)
def xavier_uniform(weight, bias, *, activation, generator, gain=1.0, bias_value=0.0):
    """Xavier/Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).

    Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural
    networks". Variance 2 gain^2 / (fan_in + fan_out): a compromise that keeps both forward and
    backward signals at constant variance for a linear (or tanh near 0) network. Also known as
    Glorot initialization.

    Example: ``init: {scheme: xavier_uniform}``
    """
    torch.nn.init.xavier_uniform_(weight, gain=gain, generator=generator)
    _fill_bias(bias, bias_value)


@register("xavier_normal", variance=_xavier_variance)
def xavier_normal(weight, bias, *, activation, generator, gain=1.0, bias_value=0.0):
    """Xavier/Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).

    Glorot & Bengio 2010. Same variance as `xavier_uniform`. Also known as Glorot normal.

    Example: ``init: {scheme: xavier_normal}``
    """
    torch.nn.init.xavier_normal_(weight, gain=gain, generator=generator)
    _fill_bias(bias, bias_value)


def _he_variance(fan_in, fan_out, activation, *, mode, gain, **_):
    gain = activation_gain(activation) if gain is None else gain
    return gain**2 / _fans(fan_in, fan_out, mode), 0.0


def _kaiming(fill, weight, activation, generator, mode, gain):
    if gain is None and activation in ("relu", "leaky_relu", "tanh", "sigmoid", "selu", "linear"):
        # torch.nn.init has this case exactly; leaky_relu's slope is torch's default 0.01.
        a = 0.01 if activation == "leaky_relu" else 0
        fill(weight, a=a, mode=mode, nonlinearity=activation, generator=generator)
        return
    gain = activation_gain(activation) if gain is None else gain
    std = gain / math.sqrt(_fans(*_fan_in_out(weight), mode))
    if fill is torch.nn.init.kaiming_normal_:
        torch.nn.init.normal_(weight, 0.0, std, generator=generator)
    else:
        bound = math.sqrt(3.0) * std  # U(-b, b) has variance b^2 / 3
        torch.nn.init.uniform_(weight, -bound, bound, generator=generator)


def _fan_in_out(weight: torch.Tensor) -> tuple[int, int]:
    return weight.shape[1], weight.shape[0]


@register("he_normal", variance=_he_variance)
def he_normal(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0):
    """He/Kaiming normal: N(0, std^2), std = gain / sqrt(fan_mode), gain from the activation.

    He et al. 2015, "Delving Deep into Rectifiers". For ReLU gain = sqrt(2), so each layer keeps
    the variance of the forward signal (mode fan_in) or of the backward signal (mode fan_out).
    Also known as He initialization. `gain` overrides `calculate_gain(activation)`.

    Example: ``init: {scheme: he_normal, params: {mode: fan_in}}``
    """
    _kaiming(torch.nn.init.kaiming_normal_, weight, activation, generator, mode, gain)
    _fill_bias(bias, bias_value)


@register("he_uniform", variance=_he_variance)
def he_uniform(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0):
    """He/Kaiming uniform: U(-b, b), b = gain * sqrt(3 / fan_mode), gain from the activation.

    He et al. 2015. Same variance as `he_normal`. Also known as He uniform initialization.

    Example: ``init: {scheme: he_uniform, params: {mode: fan_out}}``
    """
    _kaiming(torch.nn.init.kaiming_uniform_, weight, activation, generator, mode, gain)
    _fill_bias(bias, bias_value)


def _torch_default_variance(fan_in, fan_out, activation, **_):
    # kaiming_uniform_(a=sqrt(5)): gain^2 = 2 / (1 + 5), bound = gain * sqrt(3 / fan_in).
    # Bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    return 1.0 / (3.0 * fan_in), 1.0 / (3.0 * fan_in)


@register("torch_default", variance=_torch_default_variance)
def torch_default(weight, bias, *, activation, generator):
    """PyTorch's `nn.Linear` default: W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same for the bias.

    `kaiming_uniform_(a=sqrt(5))`, i.e. variance 1 / (3 fan_in) whatever the activation: a third of
    what a linear network needs and a sixth of He's for ReLU, so deep nets vanish.

    Example: ``init: {scheme: torch_default}``
    """
    torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        bound = 1.0 / math.sqrt(weight.shape[1])
        torch.nn.init.uniform_(bias, -bound, bound, generator=generator)


def weight_decay(scheme: str, params: dict[str, Any]) -> float:
    """The L2 coefficient a scheme adds to training (only `normal_l2` has one)."""
    return float(get_scheme(scheme).resolve(params).get("l2", 0.0))
