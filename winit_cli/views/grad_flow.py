"""The classic `plot_grad_flow` view, as its users know it from the PyTorch forums: per layer, a
bar of the largest |dL/dW| and in front of it a bar of the mean |dL/dW| over the layer's
weights, at one step. Here on a log axis (the point is decades) and one panel per configuration
with a shared axis, so that the panels compare. Drawn from layers.csv's weight_grad_abs_mean and
weight_grad_abs_max columns (measure/quantities.py).

A layer whose weight gradient is exactly 0 has no bar on a log axis: it is marked with a black
x at the bottom (the snippet's "zero-gradient" legend entry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from winit_cli.views.plots import axes_grid

COLUMNS = ("weight_grad_abs_mean", "weight_grad_abs_max")
MAX_TICKS = 12  # layer numbers on a panel's axis


@dataclass
class Bars:
    label: str
    color: str
    layers: pd.DataFrame  # one run's layers.csv


def recorded_step(layers: pd.DataFrame, step: int) -> int:
    """The recorded step nearest `step` at or before it (the first recorded one if none is)."""
    steps = np.sort(layers.step.unique())
    before = steps[steps <= step]
    return int(before[-1] if len(before) else steps[0])


def has_columns(layers: pd.DataFrame) -> bool:
    """Runs recorded before these columns existed have no bars to draw."""
    return all(c in layers and pd.to_numeric(layers[c], errors="coerce").notna().any()
               for c in COLUMNS)


def _panel(ax, bars: Bars, step: int) -> tuple[int, float, float, np.ndarray]:
    """One configuration's bars at its recorded step nearest `step`; returns that step, the
    smallest and largest positive value drawn (for the shared axis), and the layers whose
    gradient is exactly 0."""
    at = recorded_step(bars.layers, step)
    rows = bars.layers[bars.layers.step == at].drop_duplicates("layer").sort_values("layer")
    layer = rows.layer.to_numpy()
    mean, top = (pd.to_numeric(rows[c], errors="coerce").to_numpy(float) for c in COLUMNS)
    positive = np.concatenate([mean[mean > 0], top[top > 0]])
    ax.bar(layer, np.where(top > 0, top, np.nan), width=0.8, color=bars.color, alpha=0.3, lw=0)
    ax.bar(layer, np.where(mean > 0, mean, np.nan), width=0.5, color=bars.color, lw=0)
    ax.set_title(f"{bars.label} (step {at})", fontsize=9)
    if "name" in rows and rows.name.notna().all() and len(rows) <= MAX_TICKS:
        # a watched run: its modules by name (norm layers' bars are their weight's gradient)
        ax.set_xticks(layer, rows.name.astype(str).tolist(), rotation=30, ha="right")
        ax.set_xlabel("module (input side first)", fontsize=8)
    else:
        ax.set_xticks(layer[::max(1, -(-len(layer) // MAX_TICKS))])  # labels never collide
        ax.set_xlabel("layer (1 = input side)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    zero = layer[top == 0]
    return at, (positive.min() if len(positive) else np.nan), \
        (positive.max() if len(positive) else np.nan), zero


def grad_flow_bars(panels: list[Bars], step: int, title: str) -> Figure:
    """One panel per configuration: max |dL/dW| (light) and mean |dL/dW| (dark) per layer."""
    fig, axes = axes_grid(len(panels), 3, cell=(3.6, 2.8), margin=(0.6, 0.9))
    drawn = [_panel(ax, bars, step) for ax, bars in zip(axes, panels, strict=True)]
    low = np.nanmin([d[1] for d in drawn] + [np.nan])
    high = np.nanmax([d[2] for d in drawn] + [np.nan])
    for ax, (_, _, _, zero) in zip(axes, drawn, strict=True):
        ax.set_yscale("log")
        if np.isfinite(low) and np.isfinite(high):
            ax.set_ylim(low / 3, high * 3)
        if len(zero):
            ax.plot(zero, np.full(len(zero), low / 2 if np.isfinite(low) else 1.0), "kx",
                    clip_on=False)
    axes[0].set_ylabel("|dL/dW| over the layer's weights", fontsize=8)
    fig.legend(handles=[Patch(color="0.4", alpha=0.3, label="max |dL/dW|"),
                        Patch(color="0.4", label="mean |dL/dW|"),
                        Line2D([], [], color="k", marker="x", ls="", label="zero gradient")],
               loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11, wrap=True)
    return fig
