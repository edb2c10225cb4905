"""`model.kind: mlp`: a plain MLP, Linear layers with the activation between them.

depth Linear layers: input -> hidden widths (`model.width`, or `model.widths`) -> classes.
A single `winit run` is K = 1 member; a sweep trains several same-shape networks at once (K > 1)
with batched matmuls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.models.base import ACTIVATIONS, LinearView, StackedModel, Trace
from winit_cli.models.registry import register_model


@register_model("mlp")
class StackedMLP(StackedModel):
    def __init__(self, sizes: Sequence[int], activation: str, bias: bool = True, members: int = 1):
        """sizes = [input, hidden..., output]; depth = len(sizes) - 1 Linear layers."""
        super().__init__()
        self.sizes = list(sizes)
        self.activation = activation
        self.phi = ACTIVATIONS[activation]
        self.members = members
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.weights = nn.ParameterList(
            nn.Parameter(torch.zeros(members, fan_out, fan_in)) for fan_in, fan_out in pairs
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(members, fan_out)) for _, fan_out in pairs
        ) if bias else None

    @classmethod
    def from_config(cls, config: Any, input_size: int, classes: int,
                    members: int) -> StackedMLP:
        return cls([input_size, *config.hidden_widths(), classes], config.activation,
                   config.bias, members)

    def parameter_lists(self) -> tuple[list[nn.Parameter], list[nn.Parameter | None]]:
        """(weights, biases), one per layer (biases None without bias). Read from the lists'
        own dicts: iterating a ParameterList checks every index in Python (15 us for ten, twice
        a step)."""
        weights = list(self.weights._parameters.values())
        biases = list(self.biases._parameters.values()) if self.biases is not None \
            else [None] * len(weights)
        return weights, biases

    def linears(self) -> list[LinearView]:
        weights, biases = self.parameter_lists()
        last = len(weights) - 1
        return [LinearView(w, b, None if l == last else self.activation)
                for l, (w, b) in enumerate(zip(weights, biases, strict=True))]

    def forward(self, x: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        """x: [K, B, input] -> logits [K, B, output]."""
        single = self.members == 1
        # A plain matmul is faster than a batch of one: with K = 1 the activations stay 2-D and
        # the weights are squeezed (views; w[0] would allocate a full zero gradient in backward
        # every step); a [1, out] bias broadcasts as it is.
        h = x.squeeze(0) if single else x
        weights, biases = self.parameter_lists()
        last = len(weights) - 1
        for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if single:
                z = F.linear(h, w.squeeze(0), b)
            elif b is None:
                z = torch.bmm(h, w.transpose(1, 2))
            else:
                z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            phi = None if l == last else self.phi
            if trace is not None:
                h = trace.record(z, phi, self.members)
            else:
                h = z if phi is None else phi(z)
        return h.unsqueeze(0) if single else h
