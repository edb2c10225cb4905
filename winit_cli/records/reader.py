"""Reading run directories back, wherever they were copied to (loose, or in a sweep's
<sweep>/runs/), for `compare` and `report`, which work from these files alone.

A run is found by its marker files; `load_run` returns a `Run` (the typed record, the flattened
config, and the CSV tables read on first use) or a `Skipped` saying why it cannot be used.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from winit_cli.errors import ResultsError, WinitError
from winit_cli.records.files import read_json
from winit_cli.records.plausible import layers_problem, layers_suspects, record_problem
from winit_cli.records.schema import RunRecord, parse_record
from winit_cli.records.tables import read_many, read_table, to_frame
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
    # What its row takes from the record (records/rows.record_fields), as the store kept it;
    # None: taken from `record`.
    fields: dict[str, Any] | None = field(default=None, repr=False, compare=False)

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
        path = os.path.join(self.dir, "spectrum.csv")  # (asked of every run a report reads)
        return read_table(Path(path), ("value", "weight"), ())[0] if os.path.exists(path) \
            else None

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
    is no endless walk, and a run linked beside itself is not counted twice. Found in the order
    of os.walk (followlinks=True, top down, sorted); a folder whose summary.json or config.yaml
    is a file is known for a run by those stats alone, without listing it (listing every one
    of 10,000 run folders was most of the search)."""
    found = []
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(path)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if _holds_marker(folder):
            found.append(Path(folder))
            continue
        try:
            with os.scandir(folder) as entries:
                listed = [(e.name, _is_dir(e)) for e in entries]
        except OSError:
            continue
        if any(not is_dir and name in RUN_MARKERS for name, is_dir in listed):
            found.append(Path(folder))  # a marker that is no file (a dangling link)
            continue
        stack += [os.path.join(folder, name) for name, is_dir in sorted(listed, reverse=True)
                  if is_dir and not name.startswith(".")]
    return found


def _holds_marker(folder: str) -> bool:
    for name in RUN_MARKERS:
        try:
            if not stat.S_ISDIR(os.stat(f"{folder}/{name}").st_mode):
                return True
        except OSError:
            continue
    return False


def _is_dir(entry: os.DirEntry) -> bool:
    try:  # as os.walk tells them (a link to a folder is one)
        return entry.is_dir()
    except OSError:
        return False


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):  # an empty mapping (init.params: {}) adds no key
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, list):
        tree = json.dumps(tree)
    return {prefix[:-1]: tree} if prefix else {}


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
    return load_runs([run_dir], root, tables=tables)[0]


def load_runs(run_dirs: list[Path], root: Path, *, tables: bool = True) -> list[Run | Skipped]:
    """load_run of each directory, their tables (with `tables`) read and checked all at once
    (records/tables.read_many: thousands of runs in one pass, not one by one)."""
    loaded = [_load_files(d, root) for d in run_dirs]
    runs = [run for run, _ in loaded if isinstance(run, Run)]
    if not tables:
        return [run for run, _ in loaded]
    found = dict(zip(map(id, runs), read_tables(runs), strict=True))
    out: list[Run | Skipped] = []
    for run, fields in loaded:
        why, held = found.get(id(run), (None, {}))
        if why is not None:
            run = Skipped(run.path, why, fields)
        for name, table in held.items():  # checked: the cached_properties serve these frames
            run.__dict__[name] = None if table is None else to_frame(table)
        out.append(run)
    return out


def _load_files(run_dir: Path, root: Path) -> tuple[Run | Skipped, dict]:
    """A run's summary.json and config.yaml (not its tables), or why they cannot be used; and
    what its summary.json says of it (Skipped.fields)."""
    rel = run_dir.relative_to(root).as_posix()
    if not (run_dir / "summary.json").is_file():
        return Skipped(rel, "no summary.json"), {}
    try:
        data = read_json(run_dir / "summary.json")
    except ResultsError as e:
        why = "summary.json " + str(e).removeprefix(f"{run_dir / 'summary.json'}: ")
        return Skipped(rel, why), {}
    fields = summary_fields(data)
    if fields.get("status") == Status.RUNNING:
        return Skipped(rel, "status running (unfinished, or its process died)", fields), fields
    try:
        record = parse_record(data, "summary.json")
    except ResultsError as e:
        return Skipped(rel, str(e), fields), fields
    try:
        config = flatten(read_yaml(run_dir / "config.yaml", "config.yaml") or {})
    except WinitError:
        config = {}
    sweep, grid = sweep_of(run_dir)
    why = record_problem(record)
    if why is not None:
        return Skipped(rel, why, fields), fields
    return Run(run_dir, rel, record, config, sweep, grid), fields


def read_tables(runs: list[Run]) -> list[tuple[str | None, dict[str, pa.Table | None]]]:
    """Each finished run's layers.csv (which must have records consistent with its record) and
    metrics.csv (where there is one), as Arrow: ({"layers": ..., "metrics": ...}) or why they
    cannot be used. Read and checked for all the runs at once."""
    layers = read_many([r.dir / "layers.csv" for r in runs], LAYER_COLUMNS, ("step", "layer"))
    whys = [why or (None if table.num_rows else "layers.csv has no records")
            for table, why in layers]
    clear = [i for i, why in enumerate(whys) if why is None]
    if clear:  # layers_problem, screened over every run at once
        flagged = layers_suspects(
            np.concatenate([layers[i][0]["layer"].to_numpy(zero_copy_only=False)
                            for i in clear]),
            np.repeat(np.arange(len(clear)), [layers[i][0].num_rows for i in clear]),
            np.array([runs[i].record.depth for i in clear]),
            np.array([runs[i].record.model_kind == "mlp" for i in clear]))
        for n in flagged:
            i = clear[n]
            whys[i] = layers_problem(runs[i].record, to_frame(layers[i][0]))
    held = [{"layers": table, "metrics": None} for table, _ in layers]
    with_metrics = [i for i, why in enumerate(whys)
                    if why is None and (runs[i].dir / "metrics.csv").exists()]
    for i, (table, why) in zip(with_metrics, read_many(
            [runs[i].dir / "metrics.csv" for i in with_metrics]), strict=True):
        whys[i], held[i]["metrics"] = why, table
    return [(why, {} if why else tables) for why, tables in zip(whys, held, strict=True)]
