"""Per-layer quantities recorded during training, in the style of Cockpit's quantities.

Each quantity is a small function of one layer's `LayerView`, returning one value per member
(a [K] tensor); `QUANTITIES` lists them in the column order of `layers.csv`. The plotting side
never sees these: it reads the saved CSV.

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

from .models import StackedMLP, Trace


@dataclass
class LayerView:
    weight: torch.Tensor  # [K, out, in]
    bias: torch.Tensor | None  # [K, out]
    pre: torch.Tensor  # z, [K, B, out]
    post: torch.Tensor  # phi(z) (logits on the output layer), [K, B, out]
    activation: str | None  # None on the output layer


def _norm(t: torch.Tensor) -> torch.Tensor:
    # In float64: in vanishing regimes the elements are ~1e-22 and their float32 squares
    # underflow (or flush) to 0, so a float32 norm reads 0 where the gradient is 1e-20.
    return torch.linalg.vector_norm(t.flatten(1), dim=1, dtype=torch.float64)


def _nan(view: LayerView) -> torch.Tensor:
    return torch.full((view.weight.shape[0],), float("nan"), dtype=torch.float64)


def dead_fraction(v: LayerView) -> torch.Tensor:
    if v.activation not in ("relu", "leaky_relu"):
        return _nan(v)
    alive = (v.pre > 0).any(dim=1)  # [K, out]
    return 1.0 - alive.double().mean(dim=1)


def saturated_fraction(v: LayerView) -> torch.Tensor:
    if v.activation == "tanh":
        saturated = v.post.abs() > 0.99
    elif v.activation == "sigmoid":
        saturated = (v.post < 0.01) | (v.post > 0.99)
    else:
        return _nan(v)
    return saturated.double().mean(dim=(1, 2))


# Recorded before the optimizer step, in layers.csv's column order; update_ratio comes after.
QUANTITIES: dict[str, Callable[[LayerView], torch.Tensor]] = {
    "weight_grad_norm": lambda v: _norm(v.weight.grad),
    "bias_grad_norm": lambda v: _nan(v) if v.bias is None else _norm(v.bias.grad),
    "act_grad_norm": lambda v: _norm(v.pre.grad),
    "weight_norm": lambda v: _norm(v.weight),
    "act_mean": lambda v: v.post.mean(dim=(1, 2), dtype=torch.float64),
    "act_std": lambda v: v.post.flatten(1).double().std(dim=1),  # float64: see _norm
    "dead_fraction": dead_fraction,
    "saturated_fraction": saturated_fraction,
}
COLUMNS = (*QUANTITIES, "update_ratio")


class Probe:
    """Measures all quantities for every layer and member at one step: `before_step`, then
    `after_step` once the optimizer has updated the weights."""

    def __init__(self, model: StackedMLP):
        self.model = model
        self._before: list[torch.Tensor] = []

    @torch.no_grad()
    def before_step(self, trace: Trace, will_update: bool) -> torch.Tensor:
        """Returns [K, L, len(COLUMNS)]; update_ratio is filled in by `after_step`."""
        m = self.model
        rows = []
        for l, w in enumerate(m.weights):
            view = LayerView(w, m.bias(l), trace.pre[l], trace.post[l],
                             m.activation if l < m.depth - 1 else None)
            rows.append(torch.stack([q(view) for q in QUANTITIES.values()] + [_nan(view)], dim=1))
        self._before = [w.detach().clone() for w in m.weights] if will_update else []
        return torch.stack(rows, dim=1)

    @torch.no_grad()
    def after_step(self, record: torch.Tensor) -> None:
        for l, (w, old) in enumerate(zip(self.model.weights, self._before, strict=True)):
            record[:, l, -1] = _norm(w - old) / _norm(old)
        self._before = []
