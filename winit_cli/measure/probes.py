"""Per-layer quantities recorded during training, in the style of Cockpit's quantities.

Each quantity is either a small function of one layer's `LayerView` returning one value per
member (a [K] tensor), or the L2 norm of a tensor the view names; the probe computes all the norms
of a step in one batched call. `QUANTITIES` lists them in the column order of `layers.csv`. The
plotting side never sees these: it reads the saved CSV. A `LayerView` is one of the model's
`linears()` with what a `Trace` recorded for it, so every model kind is measured alike.

Sample statistics: act_std is the unbiased (n - 1) standard deviation over batch and units.

Definitions, for Linear layer l with pre-activation z_l = W_l h_{l-1} + b_l and h_l = phi(z_l):
- weight_grad_norm, bias_grad_norm: Frobenius norms of dL/dW_l, dL/db_l (the data loss only: L2
  regularization is added after recording), L the batch-mean cross-entropy.
- act_grad_norm: Frobenius norm over the batch of dL/dz_l, the gradient backpropagated to the
  layer's pre-activations. This is the quantity that vanishes or explodes.
- weight_norm: ||W_l|| before the update; update_ratio: ||W_l' - W_l|| / ||W_l|| for this step's
  update (empty for a step with no update).
- act_mean, act_std: of h_l over batch and units (of the logits for the output layer).
- dead_fraction (relu, leaky_relu): units with z <= 0 for every example in the batch.
- saturated_fraction (tanh, sigmoid): activations within 0.01 of the asymptotes (|tanh| > 0.99,
  sigmoid < 0.01 or > 0.99), over batch and units.
Neither of the last two applies to the output layer or other activations: NaN (an empty cell).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from winit_cli.models.base import LinearView, StackedModel, Trace


@dataclass
class LayerView:
    weight: torch.Tensor  # [K, out, in]
    bias: torch.Tensor | None  # [K, out]
    pre: torch.Tensor  # z, [K, B, out]
    pre_grad: torch.Tensor | None  # dL/dz, [K, B, out]
    post: torch.Tensor  # phi(z) (logits on the output layer), [K, B, out]
    activation: str | None  # None on the output layer

    @classmethod
    def of(cls, layer: LinearView, trace: Trace, l: int) -> LayerView:
        """Linear layer `layer`, the l-th (0-based) that `trace` recorded."""
        return cls(layer.weight, layer.bias, trace.pre[l], trace.pre_grad(l), trace.post[l],
                   layer.activation)


# float32 sums of squares lose elements below ~1e-19 (their squares underflow, or are flushed to
# zero) and overflow above ~1e19: in vanishing and exploding nets a float32 norm reads 0 where the
# gradient is 1e-20, or inf where it is 1e20. So norms and stds are computed in float32, and
# those outside this band are recomputed in float64 (inside it, what underflowed is below 1e-7 of
# the result). Casting everything to float64 would double the cost of recording.
SAFE_BAND = (1e-12, 1e12)


@dataclass(frozen=True)
class Quantity:
    """One column of layers.csv: `compute(view)` -> float32 [K], or the L2 norm of `norm_of(view)`
    per member (None when the layer has no such tensor: NaN)."""

    compute: Callable[[LayerView], torch.Tensor] | None = None
    norm_of: Callable[[LayerView], torch.Tensor | None] | None = None


def _out_of_band(values: torch.Tensor) -> torch.Tensor:
    return ~((values >= SAFE_BAND[0]) & (values <= SAFE_BAND[1]))


def member_norms(tensors: list[torch.Tensor | None]) -> torch.Tensor:
    """L2 norm of each member ([K, ...] slices) of each tensor: [len(tensors), K], float64.

    One `_foreach_norm` call for all of them (as `clip_grad_norm_` does), then float64 for any
    outside SAFE_BAND.
    """
    index = [i for i, t in enumerate(tensors) if t is not None]
    out = torch.full((len(tensors), tensors[index[0]].shape[0] if index else 1), float("nan"),
                     dtype=torch.float64)
    if not index:
        return out
    members = out.shape[1]
    # With one member, the whole tensor is the member: no per-member slices to make.
    slices = [m for i in index for m in
              (tensors[i].detach().unbind(0) if members > 1 else (tensors[i].detach(),))]
    out[index] = torch.stack(torch._foreach_norm(slices)).view(len(index), -1).double().cpu()
    for i in _out_of_band(out).any(dim=1).nonzero().flatten().tolist():
        if tensors[i] is not None:
            out[i] = torch.linalg.vector_norm(tensors[i].detach().flatten(1).double(), dim=1).cpu()
    return out


def act_std(views: list[LayerView], sum_of_squares: torch.Tensor,
            means: torch.Tensor) -> torch.Tensor:
    """Unbiased std over batch and units per layer and member ([L, K]), from sum(h^2) (already
    in the batched norms) and the means ([L, K]), in float64; a layer is recomputed from centred
    values where |mean| >> std would cancel digits, or the std is outside SAFE_BAND."""
    n = torch.tensor([v.post[0].numel() for v in views], dtype=torch.float64)[:, None]
    var = (sum_of_squares - n * means**2).clamp(min=0) / (n - 1)
    redo = ((means**2 > 10 * var) | _out_of_band(var.sqrt())).any(dim=1)
    std = var.sqrt()
    for l in redo.nonzero().flatten().tolist():
        x = views[l].post.detach().flatten(1).double()
        centred = x - x.mean(dim=1, keepdim=True)
        std[l] = (torch.linalg.vector_norm(centred, dim=1) / (x.shape[1] - 1) ** 0.5).cpu()
    return std


def _nan(view: LayerView) -> torch.Tensor:
    return torch.full((view.weight.shape[0],), float("nan"), dtype=torch.float64,
                      device=view.weight.device)


def dead_fraction(v: LayerView) -> torch.Tensor:
    if v.activation not in ("relu", "leaky_relu"):
        return _nan(v)
    alive = v.pre.detach().amax(dim=1) > 0  # [K, out]: some example activates the unit
    return 1.0 - alive.float().mean(dim=1)


def saturated_fraction(v: LayerView) -> torch.Tensor:
    if v.activation == "tanh":
        saturated = v.post.abs() > 0.99
    elif v.activation == "sigmoid":
        saturated = (v.post < 0.01) | (v.post > 0.99)
    else:
        return _nan(v)
    return saturated.float().mean(dim=(1, 2))


# Recorded before the optimizer step, in layers.csv's column order; update_ratio comes after.
QUANTITIES: dict[str, Quantity] = {
    "weight_grad_norm": Quantity(norm_of=lambda v: v.weight.grad),
    "bias_grad_norm": Quantity(norm_of=lambda v: None if v.bias is None else v.bias.grad),
    "act_grad_norm": Quantity(norm_of=lambda v: v.pre_grad),
    "weight_norm": Quantity(norm_of=lambda v: v.weight),
    "act_mean": Quantity(lambda v: v.post.detach().mean(dim=(1, 2))),  # no squares: no underflow
    "act_std": Quantity(),  # from act_mean and ||h||, see act_std()
    "dead_fraction": Quantity(dead_fraction),
    "saturated_fraction": Quantity(saturated_fraction),
}
COLUMNS = (*QUANTITIES, "update_ratio")


class Probe:
    """Measures all quantities for every layer and member at one step: `before_step`, then
    `after_step` once the optimizer has updated the weights."""

    def __init__(self, model: StackedModel, optimizer: torch.optim.Optimizer | None = None):
        self.model = model
        self._before: list[torch.Tensor] = []
        # Plain SGD and heavy-ball momentum apply W' = W - lr * buf (buf = the gradient without
        # momentum): the update's norm is lr * ||buf||, read from the optimizer after its step.
        # That saves copying every weight before the step; other optimizers are measured by
        # difference.
        self._sgd = optimizer if isinstance(optimizer, torch.optim.SGD) and all(
            not g["nesterov"] and not g["maximize"] and g["dampening"] == 0
            and g["weight_decay"] == 0 for g in optimizer.param_groups) else None
        self._lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]} \
            if self._sgd else {}

    @torch.no_grad()
    def before_step(self, trace: Trace, will_update: bool) -> torch.Tensor:
        """Returns float64 [K, L, len(COLUMNS)]; update_ratio is filled in by `after_step`."""
        layers = self.model.linears()
        views = [LayerView.of(layer, trace, l) for l, layer in enumerate(layers)]
        record = torch.full((self.model.members, len(views), len(COLUMNS)), float("nan"),
                            dtype=torch.float64)
        norm_columns = [j for j, q in enumerate(QUANTITIES.values()) if q.norm_of is not None]
        tensors = [QUANTITIES[COLUMNS[j]].norm_of(v) for j in norm_columns for v in views]
        norms = member_norms(tensors + [v.post for v in views])  # [(Qn + 1) * L, K]
        record[:, :, norm_columns] = (norms[:len(tensors)].view(len(norm_columns), len(views), -1)
                                      .permute(2, 1, 0))
        for j, q in enumerate(QUANTITIES.values()):
            if q.compute is not None:
                record[:, :, j] = torch.stack([q.compute(v) for v in views], dim=1).double().cpu()
        means = record[:, :, COLUMNS.index("act_mean")].T  # [L, K]
        record[:, :, COLUMNS.index("act_std")] = act_std(views, norms[len(tensors):] ** 2, means).T
        if will_update and self._sgd is None:
            self._before = [layer.weight.detach().clone() for layer in layers]
        return record

    @torch.no_grad()
    def after_step(self, record: torch.Tensor) -> None:
        """update_ratio = ||W' - W|| / ||W||, the denominator being the recorded weight_norm."""
        weights = [layer.weight for layer in self.model.linears()]
        if self._sgd is not None:
            steps = [self._sgd.state.get(w, {}).get("momentum_buffer") for w in weights]
            steps = [w.grad if b is None else b for w, b in zip(weights, steps, strict=True)]
            lrs = torch.tensor([self._lr[id(w)] for w in weights], dtype=torch.float64)
            updates = member_norms(steps) * lrs[:, None]  # [L, K]
        else:
            torch._foreach_sub_(self._before, [w.detach() for w in weights])  # -update
            updates = member_norms(self._before)
        record[:, :, -1] = updates.T / record[:, :, COLUMNS.index("weight_norm")]
        self._before = []
