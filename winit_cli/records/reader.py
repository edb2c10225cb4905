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
import yaml

from winit_cli.errors import ResultsError
from winit_cli.records.files import read_json
from winit_cli.records.schema import RunRecord, Status, parse_record

RUN_MARKERS = ("config.yaml", "summary.json")


@dataclass
class Run:
    """A run's files, as `compare` and `report` read them."""

    dir: Path
    path: str  # relative to the folder searched
    record: RunRecord
    config: dict[str, Any]  # config.yaml flattened to dotted keys
    sweep: str | None = None
    sweep_grid: tuple[str, ...] = ()

    @cached_property
    def layers(self) -> pd.DataFrame | None:
        return _read_csv(self.dir / "layers.csv")

    @cached_property
    def metrics(self) -> pd.DataFrame | None:
        return _read_csv(self.dir / "metrics.csv")

    @cached_property
    def spectrum(self) -> pd.DataFrame | None:
        """The step-0 Jacobian singular values (record.jacobian), or None where not taken."""
        path = self.dir / "spectrum.csv"
        return _read_csv(path) if path.exists() else None


@dataclass(frozen=True)
class Skipped:
    """A run directory left out, and why; `fields` (what its summary.json says, as far as it
    could be read) let `--filter` decide whether to list it."""

    path: str
    reason: str
    fields: dict = field(default_factory=dict, compare=False)


def find_run_dirs(path: Path) -> list[Path]:
    """Directories under `path` (itself included) holding a run's files; runs don't nest."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
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


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def sweep_of(run_dir: Path) -> tuple[str | None, tuple[str, ...]]:
    """<sweep>/runs/<run-id>: the sweep's name and its grid keys, from sweep.yaml."""
    sweep_dir = run_dir.parent.parent
    if run_dir.parent.name != "runs" or not (sweep_dir / "sweep.yaml").is_file():
        return None, ()
    try:
        grid = (yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) or {}).get("grid") or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        grid = {}
    return sweep_dir.name, tuple(grid) if isinstance(grid, dict) else ()


def read_record(run_dir: Path) -> RunRecord:
    """The run's summary.json as a RunRecord, or a ResultsError saying what is wrong."""
    return parse_record(read_json(run_dir / "summary.json"), f"{run_dir / 'summary.json'}")


def _fields(data: object) -> dict:
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
    except ResultsError:
        return Skipped(rel, "summary.json is unreadable")
    fields = _fields(data)
    if fields.get("status") == Status.RUNNING:
        return Skipped(rel, "status running (unfinished, or its process died)", fields)
    try:
        record = parse_record(data, "summary.json")
    except ResultsError as e:
        return Skipped(rel, str(e), fields)
    try:
        config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        config = {}
    sweep, grid = sweep_of(run_dir)
    run = Run(run_dir, rel, record, config, sweep, grid)
    if tables:
        layers = run.layers
        if layers is None:
            return Skipped(rel, "layers.csv is missing or unreadable", fields)
        missing = {"step", "layer", "act_grad_norm", "weight_grad_norm"} - set(layers.columns)
        if missing or not len(layers):
            why = f"lacks columns {sorted(missing)}" if missing else "has no records"
            return Skipped(rel, f"layers.csv {why}", fields)
    return run
