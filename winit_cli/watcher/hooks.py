"""Forward and backward hooks that capture, on a recorded step, what each layer produced.

Hooks are installed only for the forward passes of a recorded step (`arm`) and removed after it
(`disarm`), so the steps in between run the user's model untouched. While armed:

- a recorded layer's forward hook keeps its output z (a reference, no copy) and registers a
  tensor hook on it that keeps dL/dz when backward reaches it. A tensor hook registered before
  an in-place op (nn.ReLU(inplace=True)) still receives the gradient with respect to z itself.
- an activation module's forward hook, when its input *is* a recorded z (the same tensor), keeps
  its output as that layer's h = phi(z).
- forward passes under torch.no_grad or torch.inference_mode are ignored.

Every call of a layer is kept (a module used twice, or a step that accumulates gradients over
several forward/backward passes): the measured batch is all of them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from winit_cli.watcher.layers import ACTIVATION_MODULES, Layer, activation_name


@dataclass(eq=False)
class Call:
    """One forward call of a recorded layer on a recorded step."""

    layer: int  # index into Capture.layers
    z: torch.Tensor  # the layer's output, detached (same storage)
    z_version: int  # z's version counter once its activation ran (an in-place one bumps it)
    source: int | None  # the recorded layer whose z or h is this call's input, if any
    post: torch.Tensor | None = None  # h = phi(z) from an activation module, detached
    post_version: int = 0
    activation: str | None = None  # winit's name for that module's function
    activated: bool = False  # an activation module consumed z
    grad: torch.Tensor | None = None  # dL/dz once backward has run

    def stale(self) -> bool:
        """Was z or h changed in place after the probe saw it (not by z's own activation)?
        Then the activation statistics of this call cannot be measured."""
        return self.z._version != self.z_version or (
            self.post is not None and self.post._version != self.post_version)


@dataclass
class Capture:
    """The hooks, and what they captured since the last `take`."""

    layers: list[Layer]
    activations: list[nn.Module]
    order: list[int] = field(default_factory=list)  # layer indexes, in the order first run
    calls: dict[int, list[Call]] = field(default_factory=dict)
    first_input: torch.Tensor | None = None  # the first recorded layer's input, first call
    # id(tensor) -> (tensor, call): the z and h of this step's calls, to recognise them as the
    # input of an activation or of the next layer (the tensor is kept, so its id stays unique)
    _outputs: dict[int, tuple[torch.Tensor, Call]] = field(default_factory=dict)
    _handles: list = field(default_factory=list)

    @classmethod
    def of(cls, model: nn.Module, layers: list[Layer]) -> Capture:
        acts = [m for m in model.modules() if type(m) in ACTIVATION_MODULES]
        return cls(layers, acts)

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self) -> None:
        if self.armed:
            return
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.module.register_forward_hook(partial(self._layer, i)))
        for module in self.activations:
            self._handles.append(module.register_forward_hook(self._activation))

    def disarm(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def take(self) -> dict[int, list[Call]]:
        """What was captured since the last take; the captured tensors are released."""
        calls, self.calls, self._outputs = self.calls, {}, {}
        return calls

    def _layer(self, i: int, module: nn.Module, inputs: tuple, output) -> None:
        if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
            return
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if not self.order and x is not None:  # the very first layer call: the model's input
            self.first_input = x.detach()
        if i not in self.order:
            self.order.append(i)
        if not self.layers[i].has_dz:
            return
        found = self._outputs.get(id(x)) if x is not None else None
        source = found[1].layer if found is not None and found[0] is x else None
        call = Call(i, output.detach(), output._version, source)
        self.calls.setdefault(i, []).append(call)
        self._outputs[id(output)] = (output, call)
        if output.requires_grad:
            output.register_hook(partial(_keep_grad, call))

    def _activation(self, module: nn.Module, inputs: tuple, output) -> None:
        if not torch.is_grad_enabled() or not inputs or not isinstance(output, torch.Tensor):
            return
        found = self._outputs.get(id(inputs[0]))
        if found is None or found[0] is not inputs[0]:
            return  # not applied straight to a recorded layer's output
        call = found[1]
        call.post, call.post_version = output.detach(), output._version
        call.z_version = call.z._version  # an in-place activation has just bumped it
        call.activation, call.activated = activation_name(module), True
        self._outputs[id(output)] = (output, call)


def _keep_grad(call: Call, grad: torch.Tensor) -> None:
    # Summed if backward reaches this z more than once (retain_graph, double backward).
    call.grad = grad.detach() if call.grad is None else call.grad + grad.detach()
