"""The report's figures: per group, the gradient flow at init, the gradient heatmaps, the
training curves, every per-layer quantity over training, the plot_grad_flow bars at a chosen
step and, where recorded, weight and gradient histograms; across depths, accuracy vs depth.
Drawn from the tables read from the run files (records/), never from a live model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from winit_cli.records.reader import Run
from winit_cli.records.reuse import FigureCache
from winit_cli.records.rows import by_group, group_keys
from winit_cli.views import plots
from winit_cli.views.depth_plot import accuracy_vs_depth, dz_ratio_vs_depth
from winit_cli.views.grad_flow import Bars, grad_flow_bars, has_columns
from winit_cli.views.heatmaps import Panel, gradient_heatmaps
from winit_cli.views.histograms_plot import histogram_figure
from winit_cli.views.quantities import quantities_over_time
from winit_cli.views.spectrum_plot import SpectrumLine, spectrum_density
from winit_cli.views.words import group_title, missing, number

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
                  + "".join(f"_{number(v)}" for v in rest if not missing(v)))
    if len(text) <= MAX_SLUG:
        return text
    return f"{text[:MAX_SLUG - 9]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _geomean(arrays: list[np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 ** np.mean(np.log10(np.stack(arrays)), axis=0)


def _init_arrays(layers: pd.DataFrame) -> dict[str, np.ndarray]:
    """init_rows(layers)'s columns as arrays, for a run without module names (no norm layers:
    every layer at its own position), in numpy: a configuration has thousands of runs."""
    at_init = np.flatnonzero(layers.step.to_numpy() == 0)
    _, first = np.unique(layers.layer.to_numpy()[at_init], return_index=True)
    rows = at_init[first]  # the first row of each layer, by layer number
    return {c: layers[c].to_numpy(float)[rows] for c in
            ("act_grad_norm", "weight_grad_norm", "predicted_log10_grad_ratio") if c in layers}


def _flow_line(label: str, color: str, runs: list[Run]) -> plots.FlowLine:
    """Step 0's gradients of a configuration, the geometric mean over its runs; norm layers
    (a watched model's BatchNorm: no dL/dz) kept apart from the Linear and Conv layers."""
    if not any("name" in r.layers for r in runs):  # no module names: no norm layers
        init = [_init_arrays(r.layers) for r in runs]
        depth = min(len(f["act_grad_norm"]) for f in init)
        init = [{c: v[:depth] for c, v in f.items()} for f in init]
        predicted = None
        if all("predicted_log10_grad_ratio" in f for f in init):
            predicted = _geomean([f["act_grad_norm"][-1] * 10 ** f["predicted_log10_grad_ratio"]
                                  for f in init])
        return plots.FlowLine(
            label, color, np.arange(1.0, depth + 1), _geomean([f["act_grad_norm"] for f in init]),
            _geomean([f["weight_grad_norm"] for f in init]), predicted, None, np.empty(0), None)
    placed = [plots.with_positions(init_rows(r.layers)) for r in runs]
    norms = [f[f.position % 1 != 0] for f in placed]
    init = [f[f.position % 1 == 0] for f in placed]
    depth = min(len(f) for f in init)
    init = [f.iloc[:depth] for f in init]
    norm_count = min(len(f) for f in norms)
    predicted = None
    if all("predicted_log10_grad_ratio" in f for f in init):
        # predicted norm = measured output-layer norm x 10^(predicted log10 ratio to it)
        predicted = _geomean([f.act_grad_norm.iloc[-1] * 10 ** f.predicted_log10_grad_ratio
                              .to_numpy(float) for f in init])
    return plots.FlowLine(
        label, color, init[0].position.to_numpy(),
        _geomean([f.act_grad_norm.to_numpy(float) for f in init]),
        _geomean([f.weight_grad_norm.to_numpy(float) for f in init]), predicted,
        plots.layer_names(init[0]), norms[0].position.to_numpy()[:norm_count],
        _geomean([f.weight_grad_norm.to_numpy(float)[:norm_count] for f in norms])
        if norm_count else None)


def _heatmap_title(row: pd.Series, label: str) -> str:
    what = row.verdict or "?"
    if what in ("vanishing", "exploding", "diverged") and not pd.isna(row.verdict_layer):
        what += f" from layer {row.verdict_layer}, step {row.verdict_step}"
    return f"{label.replace('`', '')}, seed {row.seed}\n{what}"


def _group_figures(key: tuple, title: str, configs: pd.DataFrame, summary: pd.DataFrame,
                   runs: dict[str, Run], labels: dict, colors: dict, plot_dir: Path,
                   output: plots.Output, theory: dict, painter: plots.Painter
                   ) -> list[tuple[str, Path]]:
    """One group's figures, as (alt text, PNG path), saved by `painter`."""
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
            config = runs[first.path].config
            panels.append(Panel(_heatmap_title(first, labels[i]), runs[first.path].layers,
                                (config.get("diagnose.vanish_decades", 2.0),
                                 config.get("diagnose.explode_decades", 2.0))))
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
        ("gradient heatmaps", gradient_heatmaps(
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
    paths = painter.save([(fig, plot_dir / f"{name}.png") for _, fig, name in made], output)
    return [(alt, path) for (alt, _, _), path in zip(made, paths, strict=True)]


# What each kind of figure shows, under it in the report (keyed by its file name's start).
CAPTIONS = {
    "coord": "The coordinate check of a `winit widths` sweep: each layer's mean |z_l| against "
             "width (log-log), one panel per parametrization and step, the fitted slope and "
             "theory's beside each line. A flat line is a layer whose size does not grow with "
             "width.",
    "lr_transfer": "Learning-rate transfer of a `winit widths` sweep: training loss after the "
                   "sweep's steps against log2 of the learning rate, one line per width, the "
                   "best rate of each width starred. Stars that line up are a learning rate "
                   "that transfers across widths.",
    "gradient_flow": "The gradient at initialization, per layer: ||dL/dz_l|| backpropagated to "
                     "the pre-activations (left) and ||dL/dW_l|| (right), the geometric mean "
                     "over seeds, one line per configuration; dashed, theory's prediction. A "
                     "left panel falling towards the input side is a vanishing gradient.",
    "heatmaps": "One panel per configuration (its first seed): log10 of each layer's "
                "||dL/dz_l|| over the output layer's, by step. Blue: smaller (vanishing), red: "
                "larger (exploding), white: the same. The colour scale is clipped at twice the "
                "verdict's threshold (each panel's title gives its own range); the dashed "
                "contour is the threshold itself.",
    "curves": "Loss and accuracy during training: solid, the running mean over training "
              "batches; dashed, validation; the mean over seeds.",
    "quantities": "Every per-layer quantity recorded, against step, one line per layer "
                  "(dark: input side, yellow: output side).",
    "histograms": "Histograms of |W| and |dL/dW| per layer at the recorded steps.",
    "grad_flow_bars": "Mean (dark) and largest (light) |dL/dW| per layer, one panel per "
                      "configuration; a cross marks a gradient that is exactly 0.",
    "spectrum": "The density of the input-output Jacobian's singular values at "
                "initialization, per configuration, with theory's where it predicts one.",
    "dz_ratio_vs_depth": "The dz ratio at initialization (log10 ||dL/dz_1|| / "
                         "||dL/dz_{L-1}||) against depth, one panel per activation: points "
                         "measured (mean over seeds, the std as error bars), dashed lines "
                         "mean-field theory's prediction. A line that falls with depth is an "
                         "init whose gradient vanishes in deeper nets.",
    "accuracy_vs_depth": "Final test accuracy against depth, one line per scheme (the std over "
                         "seeds as error bars).",
}


def caption(path: str) -> str:
    """What a report figure shows, from its file name."""
    name = Path(path).stem
    return next(text for start, text in sorted(CAPTIONS.items(), key=lambda kv: -len(kv[0]))
                if name.startswith(start))


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
            jacobian = runs[paths[0]].record.jacobian
            lines.append(SpectrumLine(labels[i].replace("`", ""), colors[labels[i]], spectra,
                                      theory.get(paths[0]), jacobian))
    if not lines:
        return []
    return [("Jacobian spectrum at init", spectrum_density(
        lines, f"Singular values of the Jacobian at initialization: {title}"),
        f"spectrum_{slug}")]


def _drawn_from(key: tuple, title: str, configs: pd.DataFrame, summary: pd.DataFrame,
                labels: dict, colors: dict, output: plots.Output, theory: dict
                ) -> tuple[str, list[str]]:
    """What one group's figures are drawn from, as text (a FigureCache key), and its runs'
    paths (whose files' identities complete the key): rows by value, never by row label."""
    paths = [p for m in configs.members for p in summary.loc[m, "path"]]
    rows = [[labels[i], colors[labels[i]], cfg.drop("members").to_dict(),
             by_value(summary.loc[cfg.members])] for i, cfg in configs.iterrows()]
    predicted = {p: [hashlib.sha1(np.asarray(a).tobytes()).hexdigest() for a in theory[p]]
                 for p in paths if p in theory}
    return json.dumps([key, title, rows, output, predicted], default=str), paths


def by_value(frame: pd.DataFrame) -> list:
    """A frame's cells as JSON-ready lists, column by column with its name and dtype (whole
    columns at C speed: a dict per row was most of what checking 10,000 runs' figures cost)."""
    return [[c, str(frame[c].dtype), frame[c].tolist()] for c in frame.columns]


@contextmanager
def drawing(out: Path, summary: pd.DataFrame, aggregate: pd.DataFrame, runs: dict[str, Run],
            labels: dict, output: plots.Output = plots.Output(), grid: list[str] = (),
            spectrum_theory: dict[str, tuple] | None = None, reuse: FigureCache | None = None,
            between: Callable[[], None] = lambda: None
            ) -> Iterator[dict[tuple | None, list[tuple[str, str]]]]:
    """All figures, as {group: [(alt text, PNG path relative to out)]}; None holds the figures
    across depths (dz ratio and accuracy vs depth). Figures left from an earlier report in the
    same folder are removed first. Yielded while worker processes may still be saving them
    (the caller writes its text meanwhile: a report after adding a group was waiting on them);
    every file is written once the block is left.
    spectrum_theory: {run path: (log10 s, density)}, the predicted spectra drawn beside them.
    `reuse`: a group drawn from the same inputs as in an earlier report is copied from there.
    `between` runs before each group's figures (the caller's safe point for a stop signal:
    drawing a hundred groups takes minutes)."""
    plot_dir = out / "plots"
    for stale in (f for fmt in plots.FORMATS for f in plot_dir.glob(f"*.{fmt}")) \
            if plot_dir.is_dir() else []:
        stale.unlink()
    colors = plots.colors_for(list(labels.values()))
    figures: dict[tuple | None, list[tuple[str, str]]] = {}
    # a group's figures saved while the next is built
    painter = plots.Painter(None if len(summary) >= plots.PAINTERS_FROM_RUNS else 1, between)
    drawn: list = []
    with painter:
        _groups(out, summary, aggregate, runs, labels, output, grid, spectrum_theory or {},
                reuse, between, painter, colors, figures, drawn)
        _depth_figures(out, aggregate, labels, colors, output, figures, reuse)
        yield figures
    for inputs, made in drawn if reuse else ():  # kept for the next report, once written
        reuse.put(*inputs, made)


def _groups(out, summary, aggregate, runs, labels, output, grid, theory, reuse, between,
            painter, colors, figures, drawn) -> None:
    """Each group's figures into `figures`, those drawn (not reused) also onto `drawn`."""
    plot_dir = out / "plots"
    keys = group_keys(list(grid))  # groups as the text has them (records/rows.group_keys)
    for key, configs in list(by_group(aggregate, grid).items())[:plots.MAX_GROUPS]:
        between()
        title = group_title(dict(zip(keys, key, strict=True)))
        inputs = reuse and _drawn_from(key, title, configs, summary, labels, colors, output,
                                       theory)
        made = reuse and reuse.get(*inputs, plot_dir)
        if made is None:
            made = _group_figures(key, title, configs, summary, runs, labels, colors, plot_dir,
                                  output, theory, painter)
            drawn.append((inputs, made))
        figures[key] = [(alt, path.relative_to(out).as_posix()) for alt, path in made]


def _depth_figures(out: Path, aggregate: pd.DataFrame, labels: dict, colors: dict,
                   output: plots.Output, figures: dict, reuse: FigureCache | None) -> None:
    """Across groups that differ only in depth: dz ratio and accuracy against depth; drawn
    from those groups' aggregate rows alone, so kept while they are the same."""
    plot_dir = out / "plots"
    panel = ["dataset", "model_kind", "activation", "width"]
    depths = aggregate.groupby(panel, dropna=False).depth.nunique()
    if (depths > 1).any():
        varied = aggregate.set_index(panel).index.isin(depths[depths > 1].index)
        scheme_colors = {row.scheme: colors[labels[i]] for i, row in aggregate.iterrows()}
        inputs = json.dumps(["across depths", by_value(aggregate[varied].drop(columns="members")),
                             scheme_colors, output], default=str)
        made = reuse and reuse.get(inputs, [], plot_dir)
        if made is None:
            made = [(alt, plots.save(fig, plot_dir / name, output)) for alt, fig, name in (
                ("dz ratio at init vs depth: measured, and theory's prediction",
                 dz_ratio_vs_depth(aggregate[varied], scheme_colors), "dz_ratio_vs_depth.png"),
                ("test accuracy vs depth", accuracy_vs_depth(aggregate[varied], scheme_colors),
                 "accuracy_vs_depth.png"))]
            if reuse:
                reuse.put(inputs, [], made)
        figures[None] = [(alt, path.relative_to(out).as_posix()) for alt, path in made]
