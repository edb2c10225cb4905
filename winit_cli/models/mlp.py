"""MLPs, stored as K independent members with weights stacked on a leading axis.

A single `winit run` is K = 1; a sweep trains several same-shape networks at once (K > 1) with
batched matmuls. Members never mix: member k's output depends only on member k's weights and
inputs, so each trains exactly as it would alone, and elementwise optimizers (SGD, momentum,
Adam) applied to the stacked tensors update each member as they would update it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.inits import get_scheme

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # slope 0.01, torch's default
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "linear": lambda z: z,
}


@dataclass
class Trace:
    """What a recording forward pass keeps, per Linear layer l = 1..L, as [K, B, fan_out]."""

    pre: list[torch.Tensor] = field(default_factory=list)  # z_l (detached)
    post: list[torch.Tensor] = field(default_factory=list)  # phi(z_l); the logits for l = L
    graph: list[torch.Tensor] = field(default_factory=list)  # z_l in the graph: .grad = dL/dz_l

    def add(self, z: torch.Tensor, h: torch.Tensor, members: int) -> None:
        z.retain_grad()
        self.graph.append(z)
        self.pre.append(z.detach().view(members, -1, z.shape[-1]))
        self.post.append(h.detach().view(members, -1, h.shape[-1]))

    def pre_grad(self, l: int) -> torch.Tensor | None:
        """dL/dz_l as [K, B, fan_out], once backward has run."""
        grad = self.graph[l].grad
        return None if grad is None else grad.view(self.pre[l].shape)


class StackedMLP(nn.Module):
    def __init__(self, sizes: Sequence[int], activation: str, bias: bool = True, members: int = 1):
        """sizes = [input, hidden..., output]; depth = len(sizes) - 1 Linear layers."""
        super().__init__()
        self.sizes = list(sizes)
        self.activation = activation
        self.phi = ACTIVATIONS[activation]
        self.members = members
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(members, fan_out, fan_in)) for fan_in, fan_out in pairs
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(members, fan_out)) for _, fan_out in pairs
        ) if bias else None

    @property
    def depth(self) -> int:
        return len(self.weights)

    def bias(self, layer: int) -> torch.Tensor | None:
        return None if self.biases is None else self.biases[layer]

    def forward(self, x: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        """x: [K, B, input] -> logits [K, B, output]."""
        single = self.members == 1
        # A plain matmul is faster than a batch of one: with K = 1 the activations stay 2-D and
        # only the parameters are squeezed (views; w[0] would allocate a full zero gradient in
        # backward every step).
        h = x.squeeze(0) if single else x
        weights = list(self.weights)  # once: ParameterList indexing is slow Python
        biases = list(self.biases) if self.biases is not None else [None] * len(weights)
        last = len(weights) - 1
        for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if single:
                z = F.linear(h, w.squeeze(0), None if b is None else b.squeeze(0))
            elif b is None:
                z = torch.bmm(h, w.transpose(1, 2))
            else:
                z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            h = z if l == last else self.phi(z)
            if trace is not None:
                trace.add(z, h, self.members)
        return h.unsqueeze(0) if single else h


def build_mlp(hidden: Sequence[int], activation: str, bias: bool, members: int = 1,
              input_size: int = 784, classes: int = 10) -> StackedMLP:
    return StackedMLP([input_size, *hidden, classes], activation, bias, members)


@torch.no_grad()
def initialize(model: StackedMLP, member: int, scheme: str, params: dict,
               generator: torch.Generator) -> None:
    """Fill member `member`'s layers in order, input side first, drawing from `generator`.

    Member k of a batch gets exactly the draws a K = 1 model would get from the same seed.
    """
    spec = get_scheme(scheme)
    for l, w in enumerate(model.weights):
        b = model.bias(l)
        spec.fill(w[member], None if b is None else b[member], activation=model.activation,
                  generator=generator, **params)
