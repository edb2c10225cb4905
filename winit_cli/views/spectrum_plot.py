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
MIN_SPAN = 0.2  # decades the bins span at least
ZERO_RTOL = 1e-6  # as measure/jacobian.py: values below this times the maximum count as zero


@dataclass
class SpectrumLine:
    label: str
    color: str
    spectra: list[pd.DataFrame]  # one spectrum.csv per seed, pooled with equal weight
    # the free-probability prediction (log10 s, density per unit log10 s[, atoms [A, 2] as
    # (log10 s, mass), left out of the density]), or None: no theory
    theory: tuple[np.ndarray, ...] | None = None
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


def _draw_theory(ax, line: SpectrumLine, bins: np.ndarray) -> None:
    """The predicted density dashed, inside the histogram's range; each atom as the dashed bar
    a histogram on these bins would draw for it (its mass over its bin's width)."""
    log_s, density, *rest = line.theory
    shown = (log_s >= bins[0]) & (log_s <= bins[-1])
    ax.plot(log_s[shown], density[shown], color=line.color, lw=1.2, ls="--", alpha=0.9)
    for at, mass in rest[0] if rest else ():
        index = min(max(int(np.searchsorted(bins, at, side="right")) - 1, 0), len(bins) - 2)
        if bins[0] - 1e-9 <= at <= bins[-1] + 1e-9:
            ax.plot([at, at], [0.0, mass / (bins[index + 1] - bins[index])], color=line.color,
                    lw=1.2, ls="--", alpha=0.9)


def spectrum_density(lines: Sequence[SpectrumLine], title: str) -> Figure:
    """Weighted histograms of log10 s on shared bins; zeros left out (their share is in the
    legend)."""
    pooled = [_pooled_log10(line.spectra) for line in lines]
    every = np.concatenate([p[0] for p in pooled])
    low, high = (every.min(), every.max()) if every.size else (-1.0, 1.0)
    if high - low < MIN_SPAN:  # one value (orthogonal, k = 1): bins of a readable width
        low, high = 0.5 * (low + high - MIN_SPAN), 0.5 * (low + high + MIN_SPAN)
    bins = np.linspace(low, high, BINS + 1)
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for line, (log_s, weights) in zip(lines, pooled, strict=True):
        density, edges = np.histogram(log_s, bins=bins, weights=weights, density=False)
        zero = 1 - weights.sum()
        label = f"{line.label} (zeros {100 * zero:.0f}%)" if zero > 1e-9 else line.label
        ax.stairs(density / np.diff(edges), edges, color=line.color, lw=1.6,
                  label=label + _summary(line))
        if line.theory is not None:
            _draw_theory(ax, line, bins)
    if any(line.theory is not None for line in lines):
        ax.plot([], [], color="#555555", ls="--", lw=1.2,
                label="dashed: free-probability theory (infinite width, q = q*)")
    ax.axvline(0.0, color="#777777", lw=0.8, ls=":")
    ax.set_xlabel("log10 singular value of dz_{L-1}/dz_1 at step 0")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return fig
