"""The CLI's probe: what a training step of a stacked model hands the assembler, and the update
ratio after the optimizer's step. The quantities are measure/quantities.py's, assembled as for
`winit.watch` (measure/assembler.py)."""

from __future__ import annotations

import torch

from winit_cli.measure.assembler import (
    Assembler,
    plain_sgd,
    set_update_ratio,
    sgd_updates,
    weight_updates,
)
from winit_cli.measure.family_probes import FamilyColumns
from winit_cli.measure.norms import member_norms
from winit_cli.measure.recorder import StepRecorder
from winit_cli.models.base import StackedModel, Trace


class Probe:
    """Measures all quantities for every layer and member at one step: `before_step`, then
    `after_step` once the optimizer has updated the weights."""

    def __init__(self, model: StackedModel, optimizer: torch.optim.Optimizer | None = None,
                 coord: bool = False):
        self.model = model
        self.coord = coord
        self._before: list[torch.Tensor] = []
        self._weights: list[torch.Tensor] = []  # the recorded step's, for `after_step`
        self._assemble = Assembler()
        # Plain SGD and heavy-ball momentum: the update's norm is read from the optimizer after
        # its step, which saves copying every weight before it; other optimizers are measured
        # by difference.
        self._optimizer = optimizer
        self._sgd = plain_sgd(optimizer, [layer.weight for layer in model.linears()])
        # Norm layers and residual streams add columns (measure/family_probes.py); none for
        # the plain MLP. `columns` names the last axis of what before_step returns.
        family = FamilyColumns(model, member_norms)
        self._family = family if family.columns else None
        # record.coord: the coordinate size mean |z_l| (the `mup` package's "l1" of a Linear
        # layer's output), last; only when asked, so that other runs keep their columns.
        self.columns = self._assemble.columns + family.columns + (("coord",) if coord else ())

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
        record = torch.from_numpy(self._assemble(recorder.views(), recorder.members))
        self._weights = [layer.weight for layer in recorder.layers]
        if will_update and not self._sgd:
            self._before = [layer.weight.detach().clone() for layer in recorder.layers]
        if self._family is not None:
            record = torch.cat([record, self._family.before_step(
                trace, len(recorder.layers), will_update)], dim=2)
        if self.coord:
            record = torch.cat([record, coordinate_sizes(recorder.pre)], dim=2)
        return record

    @torch.no_grad()
    def after_step(self, record: torch.Tensor) -> None:
        """update_ratio = ||W' - W|| / ||W||, the denominator being the recorded weight_norm."""
        weights = self._weights
        if self._sgd:
            updates = sgd_updates(self._optimizer, weights)
        else:
            updates = weight_updates(self._before, weights)
        set_update_ratio(record.numpy(), self._assemble.columns, updates)
        self._before = []
        if self._family is not None:
            self._family.after_step(record[:, :, len(self._assemble.columns):])


def coordinate_sizes(pre: list[torch.Tensor]) -> torch.Tensor:
    """mean |z_l| over batch and units per member, float64 [K, L, 1], from each layer's z
    ([K, B, out]): summed in float64, so that a coordinate of 1e30 or 1e-30 is as exact."""
    sizes = [z.detach().double().abs().mean(dim=(1, 2)).cpu() for z in pre]
    return torch.stack(sizes, dim=1).unsqueeze(2)
