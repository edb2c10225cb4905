"""Per-layer histograms of the weights and of their gradients at recorded steps, as TensorBoard
and W&B users expect; with `record.histograms: true` they go to the run's histograms.csv.

The bins are fixed, the same for every run, layer and step, so that histograms compare: they
count |x| on a log scale, half a decade per bin, so that a gradient that vanishes to 1e-20 moves
across bins instead of piling up in the one next to zero. Sign is not kept.

    zero     x == 0 exactly
    below    0 < |x| < 10^-24
    "e"      10^e <= |x| < 10^(e + 0.5), for e = -24.0, -23.5, ..., 3.5 (56 bins)
    above    |x| >= 10^4 (inf included)
    nan      x is NaN

The edges 10^e are the float32 numbers nearest to them (`THRESHOLDS`), and |x| is compared with
them in the tensor's own precision, so that the counts are exact: numpy.histogram on the same
values with the same edges gives the same numbers (tests/unit/views/test_layer_views.py).

histograms.csv: one row per recorded step, layer and tensor (`weight`: W_l before that step's
update; `grad`: dL/dW_l, the data loss's, as weight_grad_norm in layers.csv), with the columns
step, epoch, layer, tensor, then the counts in the order above.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from winit_cli.models.base import StackedModel

EDGES = np.arange(-24.0, 4.0 + 0.25, 0.5)  # log10 |x| at the bins' edges
THRESHOLDS = (10.0 ** EDGES).astype(np.float32)
BINS = ("zero", "below", *(f"{e:.1f}" for e in EDGES[:-1]), "above", "nan")
TENSORS = ("weight", "grad")


def member_counts(t: torch.Tensor) -> torch.Tensor:
    """Counts of each member's values ([K, ...]) in BINS: [K, len(BINS)], int64."""
    x = t.detach().flatten(1)
    k = x.shape[0]
    edges = torch.from_numpy(THRESHOLDS).to(device=x.device, dtype=x.dtype)
    a = x.abs()
    # bucketize(right=True): how many edges are <= |x|, 0 .. len(edges); BINS slot = that + 1,
    # with exact zeros and NaN (which compares false with every edge) moved to their own slots.
    slot = torch.bucketize(a, edges, right=True) + 1
    slot = torch.where(a == 0, 0, slot)
    slot = torch.where(torch.isnan(a), len(BINS) - 1, slot)
    offset = torch.arange(k, device=x.device)[:, None] * len(BINS)
    return torch.bincount((slot + offset).flatten(), minlength=k * len(BINS)).view(k, -1)


@torch.no_grad()
def layer_histograms(model: StackedModel) -> torch.Tensor:
    """Counts for every member, layer and tensor now: [K, L, len(TENSORS), len(BINS)], on the
    CPU (one transfer off the device for all of them). A gradient that was not computed counts
    nothing."""
    rows = []
    for layer in model.linears():
        w = layer.weight
        rows.append(torch.stack([member_counts(w), member_counts(w.grad) if w.grad is not None
                                 else torch.zeros(w.shape[0], len(BINS), dtype=torch.int64,
                                                  device=w.device)], dim=1))
    return torch.stack(rows, dim=1).cpu()


def histogram_frame(steps: list[tuple[int, int]], counts: list[torch.Tensor]) -> pd.DataFrame:
    """histograms.csv for one member: `steps` (step, epoch) and its counts [L, T, B] at each."""
    if not counts:
        return pd.DataFrame(columns=["step", "epoch", "layer", "tensor", *BINS])
    values = torch.stack(counts).numpy()  # [records, L, T, B]
    n, depth, kinds, _ = values.shape
    frame = pd.DataFrame({
        "step": np.repeat([s for s, _ in steps], depth * kinds),
        "epoch": np.repeat([e for _, e in steps], depth * kinds),
        "layer": np.tile(np.repeat(np.arange(1, depth + 1), kinds), n),
        "tensor": np.tile(TENSORS, n * depth),
    })
    return pd.concat([frame, pd.DataFrame(values.reshape(-1, len(BINS)), columns=list(BINS))],
                     axis=1)
