"""A recorded step's values from its layer views, for `winit run` and `winit.watch` alike: every
`QUANTITIES` column for L layers and K members (`Assembler`), then the update ratio once the
optimizer has stepped (`weight_updates`, `set_update_ratio`), and the layer a non-finite record
points at (`first_nonfinite_layer`).

At these sizes a record costs kernel calls and passes over memory, not arithmetic: the 2-norms
go in one `_foreach_norm` call, the sums and maxima of |x| come from one absolute copy of each
tensor, and every value leaves the device in one transfer (measure/norms.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from winit_cli.measure import norms
from winit_cli.measure.norms import AbsStats, member_norms
from winit_cli.measure.quantities import QUANTITIES, Quantity, act_std, columns
from winit_cli.measure.recorder import LayerView


@dataclass(frozen=True)
class _Plan:
    """`QUANTITIES` as an assembler reads them, taken when it is made (a quantity registered
    before a run starts is one of its columns), with ||h|| added for act_std: measured with the
    rest, not a column of its own."""

    columns: tuple[str, ...]
    measured: dict[str, Quantity]
    norms: list[str]  # the quantities that are norms, in column order
    computed: list[str]  # the quantities that are reductions, in column order
    order_of: np.ndarray  # each norm's order
    per_element_of: np.ndarray  # whether each norm is divided by the element count

    @classmethod
    def now(cls) -> _Plan:
        measured = {**QUANTITIES, "act_norm": Quantity(norm_of=lambda v: v.post)}
        named = [name for name, q in measured.items() if q.norm_of is not None]
        return cls(columns(), measured, named,
                   [name for name, q in measured.items() if q.compute is not None],
                   np.array([measured[name].ord for name in named]),
                   np.array([measured[name].per_element for name in named]))


@dataclass(frozen=True)
class _Layout:
    """Where a step's norms land among `wanted` (the plan's norm tensors, quantity-major, then
    layer): fixed for a model, so worked out once per pattern of present tensors."""

    present: np.ndarray  # [norms, L] bool: which norms have a tensor
    l2: list[int]  # rows taken as 2-norms, in the order of the batched call
    absolute: list[int]  # rows whose tensor is made absolute: the first row of each tensor
    l1: np.ndarray  # rows that are sums of |x|, and the slot of their tensor in `absolute`
    l1_slots: np.ndarray
    largest: np.ndarray  # rows that are largest |x|, and their tensor's slot
    largest_slots: np.ndarray
    means: np.ndarray  # rows divided by their member's element count, and those counts
    counts: np.ndarray


def _layout(plan: _Plan, wanted: list[torch.Tensor | None], depth: int, k: int) -> _Layout:
    orders = np.repeat(plan.order_of, depth)
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
    means = np.flatnonzero(present & np.repeat(plan.per_element_of, depth))
    return _Layout(
        present=present.reshape(len(plan.norms), depth),
        l2=np.flatnonzero(present & (orders == 2)).tolist(),
        absolute=absolute,
        l1=l1, l1_slots=np.array([slot[i] for i in l1], dtype=int),
        largest=largest, largest_slots=np.array([slot[i] for i in largest], dtype=int),
        means=means, counts=np.array([wanted[i].numel() // k for i in means], dtype=np.float64))


def _finished(plan: _Plan, partials: list[tuple[str, int, torch.Tensor]], moved: np.ndarray,
              depth: int, k: int) -> dict[str, np.ndarray]:
    """Each computed quantity's [L, K] (NaN where it has no partial), from the partials' values
    (`moved`, in the order of `partials`): a quantity whose partials share a shape is finished
    in one call over all its layers (each `finish` works over leading axes)."""
    values, at = {}, 0
    for name in plan.computed:
        mine = [(l, p.shape) for n, l, p in partials if n == name]
        out = values[name] = np.full((depth, k), np.nan)
        size = sum(math.prod(shape) for _, shape in mine)
        block, at = moved[at:at + size], at + size
        finish = plan.measured[name].finish or (lambda v: v)
        if len({shape for _, shape in mine}) == 1:
            out[[l for l, _ in mine]] = finish(block.reshape(len(mine), *mine[0][1]))
            continue
        for l, shape in mine:
            out[l] = finish(block[:math.prod(shape)].reshape(shape))
            block = block[math.prod(shape):]
    return values


class Assembler:
    """Makes a step's record from its layer views (`__call__`); keeps what is the same at every
    recorded step of a model: the plan of quantities, the layouts, the buffer of |x|."""

    def __init__(self) -> None:
        self.plan = _Plan.now()
        self.columns = self.plan.columns
        self.absolute = AbsStats()
        self.layouts: dict[tuple, _Layout] = {}
        # what `measured_cells` needs of the last record: asked for by watch() only, so the
        # CLI's record does not pay for it
        self._last: tuple[_Layout, list[tuple[str, int]], int] | None = None

    def layout(self, wanted: list[torch.Tensor | None], depth: int, k: int) -> _Layout:
        # Which rows share a tensor follows from the quantities' definitions: the rows without
        # one are all that can differ.
        pattern = tuple(t is None for t in wanted)
        if pattern not in self.layouts:
            self.layouts[pattern] = _layout(self.plan, wanted, depth, k)
        return self.layouts[pattern]

    @torch.no_grad()  # the reductions take no graph: no tensor of theirs needs detaching
    def __call__(self, views: list[LayerView], k: int) -> np.ndarray:
        """The step's record, float64 [K, L, len(columns)], update_ratio left NaN (which of its
        cells were measured: `measured_cells`). From the views of L layers of K members each: the
        2-norms in one `_foreach_norm` call, the sums and maxima of |x| from one absolute copy
        of each tensor, and the computed partials, moved off the device in one transfer; then
        float64 where float32 may have failed, each `finish`, and act_std from ||h|| and the
        mean."""
        plan, depth = self.plan, len(views)
        wanted = [plan.measured[name].norm_of(v) for name in plan.norms for v in views]
        layout = self.layout(wanted, depth, k)
        partials = [(name, l, p) for name in plan.computed for l, v in enumerate(views)
                    if (p := plan.measured[name].compute(v)) is not None]
        sums, largest = self.absolute([wanted[i] for i in layout.absolute], k)
        l2 = norms.l2_norms([wanted[i] for i in layout.l2], k)
        moved = norms.to_host([l2, sums, largest, *(p for _, _, p in partials)])
        n2, na = len(layout.l2) * k, len(layout.absolute) * k
        found = np.full((len(wanted), k), np.nan)
        found[layout.l2] = moved[:n2].reshape(-1, k)
        found[layout.l1] = moved[n2:n2 + na].reshape(-1, k)[layout.l1_slots]
        found[layout.largest] = moved[n2 + na:n2 + 2 * na].reshape(-1, k)[layout.largest_slots]
        norms.redo_in_float64(found, wanted, layout.l2, 2)
        norms.redo_in_float64(found, wanted, layout.l1, 1)
        found[layout.means] /= layout.counts[:, None]
        values = dict(zip(plan.norms, found.reshape(len(plan.norms), depth, k), strict=True))
        values.update(_finished(plan, partials, moved[n2 + 2 * na:], depth, k))
        values["act_std"] = act_std(views, values["act_norm"] ** 2, values["act_mean"])
        record = np.empty((k, depth, len(plan.columns)))
        record[:, :, -1] = np.nan
        for c, name in enumerate(plan.columns[:-1]):
            record[:, :, c] = values[name].T
        self._last = layout, [(name, l) for name, l, _ in partials], depth
        return record

    def measured_cells(self) -> np.ndarray:
        """Which cells of the last record were measured ([L, len(columns)] bool: False where a
        quantity does not apply or the view lacks its tensor)."""
        plan, (layout, partials, depth) = self.plan, self._last
        has = dict(zip(plan.norms, layout.present, strict=True))
        for name in plan.computed:
            has[name] = np.zeros(depth, dtype=bool)
        for name, l in partials:
            has[name][l] = True
        has["act_std"] = has["act_mean"] & has["act_norm"]
        has["update_ratio"] = np.zeros(depth, dtype=bool)
        return np.stack([has[name] for name in plan.columns], axis=1)


def weight_updates(before: list[torch.Tensor], after: list[torch.Tensor]) -> np.ndarray:
    """||W' - W|| per member of each weight ([L, K]), from copies taken before the optimizer's
    step; `before` is overwritten with W - W' (one `_foreach_sub_` call, no new tensors)."""
    torch._foreach_sub_(before, [w.detach() for w in after])
    return member_norms(before)


def plain_sgd(optimizer: torch.optim.Optimizer | None, weights: list[torch.Tensor]) -> bool:
    """Whether `optimizer` steps every one of `weights` (parameters) as plain SGD or heavy-ball
    momentum does, W' = W - lr * buf (buf the gradient without momentum): then the update's
    norm is read from it after its step (`sgd_updates`), with no copy of the weights before."""
    if not isinstance(optimizer, torch.optim.SGD):
        return False
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    return all(id(w) in groups and not groups[id(w)]["nesterov"]
               and not groups[id(w)]["maximize"] and groups[id(w)]["dampening"] == 0
               and groups[id(w)]["weight_decay"] == 0 for w in weights)


def sgd_updates(optimizer: torch.optim.SGD, weights: list[torch.Tensor],
                one_member: bool = False) -> np.ndarray:
    """||W' - W|| = lr * ||buf|| per member of each weight ([L, K]), just after the step of an
    optimizer `plain_sgd` accepted for `weights`; equal to the difference up to its float32
    rounding. `one_member`: the weights are one member's ([out, in], K = 1)."""
    lrs = {id(p): float(g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    steps = [optimizer.state.get(w, {}).get("momentum_buffer") for w in weights]
    steps = [w.grad if b is None else b for w, b in zip(weights, steps, strict=True)]
    if one_member:
        steps = [None if t is None else t[None] for t in steps]
    return member_norms(steps) * np.array([lrs[id(w)] for w in weights])[:, None]


def set_update_ratio(record: np.ndarray, columns: tuple[str, ...], updates: np.ndarray,
                     rows: list[int] | slice = slice(None)) -> None:
    """update_ratio = ||W' - W|| / ||W|| into record ([K, L, Q]) for the layers `rows`, from
    their updates ([len(rows), K]); the denominator is the recorded weight_norm."""
    with np.errstate(divide="ignore", invalid="ignore"):  # zero or non-finite weights
        record[:, rows, columns.index("update_ratio")] = (
            updates.T / record[:, rows, columns.index("weight_norm")])


def first_nonfinite_layer(values, measured: np.ndarray | None = None) -> int | None:
    """1-based index of the first layer affected by non-finite values ([L, Q], columns() first;
    cells not `measured` are left out), in the order they arise.

    The forward pass comes first: the lowest layer with non-finite weights or activations. If
    the forward pass is finite, the overflow happened in the backward pass, which runs from the
    output down and grows towards the input: the highest layer with a non-finite gradient (every
    layer below it inherits the NaN).
    """
    values = np.asarray(values)
    if measured is not None:
        values = np.where(measured, values, 0.0)
    names = columns()
    for part, pick in ((("weight_norm", "act_mean", "act_std"), 0),
                       (("weight_grad_norm", "act_grad_norm"), -1)):
        bad = np.flatnonzero(~np.isfinite(values[:, [names.index(c) for c in part]]).all(axis=1))
        if len(bad):
            return int(bad[pick]) + 1
    return None
