"""Per-layer quantities recorded during training, in the style of Cockpit's quantities: the one
registry of layers.csv's measured columns, for `winit run` and `winit.watch` alike.

Each quantity is either a reduction of one layer's `LayerView` (one value per member, possibly
finished on the CPU), or a norm of a tensor the view names, taken with the step's other norms of
its order in one call (measure/assembler.py, measure/norms.py and measure/recorder.py say why).
`QUANTITIES` lists them in the column order of `layers.csv`; an entry added to it is a column of
every run recorded after (`columns()`), CLI or watched. The plotting side never sees these: it
reads the saved CSV. A `LayerView` is one layer with what a recorded step kept for it (a CLI
model's `linears()` through a `Trace`, or a watched module through hooks), so every model kind
is measured alike; a view may lack a tensor (a norm layer has no z), and a quantity that needs it
gives None.

Sample statistics: act_std is the unbiased (n - 1) standard deviation over batch and units.

Definitions, for Linear layer l with pre-activation z_l = W_l h_{l-1} + b_l and h_l = phi(z_l):
- weight_grad_norm, bias_grad_norm: Frobenius norms of dL/dW_l, dL/db_l (the data loss only: L2
  regularization is added after recording), L the batch-mean cross-entropy.
- weight_grad_abs_mean, weight_grad_abs_max: the mean and the largest |dL/dW_l| over the
  layer's weights (the well-known `plot_grad_flow` bars): sum of |x| / count, and max |x|.
- act_grad_norm: Frobenius norm over the batch of dL/dz_l, the gradient backpropagated to the
  layer's pre-activations. This is the quantity that vanishes or explodes.
- weight_norm: ||W_l|| before the update; update_ratio: ||W_l' - W_l|| / ||W_l|| for this step's
  update (empty for a step with no update).
- act_mean, act_std: of h_l over batch and units (of the logits for the output layer).
- dead_fraction (relu, leaky_relu): units with phi(z) <= 0 (z <= 0; with a norm, its output
  y <= 0) for every example in the batch.
- saturated_fraction (tanh, sigmoid): activations within 0.01 of the asymptotes (|tanh| > 0.99,
  sigmoid < 0.01 or > 0.99), over batch and units.
Neither of the last two applies to the output layer or other activations: NaN (an empty cell).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from winit_cli.measure.norms import out_of_band
from winit_cli.measure.recorder import LayerView
from winit_cli.registry import Registry


@dataclass(frozen=True)
class Quantity:
    """One column of layers.csv, of one of two kinds; either gives None where it does not apply
    to the layer (NaN, an empty cell).

    - `norm_of(view)`: the tensor whose norm of order `ord`, per member, is the value (divided by
      the member's element count with `per_element`). A step's norms of each order are taken
      together once backward is done.
    - `compute(view)`: a reduction of the layer's tensors (weights, z, phi(z)) to a per-member
      partial on the device, [K, ...]; `finish` turns the partial into the value on the CPU
      (numpy, [K]); without one, the partial is the value. Called under no_grad: its
      tensors need no detaching.
    """

    compute: Callable[[LayerView], torch.Tensor | None] | None = None
    norm_of: Callable[[LayerView], torch.Tensor | None] | None = None
    finish: Callable[[np.ndarray], np.ndarray] | None = None
    ord: float = 2  # of the norm: 1 (sum of |x|), 2, or math.inf (largest |x|)
    per_element: bool = False  # the norm divided by the member's element count (a mean)


def act_std(views: list[LayerView], sum_of_squares: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Unbiased std over batch and units per layer and member ([L, K]), from sum(h^2) (already
    among the norms) and the means ([L, K]), in float64; a layer is recomputed from centred
    values where |mean| >> std would cancel digits, or the std is outside SAFE_BAND."""
    n = np.array([np.nan if v.post is None else v.post[0].numel() for v in views],
                 dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged member's inf and NaN
        var = np.maximum(sum_of_squares - n * means**2, 0) / (n - 1)
        # torch's vectorized sqrt, not numpy's: they differ in the last bit for ~1% of inputs,
        # and recorded numbers do not move when the code around them gets faster.
        std = torch.from_numpy(var).sqrt().numpy()
        redo = np.flatnonzero(((means**2 > 10 * var) | out_of_band(std)).any(axis=1))
    for l in redo:
        if views[l].post is None:  # no h, no std: NaN stays
            continue
        x = views[l].post.detach().flatten(1).double()
        centred = x - x.mean(dim=1, keepdim=True)
        std[l] = (torch.linalg.vector_norm(centred, dim=1) / (x.shape[1] - 1) ** 0.5).cpu()
    return std


def _act_mean(v: LayerView) -> torch.Tensor | None:
    # a plain mean, no squares: no underflow
    return None if v.post is None else v.post.mean(dim=(1, 2))


def _alive_units(v: LayerView) -> torch.Tensor | None:
    """Per unit, its largest z over the batch ([K, out]); > 0: some example activates it."""
    if v.post is None or v.activation not in ("relu", "leaky_relu"):
        return None
    # [K, out]: a unit is alive when some example activates it. phi(v) > 0 iff v > 0 for the
    # ReLU family, so post reads that with a norm between z and phi as without one.
    return v.post.amax(dim=1)


def _dead_fraction(largest_z: np.ndarray) -> np.ndarray:
    """[..., K, out] -> [..., K]. float32, as torch's `1.0 - (z.amax(1) > 0).float().mean(1)`:
    the count is exact, then one division and one subtraction, each rounded once."""
    alive = (largest_z > 0).sum(axis=-1).astype(np.float32)
    return np.float32(1.0) - alive / np.float32(largest_z.shape[-1])


def saturated_fraction(v: LayerView) -> torch.Tensor | None:
    if v.post is None:
        return None
    if v.activation == "tanh":
        saturated = v.post.abs() > 0.99
    elif v.activation == "sigmoid":
        saturated = (v.post < 0.01) | (v.post > 0.99)
    else:
        return None
    return saturated.float().mean(dim=(1, 2))


# Recorded before the optimizer step, in layers.csv's column order (the registry keeps the order
# of registration); update_ratio, measured after the optimizer's step, comes last.
QUANTITIES: Registry[Quantity] = Registry("quantity")
QUANTITIES.add("weight_grad_norm", Quantity(norm_of=lambda v: v.weight_grad))
QUANTITIES.add("bias_grad_norm", Quantity(norm_of=lambda v: v.bias_grad))
QUANTITIES.add("act_grad_norm", Quantity(norm_of=lambda v: v.pre_grad))
QUANTITIES.add("weight_norm", Quantity(norm_of=lambda v: v.weight))
QUANTITIES.add("act_mean", Quantity(_act_mean))
QUANTITIES.add("act_std", Quantity())  # from act_mean and ||h||, see act_std()
QUANTITIES.add("dead_fraction", Quantity(_alive_units, finish=_dead_fraction))
QUANTITIES.add("saturated_fraction", Quantity(saturated_fraction))
QUANTITIES.add("weight_grad_abs_mean",
               Quantity(norm_of=lambda v: v.weight_grad, ord=1, per_element=True))
QUANTITIES.add("weight_grad_abs_max", Quantity(norm_of=lambda v: v.weight_grad, ord=math.inf))


def columns() -> tuple[str, ...]:
    """layers.csv's measured columns as `QUANTITIES` holds them now; update_ratio, measured
    after the optimizer's step, last."""
    return (*QUANTITIES, "update_ratio")
