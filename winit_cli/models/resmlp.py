"""`model.kind: resmlp`: a residual MLP of pre-activation blocks, K stacked members.

The block is the one theory/residual.py predicts (He, Zhang, Ren & Sun 2016, "Identity
Mappings in Deep Residual Networks"), with a branch of k = `model.branch_layers` (1 or 2) Linear
layers and a branch multiplier alpha (`model.branch_scale`, one per block and member, trained
when `model.learnable_scale`):

    h_0    = W_in x + b_in                                       Linear 1 (role "input")
    k = 1: F_b(h) = W_b1 a(h) + b_b1                             ("branch_out")
    k = 2: u_b = W_b1 a(h) + b_b1 ("branch_inner"),  F_b(h) = W_b2 a(u_b) + b_b2 ("branch_out")
    h_b    = h_{b-1} + alpha_b F_b(h_{b-1})                      blocks b = 1..B
    logits = W_out a(h_B) + b_out                                ("output"), L = 2 + k B

where a(v) = dropout(phi(norm(v))): `model.norm` and `model.dropout` as in the plain MLP, the
norm placed before phi (Linear -> norm -> phi inside the branch; on the stream, norm -> phi
before each branch and before the output layer, as in pre-activation ResNets). So norms()[i]
follows linears()[i] in forward order: after the input projection and after each branch's
last layer it normalizes the stream h_b (after the sum), after a branch_inner layer u_b. The
skip path itself is a pure identity, so the backward pass through a block is I + alpha J_F.

Recorded (Trace): every Linear output z (dL/dz at each one, as for the plain MLP; post is
phi(norm(u_b)) for branch_inner layers and z itself for the others), every norm output, and the
stream h_0..h_B (dL/dh_b: what vanishes or explodes in a residual net).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from winit_cli.models.base import (
    ACTIVATIONS,
    LinearView,
    ParameterLayers,
    StackedModel,
    Trace,
    with_output_multiplier,
)
from winit_cli.models.registry import layer_roles
from winit_cli.models.stacked import MemberDropout, StackedNorm, linear


class StackedResMLP(ParameterLayers, StackedModel):
    def __init__(self, input_size: int, width: int, classes: int, blocks: int,
                 branch_layers: int, activation: str, *, bias: bool = True, members: int = 1,
                 branch_scale: float = 1.0, learnable_scale: bool = False, norm: str = "none",
                 dropout: float = 0.0):
        super().__init__()
        self.activation, self.phi, self.members = activation, ACTIVATIONS[activation], members
        self.blocks, self.branch_layers = blocks, branch_layers
        shapes = [(width, input_size), *[(width, width)] * (blocks * branch_layers),
                  (classes, width)]
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(members, *s)) for s in shapes)
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(members, s[0])) for s in shapes) if bias else None
        alpha = torch.full((members, blocks), float(branch_scale))
        if learnable_scale:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)
        self.norm_layers = nn.ModuleList(
            StackedNorm(norm, members, width) for _ in shapes[:-1]) if norm != "none" else None
        self.noise = MemberDropout(dropout, members) if dropout > 0 else None

    @classmethod
    def from_config(cls, config: Any, input_size: int, classes: int,
                    members: int) -> StackedResMLP:
        return cls(input_size, config.hidden_widths()[0], classes,
                   (config.depth - 2) // config.branch_layers, config.branch_layers,
                   config.activation, bias=config.bias, members=members,
                   branch_scale=config.branch_scale, learnable_scale=config.learnable_scale,
                   norm=config.norm, dropout=config.dropout)

    def roles(self) -> list[tuple[str, int]]:
        return layer_roles(self.blocks, self.branch_layers)

    def linears(self) -> list[LinearView]:
        weights, biases = self.parameter_lists()
        return [LinearView(w, b, self.activation if role == "branch_inner" else None, role, block)
                for w, b, (role, block) in zip(weights, biases, self.roles(), strict=True)]

    def branch_scales(self) -> torch.Tensor:
        return self.alpha

    def forward(self, x: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        """x: [K, B, input] -> logits [K, B, classes]."""
        single = self.members == 1
        weights, biases = self.parameter_lists()
        weights = with_output_multiplier(self, weights)
        norms = list(self.norm_layers) if self.norm_layers is not None else None
        if self.noise is not None and self.training:
            self.noise.start(x.device)
        step = _Steps(self, trace, norms)
        h = step.stream(step.linear(x.squeeze(0) if single else x, weights[0], biases[0]))
        l = 1
        for b in range(self.blocks):
            a = step.act(h, l - 1)  # the norm after the Linear layer before it
            for _ in range(self.branch_layers - 1):
                a = step.linear(a, weights[l], biases[l], inner=l)
                l += 1
            f = step.linear(a, weights[l], biases[l])
            l += 1
            alpha = self.alpha[:, b].view(-1, 1, 1) if not single else self.alpha.squeeze(0)[b]
            h = step.stream(h + alpha * f)
        logits = step.linear(step.act(h, l - 1), weights[l], biases[l])
        return logits.unsqueeze(0) if single else logits


class _Steps:
    """The forward pass's pieces, recording into a Trace when there is one."""

    def __init__(self, model: StackedResMLP, trace: Trace | None, norms: list | None):
        self.model, self.trace, self.norms = model, trace, norms
        self.drop = model.noise if model.noise is not None and model.training else None

    def linear(self, a, w, b, inner: int | None = None) -> torch.Tensor:
        """A Linear layer; a branch_inner one (inner = its index) goes on through a()."""
        z = linear(a, w, b)
        if inner is None:
            return z if self.trace is None else self.trace.record(z, None, self.model.members)
        norm = None if self.norms is None else self.norms[inner]
        if self.trace is not None:
            h = self.trace.record(z, self.model.phi, self.model.members, norm)
        else:
            h = self.model.phi(z if norm is None else norm(z))
        return h if self.drop is None else self.drop(h)

    def act(self, h: torch.Tensor, norm_index: int) -> torch.Tensor:
        """a(h) = dropout(phi(norm(h))) on the stream, with norms()[norm_index]."""
        if self.norms is not None:
            h = self.norms[norm_index](h)
            if self.trace is not None:
                h = self.trace.record_norm(h, self.model.members)
        h = self.model.phi(h)
        return h if self.drop is None else self.drop(h)

    def stream(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.trace is None else self.trace.record_stream(h)
