"""Which modules of a user's model the probe records, and which parameters it leaves out.

Recorded, found by `model.named_modules()` and named by it:

- nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d: every column of layers.csv, with dL/dz taken at the
  module's output z (for a Conv, the output feature map [B, C_out, *spatial]);
- the normalization layers winit knows, nn.BatchNorm1d/2d/3d and nn.LayerNorm: their weight and
  bias (gradient norms, norms, update ratio); their output is not a z, so the activation columns
  stay empty.

Any other module that owns parameters (an nn.LSTM, an nn.Embedding, a custom module's own
nn.Parameter) is listed once, by name, as not recorded: the probe still records the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)
RECORDED_PARAMETERS = ("weight", "bias")

# Activation modules whose output is taken as a layer's h = phi(z) when z goes straight into one,
# by the name winit's theory and probes give that function. A variant that is not the function of
# that name (another slope, alpha or approximation) still supplies h, but no name.
ACTIVATION_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
    nn.ELU: "elu", nn.SELU: "selu", nn.GELU: "gelu",
}


def activation_name(module: nn.Module) -> str | None:
    """winit's name for the function this activation module computes, or None."""
    name = ACTIVATION_MODULES.get(type(module))
    if name == "leaky_relu" and module.negative_slope != 0.01:  # the theory's slope
        return None
    if name == "elu" and module.alpha != 1.0:
        return None
    if name == "gelu" and module.approximate != "none":
        return None
    return name


@dataclass(frozen=True, eq=False)
class Layer:
    """One recorded module."""

    name: str  # from named_modules(); "model" when the model itself is the layer
    module: nn.Module
    kind: str  # linear | conv | norm

    @property
    def has_dz(self) -> bool:
        """Whether dL/dz and the activation columns are recorded (Linear and Conv)."""
        return self.kind != "norm"

    @property
    def type_name(self) -> str:
        return type(self.module).__name__

    @property
    def weight(self) -> torch.Tensor | None:
        return getattr(self.module, "weight", None)

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.module, "bias", None)

    def fans(self) -> tuple[int, int]:
        """(fan_in, fan_out) as torch.nn.init counts them: for a Conv, channels times the
        kernel's size (in_channels / groups x k, out_channels x k); for a norm layer, the
        number of features (both)."""
        w = self.weight if self.weight is not None else self.bias
        if self.kind == "norm":
            return w.numel(), w.numel()
        return nn.init._calculate_fan_in_and_fan_out(w)

    def width(self) -> int:
        """Output units (Linear) or channels (Conv)."""
        return int(self.weight.shape[0])


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, WEIGHTED):
        return "conv"
    if isinstance(module, NORMS):
        return "norm"
    return None


def find_layers(model: nn.Module) -> tuple[list[Layer], list[str]]:
    """The recorded layers in `named_modules()` order, and one line per module whose own
    parameters are not recorded: `lstm (LSTM: weight_ih_l0, weight_hh_l0, ...)`."""
    layers, unrecorded = [], []
    for name, module in model.named_modules():
        own = [n for n, _ in module.named_parameters(recurse=False)]
        kind = _kind(module)
        if kind is not None and any(n in RECORDED_PARAMETERS for n in own):
            layers.append(Layer(name or "model", module, kind))
            own = [n for n in own if n not in RECORDED_PARAMETERS]
        if own:
            unrecorded.append(f"{name or 'model'} ({type(module).__name__}: {', '.join(own)})")
    return layers, unrecorded
