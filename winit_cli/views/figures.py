"""The report's figures: per group, the gradient flow at init, the gradient heatmaps, the
training curves, every per-layer quantity over training, the plot_grad_flow bars at a chosen
step and, where recorded, weight and gradient histograms; across depths, accuracy vs depth.
Drawn from the tables read from the run files (records/), never from a live model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from winit_cli.records.reader import Run
from winit_cli.records.rows import by_group, group_keys
from winit_cli.views import plots
from winit_cli.views.grad_flow import Bars, grad_flow_bars, has_columns
from winit_cli.views.histograms_plot import histogram_figure
from winit_cli.views.quantities import quantities_over_time
from winit_cli.views.spectrum_plot import SpectrumLine, spectrum_density
from winit_cli.views.words import group_title, number

MAX_QUANTITY_FIGURES = 4  # configurations per group with a per-layer-quantities figure


def init_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """The step-0 records (the network at initialization), one per layer, input side first."""
    return layers[layers.step == 0].drop_duplicates("layer").sort_values("layer")


MAX_SLUG = 80  # characters: a figure's name stays well under a file name's 255 bytes


def _slug(key: tuple) -> str:
    """A group key as a file name: mnist_mlp_relu_d8_w64, then any other settings' values. A
    key too long for that (a watched run's class, layer list and optimizer settings) keeps its
    readable start and ends in a hash of the whole, so that names stay bounded and distinct."""
    dataset, kind, activation, depth, width, *rest = key
    text = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{dataset}_{kind}_{activation}_d{depth}_w{width}"
                  + "".join(f"_{number(v)}" for v in rest))
    if len(text) <= MAX_SLUG:
        return text
    return f"{text[:MAX_SLUG - 9]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _geomean(arrays: list[np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 ** np.mean(np.log10(np.stack(arrays)), axis=0)


def _flow_line(label: str, color: str, runs: list[Run]) -> plots.FlowLine:
    init = [init_rows(r.layers) for r in runs]
    depth = min(len(f) for f in init)
    init = [f.iloc[:depth] for f in init]
    predicted = None
    if all("predicted_log10_grad_ratio" in f for f in init):
        # predicted norm = measured output-layer norm x 10^(predicted log10 ratio to it)
        predicted = _geomean([f.act_grad_norm.iloc[-1] * 10 ** f.predicted_log10_grad_ratio
                              .to_numpy(float) for f in init])
    return plots.FlowLine(label, color, init[0].layer.to_numpy(),
                          _geomean([f.act_grad_norm.to_numpy(float) for f in init]),
                          _geomean([f.weight_grad_norm.to_numpy(float) for f in init]), predicted)


def _heatmap_title(row: pd.Series, label: str) -> str:
    what = row.verdict or "?"
    if what in ("vanishing", "exploding", "diverged") and not pd.isna(row.verdict_layer):
        what += f" from layer {row.verdict_layer}, step {row.verdict_step}"
    return f"{label.replace('`', '')}, seed {row.seed}\n{what}"


def _group_figures(key: tuple, title: str, configs: pd.DataFrame, summary: pd.DataFrame,
                   runs: dict[str, Run], labels: dict, colors: dict, plot_dir: Path,
                   output: plots.Output, theory: dict) -> list[tuple[str, Path]]:
    """One group's figures, as (alt text, PNG path)."""
    slug = _slug(key)
    flows, curves, panels, quantities, bars = [], [], [], [], []
    for n, (i, cfg) in enumerate(configs.iterrows()):
        members = [runs[p] for p in summary.loc[cfg.members, "path"]]
        label = labels[i].replace("`", "")
        first = summary.loc[cfg.members[0]]
        flows.append(_flow_line(label, colors[labels[i]], members))
        curves.append(plots.Curve(label, colors[labels[i]],
                                  [m.metrics for m in members if m.metrics is not None]))
        if len(panels) < plots.MAX_PANELS:
            panels.append(plots.Panel(_heatmap_title(first, labels[i]), runs[first.path].layers))
            if has_columns(runs[first.path].layers):
                bars.append(Bars(f"{label}, seed {first.seed}", colors[labels[i]],
                                 runs[first.path].layers))
        if n < MAX_QUANTITY_FIGURES:
            quantities.append((f"per-layer quantities over training: {label}",
                               quantities_over_time(runs[first.path].layers,
                                                    f"{label}, seed {first.seed}: {title}"),
                               f"quantities_{slug}_{n + 1}"))
            histograms = runs[first.path].histograms
            if histograms is not None and len(histograms):
                quantities.append((f"weight and gradient histograms: {label}", histogram_figure(
                    histograms, f"Histograms of |W| and |dL/dW| per layer: {label}, seed "
                                f"{first.seed}: {title}"), f"histograms_{slug}_{n + 1}"))
    made = [
        ("gradient flow at init", plots.gradient_flow(
            flows, f"Gradient flow at initialization (step 0): {title}"), f"gradient_flow_{slug}"),
        ("gradient heatmaps", plots.gradient_heatmaps(
            panels, f"log10 ||dL/dz_l|| / ||dL/dz_L|| by layer and step: {title}"),
         f"heatmaps_{slug}"),
        ("training curves", plots.training_curves(
            curves, f"Training and validation: {title}"), f"curves_{slug}"),
        *quantities,
        *([("mean and max |dL/dW| per layer", grad_flow_bars(
            bars, output.grad_flow_step,
            f"|dL/dW| per layer at step {output.grad_flow_step}: {title}"),
            f"grad_flow_bars_{slug}")] if bars else []),
        *_spectrum_figure(configs, summary, runs, labels, colors, title, slug, theory),
    ]
    return [(alt, plots.save(fig, plot_dir / f"{name}.png", output)) for alt, fig, name in made]


def _spectrum_figure(configs, summary, runs, labels, colors, title, slug, theory
                     ) -> list[tuple]:
    """The Jacobian spectrum density per configuration, where the runs recorded spectrum.csv,
    with the predicted density where `theory` has one for its first member."""
    lines = []
    for i, cfg in configs.iterrows():
        paths = list(summary.loc[cfg.members, "path"])
        spectra = [runs[p].spectrum for p in paths]
        spectra = [f for f in spectra if f is not None and len(f)]
        if spectra:
            lines.append(SpectrumLine(labels[i].replace("`", ""), colors[labels[i]], spectra,
                                      theory.get(paths[0])))
    if not lines:
        return []
    return [("Jacobian spectrum at init", spectrum_density(
        lines, f"Singular values of the Jacobian at initialization: {title}"),
        f"spectrum_{slug}")]


def draw(out: Path, summary: pd.DataFrame, aggregate: pd.DataFrame, runs: dict[str, Run],
         labels: dict, output: plots.Output = plots.Output(), grid: list[str] = (),
         spectrum_theory: dict[str, tuple] | None = None,
         between: Callable[[], None] = lambda: None
         ) -> dict[tuple | None, list[tuple[str, str]]]:
    """All figures, as {group: [(alt text, PNG path relative to out)]}; None holds accuracy vs
    depth. Figures left from an earlier report in the same folder are removed first.
    spectrum_theory: {run path: (log10 s, density)}, the predicted spectra drawn beside them.
    `between` runs before each group's figures (the caller's safe point for a stop signal:
    drawing a hundred groups takes minutes)."""
    plot_dir = out / "plots"
    for stale in (f for fmt in plots.FORMATS for f in plot_dir.glob(f"*.{fmt}")) \
            if plot_dir.is_dir() else []:
        stale.unlink()
    colors = plots.colors_for(list(labels.values()))
    figures: dict[tuple | None, list[tuple[str, str]]] = {}
    keys = group_keys(list(grid))  # groups as the text has them (records/rows.group_keys)
    for key, configs in list(by_group(aggregate, grid).items())[:plots.MAX_GROUPS]:
        between()
        title = group_title(dict(zip(keys, key, strict=True)))
        made = _group_figures(key, title, configs, summary, runs, labels, colors, plot_dir,
                              output, spectrum_theory or {})
        figures[key] = [(alt, path.relative_to(out).as_posix()) for alt, path in made]
    panel = ["dataset", "model_kind", "activation", "width"]
    depths = aggregate.groupby(panel, dropna=False).depth.nunique()
    if (depths > 1).any():
        varied = aggregate.set_index(panel).index.isin(depths[depths > 1].index)
        scheme_colors = {row.scheme: colors[labels[i]] for i, row in aggregate.iterrows()}
        path = plots.save(plots.accuracy_vs_depth(aggregate[varied], scheme_colors),
                          plot_dir / "accuracy_vs_depth.png", output)
        figures[None] = [("test accuracy vs depth", path.relative_to(out).as_posix())]
    return figures
