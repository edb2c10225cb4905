"""results/runs.csv: one line per finished run, appended under a lock."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from winit_cli.records.files import atomic_write
from winit_cli.records.schema import RunRecord

INDEX = "runs.csv"
INDEX_COLUMNS = ("run_id", "name", "started_at", "status", "verdict", "scheme", "activation",
                 "depth", "width", "seed", "test_accuracy", "config_hash", "path")


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def index_row(record: RunRecord, run_dir: Path) -> dict:
    return {"run_id": record.run_id, "name": record.name, "started_at": record.started_at,
            "status": record.status.value,
            "verdict": record.verdict.verdict if record.verdict else None,
            "scheme": record.scheme, "activation": record.activation, "depth": record.depth,
            "width": record.width_label, "seed": record.seed,
            "test_accuracy": record.final.test_accuracy, "config_hash": record.config_hash,
            "path": str(run_dir)}


def append_index(root: Path, record: RunRecord, run_dir: Path) -> None:
    """Add one line to <root>/runs.csv; a lock keeps parallel runs from losing each other's."""
    path = Path(root) / INDEX
    row = index_row(record, run_dir)
    with _locked(path):
        existing = path.read_text() if path.exists() else ",".join(INDEX_COLUMNS) + "\n"
        line = pd.DataFrame([row], columns=list(INDEX_COLUMNS)).to_csv(index=False, header=False)
        atomic_write(path, existing + line)
