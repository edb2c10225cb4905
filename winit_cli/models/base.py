"""What every model kind offers the rest of winit: K stacked members, their Linear layers as
views, and a forward pass that can record a `Trace`.

Training, the probes, the init schemes (LSUV included) and the record writer see a model only
through `StackedModel`: `members`, `activation`, `forward(x, trace)` and `linears()`; kinds with
normalization layers or branch multipliers also list them (`norms()`, `branch_scales()`), and
kinds with random layers (dropout) take per-member seeds (`seed_members`, `begin_step`). A new
kind subclasses it in its own file, with its entry in `models.registry.MODELS` (what config
validation and the theory read without torch); nothing outside `models/` needs to change.

Members never mix: member k's output depends only on member k's parameters and inputs, so each
trains exactly as it would alone, and elementwise optimizers (SGD, momentum, Adam) applied to the
stacked tensors update each member as they would update it alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.models.stacked import MemberDropout

Activation = Callable[[torch.Tensor], torch.Tensor]

# The activations every kind offers (config.Activation and the theory list the same names).
ACTIVATIONS: dict[str, Activation] = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # slope 0.01, torch's default
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "linear": lambda z: z,
}
# The same, overwriting their input, for an unrecorded step where nothing else reads z: one
# allocation and one pass over memory less per layer (measured 0.07-0.1 ms of a 4 ms step at
# depth 10, width 256, 2 threads). Only where the gradient is the same bits: ReLU's and leaky
# ReLU's read the sign, tanh's and sigmoid's already read the output; ELU's and SELU's in-place
# backward computes from the output, another rounding. GELU has no in-place form.
ACTIVATIONS_IN_PLACE: dict[str, Activation] = {
    **ACTIVATIONS,
    "relu": torch.relu_,
    "leaky_relu": lambda z: F.leaky_relu(z, inplace=True),
    "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_,
}


@dataclass(frozen=True, slots=True)
class LinearView:
    """One Linear layer of a stacked model: z = h W^T + b per member, as views (no copies).

    Filling `weight[k]` in place fills member k's layer: the init schemes work through this.
    """

    weight: nn.Parameter  # [K, fan_out, fan_in]
    bias: nn.Parameter | None  # [K, fan_out]
    # The activation applied to this layer's output z, or None where z is used as it is (the
    # output layer's logits; in a residual kind, a branch's last layer before the sum).
    activation: str | None
    # Where the layer sits, for schemes defined per role (Fixup, zero_last) and for the theory:
    # "input", "hidden", "output" (plain MLP); "input", "branch_inner", "branch_out", "output"
    # (residual MLP). block: the residual block it belongs to (1..B), 0 outside blocks.
    role: str = "hidden"
    block: int = 0

    @property
    def fan_in(self) -> int:
        return self.weight.shape[2]

    @property
    def fan_out(self) -> int:
        return self.weight.shape[1]


@dataclass(frozen=True, slots=True)
class NormView:
    """One normalization layer of a stacked model: y = gamma * normalize(x) + beta per member.

    norms()[i] comes right after linears()[i] in forward order (see each kind's docstring for
    what it normalizes); the output layer has none after it.
    """

    weight: nn.Parameter  # gamma, [K, features]
    bias: nn.Parameter  # beta, [K, features]
    kind: str  # "batch" or "layer"


@dataclass
class Trace:
    """What a recording forward pass keeps, one entry per `linears()` layer, as [K, B, fan_out].

    A model passes each Linear layer's output through `record`, in the order `linears()` lists
    the layers, and goes on with what it returns.
    """

    pre: list[torch.Tensor] = field(default_factory=list)  # z_l (detached)
    post: list[torch.Tensor] = field(default_factory=list)  # phi(z_l); the logits for l = L
    graph: list[torch.Tensor] = field(default_factory=list)  # z_l in the graph: .grad = dL/dz_l
    # Normalization outputs y_i in the order of norms(), and residual streams h_b (b = 0..B), as
    # z_l above: detached copies [K, B, features] and graph tensors whose .grad is dL/dy, dL/dh.
    norm_post: list[torch.Tensor] = field(default_factory=list)
    norm_graph: list[torch.Tensor] = field(default_factory=list)
    stream_graph: list[torch.Tensor] = field(default_factory=list)
    # adjust(l, z) -> z: may replace layer l's output before the model uses it, as a PyTorch
    # forward hook may replace a module's output. LSUV calibrates through it in one pass.
    adjust: Callable[[int, torch.Tensor], torch.Tensor] | None = None

    def record(self, z: torch.Tensor, activation: Activation | None,
               members: int, norm: Activation | None = None) -> torch.Tensor:
        """Record Linear layer output z; return activation(z) (z itself when None).

        With `norm`, y = norm(z) is recorded too (`record_norm`) and activation(y) returned.
        """
        if self.adjust is not None:
            z = self.adjust(len(self.graph), z)
        y = z if norm is None else self.record_norm(norm(z), members)
        h = y if activation is None else activation(y)
        if z.requires_grad:  # not under no_grad
            self.watch_grad(len(self.graph), z)
        self.graph.append(z)
        self.pre.append(z.detach().view(members, -1, z.shape[-1]))
        self.post.append(h.detach().view(members, -1, h.shape[-1]))
        return h

    def watch_grad(self, l: int, z: torch.Tensor) -> None:
        """Keep dL/dz_l for `pre_grad` (a copy, made by `retain_grad`). A subclass may instead
        reduce the gradient in a hook as it flows past (`measure.recorder.StepRecorder`)."""
        z.retain_grad()

    def record_norm(self, y: torch.Tensor, members: int) -> torch.Tensor:
        """Record a normalization layer's output y; return it."""
        if y.requires_grad:
            y.retain_grad()
        self.norm_graph.append(y)
        self.norm_post.append(y.detach().view(members, -1, y.shape[-1]))
        return y

    def record_stream(self, h: torch.Tensor) -> torch.Tensor:
        """Record a residual stream h_b (for dL/dh_b); return it."""
        if h.requires_grad:
            h.retain_grad()
        self.stream_graph.append(h)
        return h

    def pre_grad(self, l: int) -> torch.Tensor | None:
        """dL/dz_l as [K, B, fan_out], once backward has run."""
        grad = self.graph[l].grad
        return None if grad is None else grad.view(self.pre[l].shape)

    def norm_grad(self, i: int) -> torch.Tensor | None:
        """dL/dy_i of normalization layer i as [K, B, features], once backward has run."""
        grad = self.norm_graph[i].grad
        return None if grad is None else grad.view(self.norm_post[i].shape)

    def stream_grad(self, b: int, members: int) -> torch.Tensor | None:
        """dL/dh_b as [K, B, width], once backward has run."""
        h = self.stream_graph[b]
        return None if h.grad is None else h.grad.view(members, -1, h.shape[-1])


class StackedModel(nn.Module, ABC):
    """K independent networks of one shape, parameters stacked on a leading member axis.

    Subclasses set `members` and `activation` and implement `from_config`, `forward` and
    `linears`. Parameters start at zero; `inits.initialize` fills each member.
    """

    members: int
    activation: str  # the hidden activation; init schemes take their gain from it
    noise: MemberDropout | None = None  # set by kinds with dropout
    # The output layer's forward multiplier, W_eff = multiplier x W (model.parametrization mup,
    # set by training/parametrization.py); None: no multiplier, the weights as they are.
    output_multiplier: float | None = None

    @classmethod
    @abstractmethod
    def from_config(cls, config: Any, input_size: int, classes: int,
                    members: int) -> StackedModel:
        """Build from a `config.ModelConfig` (typed Any: `config` imports `models`, not the
        other way round) with the dataset's input size and number of classes."""

    @abstractmethod
    def forward(self, x: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        """x: [K, B, input_size] -> logits [K, B, classes]; records into `trace` if given."""

    @abstractmethod
    def linears(self) -> list[LinearView]:
        """Every Linear layer, input side first: the order of `Trace` entries and of layers.csv."""

    def norms(self) -> list[NormView]:
        """Every normalization layer, in forward order (none for kinds without)."""
        return []

    def branch_scales(self) -> torch.Tensor | None:
        """The branch multipliers alpha, [K, blocks] (a Parameter when learnable), or None."""
        return None

    def seed_members(self, seeds: list[int]) -> None:
        """Per-member seeds for random layers (dropout): member k draws its own noise from
        seeds[k], so it draws the same alone as in a stack. Kinds without noise ignore it."""
        if len(seeds) != self.members:
            raise ValueError(f"{len(seeds)} seeds for {self.members} members")
        if self.noise is not None:
            self.noise.seeds = list(seeds)

    def begin_step(self, step: int) -> None:
        """The training step the next forward passes belong to: noise is drawn from (seed, step),
        so redoing a step's forward pass redraws the same noise."""
        if self.noise is not None:
            self.noise.step = step

    @property
    def depth(self) -> int:
        """The number of Linear layers."""
        return len(self.linears())

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every Linear layer, in order."""
        return [(layer.fan_in, layer.fan_out) for layer in self.linears()]


class ParameterLayers:
    """For kinds whose Linear layers are `weights` and `biases` (ParameterLists of [K, ...],
    `biases` None without bias) and whose norms are `norm_layers` (None without): both read in
    the hot path, so read fast."""

    weights: nn.ParameterList
    biases: nn.ParameterList | None
    norm_layers: nn.ModuleList | None

    def parameter_lists(self) -> tuple[list[nn.Parameter], list[nn.Parameter | None]]:
        """(weights, biases), one per layer (biases None without bias). Read from the lists'
        own dicts: iterating a ParameterList checks every index in Python (15 us for ten, twice
        a step)."""
        weights = list(self.weights._parameters.values())
        biases = list(self.biases._parameters.values()) if self.biases is not None \
            else [None] * len(weights)
        return weights, biases

    def norms(self) -> list[NormView]:
        if self.norm_layers is None:
            return []
        return [NormView(n.weight, n.bias, n.kind) for n in self.norm_layers]


def with_output_multiplier(model: StackedModel, weights: list[nn.Parameter]) -> list:
    """The weights a forward pass uses: the output layer's times the model's output
    multiplier (a new tensor, in the graph), the list itself when there is none."""
    if model.output_multiplier is None:
        return weights
    return [*weights[:-1], weights[-1] * model.output_multiplier]
