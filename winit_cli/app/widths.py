"""`winit widths`: the coordinate check and learning-rate transfer across widths, for each
parametrization (Yang et al. 2021, "Tensor Programs V"), with the width theory beside them.

A sweep of model.parametrization x model.width (x train.lr with --lrs) x seeds, planned,
resumed, batched and run by the same machinery as `winit compare` (sweeps/, app/compare.py).
Every run records, at each recorded step, each layer's coordinate size mean |z_l| (record.coord,
the `mup` package's "l1"). Then, from the run folders:

- coord.csv (parametrization, width, lr, layer, step, coord; mean over seeds; layer = depth is
  the output) and coord_slopes.csv: per parametrization, lr, layer and step, the slope of
  log coord vs log width (least squares) beside the theory's (theory/width.py);
- lr_transfer.csv (parametrization, width, lr, train_loss, test_accuracy; mean over seeds):
  train loss after the run's steps, with the best lr per width and how far it moves across
  widths (log2 of the largest best lr over the smallest).

Every run records every step when --steps <= COORD_EVERY_STEP (the coordinate check wants steps
0..N), else every steps // 10 steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from winit_cli.app.compare import Comparison, compare
from winit_cli.config import apply_override
from winit_cli.errors import ConfigError
from winit_cli.records.files import write_csv
from winit_cli.records.reader import Run
from winit_cli.records.reuse import FigureCache
from winit_cli.records.store import RunStore
from winit_cli.records.tables import read_table
from winit_cli.sweeps.executors import ExecutorOptions, ProgressFn
from winit_cli.sweeps.plan import SweepPlan, plan
from winit_cli.sweeps.spec import SweepSpec
from winit_cli.theory.width import PARAMETRIZATIONS, predicted_slopes
from winit_cli.views.figures import by_value
from winit_cli.views.plots import Output, save
from winit_cli.views.widths import coord_figure, lr_figure

COORD_EVERY_STEP = 20
P_KEY, WIDTH_KEY, LR_KEY = "model.parametrization", "model.width", "train.lr"
P_COL, WIDTH_COL, LR_COL = "model_parametrization", "model_width", "train_lr"
COORD_COLUMNS = ("parametrization", "width", "lr", "layer", "step", "coord")
SLOPE_COLUMNS = ("parametrization", "lr", "layer", "step", "slope", "predicted_slope", "widths")
LR_COLUMNS = ("parametrization", "width", "lr", "train_loss", "test_accuracy", "best")
STABLE = 0.25  # |slope| below this reads as flat over the widths measured


@dataclass
class WidthOptions:
    """The widths, parametrizations and training; the defaults run in minutes on a CPU."""

    widths: list[int] = field(default_factory=lambda: [128, 256, 512, 1024])
    parametrizations: list[str] = field(default_factory=lambda: ["standard", "mup"])
    lrs: list[float] | None = None  # None: train.lr only (the coordinate check alone)
    steps: int = 3
    seeds: int = 1
    name: str = "widths"
    output_dir: Path = Path("results")
    overrides: list[str] = field(default_factory=list)


@dataclass
class WidthStudy:
    comparison: Comparison
    options: WidthOptions
    coord: pd.DataFrame | None = None  # COORD_COLUMNS; None for a dry run
    slopes: pd.DataFrame | None = None  # SLOPE_COLUMNS
    lr_transfer: pd.DataFrame | None = None  # LR_COLUMNS, with --lrs

    @property
    def directory(self) -> Path:
        return self.comparison.plan.directory


def widths_spec(options: WidthOptions) -> SweepSpec:
    if len(options.widths) < 2:
        raise ConfigError("winit widths: give at least two widths (--widths), to fit a slope")
    unknown = [p for p in options.parametrizations if p not in PARAMETRIZATIONS]
    if unknown or not options.parametrizations:
        raise ConfigError(f"--parametrizations: {', '.join(unknown) or 'none given'}; choose "
                          f"from {', '.join(PARAMETRIZATIONS)}")
    base: dict[str, Any] = {
        "name": options.name,
        "model": {"depth": 4, "width": min(options.widths), "activation": "relu",
                  "base_width": min(options.widths)},
        "init": {"scheme": "he_normal"},
        "train": {"steps": options.steps, "optimizer": "adam", "lr": 1e-3},
        "data": {"subset": 10_000},
        "record": {"every": 1 if options.steps <= COORD_EVERY_STEP else options.steps // 10,
                   "coord": True},
        "output_dir": str(options.output_dir),
    }
    for item in options.overrides:
        apply_override(base, item)
    grid: dict[str, list[Any]] = {P_KEY: list(options.parametrizations),
                                  WIDTH_KEY: sorted(options.widths)}
    if options.lrs:
        grid[LR_KEY] = sorted(float(lr) for lr in options.lrs)
    return SweepSpec(options.name, base, grid, list(range(options.seeds)))


def plan_widths(options: WidthOptions) -> tuple[SweepSpec, SweepPlan]:
    spec = widths_spec(options)
    return spec, plan(spec)


def _runs(frame: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """comparison.csv's finished members with their parametrization, width and lr."""
    done = frame[frame.status.isin(["complete", "diverged"])].copy()
    lr = float(spec.base["train"]["lr"])
    done["lr"] = pd.to_numeric(done[LR_COL]) if LR_COL in done else lr
    # comparison.csv's own "width" is a label (e.g. "64-32" for widths lists): the grid's wins
    return done.drop(columns=["width"], errors="ignore").rename(
        columns={P_COL: "parametrization", WIDTH_COL: "width"})


def coord_frame(frame: pd.DataFrame, spec: SweepSpec, directory: Path) -> pd.DataFrame:
    """coord.csv: every finished run's layers.csv coord column, mean over seeds (`directory`:
    the sweep's, which comparison.csv's paths are relative to). Read through the run store
    (records/store.py), as comparison.csv is: a run read before is not parsed again."""
    rows = _runs(frame, spec)
    store = RunStore(directory).sync([directory / p for p in rows.path],
                                     within=[directory / "runs"])
    runs = {r.path: r for r in store.runs() if isinstance(r, Run)}
    store.load(list(runs.values()))
    parts = []
    for row in rows.itertuples():
        layers = runs[row.path].layers if row.path in runs else None
        if layers is None or "coord" not in layers:
            continue
        parts.append(layers[["layer", "step", "coord"]].assign(
            parametrization=row.parametrization, width=int(row.width), lr=float(row.lr)))
    if not parts:
        return pd.DataFrame(columns=list(COORD_COLUMNS))
    coord = pd.concat(parts, ignore_index=True)
    return (coord.groupby(["parametrization", "width", "lr", "layer", "step"], sort=True)
            .coord.mean().reset_index()[list(COORD_COLUMNS)])


def fitted_slope(widths: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of log value vs log width over the finite, positive values."""
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(widths[keep]), np.log(values[keep]), 1)[0])


def slope_frame(coord: pd.DataFrame, optimizer: str, activation: str,
                bias: bool = True) -> pd.DataFrame:
    """coord_slopes.csv: per parametrization, lr, layer and step, the measured slope and the
    theory's (its step-1 prediction for every step after 0)."""
    rows = []
    for (p, lr, step), cell in coord.groupby(["parametrization", "lr", "step"], sort=True):
        depth = int(cell.layer.max())
        theory = predicted_slopes(p, optimizer, depth, activation, min(int(step), 1), bias)
        for layer, line in cell.groupby("layer"):
            rows.append({"parametrization": p, "lr": lr, "layer": int(layer), "step": int(step),
                         "slope": fitted_slope(line.width.to_numpy(float),
                                               line.coord.to_numpy(float)),
                         "predicted_slope": theory[int(layer) - 1], "widths": len(line)})
    return pd.DataFrame(rows, columns=list(SLOPE_COLUMNS))


def lr_frame(frame: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """lr_transfer.csv: train loss and test accuracy per parametrization, width and lr (mean
    over seeds); `best` marks each width's lowest train loss (a diverged run's loss is NaN)."""
    runs = _runs(frame, spec)
    for c in ("train_loss", "test_accuracy"):
        runs[c] = pd.to_numeric(runs[c], errors="coerce")
    table = (runs.groupby(["parametrization", "width", "lr"], sort=True)
             .agg(train_loss=("train_loss", "mean"), test_accuracy=("test_accuracy", "mean"))
             .reset_index())
    table["best"] = 0  # 1 on each width's best lr (a number: tidy CSV, read back as numbers)
    for _, cell in table.groupby(["parametrization", "width"]):
        if cell.train_loss.notna().any():
            table.loc[cell.train_loss.idxmin(), "best"] = 1
    return table[list(LR_COLUMNS)]


def lr_spread(table: pd.DataFrame) -> dict[str, float]:
    """Per parametrization, log2(largest best lr / smallest best lr) across widths: 0 when the
    best lr is the same at every width (on the grid measured)."""
    best = table[table.best == 1]
    return {p: float(np.log2(cell.lr.max() / cell.lr.min()))
            for p, cell in best.groupby("parametrization")}


def verdicts(slopes: pd.DataFrame) -> dict[str, str]:
    """One line per parametrization, at the last step measured (its smallest lr): the output's
    slope beside the theory's, and which layers blow up (slope > STABLE). A layer that shrinks
    is not called unstable: muP's output starts at width^-1/2 by design (its random part
    vanishes), and an update too small to show yet reads the same."""
    out = {}
    for p, cell in slopes.groupby("parametrization", sort=False):
        last = cell[(cell.step == cell.step.max()) & (cell.lr == cell.lr.min())]
        output = last[last.layer == last.layer.max()].iloc[0]
        growing = last[last.slope > STABLE]
        steps = int(output.step)
        head = (f"{p}: output scales as width^{output.slope:+.2f} after {steps} "
                f"step{'s' if steps != 1 else ''} (theory {output.predicted_slope:+.2g})")
        if growing.empty:
            out[p] = f"{head}; stable: no layer's coordinates grow with width"
        else:
            layers = ", ".join(f"{int(r.layer)} (width^{r.slope:+.2f})"
                               for r in growing.itertuples())
            out[p] = f"{head}; blows up: layers {layers}"
    return out


def spread_lines(table: pd.DataFrame) -> list[str]:
    lines = []
    for p, spread in lr_spread(table).items():
        best = table[(table.best == 1) & (table.parametrization == p)].sort_values("width")
        each = ", ".join(f"{int(r.width)}: {r.lr:.3g}" for r in best.itertuples())
        lines.append(f"{p}: best lr moves {spread:.1f} octaves across widths ({each})")
    return lines


def draw(study: WidthStudy) -> list[Path]:
    """coord.png (and lr_transfer.png with --lrs) in the sweep folder."""
    return draw_files(study.directory, study.coord, study.slopes, study.lr_transfer)


def draw_files(directory: Path, coord: pd.DataFrame, slopes: pd.DataFrame,
               lr_transfer: pd.DataFrame | None, suffix: str = "",
               output: Output = Output()) -> list[Path]:
    """coord{suffix}.png and lr_transfer{suffix}.png: a report names each sweep's by a suffix,
    so that a file's name starts with what it shows (its caption is found by that start)."""
    paths = [save(coord_figure(coord, slopes), directory / f"coord{suffix}.png", output)]
    if lr_transfer is not None and len(lr_transfer):
        paths.append(save(lr_figure(lr_transfer), directory / f"lr_transfer{suffix}.png",
                          output))
    return paths


def read_study(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None] | None:
    """(coord, slopes, lr_transfer or None) as `winit widths` wrote them in `sweep_dir`, or None
    where it holds no (readable) coord.csv and coord_slopes.csv."""
    coord, _ = read_table(sweep_dir / "coord.csv", COORD_COLUMNS, ("width", "layer", "step"))
    slopes, _ = read_table(sweep_dir / "coord_slopes.csv", SLOPE_COLUMNS, ("layer", "step"))
    if coord is None or slopes is None:
        return None
    lr, _ = read_table(sweep_dir / "lr_transfer.csv", LR_COLUMNS, ("width", "lr"))
    return coord, slopes, lr


def report_figures(run_dirs: list[Path], plot_dir: Path, output: Output = Output(),
                   reuse: FigureCache | None = None) -> list[tuple[str, Path]]:
    """For `winit report`: the width figures of every `winit widths` sweep the runs belong
    to, drawn from its CSV files into plot_dir (or, with `reuse`, copied from a report that
    drew them from the same tables), each with its verdicts as alt text."""
    sweeps = sorted({d.parent.parent for d in run_dirs if d.parent.name == "runs"})
    made = []
    for sweep in sweeps:
        study = read_study(sweep)
        if study is None:
            continue
        coord, slopes, lr = study
        inputs = json.dumps(["widths", sweep.name, output, *(
            by_value(frame) if frame is not None else None for frame in study)], default=str)
        kept = reuse and reuse.get(inputs, [], plot_dir)
        if kept is None:
            lines = list(verdicts(slopes).values()) if len(slopes) else []
            if lr is not None:
                lines += spread_lines(lr)
            paths = draw_files(plot_dir, coord, slopes, lr, suffix=f"_{sweep.name}",
                               output=output)
            kept = [(f"{sweep.name}: {'; '.join(lines)}", p) for p in paths]
            if reuse:
                reuse.put(inputs, [], kept)
        made += kept
    return made


def run_widths(options: WidthOptions, *, executor: str = "local",
               executor_options: ExecutorOptions | None = None,
               on_progress: ProgressFn | None = None,
               on_member: Callable[[Any], None] | None = None,
               planned: tuple[SweepSpec, SweepPlan] | None = None) -> WidthStudy:
    """Train the runs not yet done; write coord.csv, coord_slopes.csv (lr_transfer.csv) and
    their figures."""
    spec, sweep_plan = planned or plan_widths(options)
    comparison = compare(spec, sweep_plan, executor=executor, options=executor_options,
                         on_progress=on_progress, on_member=on_member)
    config = sweep_plan.members[0]
    study = WidthStudy(comparison, options)
    study.coord = coord_frame(comparison.frame, spec, study.directory)
    study.slopes = slope_frame(study.coord, config.train.optimizer, config.model.activation,
                               config.model.bias)
    write_csv(study.directory / "coord.csv", study.coord)
    write_csv(study.directory / "coord_slopes.csv", study.slopes)
    if options.lrs:
        study.lr_transfer = lr_frame(comparison.frame, spec)
        write_csv(study.directory / "lr_transfer.csv", study.lr_transfer)
    draw(study)
    return study
