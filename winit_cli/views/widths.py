"""The width views of `winit widths` and `winit report`, from coord.csv, coord_slopes.csv and
lr_transfer.csv frames (app/widths.py says what they hold); never a live model.

- `coord_figure`: the coordinate check (Yang et al. 2021, Fig. 5; the `mup` package's
  plot_coord_data): coordinate size vs width, log-log, one panel per parametrization and step,
  one line per layer, each labelled with its fitted slope and the theory's.
- `lr_figure`: learning-rate transfer (TP5 Fig. 1): train loss vs log2 lr, one panel per
  parametrization, one line per width, each width's best lr marked.
- `slope_table`: the fitted slope per layer at the last step, beside the theory's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from rich.table import Table

from winit_cli.views.plots import axes_grid
from winit_cli.views.tables import new_table

MAX_STEPS = 4  # panels per parametrization: the first and the last steps measured


def _steps(coord: pd.DataFrame) -> list[int]:
    steps = sorted(int(s) for s in coord.step.unique())
    return steps if len(steps) <= MAX_STEPS else [*steps[:MAX_STEPS - 1], steps[-1]]


def coord_figure(coord: pd.DataFrame, slopes: pd.DataFrame) -> Figure:
    """coord vs width per (parametrization, step) panel, one line per layer, at each
    parametrization's smallest lr (the coordinate check's; lr_figure shows the others)."""
    if coord.empty:
        fig = Figure(figsize=(5, 2))
        fig.text(0.5, 0.5, "no coordinate measured", ha="center")
        return fig
    parametrizations = list(dict.fromkeys(coord.parametrization))
    steps = _steps(coord)
    fig, axes = axes_grid(len(parametrizations) * len(steps), len(steps), cell=(3.4, 2.9),
                           margin=(1.0, 0.9))
    depth = int(coord.layer.max())
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, depth))
    # one y range for every panel, so that a flat line and a steep one look it side by side
    shown = coord.coord[coord.step.isin(steps) & np.isfinite(coord.coord) & (coord.coord > 0)]
    limits = (shown.min() / 1.3, shown.max() * 1.3) if len(shown) else None
    i = 0
    for p in parametrizations:
        mine = coord[coord.parametrization == p]
        lr = mine.lr.min()
        for step in steps:
            ax = axes[i]
            i += 1
            cell = mine[(mine.lr == lr) & (mine.step == step)]
            for layer, line in cell.groupby("layer"):
                s = slopes[(slopes.parametrization == p) & (slopes.lr == lr)
                           & (slopes.step == step) & (slopes.layer == layer)]
                label = f"layer {int(layer)}" + (" (out)" if layer == depth else "")
                if len(s):
                    label += f": {s.slope.iloc[0]:+.2f} (th {s.predicted_slope.iloc[0]:+.2g})"
                line = line.sort_values("width")
                ax.plot(line.width, line.coord, marker="o", ms=3,
                        color=colours[int(layer) - 1], label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            if limits is not None:
                ax.set_ylim(*limits)
            ax.set_title(f"{p}, step {step} (lr {lr:.3g})", fontsize=8.5)
            ax.set_xlabel("width")
            ax.set_ylabel("mean |z_l|")
            ax.legend(fontsize=6, title="slope vs width (theory)", title_fontsize=6)
    fig.suptitle("Coordinate check: mean |z_l| vs width, log-log (flat = stable in width)",
                 fontsize=10)
    return fig


def lr_figure(table: pd.DataFrame) -> Figure:
    """train loss vs log2 lr per parametrization, one line per width, best lr starred."""
    parametrizations = list(dict.fromkeys(table.parametrization))
    fig, axes = axes_grid(len(parametrizations), 3, cell=(4.2, 3.3), margin=(1.0, 0.8))
    widths = sorted(int(w) for w in table.width.unique())
    colours = colormaps["plasma"](np.linspace(0.0, 0.85, len(widths)))
    finite = table.train_loss[np.isfinite(table.train_loss)]
    top = float(min(finite.max(), 2 * finite.min() + 1.0)) if len(finite) else 1.0
    for ax, p in zip(axes, parametrizations, strict=True):
        mine = table[table.parametrization == p]
        for colour, width in zip(colours, widths, strict=True):
            line = mine[mine.width == width].sort_values("lr")
            ax.plot(np.log2(line.lr), line.train_loss, marker="o", ms=3, color=colour,
                    label=f"width {width}")
            best = line[line.best == 1]
            ax.plot(np.log2(best.lr), best.train_loss, marker="*", ms=12, color=colour,
                    markeredgecolor="black", linestyle="none")
        ax.set_ylim(top=top)
        ax.set_title(p, fontsize=9)
        ax.set_xlabel("log2 learning rate")
        ax.set_ylabel("train loss")
        ax.legend(fontsize=7)
    fig.suptitle("Learning-rate transfer: train loss vs lr per width (star: best lr)",
                 fontsize=10)
    return fig


def slope_table(slopes: pd.DataFrame) -> Table:
    """Per parametrization and layer, the slope of log coord vs log width at step 0 and at the
    last step (at each parametrization's smallest lr), each beside the theory's."""
    last = int(slopes.step.max())
    table = new_table(f"coordinate size ~ width^slope (measured, theory), steps 0 and {last}",
                      [("parametrization", "text"), ("layer", "num"), ("step 0", "num"),
                       ("theory", "num"), (f"step {last}", "num"), ("theory ", "num")])
    for p, mine in slopes.groupby("parametrization", sort=False):
        mine = mine[mine.lr == mine.lr.min()]
        depth = int(mine.layer.max())
        for layer in range(1, depth + 1):
            cells = []
            for step in (0, last):
                row = mine[(mine.step == step) & (mine.layer == layer)]
                cells += [f"{row.slope.iloc[0]:+.2f}", f"{row.predicted_slope.iloc[0]:+.2g}"] \
                    if len(row) else ["", ""]
            table.add_row(p, f"{layer}{' out' if layer == depth else ''}", *cells)
    return table
