"""One recorded step of a user's model as layers.csv values, with winit's own quantities.

The numbers come from the same functions as a CLI run's (measure/probes.py): `member_norms`
(float32 norms, recomputed in float64 outside the safe band), `act_std`, and the act_mean,
dead_fraction and saturated_fraction quantities, each applied to a layer seen as one member.

How a layer's tensors are laid out for them ([1, examples, units]):

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

import torch

from winit_cli.measure.probes import COLUMNS, QUANTITIES, LayerView, act_std, member_norms
from winit_cli.watcher.hooks import Call
from winit_cli.watcher.layers import Layer

NORM_COLUMNS = ("weight_grad_norm", "bias_grad_norm", "act_grad_norm", "weight_norm")
ACT_COLUMNS = ("act_mean", "act_std")


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


def layer_view(layer: Layer, calls: list[Call]) -> LayerView | None:
    """The layer's step as the LayerView the probe quantities read, or None when its
    activation statistics cannot be measured (no call, or z changed in place)."""
    if not calls or any(c.stale() for c in calls):
        return None
    # After an in-place activation z holds h: for the ReLU family h > 0 exactly where z > 0, so
    # dead_fraction (a unit never positive), the one quantity that reads z, is the same.
    pre = _joined([c.z for c in calls], layer)
    post = _joined([c.post if c.post is not None else c.z for c in calls], layer)
    names = {c.activation for c in calls}
    activation = names.pop() if len(names) == 1 else None
    return LayerView(layer.weight.detach()[None], None, pre, None, post, activation)


def _grad(calls: list[Call], layer: Layer) -> torch.Tensor | None:
    grads = [c.grad for c in calls]
    return None if not grads or any(g is None for g in grads) else _joined(grads, layer)


@torch.no_grad()
def measure(layers: list[Layer], calls: dict[int, list[Call]], order: list[int]
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Values [L, len(COLUMNS)] (float64, CPU; update_ratio left NaN) for the layers in `order`,
    and a mask of the cells that were measured (False: not applicable or no tensor to read)."""
    ordered = [layers[i] for i in order]
    views = [layer_view(layer, calls.get(i, [])) if layer.has_dz else None
             for layer, i in zip(ordered, order, strict=True)]
    tensors = []
    for layer, i in zip(ordered, order, strict=True):
        w, b = layer.weight, layer.bias
        dz = _grad(calls.get(i, []), layer) if layer.has_dz else None
        tensors += [None if w is None else w.grad, None if b is None else b.grad, dz, w]
    posts = [v.post for v in views if v is not None]
    norms = torch.from_numpy(member_norms(
        [None if t is None else t.detach()[None] for t in tensors + posts])[:, 0])
    values = torch.full((len(order), len(COLUMNS)), float("nan"), dtype=torch.float64)
    norm_index = [COLUMNS.index(c) for c in NORM_COLUMNS]
    values[:, norm_index] = norms[:len(tensors)].view(len(order), len(NORM_COLUMNS))
    measured = torch.zeros_like(values, dtype=torch.bool)
    measured[:, norm_index] = torch.tensor([t is not None for t in tensors]).view(len(order), -1)
    _grad_flow_columns(values, measured, [layer.weight for layer in ordered])
    rows = [l for l, v in enumerate(views) if v is not None]
    if rows:
        _activation_columns(values, measured, [views[l] for l in rows], rows,
                            norms[len(tensors):])
    return values, measured


def _grad_flow_columns(values: torch.Tensor, measured: torch.Tensor,
                       weights: list[torch.Tensor | None]) -> None:
    """weight_grad_abs_mean and weight_grad_abs_max (plot_grad_flow's bars), in float64."""
    columns = [COLUMNS.index("weight_grad_abs_mean"), COLUMNS.index("weight_grad_abs_max")]
    for row, w in enumerate(weights):
        if w is not None and w.grad is not None:
            g = w.grad.detach().double().abs()
            values[row, columns] = torch.stack([g.mean(), g.max()]).cpu()
            measured[row, columns] = True


def _activation_columns(values: torch.Tensor, measured: torch.Tensor, views: list[LayerView],
                        rows: list[int], post_norms: torch.Tensor) -> None:
    """act_mean, act_std, dead_fraction and saturated_fraction of the layers in `rows`: one
    transfer from the device for all of them."""
    computed = ("act_mean", "dead_fraction", "saturated_fraction")
    stacked = torch.tensor([[_computed(QUANTITIES[q], v) for q in computed]
                            for v in views], dtype=torch.float64)  # [layers, 3]
    for j, q in enumerate(computed):
        values[rows, COLUMNS.index(q)] = stacked[:, j]
    means = stacked[:, :1]  # [layers, K = 1]
    std = act_std(views, (post_norms[:, None] ** 2).numpy(), means.numpy())
    values[rows, COLUMNS.index("act_std")] = torch.from_numpy(std[:, 0])
    for q in ACT_COLUMNS:
        measured[rows, COLUMNS.index(q)] = True


def _computed(quantity, view: LayerView) -> float:
    """A forward-pass quantity of one layer seen as one member (NaN where it does not apply):
    the CLI's partial reduction, finished on the CPU as the CLI finishes it."""
    partial = quantity.compute(view)
    if partial is None:
        return float("nan")
    values = partial.detach().double().cpu().numpy()
    return float((quantity.finish(values) if quantity.finish else values)[0])
