"""Per-layer quantities recorded during training, in the style of Cockpit's quantities.

Each quantity is either a reduction of one layer's `LayerView` in the forward pass (one value
per member, possibly finished on the CPU), or the L2 norm of a tensor the view names, taken with
all the step's other norms in one call (measure/recorder.py says why).
`QUANTITIES` lists them in the column order of `layers.csv`. The plotting side never sees these:
it reads the saved CSV. A `LayerView` is one of the model's `linears()` with what a `Trace`
recorded for it, so every model kind is measured alike.

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

from winit_cli.measure.family_probes import FamilyColumns
from winit_cli.measure.recorder import LayerView, StepRecorder, norm_tensors
from winit_cli.models.base import StackedModel, Trace

__all__ = ["COLUMNS", "QUANTITIES", "LayerView", "Probe", "Quantity", "member_norms"]


# float32 sums of squares lose elements below ~1e-19 (their squares underflow, or are flushed to
# zero) and overflow above ~1e19: in vanishing and exploding nets a float32 norm reads 0 where the
# gradient is 1e-20, or inf where it is 1e20. So norms and stds are computed in float32, and
# those outside this band are recomputed in float64 (inside it, what underflowed is below 1e-7 of
# the result). Casting everything to float64 would double the cost of recording.
SAFE_BAND = (1e-12, 1e12)


@dataclass(frozen=True)
class Quantity:
    """One column of layers.csv, of one of two kinds; either gives None where it does not apply
    to the layer (NaN, an empty cell).

    - `norm_of(view)`: the tensor whose L2 norm, per member, is the value. A step's norms are all
      taken in one batched call once backward is done.
    - `compute(view)`: a reduction of the layer's forward tensors (weights, z, phi(z)) to a
      per-member partial on the device, [K, ...], run in the forward pass as the layer's output
      appears; `finish` turns the partial into the value on the CPU (numpy, [K]); without one,
      the partial is the value.
    """

    compute: Callable[[LayerView], torch.Tensor | None] | None = None
    norm_of: Callable[[LayerView], torch.Tensor | None] | None = None
    finish: Callable[[np.ndarray], np.ndarray] | None = None
    ord: float = 2  # of the norm: 1 (sum of |x|), 2, or math.inf (largest |x|)
    per_element: bool = False  # the norm divided by the member's element count (a mean)


def _out_of_band(values: np.ndarray) -> np.ndarray:
    return ~((values >= SAFE_BAND[0]) & (values <= SAFE_BAND[1]))


def _norm64(t: torch.Tensor, ord: float = 2) -> np.ndarray:
    """Each member's norm of t ([K, ...]) in float64: exact where float32 under- or overflows."""
    return torch.linalg.vector_norm(t.detach().flatten(1).double(), ord, dim=1).cpu().numpy()


def member_norms(tensors: list[torch.Tensor | None]) -> np.ndarray:
    """L2 norm of each member ([K, ...] slices) of each tensor: [len(tensors), K], float64 (NaN
    for None). One `_foreach_norm` call for all of them (as `clip_grad_norm_` does), then float64
    for any outside SAFE_BAND."""
    members = next((t.shape[0] for t in tensors if t is not None), 1)
    return _norms_and_partials(tensors, [2] * len(tensors), members, [])[0]


def act_std(views: list[LayerView], sum_of_squares: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Unbiased std over batch and units per layer and member ([L, K]), from sum(h^2) (already
    among the norms) and the means ([L, K]), in float64; a layer is recomputed from centred
    values where |mean| >> std would cancel digits, or the std is outside SAFE_BAND."""
    n = np.array([v.post[0].numel() for v in views], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged member's inf and NaN
        var = np.maximum(sum_of_squares - n * means**2, 0) / (n - 1)
        # torch's vectorized sqrt, not numpy's: they differ in the last bit for ~1% of inputs,
        # and recorded numbers do not move when the code around them gets faster.
        std = torch.from_numpy(var).sqrt().numpy()
        redo = np.flatnonzero(((means**2 > 10 * var) | _out_of_band(std)).any(axis=1))
    for l in redo:
        x = views[l].post.detach().flatten(1).double()
        centred = x - x.mean(dim=1, keepdim=True)
        std[l] = (torch.linalg.vector_norm(centred, dim=1) / (x.shape[1] - 1) ** 0.5).cpu()
    return std


def _alive_units(v: LayerView) -> torch.Tensor | None:
    """Per unit, its largest z over the batch ([K, out]); > 0: some example activates it."""
    if v.activation not in ("relu", "leaky_relu"):
        return None
    # [K, out]: a unit is alive when some example activates it. phi(v) > 0 iff v > 0 for the
    # ReLU family, so post reads that with a norm between z and phi as without one.
    return v.post.detach().amax(dim=1)


def _dead_fraction(largest_z: np.ndarray) -> np.ndarray:
    # float32, as torch's `1.0 - (z.amax(1) > 0).float().mean(1)`: the count is exact, then
    # one division and one subtraction, each rounded once.
    alive = (largest_z > 0).sum(axis=1).astype(np.float32)
    return np.float32(1.0) - alive / np.float32(largest_z.shape[1])


def saturated_fraction(v: LayerView) -> torch.Tensor | None:
    if v.activation == "tanh":
        saturated = v.post.abs() > 0.99
    elif v.activation == "sigmoid":
        saturated = (v.post < 0.01) | (v.post > 0.99)
    else:
        return None
    return saturated.float().mean(dim=(1, 2))


# Recorded before the optimizer step, in layers.csv's column order; update_ratio comes after.
QUANTITIES: dict[str, Quantity] = {
    "weight_grad_norm": Quantity(norm_of=lambda v: v.weight.grad),
    "bias_grad_norm": Quantity(norm_of=lambda v: None if v.bias is None else v.bias.grad),
    "act_grad_norm": Quantity(norm_of=lambda v: v.pre_grad),
    "weight_norm": Quantity(norm_of=lambda v: v.weight),
    "act_mean": Quantity(lambda v: v.post.detach().mean(dim=(1, 2))),  # no squares: no underflow
    "act_std": Quantity(),  # from act_mean and ||h||, see act_std()
    "dead_fraction": Quantity(_alive_units, finish=_dead_fraction),
    "saturated_fraction": Quantity(saturated_fraction),
    "weight_grad_abs_mean": Quantity(norm_of=lambda v: v.weight.grad, ord=1, per_element=True),
    "weight_grad_abs_max": Quantity(norm_of=lambda v: v.weight.grad, ord=math.inf),
}
COLUMNS = (*QUANTITIES, "update_ratio")
# ||h|| per layer, for act_std: measured with the rest, not a column of its own.
_MEASURED = {**QUANTITIES, "act_norm": Quantity(norm_of=lambda v: v.post)}
_NORMS = [name for name, q in _MEASURED.items() if q.norm_of is not None]
_COMPUTED = [name for name, q in _MEASURED.items() if q.compute is not None]


def _to_host(tensors: list[torch.Tensor]) -> np.ndarray:
    """The tensors' values, flattened and concatenated, float64 on the CPU. Off a GPU that is
    one transfer (one sync); on the CPU each is read where it lies."""
    if not tensors:
        return np.empty(0)
    if tensors[0].device.type != "cpu":
        return torch.cat([t.reshape(-1) for t in tensors]).double().cpu().numpy()
    return np.concatenate([t.numpy().reshape(-1) for t in tensors], dtype=np.float64)


def _batched_norms(tensors: list[torch.Tensor], order: float, members: int) -> torch.Tensor:
    """Each member's norm of each tensor, [len(tensors) * K] (tensor-major), on the device:
    one `_foreach_norm` call for 2-norms, one reduction per tensor for the others."""
    if order == math.inf:
        # the largest |x| as max(max x, -min x): measured 10x faster on the CPU than the inf
        # norm, which `_foreach_norm` does not vectorize there; exact either way.
        flat = [t.flatten(1) for t in tensors]
        return torch.cat([torch.maximum(f.amax(1), -f.amin(1)) for f in flat])
    if order == 1:
        # a plain sum of |x|: torch's cascaded sum is exact to ~1e-7 relative, where the L1
        # `_foreach_norm` and `vector_norm` were measured 2e-6 to 1e-5 off on 37k-200k values.
        return torch.cat([t.flatten(1).abs().sum(1) for t in tensors])
    # With one member, the whole tensor is the member: no per-member slices to make.
    return torch.stack(torch._foreach_norm(
        [m for t in tensors for m in (t.unbind(0) if members > 1 else (t,))], order))


def _norms_and_partials(tensors: list[torch.Tensor | None], orders: list[float], members: int,
                        partials: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Each member's norm of each tensor ([len(tensors), K], NaN for None; batched by order,
    float64 where float32 may fail outside SAFE_BAND), and the partials' values, flattened: all
    of it in one transfer off the device."""
    k = members
    by_order: dict[float, list[int]] = {}
    for i, t in enumerate(tensors):
        if t is not None:
            by_order.setdefault(orders[i], []).append(i)
    pieces = [_batched_norms([tensors[i].detach() for i in index], order, k)
              for order, index in by_order.items()]
    moved = _to_host([*pieces, *partials])
    norms = np.full((len(tensors), k), np.nan)
    at = 0
    for index in by_order.values():
        norms[index] = moved[at:at + len(index) * k].reshape(-1, k)
        at += len(index) * k
    for i in np.flatnonzero(_out_of_band(norms).any(axis=1)):
        # float32: a 2-norm's squares under- and overflow, a sum of |x| only overflows, a max
        # is exact
        if tensors[i] is not None and (orders[i] == 2 or orders[i] == 1
                                       and not np.isfinite(norms[i]).all()):
            norms[i] = _norm64(tensors[i], orders[i])
    return norms, moved[at:]


def assemble(recorder: StepRecorder) -> torch.Tensor:
    """The step's record, float64 [K, L, len(COLUMNS)] on the CPU, from what `recorder` kept:
    the 2-norms in one `_foreach_norm` call (others batched by order), one transfer off the
    device with the forward partials, then float64 for the norms outside SAFE_BAND, each
    `finish`, and act_std from ||h|| and the mean. update_ratio is left NaN."""
    k, depth = recorder.members, len(recorder.layers)
    tensors = [t for row in norm_tensors(recorder, _MEASURED) for t in row]  # [Qn * L]
    quantities = [_MEASURED[name] for name in _NORMS for _ in range(depth)]
    partials = [(name, l, p) for name in _COMPUTED
                for l, p in enumerate(recorder.partials[name]) if p is not None]
    norms, moved = _norms_and_partials(tensors, [q.ord for q in quantities], k,
                                       [p for _, _, p in partials])
    for i, (t, q) in enumerate(zip(tensors, quantities, strict=True)):
        if t is not None and q.per_element:
            norms[i] /= t.numel() / k
    norms = norms.reshape(len(_NORMS), depth, k)
    computed = {name: np.full((depth, k), np.nan) for name in _COMPUTED}
    at = 0
    for name, l, p in partials:
        value = moved[at:at + p.numel()].reshape(p.shape)
        at += p.numel()
        finish = _MEASURED[name].finish
        computed[name][l] = finish(value) if finish is not None else value
    record = np.full((k, depth, len(COLUMNS)), np.nan)
    for q, name in enumerate(_NORMS):
        if name in COLUMNS:
            record[:, :, COLUMNS.index(name)] = norms[q].T
    for name in _COMPUTED:
        record[:, :, COLUMNS.index(name)] = computed[name].T
    views = [recorder.view(l) for l in range(depth)]
    sum_of_squares = norms[_NORMS.index("act_norm")] ** 2
    record[:, :, COLUMNS.index("act_std")] = act_std(views, sum_of_squares, computed["act_mean"]).T
    return torch.from_numpy(record)


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
        # Norm layers and residual streams add columns (measure/family_probes.py); none for
        # the plain MLP. `columns` names the last axis of what before_step returns.
        family = FamilyColumns(model, member_norms)
        self._family = family if family.columns else None
        self.columns = COLUMNS + family.columns

    def trace(self) -> StepRecorder:
        """The Trace for a recorded step's forward pass: the forward quantities run as the
        layers' outputs appear, dL/dz is kept without a copy (see measure/recorder.py)."""
        return StepRecorder(self.model, _MEASURED)

    @torch.no_grad()
    def before_step(self, trace: Trace, will_update: bool) -> torch.Tensor:
        """Returns float64 [K, L, len(self.columns)]; update_ratio (and norm_update_ratio) are
        filled in by `after_step`.

        `trace`: this probe's `trace()` once backward has run, or any plain `Trace` (with its
        gradients retained), which is measured now."""
        if isinstance(trace, StepRecorder):
            trace.close()
            recorder = trace
        else:
            recorder = StepRecorder.after_the_fact(self.model, trace, _MEASURED)
        record = assemble(recorder)
        if will_update and self._sgd is None:
            self._before = [layer.weight.detach().clone() for layer in recorder.layers]
        if self._family is not None:
            record = torch.cat([record, self._family.before_step(
                trace, len(recorder.layers), will_update)], dim=2)
        return record

    @torch.no_grad()
    def after_step(self, record: torch.Tensor) -> None:
        """update_ratio = ||W' - W|| / ||W||, the denominator being the recorded weight_norm."""
        weights = [layer.weight for layer in self.model.linears()]
        if self._sgd is not None:
            steps = [self._sgd.state.get(w, {}).get("momentum_buffer") for w in weights]
            steps = [w.grad if b is None else b for w, b in zip(weights, steps, strict=True)]
            lrs = np.array([self._lr[id(w)] for w in weights])
            updates = member_norms(steps) * lrs[:, None]  # [L, K]
        else:
            torch._foreach_sub_(self._before, [w.detach() for w in weights])  # -update
            updates = member_norms(self._before)
        values = record.numpy()
        with np.errstate(divide="ignore", invalid="ignore"):  # zero or non-finite weights
            values[:, :, COLUMNS.index("update_ratio")] = (
                updates.T / values[:, :, COLUMNS.index("weight_norm")])
        self._before = []
        if self._family is not None:
            self._family.after_step(record[:, :, len(COLUMNS):])
