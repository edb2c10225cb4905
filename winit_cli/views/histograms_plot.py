"""The weight and gradient histograms of one run (histograms.csv, record.histograms): a row of
panels for the weights and one for their gradients, at the first, a middle and the last
recorded step. In each panel a layer is a row and a log10 |x| bin a column, coloured by the
fraction of the layer's values in that bin (log colour scale: the tails show), so a gradient
vanishing towards the input side is mass sliding left in the lower rows.

Only the bins that hold any value in the figure are drawn; exact zeros (dead ReLU units have
exactly zero gradients) get a column of their own at the left, marked 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from winit_cli.views.plots import axes_grid

LABELS = {"weight": "weights W_l", "grad": "gradients dL/dW_l"}  # histograms.csv's tensors
KEYS = ("step", "epoch", "layer", "tensor")  # the other columns are the bins, in order
MIN_FRACTION = 1e-4  # the colour scale's floor: fewer than 1 value in 10^4 reads as none


def chosen_steps(histograms: pd.DataFrame) -> list[int]:
    """The first, a middle and the last recorded step (fewer if fewer were recorded)."""
    steps = np.sort(histograms.step.unique())
    return sorted({int(steps[0]), int(steps[len(steps) // 2]), int(steps[-1])})


def _fractions(histograms: pd.DataFrame, step: int, tensor: str) -> np.ndarray:
    """[layers, bins]: each layer's counts over its total (NaN where it counted nothing)."""
    rows = histograms[(histograms.step == step) & (histograms.tensor == tensor)]
    counts = rows.sort_values("layer")[_bins(histograms)].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(axis=1, keepdims=True)


def _tick_labels(columns: list[str], most: int = 8) -> tuple[list[float], list[str]]:
    """Ticks in the zero column and at whole decades (a bin's left edge), at most `most`."""
    decades = [i for i, name in enumerate(columns)
               if name not in ("zero", "below", "above", "nan") and float(name).is_integer()]
    every = max(1, -(-len(decades) // most))
    zero = [i for i, name in enumerate(columns) if name == "zero"]
    return ([*zero, *(i - 0.5 for i in decades[::every])],
            [*("0" for _ in zero), *(f"{float(columns[i]):.0f}" for i in decades[::every])])


def _bins(histograms: pd.DataFrame) -> list[str]:
    """The bin columns, as measure/histograms.py writes them: zero, below, the log10 edges,
    above, nan."""
    return [c for c in histograms.columns if c not in KEYS]


def _used_bins(grids: list[np.ndarray]) -> np.ndarray:
    """The span of bins holding any value (zero aside), with the zero bin first if it holds
    any."""
    held = np.nansum([g.sum(axis=0) for g in grids], axis=0) > 0
    span = np.flatnonzero(held[1:]) + 1
    used = np.arange(span.min(), span.max() + 1) if len(span) else np.arange(1, len(held))
    return np.concatenate([[0], used]) if held[0] else used


def histogram_figure(histograms: pd.DataFrame, title: str) -> Figure:
    """Weights (top row) and gradients (bottom row) at up to three recorded steps."""
    steps = chosen_steps(histograms)
    tensors = [t for t in LABELS if t in set(histograms.tensor)]
    grids = {(t, s): _fractions(histograms, s, t) for t in tensors for s in steps}
    used = _used_bins(list(grids.values()))
    columns = [_bins(histograms)[i] for i in used]
    fig, axes = axes_grid(len(tensors) * len(steps), len(steps), cell=(3.4, 2.6),
                           margin=(1.2, 0.8))
    norm = LogNorm(MIN_FRACTION, 1)
    image = None
    for ax, (tensor, step) in zip(axes, [(t, s) for t in tensors for s in steps], strict=True):
        grid = grids[tensor, step][:, used]
        depth = grid.shape[0]
        image = ax.imshow(np.where(grid >= MIN_FRACTION, grid, np.nan), aspect="auto",
                          origin="lower", norm=norm, cmap="magma_r", interpolation="nearest",
                          extent=(-0.5, len(used) - 0.5, 0.5, depth + 0.5))
        ticks, labels = _tick_labels(columns)
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{LABELS[tensor]}, step {step}", fontsize=9)
        ax.set_xlabel("log10 |x|", fontsize=8)
        ax.set_ylabel("layer (1 = input side)", fontsize=8)
    fig.colorbar(image, ax=axes.tolist(), label="fraction of the layer's values", shrink=0.9)
    fig.suptitle(title, fontsize=11, wrap=True)
    return fig
