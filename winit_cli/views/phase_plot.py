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

from winit_cli.views.plots import _edges


@dataclass
class PhaseTheory:
    sigma_w2: np.ndarray  # a fine grid over the diagram's range
    depth_bound: np.ndarray  # c * xi_c there (inf on the critical line, nan where none)
    c: float
    critical_sigma_w2: float | None  # chi_1 = 1: the ordered/chaotic boundary


def phase_diagram(grid: pd.DataFrame, theory: PhaseTheory, title: str, agreement_line: str,
                  value: str = "test_accuracy") -> Figure:
    """Heatmap of `value` per (sigma_w2, depth) cell; c xi_c curve; chi_1 = 1 line; cells the
    theory misclassifies crossed out."""
    wide = grid.pivot(index="depth", columns="sigma_w2", values=value).sort_index()
    wide = wide.sort_index(axis=1)
    xs, ys = wide.columns.to_numpy(float), wide.index.to_numpy(float)
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["magma"].with_extremes(bad="#bdbdbd")
    mesh = ax.pcolormesh(_edges(xs), _edges(ys), np.ma.masked_invalid(wide.to_numpy(float)),
                         cmap=cmap, norm=Normalize(0.0, 1.0), shading="flat")
    fig.colorbar(mesh, ax=ax, label=value.replace("_", " "))
    bound = np.where(np.isfinite(theory.depth_bound), theory.depth_bound, 1e9)
    ax.plot(theory.sigma_w2, bound, color="#4fc3f7", lw=2,
            label=f"depth = {theory.c:g} xi_c")
    if theory.critical_sigma_w2 is not None:
        ax.axvline(theory.critical_sigma_w2, color="white", ls="--", lw=1.5,
                   label=f"chi_1 = 1 (sigma_w2 = {theory.critical_sigma_w2:.3g})")
    wrong = grid[grid[value].notna() & (grid.trained != grid.predicted_trainable)]
    if len(wrong):
        ax.scatter(wrong.sigma_w2, wrong.depth, marker="x", color="#00e676", s=60,
                   label="theory misclassifies")
    ax.set_xlim(_edges(xs)[0], _edges(xs)[-1])
    ax.set_ylim(_edges(ys)[0], _edges(ys)[-1])
    ax.set_xlabel("sigma_w^2")
    ax.set_ylabel("depth (Linear layers)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_title(f"{title}\n{agreement_line}", fontsize=10)
    return fig
