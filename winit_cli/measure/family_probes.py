"""Columns layers.csv gains for kinds beyond the plain MLP: normalization layers and residual
streams. A plain MLP gains none, so its layers.csv keeps exactly its columns.

Rows stay one per Linear layer; these columns describe what comes after that Linear layer:

- norm_* (models with `model.norm`): the normalization layer that follows Linear layer l in
  forward order (models.NormView; for resmlp after the input projection and after a branch's
  last layer that is the norm of the stream h_b, after a branch_inner layer the norm of u_b),
  NaN on the output layer's row. norm_weight_grad_norm ||dL/dgamma||, norm_bias_grad_norm
  ||dL/dbeta||, norm_act_grad_norm ||dL/dy|| over the batch (y the norm's output), norm_weight_norm
  ||gamma||, norm_act_mean and norm_act_std of y over batch and units (unbiased std, as act_std),
  norm_update_ratio ||gamma' - gamma|| / ||gamma|| for this step's update.
- stream_grad_norm, branch_scale, branch_scale_grad (resmlp): on the input projection's row
  ||dL/dh_0|| (which is its act_grad_norm), on block b's branch_out row ||dL/dh_b||, the stream
  after the block's sum (what vanishes or explodes in a residual net: the verdict reads it), with
  alpha_b and dL/dalpha_b there (the gradient NaN when alpha is fixed); NaN on other rows.

Computed in float64 directly (these are few tensors), so values far outside float32's range are
exact as the Linear layers' columns are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from winit_cli.models.base import StackedModel, Trace

NORM_COLUMNS = ("norm_weight_grad_norm", "norm_bias_grad_norm", "norm_act_grad_norm",
                "norm_weight_norm", "norm_act_mean", "norm_act_std", "norm_update_ratio")
RESIDUAL_COLUMNS = ("stream_grad_norm", "branch_scale", "branch_scale_grad")


def _norms(t: torch.Tensor | None, members: int) -> torch.Tensor:
    """L2 norm of each member's slice, float64 [K] on the CPU (NaN when there is no tensor)."""
    if t is None:
        return torch.full((members,), float("nan"), dtype=torch.float64)
    return torch.linalg.vector_norm(t.detach().reshape(members, -1).double(), dim=1).cpu()


def _mean_std(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = y.detach().flatten(1).double()
    return x.mean(dim=1).cpu(), x.std(dim=1, correction=1).cpu()


class FamilyColumns:
    """The extra columns of one model, measured at a step: `before_step`, then `after_step`.

    The norms are taken as the Linear layers' are (probes.member_norms: one `_foreach_norm` for
    all of them, float64 outside SAFE_BAND), from what the step's recorder kept: the norm
    outputs and the streams it recorded in the forward pass, with their gradients."""

    def __init__(self, model: StackedModel,
                 member_norms: Callable[[list[torch.Tensor | None]], np.ndarray]):
        self.model = model
        self.member_norms = member_norms  # probes.member_norms (probes imports this module)
        self.norms = model.norms()
        self.alpha = model.branch_scales()
        self.columns = (NORM_COLUMNS if self.norms else ()) + \
            (RESIDUAL_COLUMNS if self.alpha is not None else ())
        # resmlp: the rows of h_0 (the input projection) and of each block's branch_out layer
        self._stream_rows = [0] + [l for l, layer in enumerate(model.linears())
                                   if layer.role == "branch_out"]
        self._gammas: list[torch.Tensor] = []

    @torch.no_grad()
    def before_step(self, trace: Trace, depth: int, will_update: bool) -> torch.Tensor:
        """float64 [K, depth, len(columns)]; norm_update_ratio is filled by `after_step`."""
        k = self.model.members
        out = torch.full((k, depth, len(self.columns)), float("nan"), dtype=torch.float64)
        tensors = [t for i, n in enumerate(self.norms)
                   for t in (n.weight.grad, n.bias.grad, trace.norm_grad(i), n.weight)]
        streams = [trace.stream_grad(b, k) for b in range(len(self._stream_rows))] \
            if self.alpha is not None else []
        values = torch.from_numpy(self.member_norms(tensors + streams))  # [len, K]
        for i in range(len(self.norms)):
            mean, std = _mean_std(trace.norm_post[i])
            out[:, i, :6] = torch.cat([values[4 * i:4 * i + 4].T, mean[:, None], std[:, None]],
                                      dim=1)
        if self.norms and will_update:
            self._gammas = [n.weight.detach().clone() for n in self.norms]
        if self.alpha is not None:
            residual = out[:, :, len(self.columns) - len(RESIDUAL_COLUMNS):]
            residual[:, self._stream_rows, 0] = values[len(tensors):].T
            self._branch_scales(residual)
        return out

    def _branch_scales(self, out: torch.Tensor) -> None:
        """branch_scale and branch_scale_grad into out [K, depth, 3] on the branch_out rows."""
        alpha = self.alpha.detach().double().cpu()  # [K, blocks]
        grad = self.alpha.grad.detach().double().cpu() if self.alpha.grad is not None else None
        for b, row in enumerate(self._stream_rows[1:]):
            out[:, row, 1] = alpha[:, b]
            if grad is not None:
                out[:, row, 2] = grad[:, b]

    @torch.no_grad()
    def after_step(self, out: torch.Tensor) -> None:
        """norm_update_ratio, in place in out [K, depth, len(columns)] (a view of the record)."""
        if not self.norms or not self._gammas:
            return
        j = self.columns.index("norm_update_ratio")
        for i, (norm, before) in enumerate(zip(self.norms, self._gammas, strict=True)):
            change = _norms(norm.weight.detach() - before, self.model.members)
            out[:, i, j] = change / out[:, i, self.columns.index("norm_weight_norm")]
        self._gammas = []
