"""Applying a scheme to a model: fill a member's Linear layers, then calibrate it if the scheme is
data-dependent. Works on any model kind through `models.StackedModel.linears()`.
"""

from __future__ import annotations

from typing import Any

import torch

from winit_cli.inits.registry import get_scheme
from winit_cli.models.base import StackedModel


@torch.no_grad()
def initialize(model: StackedModel, member: int, scheme: str, params: dict[str, Any],
               generator: torch.Generator) -> None:
    """Fill member `member`'s Linear layers in order, input side first, drawing from `generator`.

    Member k of a batch gets exactly the draws a K = 1 model would get from the same seed. Every
    layer, the output layer included, takes its gain from the model's (hidden) activation.
    """
    spec = get_scheme(scheme)
    for layer in model.linears():
        spec.fill(layer.weight[member], None if layer.bias is None else layer.bias[member],
                  activation=model.activation, generator=generator, **params)


def calibrate_member(model: StackedModel, member: int, scheme: str, params: dict[str, Any],
                     data: torch.Tensor) -> None:
    """Calibrate member `member` on `data` if its scheme is data-dependent; else do nothing.

    Call it right after `initialize` has filled that member. `data` is the training split's
    inputs [n, input_size]; only member `member`'s parameters change.
    """
    spec = get_scheme(scheme)
    if spec.calibrate is not None:
        spec.calibrate(model, member, data, activation=model.activation, **spec.resolve(params))
