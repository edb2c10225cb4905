"""Reading run directories back, wherever they were copied to (loose, or in a sweep's
<sweep>/runs/), for `compare` and `report`, which work from these files alone.

A run is found by its marker files; `load_run` returns a `Run` (the typed record, the flattened
config, and the CSV tables read on first use) or a `Skipped` saying why it cannot be used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from winit_cli.bounded import Unreadable, opened
from winit_cli.errors import ResultsError, WinitError, shorten
from winit_cli.records.files import read_json
from winit_cli.records.plausible import layers_problem, record_problem, table_problem
from winit_cli.records.schema import RunRecord, parse_record
from winit_cli.status import Status
from winit_cli.yamlfile import read_yaml

RUN_MARKERS = ("config.yaml", "summary.json")
LAYER_COLUMNS = ("step", "layer", "act_grad_norm", "weight_grad_norm")
TARGET_ACCURACY = 0.9  # steps_to_target: the first evaluated step reaching this val accuracy


def steps_to(metrics: pd.DataFrame | None, target: float) -> int | None:
    """The first evaluated step at which validation accuracy reached `target`."""
    if metrics is None or "val_accuracy" not in metrics or "step" not in metrics:
        return None
    hit = metrics[pd.to_numeric(metrics.val_accuracy, errors="coerce") >= target]
    return int(hit.step.iloc[0]) if len(hit) else None


@dataclass
class Run:
    """A run's files, as `compare` and `report` read them."""

    dir: Path
    path: str  # relative to the folder searched
    record: RunRecord
    config: dict[str, Any]  # config.yaml flattened to dotted keys
    sweep: str | None = None
    sweep_grid: tuple[str, ...] = ()
    # The run store (records/store.py) this run was read from, which serves its tables;
    # None: they are read from the folder.
    store: Any = field(default=None, repr=False, compare=False)

    @cached_property
    def layers(self) -> pd.DataFrame | None:
        if self.store is not None:
            self.store.load([self])
            return self.__dict__["layers"]
        return read_table(self.dir / "layers.csv")[0]

    @cached_property
    def metrics(self) -> pd.DataFrame | None:
        if self.store is not None:
            self.store.load([self])
            return self.__dict__["metrics"]
        return read_table(self.dir / "metrics.csv")[0]

    @cached_property
    def steps_to_target(self) -> int | None:
        """The first evaluated step reaching TARGET_ACCURACY (the store answers this for all
        its runs in one query, without reading their tables)."""
        return steps_to(self.metrics, TARGET_ACCURACY)

    @cached_property
    def spectrum(self) -> pd.DataFrame | None:
        """The step-0 Jacobian singular values (record.jacobian), or None where not taken."""
        path = self.dir / "spectrum.csv"
        return read_table(path, ("value", "weight"), ())[0] if path.exists() else None

    @cached_property
    def histograms(self) -> pd.DataFrame | None:
        """Weight and gradient histograms at recorded steps (record.histograms), or None."""
        path = self.dir / "histograms.csv"
        return read_table(path, ("step", "layer", "tensor"), ("step", "layer"))[0] \
            if path.exists() else None


@dataclass(frozen=True)
class Skipped:
    """A run directory left out, and why; `fields` (what its summary.json says, as far as it
    could be read) let `--filter` decide whether to list it."""

    path: str
    reason: str
    fields: dict = field(default_factory=dict, compare=False)


def find_run_dirs(path: Path) -> list[Path]:
    """Directories under `path` (itself included) holding a run's files; runs don't nest.
    A link to a run folder kept elsewhere is followed (reading through it is what the user
    linked it for; nothing is written through it), each folder once: a link back up a tree
    is no endless walk, and a run linked beside itself is not counted twice."""
    found = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(m in filenames for m in RUN_MARKERS):
            found.append(Path(dirpath))
            dirnames[:] = []
    return found


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):  # an empty mapping (init.params: {}) adds no key
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, list):
        tree = json.dumps(tree)
    return {prefix[:-1]: tree} if prefix else {}


# The columns that hold text: the module's name, in layers.csv of runs of `winit.watch`, a
# residual MLP's layer role (input, branch_inner, branch_out, output; records/rows.py), and
# which tensor a row of histograms.csv counts.
TEXT_COLUMNS = ("name", "role", "tensor", "parametrization")  # the last: winit widths' CSVs
# The largest table a run could honestly hold (a depth-100 run recorded at every one of 30,000
# steps writes about 1 GB of layers.csv), and what pandas can parse without filling the memory;
# a larger one (a sparse 3 GB file) is refused before it is read.
MAX_TABLE_BYTES = 1 << 30


def read_table(path: Path, required: tuple[str, ...] = ("step",), keys: tuple[str, ...] = ("step",)
               ) -> tuple[pd.DataFrame | None, str | None]:
    """A run's CSV table with every column numeric, or (None, why it cannot be used): every
    column winit writes to layers.csv and metrics.csv is a number (TEXT_COLUMNS aside, read as
    text), so a cell that is not one means the file was damaged, and nothing computed from it
    could be trusted. `keys` may not be empty either (other cells may: a non-finite value is
    written as an empty cell), and a file that does not end with a newline was cut short
    (winit's writes are whole)."""
    name = path.name
    if not path.is_file():  # a FIFO named layers.csv would block read_csv forever
        return None, f"{name} is missing" + (" (not a regular file)" if path.exists() else "")
    try:
        with opened(path, MAX_TABLE_BYTES) as f:
            if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                return None, f"{name} is truncated (it ends mid-line)"
            f.seek(0)
            frame = pd.read_csv(f)
    except Unreadable as e:
        return None, f"{name} is unreadable ({e.why})"
    except pd.errors.EmptyDataError:
        return None, f"{name} is empty"
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as e:
        return None, f"{name} is unreadable ({str(e).strip().splitlines()[0][:120]})"
    missing = [c for c in required if c not in frame.columns]
    if missing:
        return None, f"{name} lacks columns {missing}"
    for column in frame.columns:
        if column in TEXT_COLUMNS:
            frame[column] = frame[column].astype(str)
            continue
        if pd.api.types.is_numeric_dtype(frame[column]) and not (
                column in keys and frame[column].isna().any()):
            continue  # parsed as numbers already: nothing to check (most of the time spent)
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() & frame[column].notna()
        if column in keys:
            bad |= numbers.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            cell = frame[column].iloc[row]
            what = "empty" if pd.isna(cell) else f"{shorten(cell, 40)}, not a number"
            return None, f"{name} line {row + 2}: {column} is {what}"
        frame[column] = numbers
    return frame, None


def sweep_of(run_dir: Path) -> tuple[str | None, tuple[str, ...]]:
    """<sweep>/runs/<run-id>: the sweep's name and its grid keys, from sweep.yaml."""
    sweep_dir = run_dir.parent.parent
    if run_dir.parent.name != "runs" or not (sweep_dir / "sweep.yaml").is_file():
        return None, ()
    try:
        grid = (read_yaml(sweep_dir / "sweep.yaml", "sweep.yaml") or {}).get("grid") or {}
    except (WinitError, AttributeError):
        grid = {}
    return sweep_dir.name, tuple(grid) if isinstance(grid, dict) else ()


def read_record(run_dir: Path) -> RunRecord:
    """The run's summary.json as a RunRecord, or a ResultsError saying what is wrong."""
    return parse_record(read_json(run_dir / "summary.json"), f"{run_dir / 'summary.json'}")


def summary_fields(data: object) -> dict:
    """What a summary.json says about the run's identity, as far as it can be read."""
    keys = ("scheme", "activation", "depth", "width", "seed", "status", "dataset")
    return {k: data[k] for k in keys if k in data} if isinstance(data, dict) else {}


def load_run(run_dir: Path, root: Path, *, tables: bool = True) -> Run | Skipped:
    """A run directory's files (paths relative to `root`), or why they cannot be used. With
    `tables`, a finished run must also have a readable layers.csv with records."""
    rel = run_dir.relative_to(root).as_posix()
    if not (run_dir / "summary.json").is_file():
        return Skipped(rel, "no summary.json")
    try:
        data = read_json(run_dir / "summary.json")
    except ResultsError as e:
        return Skipped(rel, "summary.json " + str(e).removeprefix(f"{run_dir / 'summary.json'}: "))
    fields = summary_fields(data)
    if fields.get("status") == Status.RUNNING:
        return Skipped(rel, "status running (unfinished, or its process died)", fields)
    try:
        record = parse_record(data, "summary.json")
    except ResultsError as e:
        return Skipped(rel, str(e), fields)
    try:
        config = flatten(read_yaml(run_dir / "config.yaml", "config.yaml") or {})
    except WinitError:
        config = {}
    sweep, grid = sweep_of(run_dir)
    run = Run(run_dir, rel, record, config, sweep, grid)
    why = record_problem(record) or (read_tables(run) if tables else None)
    return run if why is None else Skipped(rel, why, fields)


def read_tables(run: Run) -> str | None:
    """Read a finished run's layers.csv (which must have records consistent with its record)
    and metrics.csv (where there is one) into `run`; or why they cannot be used."""
    layers, why = read_table(run.dir / "layers.csv", LAYER_COLUMNS, ("step", "layer"))
    if why is None and not len(layers):
        why = "layers.csv has no records"
    why = why or table_problem("layers.csv", layers) or layers_problem(run.record, layers)
    if why is None and (run.dir / "metrics.csv").exists():
        run.__dict__["metrics"], why = read_table(run.dir / "metrics.csv")
        why = why or table_problem("metrics.csv", run.metrics)
    if why is None:
        run.__dict__["layers"] = layers  # checked: the cached_property serves this frame
    return why
