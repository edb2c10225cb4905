"""Applying a scheme to a model: fill a member's Linear layers, then calibrate it if the scheme is
data-dependent. Works on any model kind through `models.StackedModel.linears()`.

Every kind is filled alike: every Linear layer `linears()` lists, input projection and output
layer included, is drawn by the scheme's `fill` with the gain of the model's hidden activation;
residual schemes (Fixup) then rescale layers by role, and `init.zero_last` zeroes the last
Linear layer of every branch (weights and bias). Normalization layers start at gamma = 1,
beta = 0 for every scheme; branch multipliers alpha at `model.branch_scale`, unless the scheme
sets them (SkipInit, ReZero: 0). None of this draws random numbers, so the Linear layers get
exactly the draws they would get without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from winit_cli.errors import ConfigError
from winit_cli.inits.common import no_grad
from winit_cli.inits.registry import Scheme, get_scheme
from winit_cli.inits.residual import zero_last_scale
from winit_cli.models.registry import get_model_kind, layer_roles

if TYPE_CHECKING:
    import torch

    from winit_cli.models.base import StackedModel


def layer_factors(scheme: Scheme, params: dict[str, Any], roles: list[str],
                  zero_last: bool = False) -> list[float]:
    """The factor on each Linear layer's filled weights, by role (1 for a plain scheme).

    roles: models.LinearView.role of every layer in order; blocks and branch layers follow from
    them. The theory multiplies each layer's variance by the square of its factor.
    """
    blocks = roles.count("branch_out")
    branch_layers = 1 + roles.count("branch_inner") // blocks if blocks else 0
    resolved = scheme.resolve(params)
    factors = []
    for role in roles:
        f = 1.0 if scheme.layer_scale is None else scheme.layer_scale(
            role, blocks, branch_layers, **resolved)
        factors.append(f * (zero_last_scale(role) if zero_last else 1.0))
    return factors


def initial_branch_scale(scheme: Scheme, params: dict[str, Any], branch_scale: float) -> float:
    """alpha at init: the scheme's (SkipInit, ReZero) or else the model's `branch_scale`."""
    if scheme.branch_init is None:
        return float(branch_scale)
    return float(scheme.branch_init(**scheme.resolve(params)))


@no_grad
def initialize(model: StackedModel, member: int, scheme: str, params: dict[str, Any],
               generator: torch.Generator, *, zero_last: bool = False) -> None:
    """Fill member `member`'s Linear layers in order, input side first, drawing from `generator`;
    then its per-role factors, norm parameters and branch multipliers (module docstring).

    Member k of a batch gets exactly the draws a K = 1 model would get from the same seed. Every
    layer, the output layer included, takes its gain from the model's (hidden) activation.
    """
    spec = get_scheme(scheme)
    layers = model.linears()
    for layer in layers:
        spec.fill(layer.weight[member], None if layer.bias is None else layer.bias[member],
                  activation=model.activation, generator=generator, **params)
    if spec.needs_branches or zero_last:
        factors = layer_factors(spec, params, [layer.role for layer in layers], zero_last)
        for layer, factor in zip(layers, factors, strict=True):
            if factor != 1.0:
                layer.weight[member].mul_(factor)
                if layer.bias is not None:
                    layer.bias[member].mul_(factor)
    for norm in model.norms():
        norm.weight[member].fill_(1.0)
        norm.bias[member].zero_()
    alpha = model.branch_scales()
    if alpha is not None and spec.branch_init is not None:
        alpha[member].fill_(initial_branch_scale(spec, params, 0.0))


def calibrate_member(model: StackedModel, member: int, scheme: str, params: dict[str, Any],
                     data: torch.Tensor) -> None:
    """Calibrate member `member` on `data` if its scheme is data-dependent; else do nothing.

    Call it right after `initialize` has filled that member. `data` is the training split's
    inputs [n, input_size]; only member `member`'s parameters change. It runs the model in eval
    mode (BatchNorm on its running statistics, no dropout).
    """
    spec = get_scheme(scheme)
    if spec.calibrate is None:
        return
    # In eval mode: no dropout noise in what is measured, and BatchNorm's running statistics
    # (every member's) are left as they were, so a member calibrates alone as in a stack.
    was_training = model.training
    model.eval()
    try:
        spec.calibrate(model, member, data, activation=model.activation, **spec.resolve(params))
    finally:
        model.train(was_training)


def check_init_for_model(config: Any) -> None:
    """Refuse, in one line, init settings the model cannot take (`config` a config.Config)."""
    scheme, model = get_scheme(config.init.scheme), config.model
    kind = get_model_kind(model.kind)
    if scheme.needs_branches and not kind.has_branches:
        raise ConfigError(
            f"init.scheme: {scheme.name} is defined on residual branches and model.kind "
            f"{model.kind} has none; use model.kind: resmlp")
    if config.init.zero_last and not kind.has_branches:
        raise ConfigError(f"init.zero_last: model.kind {model.kind} has no residual branches "
                          "to zero the last layer of; use model.kind: resmlp")
    if not kind.has_branches:
        return
    alpha = initial_branch_scale(scheme, config.init.params, model.branch_scale)
    if alpha == 0 and not model.learnable_scale:
        raise ConfigError(
            f"model.learnable_scale: {scheme.name} starts every branch multiplier alpha at 0, so "
            "with a fixed alpha the branches never contribute; set model.learnable_scale: true")
    roles = [role for role, _ in layer_roles(1, model.branch_layers)]  # one block shows it
    last_zero = layer_factors(scheme, config.init.params, roles, config.init.zero_last)[-2] == 0
    if alpha == 0 and last_zero:
        raise ConfigError(
            "init: alpha = 0 and a zero last branch layer give each other zero gradients "
            f"({scheme.name}{' with zero_last' if config.init.zero_last else ''}), so no branch "
            "ever trains; drop init.zero_last or use a non-zero alpha")
