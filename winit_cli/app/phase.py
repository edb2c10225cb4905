"""`winit phase`: the trainability phase diagram (Schoenholz, Gilmer, Ganguli & Sohl-Dickstein
2017, "Deep Information Propagation"), measured, with the mean-field theory beside it.

A sweep of the `mean_field` scheme over sigma_w2 x depth, planned, resumed, batched and run by
the same machinery as `winit compare` (sweeps/, app/compare.py). Then, per cell, accuracy and
loss after N steps (mean over seeds), and per sigma_w2 the theory: chi_1 (ordered < 1 <
chaotic) and the correlation depth scale xi_c (theory/correlation.py). The theory says a net
trains when depth <= c xi_c (c ~ 6); `agreement` counts the cells where that matches what was
measured (trained: accuracy above a threshold, 2x chance by default).
"""

from __future__ import annotations

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
from winit_cli.sweeps.executors import ExecutorOptions, ProgressFn
from winit_cli.sweeps.plan import SweepPlan, plan
from winit_cli.sweeps.spec import SweepSpec
from winit_cli.theory import critical_sigma_w2
from winit_cli.theory.correlation import correlation_fixed_point
from winit_cli.views.phase_plot import PhaseTheory, phase_diagram
from winit_cli.views.plots import save

THEORY_POINTS = 60  # sigma_w2 values the c xi_c curve is drawn through

W_KEY, DEPTH_KEY = "init.params.sigma_w2", "model.depth"
W_COL, DEPTH_COL = "init_params_sigma_w2", "model_depth"
GRID_COLUMNS = ("sigma_w2", "depth", "runs", "test_accuracy", "train_accuracy", "train_loss",
                "chi_1", "xi_c", "phase", "trained", "predicted_trainable")


@dataclass
class PhaseOptions:
    """A phase diagram's grid and training; the defaults run in minutes on a laptop's CPU."""

    sigma_w2: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    depths: list[int] = field(default_factory=lambda: [5, 10, 20, 40])
    sigma_b2: float = 0.05
    activation: str = "tanh"
    width: int = 128
    steps: int = 200
    seeds: int = 1
    subset: int | None = 10_000
    lr: float = 0.01
    c: float = 6.0  # the theory boundary: trainable when depth <= c xi_c
    threshold: float = 0.2  # trained: accuracy above this (2x chance for 10 classes)
    name: str = "phase"
    output_dir: Path = Path("results")
    overrides: list[str] = field(default_factory=list)


@dataclass
class PhaseDiagram:
    comparison: Comparison
    grid: pd.DataFrame | None  # GRID_COLUMNS, one row per cell; None for a dry run
    options: PhaseOptions

    @property
    def grid_path(self) -> Path:
        return self.comparison.plan.directory / "phase.csv"

    @property
    def figure_path(self) -> Path:
        return self.comparison.plan.directory / "phase.png"


def phase_spec(options: PhaseOptions) -> SweepSpec:
    if not options.sigma_w2 or not options.depths:
        raise ConfigError("winit phase: give at least one sigma_w2 and one depth")
    base = {
        "name": options.name,
        "model": {"depth": options.depths[0], "width": options.width,
                  "activation": options.activation},
        "init": {"scheme": "mean_field", "params": {"sigma_b2": options.sigma_b2}},
        "train": {"steps": options.steps, "optimizer": "sgd", "lr": options.lr},
        "data": {"subset": options.subset},
        "record": {"every": max(1, options.steps // 4)},
        "output_dir": str(options.output_dir),
    }
    for item in options.overrides:
        apply_override(base, item)
    grid = {W_KEY: [float(w) for w in options.sigma_w2], DEPTH_KEY: list(options.depths)}
    return SweepSpec(options.name, base, grid, list(range(options.seeds)))


def plan_phase(options: PhaseOptions) -> tuple[SweepSpec, SweepPlan]:
    spec = phase_spec(options)
    return spec, plan(spec)


def theory_row(activation: str, sigma_w2: float, sigma_b2: float) -> dict:
    """chi_1, xi_c and the phase at one sigma_w2; xi_c nan where theory has none."""
    try:
        point = correlation_fixed_point(activation, sigma_w2, sigma_b2)
    except ValueError:  # chaotic with an unbounded activation: no c-map fixed point
        return {"chi_1": math.nan, "xi_c": math.nan, "phase": "chaotic"}
    return {"chi_1": point.chi_1, "xi_c": point.depth_scale, "phase": point.phase}


def phase_grid(frame: pd.DataFrame, options: PhaseOptions) -> pd.DataFrame:
    """comparison.csv (one row per member) -> one row per cell, means over seeds, theory."""
    measured = ["test_accuracy", "train_accuracy", "train_loss"]
    cells = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in measured})
    grid = (cells.groupby([W_COL, DEPTH_COL], sort=True)
            .agg(runs=("run_id", "count"), **{c: (c, "mean") for c in measured})
            .reset_index().rename(columns={W_COL: "sigma_w2", DEPTH_COL: "depth"}))
    theory = {w: theory_row(options.activation, float(w), options.sigma_b2)
              for w in grid.sigma_w2.unique()}
    for key in ("chi_1", "xi_c", "phase"):
        grid[key] = grid.sigma_w2.map(lambda w, key=key: theory[w][key])
    grid["trained"] = grid.test_accuracy > options.threshold
    grid["predicted_trainable"] = grid.depth <= options.c * grid.xi_c.fillna(0.0)
    return grid[list(GRID_COLUMNS)]


def agreement(grid: pd.DataFrame) -> tuple[int, int]:
    """(cells where depth <= c xi_c matches trained-or-not, cells measured)."""
    measured = grid[grid.test_accuracy.notna()]
    return int((measured.trained == measured.predicted_trainable).sum()), len(measured)


@dataclass(frozen=True)
class BestC:
    """The c of depth <= c xi_c that classifies the most measured cells correctly."""

    low: float  # every c in [low, high) classifies `right` cells correctly (the widest such
    high: float  # interval; high is inf when c may be as large as one likes)
    right: int
    total: int


def best_c(grid: pd.DataFrame) -> BestC | None:
    """Fit c to the measured cells: the classification only changes where c crosses a cell's
    depth / xi_c, so trying one c inside each gap between those ratios tries them all."""
    measured = grid[grid.test_accuracy.notna()]
    if measured.empty:
        return None
    xi = measured.xi_c.fillna(0.0).to_numpy(float)
    ratios = measured.depth.to_numpy(float) / np.where(xi > 0, xi, np.nan)
    edges = np.unique(np.concatenate([[0.0], ratios[np.isfinite(ratios)], [np.inf]]))
    trained = measured.trained.to_numpy(bool)
    best: BestC | None = None
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        c = low + 1.0 if math.isinf(high) else 0.5 * (low + high)
        right = int(((measured.depth.to_numpy(float) <= c * xi) == trained).sum())
        wider = best is not None and right == best.right and high - low > best.high - best.low
        if best is None or right > best.right or wider:
            best = BestC(float(low), float(high), right, len(measured))
    return best


def best_c_line(fit: BestC | None) -> str:
    if fit is None:
        return "no cell measured: c not fitted"
    span = (f"c >= {fit.low:.2g}" if math.isinf(fit.high)
            else f"c in [{fit.low:.2g}, {fit.high:.2g})")
    return f"best fit: {span} classifies {fit.right} of {fit.total}"


def boundary_sigma_w2(activation: str, sigma_b2: float) -> float | None:
    """The ordered/chaotic boundary chi_1 = 1 at this sigma_b2, or None where there is none."""
    try:
        return critical_sigma_w2(activation, sigma_b2)
    except ValueError:
        return None


def phase_theory(options: PhaseOptions, fit: BestC | None = None) -> PhaseTheory:
    """The c xi_c curve over the diagram's sigma_w2 range, the chi_1 = 1 boundary, and the
    middle of the best-fitting c's interval (where it is bounded)."""
    lo, hi = min(options.sigma_w2), max(options.sigma_w2)
    xs = np.geomspace(lo, hi, THEORY_POINTS) if hi > lo > 0 else np.linspace(
        lo, hi, THEORY_POINTS) if hi > lo else np.array([lo])
    xi = np.array([theory_row(options.activation, float(w), options.sigma_b2)["xi_c"]
                   for w in xs])
    fitted = 0.5 * (fit.low + fit.high) if fit is not None and math.isfinite(fit.high) \
        else None
    return PhaseTheory(xs, options.c * xi, options.c,
                       boundary_sigma_w2(options.activation, options.sigma_b2), fitted)


def agreement_line(grid: pd.DataFrame, options: PhaseOptions, sep: str = "; ") -> str:
    """How many cells the c xi_c boundary classifies correctly, then the best-fitting c."""
    right, total = agreement(grid)
    return (f"depth <= {options.c:g} xi_c classifies {right} of {total} cells correctly "
            f"(trained: test accuracy > {options.threshold:g}){sep}"
            f"{best_c_line(best_c(grid))}")


def draw_phase(diagram: PhaseDiagram) -> Path:
    o = diagram.options
    title = (f"{o.activation}, width {o.width}, sigma_b2 = {o.sigma_b2:g}, {o.steps} steps, "
             f"{o.seeds} seed(s)")
    figure = phase_diagram(diagram.grid, phase_theory(o, best_c(diagram.grid)), title,
                           agreement_line(diagram.grid, o, sep="\n"))
    return save(figure, diagram.figure_path)


def run_phase(options: PhaseOptions, *, executor: str = "local",
              executor_options: ExecutorOptions | None = None,
              on_progress: ProgressFn | None = None,
              on_member: Callable[[Any], None] | None = None,
              planned: tuple[SweepSpec, SweepPlan] | None = None) -> PhaseDiagram:
    """Train the cells not yet done; write phase.csv and phase.png; the grid with theory."""
    spec, sweep_plan = planned or plan_phase(options)
    comparison = compare(spec, sweep_plan, executor=executor, options=executor_options,
                         on_progress=on_progress, on_member=on_member)
    diagram = PhaseDiagram(comparison, phase_grid(comparison.frame, options), options)
    write_csv(diagram.grid_path, diagram.grid)
    draw_phase(diagram)
    return diagram
