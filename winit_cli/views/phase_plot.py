"""The trainability phase diagram: measured accuracy over sigma_w2 x depth, with the mean-field
boundaries drawn over it (Schoenholz et al. 2017, Fig. 5). Reads phase.csv-shaped frames and
curves computed beforehand; never a live model. Drawing returns the figure; plots.save writes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from winit_cli.views.plots import cell_edges


@dataclass
class PhaseTheory:
    sigma_w2: np.ndarray  # a fine grid over the diagram's range
    depth_bound: np.ndarray  # c * xi_c there (inf on the critical line, nan where none)
    c: float
    critical_sigma_w2: float | None  # chi_1 = 1: the ordered/chaotic boundary
    fitted_c: float | None = None  # the c that classifies the measured cells best, if any


def _axis_edges(centers: np.ndarray) -> tuple[np.ndarray, bool]:
    """Cell edges, and whether the axis is logarithmic: a grid spanning a factor of 4 or more
    (depths 4..128, sigma_w2 0.5..8) gets geometric edges on a log axis, so that each cell is
    as wide as its neighbours and the small values stay readable."""
    if len(centers) > 1 and centers.min() > 0 and centers.max() / centers.min() >= 4:
        return np.exp(cell_edges(np.log(centers))), True
    return cell_edges(centers), False


def _label_cells(ax, wide: pd.DataFrame) -> None:
    """Each cell's value, dark on light cells and light on dark ones."""
    for depth, row in wide.iterrows():
        for sigma_w2, value in row.items():
            if np.isfinite(value):
                ax.text(sigma_w2, depth, f"{value:.2f}", ha="center", va="center", fontsize=6.5,
                        color="black" if value > 0.55 else "white")


def phase_diagram(grid: pd.DataFrame, theory: PhaseTheory, title: str, agreement_line: str,
                  value: str = "test_accuracy") -> Figure:
    """Heatmap of `value` per (sigma_w2, depth) cell, each labelled; c xi_c curve; chi_1 = 1
    line; cells the theory misclassifies circled."""
    wide = grid.pivot(index="depth", columns="sigma_w2", values=value).sort_index()
    wide = wide.sort_index(axis=1)
    (x_edges, x_log), (y_edges, y_log) = (_axis_edges(wide.columns.to_numpy(float)),
                                          _axis_edges(wide.index.to_numpy(float)))
    fig = Figure(figsize=(7.5, 6.0), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["magma"].with_extremes(bad="#bdbdbd")
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(wide.to_numpy(float)),
                         cmap=cmap, norm=Normalize(0.0, 1.0), shading="flat")
    fig.colorbar(mesh, ax=ax, label=value.replace("_", " "))
    _label_cells(ax, wide)
    bound = np.where(np.isfinite(theory.depth_bound), theory.depth_bound, 1e9)
    ax.plot(theory.sigma_w2, bound, color="#4fc3f7", lw=2.2,
            label=f"depth = {theory.c:g} xi_c (trainable below)")
    if theory.fitted_c is not None:
        ax.plot(theory.sigma_w2, bound * theory.fitted_c / theory.c, color="#4fc3f7", lw=1.8,
                ls=":", label=f"best fit: depth = {theory.fitted_c:.2g} xi_c")
    if theory.critical_sigma_w2 is not None:
        ax.axvline(theory.critical_sigma_w2, color="white", ls="--", lw=1.5,
                   label=f"chi_1 = 1 (sigma_w2 = {theory.critical_sigma_w2:.3g}): ordered "
                         "left, chaotic right")
    wrong = grid[grid[value].notna() & (grid.trained != grid.predicted_trainable)]
    if len(wrong):
        ax.scatter(wrong.sigma_w2, wrong.depth, marker="o", s=260, facecolors="none",
                   edgecolors="#00e676", linewidths=1.8, label="theory misclassifies")
    if x_log:
        ax.set_xscale("log")
    if y_log:
        ax.set_yscale("log")
    for axis, centers in ((ax.xaxis, wide.columns), (ax.yaxis, wide.index)):
        axis.set_ticks(centers.to_numpy(float), labels=[f"{v:g}" for v in centers])
        axis.set_minor_locator(NullLocator())
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xlabel("sigma_w^2")
    ax.set_ylabel("depth (Linear layers)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
    ax.set_title(f"{title}\n{agreement_line}", fontsize=9)
    return fig
