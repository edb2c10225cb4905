"""Per-layer quantities recorded during training, in the style of Cockpit's quantities.

Each quantity is either a reduction of one layer's `LayerView` (one value per member, possibly
finished on the CPU), or a norm of a tensor the view names, taken with the step's other norms of
its order in one call (measure/norms.py and measure/recorder.py say why).
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

from winit_cli.measure import norms
from winit_cli.measure.family_probes import FamilyColumns
from winit_cli.measure.norms import AbsStats, member_norms, out_of_band
from winit_cli.measure.recorder import LayerView, StepRecorder
from winit_cli.models.base import StackedModel, Trace

__all__ = ["COLUMNS", "QUANTITIES", "LayerView", "Probe", "Quantity", "act_std", "member_norms"]


@dataclass(frozen=True)
class Quantity:
    """One column of layers.csv, of one of two kinds; either gives None where it does not apply
    to the layer (NaN, an empty cell).

    - `norm_of(view)`: the tensor whose norm of order `ord`, per member, is the value (divided by
      the member's element count with `per_element`). A step's norms of each order are taken
      together once backward is done.
    - `compute(view)`: a reduction of the layer's tensors (weights, z, phi(z)) to a per-member
      partial on the device, [K, ...]; `finish` turns the partial into the value on the CPU
      (numpy, [K]); without one, the partial is the value.
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
    n = np.array([v.post[0].numel() for v in views], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged member's inf and NaN
        var = np.maximum(sum_of_squares - n * means**2, 0) / (n - 1)
        # torch's vectorized sqrt, not numpy's: they differ in the last bit for ~1% of inputs,
        # and recorded numbers do not move when the code around them gets faster.
        std = torch.from_numpy(var).sqrt().numpy()
        redo = np.flatnonzero(((means**2 > 10 * var) | out_of_band(std)).any(axis=1))
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
    """[..., K, out] -> [..., K]. float32, as torch's `1.0 - (z.amax(1) > 0).float().mean(1)`:
    the count is exact, then one division and one subtraction, each rounded once."""
    alive = (largest_z > 0).sum(axis=-1).astype(np.float32)
    return np.float32(1.0) - alive / np.float32(largest_z.shape[-1])


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
_ORDER_OF = np.array([_MEASURED[name].ord for name in _NORMS])
_PER_ELEMENT_OF = np.array([_MEASURED[name].per_element for name in _NORMS])


@dataclass(frozen=True)
class _Layout:
    """Where a step's norms land among `wanted` (the `_NORMS` quantities' tensors, quantity-major,
    then layer): fixed for a model, so worked out once per pattern of present tensors."""

    l2: list[int]  # rows taken as 2-norms, in the order of the batched call
    absolute: list[int]  # rows whose tensor is made absolute: the first row of each tensor
    l1: np.ndarray  # rows that are sums of |x|, and the slot of their tensor in `absolute`
    l1_slots: np.ndarray
    largest: np.ndarray  # rows that are largest |x|, and their tensor's slot
    largest_slots: np.ndarray
    means: np.ndarray  # rows divided by their member's element count, and those counts
    counts: np.ndarray


def _layout(wanted: list[torch.Tensor | None], depth: int) -> _Layout:
    orders = np.repeat(_ORDER_OF, depth)
    present = np.array([t is not None for t in wanted])
    # a tensor wanted both as a sum of |x| and as its largest |x| is made absolute once
    absolute: list[int] = []
    slot: dict[int, int] = {}
    seen: dict[int, int] = {}
    for i in np.flatnonzero(present & (orders != 2)):
        if id(wanted[i]) not in seen:
            seen[id(wanted[i])] = len(absolute)
            absolute.append(int(i))
        slot[i] = seen[id(wanted[i])]
    l1 = np.flatnonzero(present & (orders == 1))
    largest = np.flatnonzero(present & (orders == math.inf))
    means = np.flatnonzero(present & np.repeat(_PER_ELEMENT_OF, depth))
    return _Layout(
        l2=np.flatnonzero(present & (orders == 2)).tolist(),
        absolute=absolute,
        l1=l1, l1_slots=np.array([slot[i] for i in l1], dtype=int),
        largest=largest, largest_slots=np.array([slot[i] for i in largest], dtype=int),
        means=means, counts=np.array([wanted[i][0].numel() for i in means], dtype=np.float64))


def _finished(partials: list[tuple[str, int, torch.Tensor]], moved: np.ndarray, depth: int,
              k: int) -> dict[str, np.ndarray]:
    """Each computed quantity's [L, K] (NaN where it has no partial), from the partials' values
    (`moved`, in the order of `partials`): a quantity whose partials share a shape is finished
    in one call over all its layers (each `finish` works over leading axes)."""
    values, at = {}, 0
    for name in _COMPUTED:
        mine = [(l, p.shape) for n, l, p in partials if n == name]
        out = values[name] = np.full((depth, k), np.nan)
        size = sum(math.prod(shape) for _, shape in mine)
        block, at = moved[at:at + size], at + size
        finish = _MEASURED[name].finish or (lambda v: v)
        if len({shape for _, shape in mine}) == 1:
            out[[l for l, _ in mine]] = finish(block.reshape(len(mine), *mine[0][1]))
            continue
        for l, shape in mine:
            out[l] = finish(block[:math.prod(shape)].reshape(shape))
            block = block[math.prod(shape):]
    return values


class _Assembler:
    """Makes a step's record (`__call__`); keeps what is the same at every recorded step of a
    model: the layouts, and the buffers of the absolute values."""

    def __init__(self) -> None:
        self.absolute = AbsStats()
        self.layouts: dict[tuple, _Layout] = {}

    def layout(self, wanted: list[torch.Tensor | None], depth: int) -> _Layout:
        # Which rows share a tensor follows from the quantities' definitions: the rows without
        # one are all that can differ.
        pattern = tuple(t is None for t in wanted)
        if pattern not in self.layouts:
            self.layouts[pattern] = _layout(wanted, depth)
        return self.layouts[pattern]

    def __call__(self, recorder: StepRecorder) -> torch.Tensor:
        """The step's record, float64 [K, L, len(COLUMNS)] on the CPU, from what `recorder`
        kept: the 2-norms in one `_foreach_norm` call, the sums and maxima of |x| from one
        absolute copy of each tensor, and the computed partials, moved off the device in one
        transfer; then float64 where float32 may have failed, each `finish`, and act_std from
        ||h|| and the mean. update_ratio is left NaN."""
        k, views = recorder.members, recorder.views()
        depth = len(views)
        wanted = [_MEASURED[name].norm_of(v) for name in _NORMS for v in views]  # [Qn * L]
        layout = self.layout(wanted, depth)
        partials = [(name, l, p) for name in _COMPUTED for l, v in enumerate(views)
                    if (p := _MEASURED[name].compute(v)) is not None]
        sums, largest = self.absolute([wanted[i] for i in layout.absolute], k)
        l2 = norms.l2_norms([wanted[i].detach() for i in layout.l2], k)
        moved = norms.to_host([l2, sums, largest, *(p for _, _, p in partials)])
        n2, na = len(layout.l2) * k, len(layout.absolute) * k
        measured = np.full((len(wanted), k), np.nan)
        measured[layout.l2] = moved[:n2].reshape(-1, k)
        measured[layout.l1] = moved[n2:n2 + na].reshape(-1, k)[layout.l1_slots]
        measured[layout.largest] = moved[n2 + na:n2 + 2 * na].reshape(-1, k)[layout.largest_slots]
        norms.redo_in_float64(measured, wanted, layout.l2, 2)
        norms.redo_in_float64(measured, wanted, layout.l1, 1)
        measured[layout.means] /= layout.counts[:, None]
        values = dict(zip(_NORMS, measured.reshape(len(_NORMS), depth, k), strict=True))
        values.update(_finished(partials, moved[n2 + 2 * na:], depth, k))
        values["act_std"] = act_std(views, values["act_norm"] ** 2, values["act_mean"])
        record = np.empty((k, depth, len(COLUMNS)))
        record[:, :, -1] = np.nan
        for c, name in enumerate(COLUMNS[:-1]):
            record[:, :, c] = values[name].T
        return torch.from_numpy(record)


class Probe:
    """Measures all quantities for every layer and member at one step: `before_step`, then
    `after_step` once the optimizer has updated the weights."""

    def __init__(self, model: StackedModel, optimizer: torch.optim.Optimizer | None = None):
        self.model = model
        self._before: list[torch.Tensor] = []
        self._assemble = _Assembler()
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
        """The Trace for a recorded step's forward pass: dL/dz is kept without a copy (see
        measure/recorder.py)."""
        return StepRecorder(self.model)

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
            recorder = StepRecorder.of(self.model, trace)
        record = self._assemble(recorder)
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
