"""What a recorded step keeps for the probe, with as few operations as the numbers allow.

A recorded training step hands the model's forward pass a `StepRecorder` (a `Trace`):

- as each layer's output appears, the forward quantities (`probes.Quantity.compute`: reductions
  of the weights, z_l and phi(z_l)) run at once, while those tensors are fresh;
- dL/dz_l is kept by a tensor hook on z_l as the gradient flows down: a reference to the tensor
  autograd passes on unchanged, where `retain_grad` would copy every dL/dz;
- the norms (`probes.Quantity.norm_of`) wait until backward is done and are taken in one batched
  call (`norm_tensors` lists them): at these sizes a record costs operations, not bandwidth (one
  call per norm, each in a backward hook while its tensor was in cache, measured slower than one
  `_foreach_norm` over all of them).

A plain `Trace` (gradients retained) gives the same record through
`StepRecorder.after_the_fact`, which runs the forward quantities once backward is done: the same
reductions of the same tensors, so the same bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from winit_cli.models.base import StackedModel, Trace


@dataclass
class LayerView:
    weight: torch.Tensor  # [K, out, in]
    bias: torch.Tensor | None  # [K, out]
    pre: torch.Tensor  # z, [K, B, out]
    pre_grad: torch.Tensor | None  # dL/dz, [K, B, out]; None during the forward pass
    post: torch.Tensor  # phi(z) (logits on the output layer), [K, B, out]
    activation: str | None  # None on the output layer


class StepRecorder(Trace):
    """A Trace that runs the `compute` of `quantities` (name -> probes.Quantity) in the forward
    pass and keeps dL/dz by reference. `partials[name][l]`: what quantity `name`'s compute gave
    for layer l (on the device; None where it does not apply). Call `close` after backward.
    """

    def __init__(self, model: StackedModel, quantities: Mapping[str, Any], live: bool = True):
        super().__init__()
        self.members = model.members
        self.layers = model.linears()
        self.computes = [(n, q.compute) for n, q in quantities.items() if q.compute is not None]
        self.partials: dict[str, list[torch.Tensor | None]] = {n: [] for n, _ in self.computes}
        self.pre_grads: list[torch.Tensor | None] = [None] * len(self.layers)
        self._live = live

    @classmethod
    def after_the_fact(cls, model: StackedModel, trace: Trace,
                       quantities: Mapping[str, Any]) -> StepRecorder:
        """What the forward pass of a plain Trace's step would have given, once backward is
        done (its dL/dz retained)."""
        recorder = cls(model, quantities, live=False)
        recorder.pre, recorder.post = trace.pre, trace.post
        recorder.pre_grads = [trace.pre_grad(l) for l in range(len(trace.pre))]
        for l in range(len(trace.pre)):
            recorder._compute(l)
        return recorder

    def view(self, l: int) -> LayerView:
        layer, grad = self.layers[l], self.pre_grads[l]
        return LayerView(layer.weight, layer.bias, self.pre[l],
                         None if grad is None else grad.view(self.pre[l].shape), self.post[l],
                         layer.activation)

    def record(self, z: torch.Tensor, activation, members: int, norm=None) -> torch.Tensor:
        h = super().record(z, activation, members, norm)
        if self._live:
            self._compute(len(self.pre) - 1)
        return h

    def watch_grad(self, l: int, z: torch.Tensor) -> None:
        if self._live:
            z.register_hook(partial(self._keep_grad, l))
        else:
            super().watch_grad(l, z)

    def close(self) -> None:
        """Let go of the graph: each z_l's grad_fn holds a hook that points back here, a cycle
        that would keep every activation of the step alive until the garbage collector runs."""
        self.graph = []

    def _keep_grad(self, l: int, grad: torch.Tensor) -> None:
        self.pre_grads[l] = grad

    @torch.no_grad()
    def _compute(self, l: int) -> None:
        view = self.view(l)
        for name, compute in self.computes:
            self.partials[name].append(compute(view))


def norm_tensors(recorder: StepRecorder, quantities: Mapping[str, Any]
                 ) -> list[list[torch.Tensor | None]]:
    """For each quantity with a `norm_of`, its tensor in each layer (None where there is none)."""
    views = [recorder.view(l) for l in range(len(recorder.layers))]
    return [[q.norm_of(v) for v in views] for q in quantities.values() if q.norm_of is not None]
