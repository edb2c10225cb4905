"""`model.parametrization` (standard, ntk, mup) and `model.base_width` applied to a model: each
Linear layer's factors on its drawn init, its forward multiplier and its learning rates.

The rules and their sources are theory/width.py's (`RULES`); this maps them onto a model's
`linears()`: the input layer's fan_in and the output layer's fan_out are the data's and stay
fixed, every other dimension is a hidden width, whose multiplier is width / base_width. So at
width = base_width every parametrization is the standard one, bit for bit.

The training setup (training/step.py) uses each once: it sets the model's output multiplier
(`multiplier`), rescales what the init scheme drew (`rescale_init`, after any calibration) and
makes the optimizer's parameter groups (`param_groups`). The standard parametrization touches
none of them: no multiplier, no rescale, one parameter group, as before the option existed.
"""

from __future__ import annotations

from typing import Any

import torch

from winit_cli.models import LinearView, StackedModel
from winit_cli.theory.width import layer_class, layer_factors

GROWS = {"input": (False, True), "output": (True, False)}  # (fan_in, fan_out); others both


def factors(layers: list[LinearView], parametrization: str, optimizer: str,
            base_width: int) -> list[dict[str, float]]:
    """Each layer's factors (theory.width.layer_factors) for this model."""
    out = []
    for layer in layers:
        fan_in_grows, fan_out_grows = GROWS.get(layer.role, (True, True))
        m_in = layer.fan_in / base_width if fan_in_grows else 1.0
        m_out = layer.fan_out / base_width if fan_out_grows else 1.0
        out.append(layer_factors(parametrization, optimizer, m_in, m_out,
                                 layer_class(fan_in_grows, fan_out_grows)))
    return out


def base_width_of(model_config: Any) -> int:
    """model.base_width, or the model's own width (every factor 1) when not given."""
    return model_config.base_width or model_config.hidden_widths()[0]


def multiplier(model: StackedModel, model_config: Any) -> float | None:
    """The output layer's forward multiplier, None where it is 1 (standard, or no change)."""
    if model_config.parametrization == "standard":
        return None
    # the optimizer does not change a multiplier
    value = factors(model.linears(), model_config.parametrization, "sgd",
                    base_width_of(model_config))[-1]["multiplier"]
    return None if value == 1.0 else value


@torch.no_grad()
def rescale_init(model: StackedModel, member: int, config: Any) -> None:
    """Multiply member `member`'s drawn weights and biases by the parametrization's init
    factors (`config`: a `config.Config`). Nothing for the standard parametrization."""
    m = config.model
    if m.parametrization == "standard":
        return
    layers = model.linears()
    for layer, f in zip(layers, factors(layers, m.parametrization, config.train.optimizer,
                                        base_width_of(m)), strict=True):
        if f["weight_init"] != 1.0:
            layer.weight[member].mul_(f["weight_init"])
        if layer.bias is not None and f["bias_init"] != 1.0:
            layer.bias[member].mul_(f["bias_init"])


def param_groups(model: StackedModel, config: Any) -> list[dict[str, Any]] | None:
    """The optimizer's parameter groups with per-layer learning rates (`config`: a
    `config.Config`), or None for the standard parametrization (one group, as ever). Parameters
    that are no Linear layer's (norm gains, branch scales) keep train.lr."""
    m, lr = config.model, config.train.lr
    if m.parametrization == "standard":
        return None
    layers = model.linears()
    groups, seen = [], set()
    for layer, f in zip(layers, factors(layers, m.parametrization, config.train.optimizer,
                                        base_width_of(m)), strict=True):
        groups.append({"params": [layer.weight], "lr": lr * f["weight_lr"]})
        seen.add(id(layer.weight))
        if layer.bias is not None:
            groups.append({"params": [layer.bias], "lr": lr * f["bias_lr"]})
            seen.add(id(layer.bias))
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": lr})
    return groups
