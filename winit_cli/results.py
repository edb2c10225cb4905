"""Run directories: everything needed to understand a run later, written atomically.

    results/<run-id>/config.yaml    the resolved config
                     metrics.csv    step, epoch, train/val loss and accuracy
                     layers.csv     one row per recorded step and layer (see probes.py)
                     summary.json   status, verdict, final accuracies, timings, versions, seed...
    results/runs.csv                one line per run, appended

summary.json says `"status": "running"` until the run ends; the CSVs are rewritten whole (temp
file, then rename) at checkpoints and at the end, so a crash leaves complete-looking files only
for what was really measured, and a status that says the run did not finish.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from . import __version__
from .config import Config, dump_yaml
from .errors import ResultsError

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


def config_text(config: Config) -> str:
    return dump_yaml(config)
