"""Figures for `winit report`, drawn from the tables a run wrote (never from a live model).

Every function takes tidy frames already read from results/ and writes one PNG. Figures are
built with `matplotlib.figure.Figure` rather than pyplot: no global state, no GUI backend, the
Agg renderer whatever MPLBACKEND says. Gradient norms span tens of decades, so they are always
drawn on log scales; a norm that is exactly 0 (a subnormal flushed to zero) has no logarithm
and is drawn grey in heatmaps and left out of line plots, with a note saying so.
"""

from __future__ import annotations

import gc
import glob
import io
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter

from winit_cli.records.files import atomic_write

DPI = 100
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
# How much a report draws; its tables and text cover everything.
MAX_GROUPS = 16  # (activation, depth, width) groups with figures
MAX_PANELS = 12  # heatmap panels per group: one run (the lowest seed) per configuration


def colors_for(labels: Sequence[str]) -> dict[str, str]:
    """One color per scheme, the same in every figure of a report."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


FORMATS = ("png", "pdf", "svg")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Output:
    """How figures are saved: always a PNG (the HTML report embeds it), plus any of FORMATS;
    and the step the per-layer |dL/dW| bars (views/grad_flow.py) show."""

    formats: tuple[str, ...] = ("png",)
    dpi: int = DPI
    grad_flow_step: int = 0


def save(fig: Figure, path: Path, output: Output = Output()) -> Path:
    """Write the figure atomically (temp file, then rename) as `path` (a PNG) and beside it in
    the other formats asked for; returns the PNG's path."""
    FigureCanvasAgg(fig)
    as_written(fig)
    for fmt in dict.fromkeys(("png", *output.formats)):
        buffer = io.BytesIO()
        # No creation date or software version in the files: the same runs give the same bytes.
        metadata = {"Software": None} if fmt == "png" else {"Creator": None, "Date": None} \
            if fmt == "svg" else {"Creator": None, "Producer": None, "CreationDate": None}
        fig.savefig(buffer, format=fmt, dpi=output.dpi, metadata=metadata)
        atomic_write(path.with_suffix(f".{fmt}"), buffer.getvalue())
    return path


class Painter:
    """Figures saved (drawn, encoded, written) by forked worker processes while the caller
    builds the next ones: drawing is most of a report's time and matplotlib holds the GIL, so
    it is processes, one per CPU at most (none where fork is missing: saved here). A worker
    gets the figures as they are in memory (fork: nothing pickled) and writes the files
    `save` writes, byte for byte; one that fails has its figures saved again here, where the
    error is raised as it would have been. `wait` returns once every file is written."""

    def __init__(self, workers: int | None = None, check: Callable[[], None] = lambda: None):
        methods = multiprocessing.get_all_start_methods()
        self.workers = (workers or min(MAX_PAINTERS, os.cpu_count() or 1)) \
            if "fork" in methods else 1
        self.check = check  # a safe point: a stop signal acted on before figures are handed on
        self._running: list[tuple[multiprocessing.Process, list[tuple[Figure, Path]],
                                  Output]] = []

    def save(self, jobs: list[tuple[Figure, Path]], output: Output = Output()) -> list[Path]:
        """Save each (figure, PNG path), now or in a worker; returns the PNG paths."""
        self.check()
        if self.workers < 2:
            return [save(fig, path, output) for fig, path in jobs]
        for part in (jobs[i::self.workers] for i in range(self.workers)):
            # a group's figures dealt out over the workers: a report that draws one group
            # (the rest reused) draws it on every CPU
            while part and len(self._running) >= self.workers:
                self._join_first()
            if part:
                worker = multiprocessing.get_context("fork").Process(
                    target=_save_all, args=(part, output), daemon=True)
                worker.start()
                self._running.append((worker, part, output))
        return [path for _, path in jobs]

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        """Every file written; or, leaving on an error (a stop signal), no worker left."""
        try:
            while kind is None and self._running:
                self._join_first()
        finally:
            # SIGKILL, not SIGTERM: a worker forked a moment ago still has the report's own
            # handler (which only sets a flag) until `_save_all` resets it, and would go on
            # drawing while the report waits for it.
            for worker, jobs, output in self._running:
                worker.kill()
                worker.join()
                _remove_half_written(jobs, output)
            self._running.clear()

    def _join_first(self) -> None:
        """Wait for the oldest worker, a safe point (`check`) every tenth of a second: a stop
        signal is acted on while a worker draws."""
        worker, jobs, output = self._running[0]
        # A forked worker can deadlock on a lock another thread of the report held when it
        # forked (nothing of ours, but DuckDB's and BLAS's threads are there): past a deadline
        # far beyond any figure's time it is stopped and its figures saved here.
        deadline = time.monotonic() + WORKER_SECONDS_PER_FIGURE * (len(jobs) + 1)
        while worker.exitcode is None and time.monotonic() < deadline:
            worker.join(0.1)
            self.check()
        self._running.pop(0)
        if worker.exitcode is None:
            worker.kill()
            worker.join()
            _remove_half_written(jobs, output)
        if worker.exitcode != 0:
            for fig, path in jobs:
                save(fig, path, output)


MAX_PAINTERS = 4
# A worker still drawing after this many seconds per figure it was given (a figure takes under
# a few seconds even on a loaded machine) is taken for stuck.
WORKER_SECONDS_PER_FIGURE = 60.0
# Fewer runs than this draw in the report's own process: their figures take seconds at most.
PAINTERS_FROM_RUNS = 100


def _remove_half_written(jobs: list[tuple[Figure, Path]], output: Output) -> None:
    """The temporary files (records/files.atomic_write's names) a killed worker may have left
    beside the figures it was writing, in the report's own staging folder."""
    for _, path in jobs:
        for fmt in dict.fromkeys(("png", *output.formats)):
            name = path.with_suffix(f".{fmt}").name
            for left in path.parent.glob(f".{glob.escape(name)}.*.tmp"):
                left.unlink(missing_ok=True)


def _save_all(jobs: list[tuple[Figure, Path]], output: Output) -> None:
    # No garbage collection in a worker: it would visit objects that the report's other
    # threads (DuckDB's, Arrow's, BLAS's: not forked) own, and crashed doing so; a worker
    # lives for a few figures.
    gc.disable()
    # a worker ends at once on a signal (the report's own handler only sets a flag that the
    # report acts on; it stops its workers itself)
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    for fig, path in jobs:
        save(fig, path, output)


def as_written(fig: Figure) -> None:
    """Every text of the figure drawn as written: titles, legends and labels hold names from
    the runs' files (a scheme, a run name), and a `$` pair there would start matplotlib's
    mathtext (`$\\frac{1}{$` raised and took the whole report down). Every figure passes through
    `save`, which calls this once; tick labels, which matplotlib writes while drawing (its
    log-axis `10^-3` is mathtext), keep theirs."""
    for text in _texts(fig):
        if "$" in text.get_text():
            text.set_text(text.get_text().replace("$", r"\$"))


def _texts(artist: Artist) -> Iterator[Text]:
    """Every Text under `artist`, an axis's ticks aside: the ticks an axis makes are labelled
    by their formatter while the figure is drawn (whatever they hold now is replaced), and
    asking an axis for them makes and lays out every tick (findobj did: a sixth of the time a
    report spent on its figures)."""
    if isinstance(artist, Text):
        yield artist
    children = [artist.label, artist.offsetText] if isinstance(artist, Axis) else \
        artist.get_children()
    for child in children:
        yield from _texts(child)


def axes_grid(n: int, max_cols: int, cell: tuple[float, float],
               margin: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure with n axes in rows of at most max_cols, each cell (width, height) inches plus a
    margin for the whole; the grid's cells beyond n are hidden. Returns the figure and n axes."""
    ncols = min(max_cols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(cell[0] * ncols + margin[0], cell[1] * nrows + margin[1]),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def log10(values) -> np.ndarray:
    """log10 of norms; 0 and non-finite values become NaN (no logarithm to draw)."""
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(v)
    out[~np.isfinite(out)] = np.nan
    return out


def cell_edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centers (steps are not always evenly spaced: the last one)."""
    if len(centers) == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    mid = (centers[1:] + centers[:-1]) / 2
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def dz_layers(layers: pd.DataFrame) -> pd.DataFrame:
    """The rows of the layers that have a backpropagated gradient (Linear and Conv; not norm
    layers, whose act_grad_norm is empty), renumbered 1..L input side first as `position`: the
    depth a title gives is the axis's length."""
    return with_positions(layers)[lambda f: f.position % 1 == 0]


def with_positions(layers: pd.DataFrame) -> pd.DataFrame:
    """`layers` with a `position` column: 1..L for the layers with a backpropagated gradient,
    input side first, and for a norm layer (no dL/dz) the position of the layer before it plus
    a half, so that norm layers sit between the layers they follow, drawn apart."""
    # one groupby, not a mask per layer: this runs for every run of a group drawn
    has_dz = layers.act_grad_norm.notna().groupby(layers.layer).any()
    if "name" not in layers or not has_dz.any():
        # only a watched model has norm layers among its rows; a run whose every gradient is
        # missing (non-finite from step 0: mean1_normal deep enough) has no norm layer either
        has_dz[:] = True
    position, place = {}, 0.0
    for number, dz in has_dz.items():  # by layer number, ascending
        place = (int(place) + 1.0) if dz else int(place) + 0.5
        position[number] = place
    return layers.assign(position=layers.layer.map(position))


def layer_names(rows: pd.DataFrame) -> list[str] | None:
    """Tick labels by position: a watched run's module names, else None (numbers will do)."""
    if "name" not in rows or rows.name.isna().all():
        return None
    first = rows.drop_duplicates("position").sort_values("position")
    return [str(n) for n in first.name]


@dataclass
class FlowLine:
    label: str
    color: str
    layer: np.ndarray
    act_grad_norm: np.ndarray  # geometric mean over seeds at step 0
    weight_grad_norm: np.ndarray
    predicted: np.ndarray | None  # predicted ||dL/dz_l||, None when no prediction was saved
    names: list[str] | None = None  # a watched run's module names, by layer
    # norm layers (no dL/dz): their positions (between the layers around them) and ||dL/dW||
    norm_position: np.ndarray | None = None
    norm_weight_grad_norm: np.ndarray | None = None


def gradient_flow(lines: Sequence[FlowLine], title: str) -> Figure:
    """Per-layer ||dL/dz_l|| (left) and ||dL/dW_l|| (right) at step 0, one line per scheme,
    the mean-field prediction dashed. Glorot & Bengio's point is the contrast between the two."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax_z, ax_w = fig.subplots(1, 2)
    dropped = has_prediction = has_norm = False
    for n, line in enumerate(lines):
        # Markers and dashes differ per line: identical profiles (He normal and uniform) stay
        # distinguishable where they overlap.
        style = {"marker": MARKERS[n % len(MARKERS)], "ls": DASHES[n // len(MARKERS) % 4]}
        for ax, values in ((ax_z, line.act_grad_norm), (ax_w, line.weight_grad_norm)):
            y = np.where(np.asarray(values, float) > 0, values, np.nan)
            dropped |= bool(np.isnan(y).any())
            ax.plot(line.layer, y, ms=5, lw=2.0, color=line.color, alpha=0.7, mfc="none",
                    label=line.label, **style)
        if line.predicted is not None and np.isfinite(line.predicted).any():
            has_prediction = True
            pred = np.where(np.asarray(line.predicted, float) > 0, line.predicted, np.nan)
            ax_z.plot(line.layer, pred, ls=(0, (4, 2)), lw=1.4, color=line.color, zorder=3)
        if line.norm_position is not None and len(line.norm_position):
            has_norm = True
            y = np.where(np.asarray(line.norm_weight_grad_norm, float) > 0,
                         line.norm_weight_grad_norm, np.nan)
            ax_w.plot(line.norm_position, y, ls="none", marker="x", ms=7, color=line.color)
    names = next((line.names for line in lines if line.names), None)
    for ax, name in ((ax_z, "||dL/dz_l||  (backpropagated to pre-activations)"),
                     (ax_w, "||dL/dW_l||  (weight gradient)")):
        ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(True, which="major", alpha=0.3)
        if names:
            ax.set_xticks(lines[0].layer, names, rotation=30, ha="right", fontsize=7)
            ax.set_xlabel("Linear/Conv module (input side first)")
        else:
            ax.set_xlabel("layer (1 = input side)")
            ax.xaxis.get_major_locator().set_params(integer=True)
    ax_z.set_title("backpropagated gradient at step 0")
    ax_w.set_title("weight gradient at step 0")
    if has_norm:
        ax_w.legend([Line2D([], [], ls="none", marker="x", color="black")],
                    ["norm layers (between the layers they follow)"], fontsize=8, loc="best")
    handles, labels = ax_z.get_legend_handles_labels()
    if has_prediction:
        handles.append(Line2D([], [], color="black", ls=(0, (4, 2)), lw=1.4))
        labels.append("mean-field prediction")
    ax_z.legend(handles, labels, fontsize=8, loc="best")
    note = "  (zero gradients not drawn)" if dropped else ""
    fig.suptitle(f"{title}{note}", fontsize=11, wrap=True)
    return fig


@dataclass
class Curve:
    label: str
    color: str
    metrics: list[pd.DataFrame]  # one metrics.csv per seed


def _mean_curve(frames: list[pd.DataFrame], column: str) -> pd.Series:
    """The mean over `frames` at each step, of those with a value there. One groupby of all
    frames' rows (a step is one row of a metrics.csv), not an index and a join per frame."""
    steps = [f["step"].to_numpy(np.int64) for f in frames if column in f]
    values = [f[column].to_numpy(float, na_value=np.nan) for f in frames if column in f]
    if not values:
        return pd.Series(dtype=float)
    steps, values = np.concatenate(steps), np.concatenate(values)
    present = ~np.isnan(values)
    if not present.any():
        return pd.Series(dtype=float)
    return pd.Series(values[present]).groupby(steps[present]).mean()


def training_curves(curves: Sequence[Curve], title: str) -> Figure:
    """Loss (log scale) and accuracy against step: training solid, validation dashed;
    the mean over seeds where there are several."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for c in curves:
        for ax, kind in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            for split, style in (("train", "-"), ("val", "--")):
                s = _mean_curve(c.metrics, f"{split}_{kind}")
                s = s[s > 0] if kind == "loss" else 100 * s  # log axis; percent
                if len(s):
                    ax.plot(s.index, s.to_numpy(), ls=style, color=c.color, lw=1.5,
                            marker="." if split == "val" else None,
                            label=c.label if split == "train" else None)
    ax_loss.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax_loss.yaxis.set_major_formatter(plain)
    ax_loss.yaxis.set_minor_formatter(plain)
    ax_loss.tick_params(axis="y", which="minor", labelsize=7)
    ax_loss.set_ylabel("cross-entropy loss")
    ax_acc.set_ylabel("accuracy (%)")
    zoom_percent(ax_acc)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    handles, labels = ax_acc.get_legend_handles_labels()
    handles += [Line2D([], [], color="black", ls="-"), Line2D([], [], color="black", ls="--")]
    labels += ["train (running mean)", "validation"]
    ax_acc.legend(handles, labels, fontsize=8, loc="best")
    fig.suptitle(title, fontsize=11, wrap=True)
    return fig


def zoom_percent(ax) -> None:
    """Zoom a percent axis to where the curves are (and differ), within 0-100."""
    ys = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
                        or [np.array([0.0, 100.0])])
    ys = ys[np.isfinite(ys)]
    lo, hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 100.0)
    pad = max(2.0, 0.05 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
