"""Every per-layer quantity over training, as small multiples: one panel per quantity, one line
per layer coloured from input (dark) to output (light). Drawn from one run's layers.csv.

These are the columns recorded at every recorded step that no other figure shows: weight
gradients, update ratio, weight norm, activation spread, and the dead or saturated fraction;
for residual and normalized nets also the stream's gradient, alpha, and the norm layers'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from winit_cli.views.plots import axes_grid

# (column, axis label, log scale)
PANELS = (
    ("act_grad_norm", "||dL/dz_l||", True),
    ("weight_grad_norm", "||dL/dW_l||", True),
    ("update_ratio", "||dW|| / ||W|| per step", True),
    ("weight_norm", "||W_l||", True),
    ("act_std", "std of h_l", True),
    ("dead_fraction", "dead units (fraction)", False),
    ("saturated_fraction", "saturated units (fraction)", False),
    # Kinds beyond the plain MLP (measure/family_probes.py); absent columns draw no panel.
    ("stream_grad_norm", "||dL/dh_b|| (residual stream)", True),
    ("branch_scale", "alpha_b (branch scale)", False),
    ("norm_act_grad_norm", "||dL/dy|| (norm output)", True),
    ("norm_weight_norm", "||gamma|| (norm)", True),
)


def _panels(layers: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """The panels this run has numbers for (a tanh net has no dead units, ReLU no saturation)."""
    out = []
    for column, label, log in PANELS:
        if column in layers:
            values = pd.to_numeric(layers[column], errors="coerce")
            if (values > 0).any() if log else values.notna().any():
                out.append((column, label, log))
    return out


MAX_NAMED = 16  # module names on the colour bar up to this many layers; numbers beyond


def quantities_over_time(layers: pd.DataFrame, title: str) -> Figure:
    """Small multiples of every recorded per-layer quantity against step."""
    panels = _panels(layers)
    depth = int(layers.layer.max())
    cmap = colormaps["viridis"]
    norm = Normalize(1, max(depth, 2))
    fig, axes = axes_grid(len(panels), 4, cell=(3.3, 2.6), margin=(1.0, 0.7))
    for ax, (column, label, log) in zip(axes, panels, strict=True):
        for layer, rows in layers.sort_values("step").groupby("layer"):
            y = pd.to_numeric(rows[column], errors="coerce").to_numpy(float)
            if log:
                y = np.where(y > 0, y, np.nan)  # a zero has no logarithm: a gap, not a dive
            ax.plot(rows.step.to_numpy(), y, lw=1.1, color=cmap(norm(layer)))
        if log:
            ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=axes.tolist(), shrink=0.9,
                       label="layer (1 = input side)")
    names = layers.drop_duplicates("layer").sort_values("layer")
    if "name" in names and names.name.notna().all() and len(names) <= MAX_NAMED:
        # a watched run: its modules by name, so that a row is the module the user wrote
        bar.set_ticks(names.layer.to_numpy(), labels=names.name.astype(str).tolist(), fontsize=7)
        bar.set_label("module (input side first)")
    else:
        bar.locator = MaxNLocator(integer=True)  # layers are whole: no tick at 2.5
        bar.update_ticks()
    fig.suptitle(title, fontsize=11, wrap=True)
    return fig
