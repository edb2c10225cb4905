"""<root>/runs.csv: one line per finished run, appended under a lock, rebuildable from the run
folders at any time (`winit index rebuild`).

The index is a convenience derived from the run folders, which are the record: it never fails a
run. An index that cannot be appended to (not UTF-8, another header, a damaged line) is rebuilt
from the folders; one that cannot be written at all is reported, not raised.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pandas as pd

from winit_cli.records.files import atomic_write
from winit_cli.records.reader import find_run_dirs
from winit_cli.records.schema import RunRecord
from winit_cli.records.store import RunStore
from winit_cli.status import Status

INDEX = "runs.csv"
INDEX_COLUMNS = ("run_id", "name", "started_at", "status", "verdict", "scheme", "activation",
                 "depth", "width", "seed", "test_accuracy", "config_hash", "path")
HEADER = ",".join(INDEX_COLUMNS) + "\n"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
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


def _lines(rows: list[dict]) -> str:
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).to_csv(index=False, header=False)


def _appendable(path: Path) -> str | None:
    """The index's text, ending in a newline, if a line can be appended to it; else None."""
    if not path.exists():
        return HEADER
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith(HEADER):
        return None
    return text if text.endswith("\n") else text + "\n"  # no row glued onto the last one


def append_index(root: Path, record: RunRecord, run_dir: Path) -> str | None:
    """Add one line to <root>/runs.csv (a lock keeps parallel runs from losing each other's),
    or rebuild it from the folders if it cannot take one. Never raises: returns why the index
    could not be brought up to date, or None."""
    path = Path(root) / INDEX
    try:
        with _locked(path):
            text = _appendable(path)
            if text is None:
                _write_rebuilt(Path(root))
                return f"{path} was damaged and has been rebuilt from the run folders"
            atomic_write(path, text + _lines([index_row(record, run_dir)]))
    except OSError as e:
        return (f"{path}: not updated ({e.strerror or e}); `winit index rebuild {root}` "
                "rebuilds it")
    return None


def _records(root: Path) -> list[tuple[RunRecord, Path]]:
    """The finished (not running) runs directly under `root`, oldest first, read through the
    run store of `root` (records/store.py), which holds every run under it, as a report of
    `root` does; a damaged run has no line (`winit report` says why it is skipped)."""
    # a sweep's runs/ is held by the sweep's store, which its comparison and report read
    home = root.parent if root.name == "runs" and (root.parent / "sweep.yaml").is_file() \
        else root
    store = RunStore(home).sync(find_run_dirs(root) if root.is_dir() else [], within=[root])
    found = [(record, home / rel) for rel, record in store.records()
             if (home / rel).parent == root and record.status is not Status.RUNNING]
    return sorted(found, key=lambda pair: (pair[0].started_at, pair[0].run_id))


def _write_rebuilt(root: Path) -> int:
    records = _records(root)
    atomic_write(root / INDEX, HEADER + _lines([index_row(r, d) for r, d in records]))
    return len(records)


def rebuild_index(root: Path) -> int:
    """Rewrite <root>/runs.csv from the run folders directly under `root`; the line count."""
    root = Path(root)
    with _locked(root / INDEX):
        return _write_rebuilt(root)


def rebuild_indexes(path: Path) -> list[tuple[Path, int]]:
    """Rebuild the index of every folder under `path` that holds run folders (results/, and
    each sweep's runs/): (index path, lines) each."""
    roots = sorted({d.parent for d in find_run_dirs(Path(path)) if d != Path(path)})
    return [(root / INDEX, rebuild_index(root)) for root in roots]


def remove_runs(run_dirs: list[Path]) -> None:
    """Delete run folders (unfinished or superseded attempts) and their lines in the index of
    the folder holding them, so neither a folder nor an index line outlives the other."""
    for parent in sorted({Path(d).parent for d in run_dirs}):
        with _locked(parent / INDEX):
            for d in run_dirs:
                if Path(d).parent == parent:
                    shutil.rmtree(d, ignore_errors=True)
            if (parent / INDEX).exists():
                with suppress(OSError):  # the index never fails a run: rebuild it later
                    _write_rebuilt(parent)
