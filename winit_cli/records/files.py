"""Run directories: everything needed to understand a run later, written atomically.

    results/<run-id>/config.yaml    the resolved config
                     metrics.csv    step, epoch, train/val loss and accuracy
                     layers.csv     one row per recorded step and layer (see probes.py)
                     summary.json   status, verdict, final accuracies, timings, versions, seed...
    results/runs.csv                one line per run, appended

summary.json says `"status": "running"` until the run ends; the CSVs are rewritten whole (temp
file, then rename) at checkpoints and at the end, so a crash leaves complete-looking files only
for what was really measured, and a status that says the run did not finish.

`load_run` reads a run directory back, wherever it was copied to (loose, or in a sweep's
<sweep>/runs/), for `winit report`, which works from these files alone.
"""

from __future__ import annotations

import fcntl
import json
import math
import numbers
import os
import platform
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from winit_cli import __version__
from winit_cli.config import Config
from winit_cli.errors import ResultsError

_FILE_MODE = 0o644
INDEX = "runs.csv"
INDEX_COLUMNS = ("run_id", "name", "started_at", "status", "verdict", "scheme", "activation",
                 "depth", "width", "seed", "test_accuracy", "config_hash", "path")


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; results are ordinary readable files
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    # pandas writes floats with repr precision: they round-trip exactly (norms span 40 decades).
    atomic_write(path, frame.to_csv(index=False))


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")


def environment(device: str, flushed: bool) -> dict:
    import torch

    return {
        "python": platform.python_version(), "torch": torch.__version__, "winit": __version__,
        "platform": platform.platform(), "device": device, "threads": torch.get_num_threads(),
        "flush_subnormals": flushed, "command": " ".join(sys.argv),
    }


def new_run_dir(config: Config, started: datetime) -> Path:
    """results/<time>_<name>_<hash6>, with a numeric suffix if that exists already."""
    root = Path(config.output_dir)
    stem = f"{started:%Y%m%d-%H%M%S}_{config.name}_{config.content_hash()[:6]}"
    for n in range(1000):
        path = root / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise ResultsError(f"{root}: cannot create a run directory named {stem}")


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def append_index(root: Path, row: dict) -> None:
    """Add one line to results/runs.csv; a lock keeps parallel runs from losing each other's."""
    path = Path(root) / INDEX
    with _locked(path):
        existing = path.read_text() if path.exists() else ",".join(INDEX_COLUMNS) + "\n"
        line = pd.DataFrame([{c: row.get(c) for c in INDEX_COLUMNS}]).to_csv(index=False,
                                                                              header=False)
        atomic_write(path, existing + line)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: unreadable ({e})") from None


def utcnow() -> datetime:
    return datetime.now(UTC)


def finite(x: Any) -> float | None:
    """A real number as a float, or None where there is none to write: JSON has no inf/NaN, so
    an unbounded depth scale or the log of a zero gradient is written as null (an empty cell)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):  # numpy scalars are Real
        return None
    return float(x) if math.isfinite(x) else None


# --- reading runs back (for `winit report`) -----------------------------------------------------

RUN_MARKERS = ("config.yaml", "summary.json")


@dataclass
class Run:
    """A finished run's files, as `winit report` reads them."""

    path: str  # relative to the folder searched
    summary: dict
    config: dict[str, Any]  # config.yaml flattened to dotted keys
    layers: pd.DataFrame
    metrics: pd.DataFrame | None
    sweep: str | None
    sweep_grid: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A run directory left out of a report, and why; `fields` (what its summary.json says,
    as far as it could be read) let `--filter` decide whether to list it."""

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


def _sweep_of(run_dir: Path) -> tuple[str | None, tuple[str, ...]]:
    """<sweep>/runs/<run-id>: the sweep's name and its grid keys, from sweep.yaml."""
    sweep_dir = run_dir.parent.parent
    if run_dir.parent.name != "runs" or not (sweep_dir / "sweep.yaml").is_file():
        return None, ()
    try:
        grid = (yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) or {}).get("grid") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        grid = {}
    return sweep_dir.name, tuple(grid) if isinstance(grid, dict) else ()


def load_run(run_dir: Path, root: Path) -> Run | Skipped:
    """A run directory's files (paths relative to `root`), or why they cannot be reported."""
    rel = run_dir.relative_to(root).as_posix()
    if not (run_dir / "summary.json").is_file():
        return Skipped(rel, "no summary.json")
    try:
        summary = read_json(run_dir / "summary.json")
    except ResultsError:
        return Skipped(rel, "summary.json is unreadable")
    if not isinstance(summary, dict):
        return Skipped(rel, "summary.json is not a JSON object")
    fields = {k: summary[k] for k in ("scheme", "activation", "depth", "width", "seed", "status")
              if k in summary}
    if summary.get("status") in (None, "running"):
        return Skipped(rel, f"status {summary.get('status') or 'missing'} (unfinished, or its "
                            "process died)", fields)
    layers = _read_csv(run_dir / "layers.csv")
    if layers is None:
        return Skipped(rel, "layers.csv is missing or unreadable", fields)
    missing = {"step", "layer", "act_grad_norm", "weight_grad_norm"} - set(layers.columns)
    if missing or not len(layers):
        why = f"lacks columns {sorted(missing)}" if missing else "has no records"
        return Skipped(rel, f"layers.csv {why}", fields)
    try:
        config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError):
        config = {}
    sweep, grid = _sweep_of(run_dir)
    return Run(rel, summary, config, layers, _read_csv(run_dir / "metrics.csv"), sweep, grid)
