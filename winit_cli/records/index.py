"""<root>/runs.csv: one line per finished run, appended under a lock, rebuildable from the run
folders at any time (`winit index rebuild`).

The index is a convenience derived from the run folders, which are the record: it never fails a
run. Before a line is appended the index is read back and checked line by line; one that cannot
take a line (not UTF-8, another header, a damaged line anywhere) is rebuilt from the folders,
its damaged lines kept in runs.csv.damaged beside it. One that cannot be written at all (a link,
a FIFO, a read-only file: records/files.py refuses them without blocking) is reported, not
raised.
"""

from __future__ import annotations

import csv
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pandas as pd

from winit_cli import interrupts
from winit_cli.bounded import Unreadable, read_bytes
from winit_cli.records.files import atomic_write, csv_text, open_regular, refusal
from winit_cli.records.reader import find_run_dirs
from winit_cli.records.schema import RunRecord
from winit_cli.status import Status

INDEX = "runs.csv"
INDEX_COLUMNS = ("run_id", "name", "started_at", "status", "verdict", "scheme", "activation",
                 "depth", "width", "seed", "test_accuracy", "config_hash", "path")
HEADER = ",".join(INDEX_COLUMNS) + "\n"
DAMAGED = f"{INDEX}.damaged"  # an index's damaged lines, kept beside it when it is rebuilt
MAX_INDEX_BYTES = 256 << 20  # 10,000 runs take about 3 MB


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The index's lock: its lock file opened read-only (nothing written, nothing truncated),
    never through a link, never a FIFO (records/files.py open_regular)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_regular(path.parent / f".{path.name}.lock", os.O_RDONLY | os.O_CREAT)
    try:
        with interrupts.interruptible():  # a holder that hangs must not make SIGTERM wait
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def index_row(record: RunRecord, run_dir: Path) -> dict:
    return {"run_id": record.run_id, "name": record.name, "started_at": record.started_at,
            "status": record.status.value,
            "verdict": record.verdict.verdict if record.verdict else None,
            "scheme": record.scheme, "activation": record.activation, "depth": record.depth,
            "width": record.width_label, "seed": record.seed,
            "test_accuracy": record.final.test_accuracy, "config_hash": record.config_hash,
            "path": str(run_dir)}


def _lines(rows: list[dict]) -> str:
    """One line per row: a line break inside a cell (a path may hold one) becomes a space."""
    rows = [{k: " ".join(v.splitlines()) if isinstance(v, str) else v for k, v in r.items()}
            for r in rows]
    return csv_text(pd.DataFrame(rows, columns=list(INDEX_COLUMNS)), header=False)


def damaged_lines(text: str) -> list[str]:
    """The lines of an index's rows that are not one whole row (a field per INDEX_COLUMNS)
    (winit writes no line break inside a cell, so each line is checked on its own: a quote left
    open in the middle of the file is that line's damage, not the rest of the file's)."""
    damaged = []
    for line in text.splitlines()[1:]:
        try:
            fields = next(csv.reader([line], strict=True), [])
        except csv.Error:
            fields = []
        if len(fields) != len(INDEX_COLUMNS):
            damaged.append(line)
    return damaged


def _read(path: Path) -> tuple[str | None, list[str]]:
    """(the index's text, ending in a newline, if a line can be appended to it, else None;
    its damaged lines). An index that is not a regular file raises OSError (nothing is
    written in its place: it is not winit's)."""
    if not os.path.lexists(path):
        return HEADER, []
    try:
        data = read_bytes(path, MAX_INDEX_BYTES, follow_links=False)
    except Unreadable as e:
        if e.size is not None:  # too large to be winit's: rebuilt from the folders
            return None, []
        raise refusal(path, e.why) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, []
    if not text.startswith(HEADER):
        return None, []
    text = text if text.endswith("\n") else text + "\n"  # no row glued onto the last one
    damaged = damaged_lines(text)
    return (None if damaged else text), damaged


def _set_aside(root: Path, lines: list[str]) -> Path:
    """Add damaged index lines to runs.csv.damaged beside the index (kept, not thrown away)."""
    aside = root / DAMAGED
    try:
        kept = read_bytes(aside, MAX_INDEX_BYTES, follow_links=False).decode("utf-8", "replace") \
            if os.path.lexists(aside) else ""
    except Unreadable as e:
        raise refusal(aside, e.why) from None
    atomic_write(aside, kept + "".join(f"{line}\n" for line in lines))
    return aside


def append_index(root: Path, record: RunRecord, run_dir: Path) -> str | None:
    """Add one line to <root>/runs.csv (a lock keeps parallel runs from losing each other's),
    or rebuild it from the folders if it cannot take one. Never raises: returns why the index
    could not be brought up to date, or None."""
    path = Path(root) / INDEX
    try:
        with _locked(path):
            text, damaged = _read(path)
            if text is None:
                aside = "" if not damaged else \
                    f"; its damaged lines ({len(damaged)}) are in {_set_aside(Path(root), damaged)}"
                _write_rebuilt(Path(root))
                return f"{path} was damaged and has been rebuilt from the run folders{aside}"
            atomic_write(path, text + _lines([index_row(record, run_dir)]))
    except OSError as e:
        return (f"{path}: not updated ({_why(e, path)}); `winit index rebuild {root}` "
                "rebuilds it")
    return None


def _why(e: OSError, path: Path) -> str:
    """An OSError's reason, naming its file when that is not `path` (the index's lock)."""
    why = e.strerror or str(e)
    named = isinstance(e.filename, str) and Path(e.filename) != path  # not a descriptor's number
    return f"{e.filename}: {why}" if named else why


def _records(root: Path) -> list[tuple[RunRecord, Path]]:
    """The finished (not running) runs directly under `root`, oldest first, read through the
    run store of `root` (records/store.py), which holds every run under it, as a report of
    `root` does; a damaged run has no line (`winit report` says why it is skipped)."""
    # Imported here: the store brings DuckDB and pyarrow (0.1-0.2 s), which appending a run's
    # line to the index (every `winit run`) does not need; only a rebuild reads the store.
    from winit_cli.records.store import RunStore

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
