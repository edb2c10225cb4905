"""Init schemes: a registry of named functions that fill a Linear layer's weight and bias in place.

The schemes themselves live in classic.py, scaling.py, structured.py and residual.py, one
function each, registered in `SCHEMES` (a `winit_cli.registry.Registry`) with `register`; its
keyword parameters (with defaults) are what a config's `init.params` may set; `variance` gives
the per-element weight and bias variances it produces, which the mean-field theory uses.

    @register("he_normal", variance=..., formula="N(0, gain^2 / fan_mode)")
    def he_normal(weight, bias, *, activation, generator, mode="fan_in", gain=None, bias_value=0.0)

A data-dependent scheme (LSUV) also registers `calibrate`, which training runs through
`apply.calibrate_member` on a batch of training inputs once `apply.initialize` has filled every
layer of the member; see `Scheme.calibrate`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from winit_cli.errors import ConfigError, shorten
from winit_cli.inits.aliases import ALIASES, canonical, suggest
from winit_cli.registry import Registry

# Arguments every scheme receives from the model builder; everything else is a user parameter.
_SUPPLIED = ("weight", "bias", "activation", "generator")
# The parameters users reach for first; `winit schemes` says which ones a scheme does not take.
COMMON_PARAMS = ("gain", "mode", "std", "mean", "bias_value")

# calibrate(model, member, data, *, activation, **resolved_params): model a models.StackedModel,
# data the [n, input_size] inputs.
Calibrate = Callable[..., None]
# layer_scale(role, blocks, branch_layers, **resolved_params) -> the factor on a Linear layer's
# filled weight and bias, by its role (models.LinearView.role); branch_init(**resolved_params) ->
# the initial branch multiplier alpha. For schemes defined on residual branches (Fixup, SkipInit).
LayerScale = Callable[..., float]
BranchInit = Callable[..., float]


@dataclass(frozen=True)
class Scheme:
    name: str
    fill: Callable[..., None]
    variance: Callable[..., tuple[float, float]]  # (fan_in, fan_out, activation, **params)
    defaults: dict[str, Any]
    zero_mean: bool  # with its defaults; mean-field theory assumes zero-mean weights
    formula: str = ""  # one line for `winit schemes`; the docstring has the full story
    # Data-dependent schemes only, run by `calibrate_member` once `initialize` has filled every
    # layer of member `member`, with `data` the training split's inputs [n, input_size] (already
    # a seeded random permutation, see runner.group.SPLIT_SEED). It may change member `member`'s
    # weights and biases and nothing else. `variance` then describes what `fill` drew, not the
    # calibrated weights: measure those.
    calibrate: Calibrate | None = None
    # Residual schemes only, applied by `apply.initialize` after `fill` (and mirrored by the
    # theory): a factor per layer role, and alpha's initial value (else model.branch_scale).
    layer_scale: LayerScale | None = None
    branch_init: BranchInit | None = None

    @property
    def needs_branches(self) -> bool:
        """Whether the scheme is defined on residual branches (a plain MLP has none)."""
        return self.layer_scale is not None or self.branch_init is not None

    @property
    def summary(self) -> str:
        return inspect.getdoc(self.fill).splitlines()[0]

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fill)

    @property
    def data_dependent(self) -> bool:
        """Whether the weights depend on data (LSUV): `variance` is then not what training sees."""
        return self.calibrate is not None

    @property
    def not_taken(self) -> tuple[str, ...]:
        """The common parameters (COMMON_PARAMS) this scheme does not accept."""
        return tuple(p for p in COMMON_PARAMS if p not in self.defaults)

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **params}

    def weight_mean(self, params: dict[str, Any] | None = None) -> float:
        """The mean of the drawn weights: the `mean` parameter, else `value` (constant), else 0."""
        return _weight_mean(self.resolve(params or {}))


def _weight_mean(resolved: dict[str, Any]) -> float:
    return float(resolved.get("mean", resolved.get("value", 0.0)))


SCHEMES: Registry[Scheme] = Registry("scheme")


def register(name: str, *, variance: Callable[..., tuple[float, float]], formula: str,
             calibrate: Calibrate | None = None, layer_scale: LayerScale | None = None,
             branch_init: BranchInit | None = None) -> Callable:
    """Add a scheme; its user parameters are the function's keyword parameters with defaults."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(fn)
        own = {
            p.name: p.default
            for p in signature.parameters.values()
            if p.name not in _SUPPLIED and p.default is not inspect.Parameter.empty
        }
        SCHEMES.add(name, Scheme(name=name, fill=fn, variance=variance, defaults=own,
                                 zero_mean=_weight_mean(own) == 0, formula=formula,
                                 calibrate=calibrate, layer_scale=layer_scale,
                                 branch_init=branch_init))
        return fn

    return decorate


def get_scheme(name: str, where: str = "init.scheme") -> Scheme:
    """The registered scheme `name` names, directly or through an alias (inits/aliases.py:
    `kaiming_normal` is he_normal); an unknown name fails with a suggestion by meaning."""
    resolved = canonical(name, SCHEMES)
    if resolved is None:
        raise SCHEMES.unknown(name, where, suggest(name, SCHEMES),
                              also=f"aliases: {', '.join(sorted(ALIASES))}")
    return SCHEMES[resolved]


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
        integer = isinstance(default, int) and not isinstance(default, bool)
        if default is None and value is None:
            continue  # `gain: null` asks for the default explicitly: from the activation
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"init.params.{key}: expected true or false (got {shorten(value)})")
        if numeric and not is_number:
            raise ConfigError(f"init.params.{key}: expected a number (got {shorten(value)})")
        if is_number and not abs(value) <= MAX_PARAM:  # False for NaN too
            raise ConfigError(f"init.params.{key}: must be a finite number within "
                              f"±{MAX_PARAM:g} (got {shorten(value)})")
        if integer and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"init.params.{key}: expected an integer (got {shorten(value)})")
        if isinstance(default, str) and value not in _CHOICES.get(key, (value,)):
            raise ConfigError(
                f"init.params.{key}: {shorten(value)} is not one of {', '.join(_CHOICES[key])}"
            )
        if key in _LOWER_BOUND:
            bound, inclusive = _LOWER_BOUND[key]
            if value < bound or (not inclusive and value == bound):
                raise ConfigError(
                    f"init.params.{key}: must be {'>=' if inclusive else '>'} {bound} "
                    f"(got {value!r})"
                )
    # A scheme may not exist for this activation (`critical` where theory finds no edge of
    # chaos): its variance says so with a ConfigError, here rather than mid-training.
    scheme.variance(1, 1, activation, **scheme.resolve(params))


_NUMERIC_OR_NONE = ("gain", "std")
# Weights are float32 (max 3.4e38): a parameter beyond this overflows them within a few layers.
MAX_PARAM = 1e6
_CHOICES = {"mode": ("fan_in", "fan_out")}
# key -> (bound, inclusive)
_LOWER_BOUND = {"gain": (0, False), "std": (0, True), "l2": (0, True), "sigma_b2": (0, True),
                "sigma_w2": (0, True), "tol": (0, False), "max_iter": (1, True),
                "batch_size": (1, True)}


# torch.nn.init.calculate_gain's values, written out so that the registry (config validation,
# `winit advise`) is read without importing torch; tests/unit/inits check every entry against
# calculate_gain itself. ELU and GELU have no entry there; they behave like ReLU on the positive
# half and are given its gain, sqrt(2), as is common practice.
GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0),
         "leaky_relu": math.sqrt(2.0 / (1 + 0.01 ** 2)), "selu": 3.0 / 4, "elu": math.sqrt(2.0),
         "gelu": math.sqrt(2.0)}


def activation_gain(activation: str) -> float:
    """The gain `torch.nn.init.calculate_gain` recommends for an activation (leaky_relu: torch's
    default slope 0.01), sqrt(2) for ELU and GELU."""
    if activation not in GAINS:
        raise ValueError(f"no gain for activation {activation!r}")
    return GAINS[activation]


def weight_decay(scheme: str, params: dict[str, Any]) -> float:
    """The L2 coefficient a scheme adds to training (only `normal_l2` has one)."""
    return float(get_scheme(scheme).resolve(params).get("l2", 0.0))

