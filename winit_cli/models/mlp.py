"""`model.kind: mlp`: a plain MLP, Linear layers with the activation between them.

depth Linear layers: input -> hidden widths (`model.width`, or `model.widths`) -> classes.
A single `winit run` is K = 1 member; a sweep trains several same-shape networks at once (K > 1)
with batched matmuls.

With `model.norm` (batch or layer), every hidden layer is Linear -> norm -> phi, the placement
of Ioffe & Szegedy 2015 and of the mean-field theories (Yang et al. 2019; theory_layernorm_
dropout.py): z_l = W_l h_{l-1} + b_l, y_l = norm(z_l), h_l = phi(y_l); norms()[l] follows
linears()[l], and the logits have none. With `model.dropout` the hidden activations h_l (not the
input, not the logits) are dropped, inverted: h_l * mask / (1 - rate) in training only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.models.base import (
    ACTIVATIONS,
    ACTIVATIONS_IN_PLACE,
    LinearView,
    ParameterLayers,
    StackedModel,
    Trace,
    with_output_multiplier,
)
from winit_cli.models.stacked import MemberDropout, StackedNorm


class StackedMLP(ParameterLayers, StackedModel):
    def __init__(self, sizes: Sequence[int], activation: str, bias: bool = True, members: int = 1,
                 norm: str = "none", dropout: float = 0.0):
        """sizes = [input, hidden..., output]; depth = len(sizes) - 1 Linear layers."""
        super().__init__()
        self.sizes = list(sizes)
        self.activation = activation
        self.phi = ACTIVATIONS[activation]
        self.phi_in_place = ACTIVATIONS_IN_PLACE[activation]
        self.members = members
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.weights = nn.ParameterList(
            nn.Parameter(torch.zeros(members, fan_out, fan_in)) for fan_in, fan_out in pairs
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(members, fan_out)) for _, fan_out in pairs
        ) if bias else None
        self.norm_layers = nn.ModuleList(
            StackedNorm(norm, members, width) for width in sizes[1:-1]
        ) if norm != "none" else None
        self.noise = MemberDropout(dropout, members) if dropout > 0 else None

    @classmethod
    def from_config(cls, config: Any, input_size: int, classes: int,
                    members: int) -> StackedMLP:
        return cls([input_size, *config.hidden_widths(), classes], config.activation,
                   config.bias, members, config.norm, config.dropout)

    def linears(self) -> list[LinearView]:
        weights, biases = self.parameter_lists()
        last = len(weights) - 1
        return [LinearView(w, b, None if l == last else self.activation,
                           "output" if l == last else "input" if l == 0 else "hidden")
                for l, (w, b) in enumerate(zip(weights, biases, strict=True))]

    def forward(self, x: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        """x: [K, B, input] -> logits [K, B, output]."""
        if self.noise is not None and self.training:
            self.noise.start(x.device)
        if self.members > 1:
            return self._forward_stacked(x, trace)
        # A plain matmul is faster than a batch of one: with K = 1 the activations stay 2-D and
        # the weights are squeezed (views; w[0] would allocate a full zero gradient in backward
        # every step); a [1, out] bias broadcasts as it is.
        h = x.squeeze(0)
        weights, biases = self.parameter_lists()
        weights = with_output_multiplier(self, weights)
        for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = F.linear(h, w.squeeze(0), b)
            h = self._activate(l, z, trace)
        return h.unsqueeze(0)

    def _forward_stacked(self, x: torch.Tensor, trace: Trace | None) -> torch.Tensor:
        """K > 1 members, features first in memory: each layer computes z^T = W h^T + b as
        [K, out, B] (seen as [K, B, out] through a transposed view). Backward then writes each
        weight's gradient in the weight's own layout, where h W^T would leave it transposed and
        autograd would copy it every step. Members fed the same batch (x expanded, stride 0)
        share the first layer's input: one GEMM [K * out, in] x [in, B] for all of them."""
        weights, biases = self.parameter_lists()
        weights = with_output_multiplier(self, weights)
        k = self.members
        h_t = x.transpose(1, 2)  # [K, in, B]
        for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if l == 0 and x.stride(0) == 0:
                stacked = w.reshape(k * w.shape[1], w.shape[2])  # [K * out, in], a view
                z_t = (stacked @ h_t[0] if b is None
                       else torch.addmm(b.reshape(-1, 1), stacked, h_t[0])).view(k, w.shape[1], -1)
            elif b is None:
                z_t = torch.bmm(w, h_t)
            else:
                z_t = torch.baddbmm(b.unsqueeze(2), w, h_t)
            h = self._activate(l, z_t.transpose(1, 2), trace, z_t)
            h_t = h.transpose(1, 2)
        return h

    def _activate(self, l: int, z: torch.Tensor, trace: Trace | None,
                  z_t: torch.Tensor | None = None) -> torch.Tensor:
        """Layer l's z -> h: the norm (hidden layers, with model.norm), phi, then dropout.
        `z_t`: the stacked members' z as computed, [K, out, B], of which z is a transposed view."""
        if l == len(self.sizes) - 2:  # the logits
            return trace.record(z, None, self.members) if trace is not None else z
        norm = self.norm_layers[l] if self.norm_layers is not None else None
        if trace is not None:
            h = trace.record(z, self.phi, self.members, norm)
        elif norm is not None:
            h = self.phi(norm(z))
        elif z_t is None:
            h = self.phi_in_place(z)  # z is read by nothing else
        else:
            # In place on z_t, not on its view z: on a view autograd would rewrite z_t's history
            # (CopySlices), measured 15% slower for a step of six members at width 256.
            h = self.phi_in_place(z_t).transpose(1, 2)
        return self.noise(h) if self.noise is not None and self.training else h
