"""The density of the step-0 Jacobian's singular values, one line per configuration (Pennington,
Schoenholz & Ganguli 2017, Fig. 2): concentrated near one (dynamical isometry) or spread over
decades. Reads spectrum.csv frames (value, weight), the run record's cutoff-free summary
(var(s^2) / mean(s^2)^2 beside free probability's) and, where given, the predicted density
computed beforehand (app/spectrum_theory.py); drawing returns the figure. "zeros" and the
spread depend on the cutoff ZERO_RTOL, which the legend states."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

BINS = 60
ZERO_RTOL = 1e-6  # as measure/jacobian.py: values below this times the maximum count as zero


@dataclass
class SpectrumLine:
    label: str
    color: str
    spectra: list[pd.DataFrame]  # one spectrum.csv per seed, pooled with equal weight
    # the free-probability prediction (log10 s, density per unit log10 s), or None: no theory
    theory: tuple[np.ndarray, np.ndarray] | None = None
    # the first run's summary.json jacobian block (records.schema.JacobianRecord), for the
    # summaries that need no cutoff: var(s^2) / mean(s^2)^2, measured and predicted
    record: object | None = None


def _summary(line: SpectrumLine) -> str:
    """", var/mean^2 of s^2 X (theory Y), spread Z at cutoff C" for the legend."""
    r = line.record
    if r is None or getattr(r, "var_ratio", None) is None:
        return ""
    text = f"; var(s²)/mean² {r.var_ratio:.3g}"
    if r.predicted_var_ratio is not None:
        text += f" (theory {r.predicted_var_ratio:.3g})"
    if r.spread is not None and r.spread_zero_rtol is not None:
        text += f"; spread {r.spread:.2f} over s > {r.spread_zero_rtol:g} max"
    return text


def _pooled_log10(spectra: list[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate([f.value.to_numpy(float) for f in spectra])
    weights = np.concatenate([f.weight.to_numpy(float) / len(spectra) for f in spectra])
    keep = values > ZERO_RTOL * values.max()
    return np.log10(values[keep]), weights[keep]


def spectrum_density(lines: Sequence[SpectrumLine], title: str) -> Figure:
    """Weighted histograms of log10 s on shared bins; zeros left out (their share is in the
    legend)."""
    pooled = [_pooled_log10(line.spectra) for line in lines]
    every = np.concatenate([p[0] for p in pooled])
    bins = np.linspace(every.min(), every.max(), BINS + 1) if every.size else np.linspace(-1, 1, 3)
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for line, (log_s, weights) in zip(lines, pooled, strict=True):
        density, edges = np.histogram(log_s, bins=bins, weights=weights, density=False)
        zero = 1 - weights.sum()
        label = f"{line.label} (zeros {100 * zero:.0f}%)" if zero > 1e-9 else line.label
        ax.stairs(density / np.diff(edges), edges, color=line.color, lw=1.6,
                  label=label + _summary(line))
        if line.theory is not None:
            shown = (line.theory[0] >= bins[0]) & (line.theory[0] <= bins[-1])
            ax.plot(line.theory[0][shown], line.theory[1][shown], color=line.color, lw=1.2,
                    ls="--", alpha=0.9)
    if any(line.theory is not None for line in lines):
        ax.plot([], [], color="#555555", ls="--", lw=1.2,
                label="dashed: free-probability theory (infinite width, q = q*)")
    ax.axvline(0.0, color="#777777", lw=0.8, ls=":")
    ax.set_xlabel("log10 singular value of dz_{L-1}/dz_1 at step 0")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return fig
