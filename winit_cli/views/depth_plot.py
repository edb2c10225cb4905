"""Figures across depths, one panel per (dataset, model kind, activation, width) whose runs
span several depths, one colour per scheme: the final test accuracy, and the dz ratio at init
measured beside theory's prediction (the one picture that answers "does this init keep the
gradient alive as the net gets deeper, and does theory say why?")."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from winit_cli.records.rows import DZ_FORMULA
from winit_cli.views.plots import axes_grid, zoom_percent

PANEL = ["dataset", "model_kind", "activation", "width"]


def accuracy_vs_depth(aggregate: pd.DataFrame, colors: dict[str, str]) -> Figure:
    """Final test accuracy against depth, one panel per (dataset, model kind, activation,
    width), one line per scheme; error bars are the std over seeds where there are several."""
    panels = list(aggregate.groupby(PANEL, sort=True, dropna=False))
    fig, axes = axes_grid(len(panels), 3, cell=(5, 3.9), margin=(0, 0.5))
    for ax, ((dataset, kind, activation, width), frame) in zip(axes, panels, strict=True):
        for scheme, rows in frame.groupby("scheme", sort=True):
            rows = rows.groupby("depth", sort=True).agg(
                acc=("test_accuracy_mean", "mean"), std=("test_accuracy_std", "mean"))
            ax.errorbar(rows.index.to_numpy(), 100 * rows.acc.to_numpy(),
                        yerr=100 * rows["std"].fillna(0).to_numpy(), marker="o", ms=4,
                        capsize=3, lw=1.5, color=colors.get(scheme, "black"), label=scheme)
        ax.set_title(f"{dataset}, {kind} {activation}, width {width}", fontsize=10)
        ax.set_xlabel("depth (Linear layers)")
        ax.set_ylabel("test accuracy (%)")
        zoom_percent(ax)
        ax.grid(True, alpha=0.3)
        ax.set_xticks(sorted(frame.depth.dropna().unique()))
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Final test accuracy vs depth, per init scheme", fontsize=11)
    return fig


def dz_ratio_vs_depth(aggregate: pd.DataFrame, colors: dict[str, str]) -> Figure:
    """The dz ratio at init (log10 ||dL/dz_1|| / ||dL/dz_{L-1}||) against depth: measured points
    (mean over seeds, the std as error bars), theory's prediction at each depth as a dashed line
    in the same colour; 0 (no change across the net) as a grey line."""
    panels = list(aggregate.groupby(PANEL, sort=True, dropna=False))
    fig, axes = axes_grid(len(panels), 3, cell=(5, 3.9), margin=(0, 0.7))
    for ax, ((dataset, kind, activation, width), frame) in zip(axes, panels, strict=True):
        ax.axhline(0, color="0.6", lw=1)
        predicted_any = False
        for scheme, rows in frame.groupby("scheme", sort=True):
            rows = rows.groupby("depth", sort=True).agg(
                measured=("log10_first_to_last_measured_mean", "mean"),
                std=("log10_first_to_last_measured_std", "mean"),
                predicted=("log10_first_to_last_predicted_mean", "mean"))
            color = colors.get(scheme, "black")
            depth = rows.index.to_numpy(float)
            ax.errorbar(depth, rows.measured.to_numpy(float),
                        yerr=rows["std"].fillna(0).to_numpy(float), ls="none", marker="o",
                        ms=5, capsize=3, color=color, label=scheme)
            predicted = rows.predicted.to_numpy(float)
            if np.isfinite(predicted).any():
                predicted_any = True
                known = np.isfinite(predicted)
                ax.plot(depth[known], predicted[known], ls="--", lw=1.4, color=color)
        ax.set_title(f"{dataset}, {kind} {activation}, width {width}", fontsize=10)
        ax.set_xlabel("depth (Linear layers)")
        ax.set_ylabel("dz ratio at init (decades)")
        ax.grid(True, alpha=0.3)
        ax.set_xticks(sorted(frame.depth.dropna().unique()))
        handles, labels = ax.get_legend_handles_labels()
        if predicted_any:
            handles.append(Line2D([], [], color="black", ls="--"))
            labels.append("mean-field prediction")
        ax.legend(handles, labels, fontsize=8, loc="best")
    fig.suptitle(f"Gradient across the net at init vs depth: {DZ_FORMULA}; points measured, "
                 "dashed lines theory", fontsize=11, wrap=True)
    return fig
