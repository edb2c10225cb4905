"""What a recorded step keeps for the probe, with as little work in the step as the numbers allow.

A recorded training step hands the model's forward pass a `StepRecorder` (a `Trace`), which keeps
each layer's z_l and phi(z_l) (views, no copies) and dL/dz_l by a tensor hook on z_l as the
gradient flows down: a reference to the tensor autograd passes on unchanged, where `retain_grad`
would copy every dL/dz. Everything is reduced once backward is done, in as few kernel calls as
possible (measure/assembler.py): at these sizes a record costs calls and passes over
memory, not arithmetic, so reductions in the forward pass or in backward hooks, one call per
tensor while it was in cache, were measured slower than batched calls afterwards.

A plain `Trace` (gradients retained) gives the same record through `StepRecorder.of`: the same
reductions of the same values, so the same bits with one member. With several, autograd hands
the hook dL/dz in the stacked layout (members' features first), which `retain_grad` copies into
another: the norm of dL/dz sums in another order, equal to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from winit_cli.models.base import StackedModel, Trace


@dataclass
class LayerView:
    """One layer of K members at a recorded step, as the quantities read it (a Linear: [K, out,
    in]; `winit.watch` sees any module as K = 1, its tensors [1, ...]). None where the layer has
    no such tensor or the step did not keep it (a norm layer has no z; `watch` keeps no h for a
    z changed in place)."""

    weight: torch.Tensor | None  # [K, out, in]
    weight_grad: torch.Tensor | None  # dL/dW, like weight; None before backward
    bias: torch.Tensor | None  # [K, out]
    bias_grad: torch.Tensor | None
    pre: torch.Tensor | None  # z, [K, B, out]
    pre_grad: torch.Tensor | None  # dL/dz, [K, B, out]; None before backward
    post: torch.Tensor | None  # phi(z) (logits on the output layer), [K, B, out]
    activation: str | None  # None on the output layer


class StepRecorder(Trace):
    """A Trace that keeps dL/dz by reference. Call `close` after backward."""

    def __init__(self, model: StackedModel):
        super().__init__()
        self.members = model.members
        self.layers = model.linears()
        self.pre_grads: list[torch.Tensor | None] = [None] * len(self.layers)

    @classmethod
    def of(cls, model: StackedModel, trace: Trace) -> StepRecorder:
        """A plain Trace's step (its dL/dz retained) as a recorder, once backward is done."""
        recorder = cls(model)
        recorder.pre, recorder.post = trace.pre, trace.post
        recorder.pre_grads = [trace.pre_grad(l) for l in range(len(trace.pre))]
        return recorder

    def views(self) -> list[LayerView]:
        """Every layer with what the step recorded for it, input side first."""
        return [LayerView(layer.weight, layer.weight.grad, layer.bias,
                          None if layer.bias is None else layer.bias.grad, pre,
                          None if grad is None else grad.view(pre.shape), post, layer.activation)
                for layer, pre, post, grad
                in zip(self.layers, self.pre, self.post, self.pre_grads, strict=True)]

    def watch_grad(self, l: int, z: torch.Tensor) -> None:
        z.register_hook(partial(self._keep_grad, l))

    def close(self) -> None:
        """Let go of the graph: each z_l's grad_fn holds a hook that points back here, a cycle
        that would keep every activation of the step alive until the garbage collector runs."""
        self.graph = []

    def _keep_grad(self, l: int, grad: torch.Tensor) -> None:
        self.pre_grads[l] = grad
