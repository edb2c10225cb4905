"""One recorded step of a user's model as layers.csv values: each recorded module as a
`LayerView` of one member (K = 1), handed to the CLI's assembler (measure/assembler.py), so that
every `QUANTITIES` column is computed by the same code as for a CLI run.

How a layer's tensors are laid out in its view ([1, examples, units]; parameters [1, ...]):

- Linear: z is [..., out_features]; every leading index (batch, and tokens or positions where
  there are some) is an example, the out_features are the units.
- Conv: z is [B, C_out, *spatial]; the B examples are the examples and each (channel, position)
  of the output feature map is a unit. So act_grad_norm is the Frobenius norm of dL/dz over
  batch, channels and space, and a unit is dead when it is <= 0 at its position for every
  example of the batch.
- a layer called several times in one step (gradient accumulation, a module used twice) is
  measured over all its calls together, as one batch.

h = phi(z) is the output of the activation module z went straight into (see hooks.py); where
there is none (a functional activation, a residual sum, the output layer), h is z itself. If z or
h was changed in place by anything but that activation, act_mean and act_std are left empty.
"""

from __future__ import annotations

import numpy as np
import torch

from winit_cli.measure.assembler import Assembler
from winit_cli.measure.recorder import LayerView
from winit_cli.watcher.hooks import Call
from winit_cli.watcher.layers import Layer


def _rows(t: torch.Tensor, layer: Layer) -> torch.Tensor:
    """A call's tensor as [examples, units]."""
    if layer.kind == "linear":
        return t.reshape(-1, t.shape[-1])
    batched = t.dim() == layer.weight.dim()  # Conv2d: [B, C, H, W] vs unbatched [C, H, W]
    return t.reshape(t.shape[0] if batched else 1, -1)


def _joined(tensors: list[torch.Tensor], layer: Layer) -> torch.Tensor:
    """[1, examples, units] over all calls; a single call is a view, no copy."""
    rows = [_rows(t, layer) for t in tensors]
    if len(rows) == 1:
        return rows[0][None]
    if len({r.shape[1] for r in rows}) > 1:  # inputs of different sizes: units are elements
        rows = [r.reshape(-1, 1) for r in rows]
    return torch.cat(rows)[None]


def _member(t: torch.Tensor | None) -> torch.Tensor | None:
    """A tensor as one member's: [1, ...], a view."""
    return None if t is None else t.detach()[None]


def layer_view(layer: Layer, calls: list[Call]) -> LayerView:
    """The layer's step as one member: its weight and bias with their gradients, and for a
    Linear or Conv dL/dz, and z and h unless no call ran or z was changed in place (then the
    activation statistics cannot be measured)."""
    w, b = layer.weight, layer.bias
    view = LayerView(_member(w), _member(None if w is None else w.grad), _member(b),
                     _member(None if b is None else b.grad), None, None, None, None)
    if not layer.has_dz:
        return view
    grads = [c.grad for c in calls]
    if grads and all(g is not None for g in grads):
        view.pre_grad = _joined(grads, layer)
    if calls and not any(c.stale() for c in calls):
        # After an in-place activation z holds h: for the ReLU family h > 0 exactly where z > 0,
        # so dead_fraction (a unit never positive) is the same whichever it reads.
        view.pre = _joined([c.z for c in calls], layer)
        view.post = _joined([c.post if c.post is not None else c.z for c in calls], layer)
        names = {c.activation for c in calls}
        view.activation = names.pop() if len(names) == 1 else None
    return view


@torch.no_grad()
def measure(assembler: Assembler, layers: list[Layer], calls: dict[int, list[Call]],
            order: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Values [L, len(assembler.columns)] (float64; update_ratio left NaN) for the layers in
    `order`, and a mask of the cells that were measured (False: not applicable or no tensor to
    read)."""
    views = [layer_view(layers[i], calls.get(i, [])) for i in order]
    values = assembler(views, 1)
    return values[0], assembler.measured_cells()
