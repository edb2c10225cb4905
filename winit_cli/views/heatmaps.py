"""The gradient heatmaps of a report: per run, layer x step of r_l = log10(||dL/dz_l|| /
||dL/dz_L||), the ratio the verdict reads, with the verdict's thresholds drawn on it.

The colour scale is shared by the panels (the same colour is the same ratio everywhere) but
clipped at twice the verdict's threshold: one exploding run's +-18 decades would otherwise wash
out another's -2.7 decade vanishing band, which is exactly what the verdict reports. Cells past
the clip saturate (the colour bar's arrows), each panel's title gives its own extremes, and the
+-threshold contour outlines where the verdict's rule holds.

Only layers with a backpropagated gradient are drawn (Linear and Conv: a norm layer's rows
have no dL/dz); a `winit.watch` run's rows are labelled with its module names.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from winit_cli.views.plots import axes_grid, cell_edges, dz_layers, layer_names, log10

CLIP = 2.0  # the colour scale ends at CLIP x the largest threshold (at least 1 decade)


@dataclass
class Panel:
    title: str
    layers: pd.DataFrame  # one run's layers.csv
    thresholds: tuple[float, float] = (2.0, 2.0)  # the run's vanish and explode decades


def _ratios(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    wide = rows.drop_duplicates(["step", "position"]).pivot(
        index="position", columns="step", values="act_grad_norm").sort_index().sort_index(axis=1)
    z = log10(wide.to_numpy())
    return wide.columns.to_numpy(float), wide.index.to_numpy(float), z - z[-1:, :]


def _extremes(z: np.ndarray) -> str:
    finite = z[np.isfinite(z)]
    return f"r from {finite.min():+.1f} to {finite.max():+.1f}" if finite.size else "no ratio"


def gradient_heatmaps(panels: Sequence[Panel], title: str) -> Figure:
    """One heatmap panel per run (see the module's docstring): blue vanishes, red explodes,
    white is flat; dashed contours at -vanish and +explode decades."""
    rows = [dz_layers(p.layers) for p in panels]
    grids = [_ratios(r) for r in rows]
    threshold = max(max(p.thresholds) for p in panels) if panels else 2.0
    finite = np.concatenate([np.abs(g[2][np.isfinite(g[2])]) for g in grids] or [np.zeros(1)])
    largest = float(finite.max()) if finite.size else 0.0
    limit = max(1.0, threshold, min(largest, CLIP * threshold))
    norm = Normalize(-limit, limit)
    cmap = colormaps["RdBu_r"].with_extremes(bad="#bdbdbd")
    # One step axis for all panels: a run that diverged early stops short, visibly.
    x_edges = [cell_edges(g[0]) for g in grids]
    x_range = (min(e[0] for e in x_edges), max(e[-1] for e in x_edges)) if x_edges else (0, 1)
    named = any(layer_names(r) for r in rows)
    fig, axes = axes_grid(len(panels), 4, cell=(3.6, 3.2 if named else 2.9), margin=(1.2, 0.9))
    mesh, any_missing, contoured = None, False, False
    for ax, p, r, (steps, positions, z), edges in zip(axes, panels, rows, grids, x_edges,
                                                      strict=True):
        any_missing |= bool(np.isnan(z).any())
        mesh = ax.pcolormesh(edges, cell_edges(positions), np.ma.masked_invalid(z), cmap=cmap,
                             norm=norm, shading="flat")
        if z.shape[0] > 1 and z.shape[1] > 1 and np.isfinite(z).any():
            levels = [-p.thresholds[0], p.thresholds[1]]
            drawn = ax.contour(steps, positions, np.ma.masked_invalid(z), levels=levels,
                               colors="black", linestyles="--", linewidths=1.0)
            contoured |= any(len(seg) for level in drawn.allsegs for seg in level)
        ax.set_xlim(*x_range)
        # Wrapped: long configuration labels would run into the neighbouring panel's title.
        heading = "\n".join(textwrap.fill(line, 44) for line in p.title.splitlines())
        ax.set_title(f"{heading}\n{_extremes(z)} decades", fontsize=8)
        ax.set_xlabel("step")
        names = layer_names(r)
        if names:
            ax.set_yticks(positions, names, fontsize=6)
            ax.set_ylabel("module (input side at the bottom)")
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("layer (1 = input side)")
    if mesh is not None:
        extend = "both" if largest > limit else "neither"
        bar = fig.colorbar(mesh, ax=axes.tolist(), shrink=0.9, extend=extend,
                           label=f"r = log10 ||dL/dz_l|| / ||dL/dz_L||"
                                 f"{' (clipped)' if extend == 'both' else ''}")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    notes = ["dashed: the verdict's thresholds (vanishing beyond the lower, exploding beyond "
             "the upper)"] * contoured + ["grey: gradient exactly 0 or non-finite"] * any_missing
    fig.suptitle("\n".join([title, *(["; ".join(notes)] if notes else [])]), fontsize=10,
                 wrap=True)
    return fig
