"""`winit export tensorboard`: TensorBoard event files for finished runs, from their files alone
(layers.csv and metrics.csv; tags as records/tensorboard.py lays them out).

    <out>/<run path>/events.out.tfevents.*    one folder per run, its path as found under the
                                              folder searched, so `tensorboard --logdir <out>`
                                              lists the runs by name

<out> defaults to `tensorboard/` beside the runs (never inside a run folder: a run's folder
stays its record). Exporting again replaces the event files of the runs exported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from winit_cli.errors import ResultsError
from winit_cli.records.reader import RUN_MARKERS, Run, Skipped, find_run_dirs, load_run
from winit_cli.records.tensorboard import write_tables

EVENT_FILES = "events.out.tfevents.*"


@dataclass
class Export:
    out: Path
    written: list[tuple[str, Path]]  # (run path, its event folder)
    skipped: list[Skipped]


def _root(paths: list[Path]) -> Path:
    root = Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    return root.parent if any((root / m).is_file() for m in RUN_MARKERS) else root


def export_tensorboard(paths: list[Path], out: Path | None = None) -> Export:
    """Event files for every finished run under `paths` (run folders, sweeps, or folders of
    them); runs still running or unreadable are skipped, with the reason."""
    for p in paths:
        if not p.is_dir():
            raise ResultsError(f"{p}: no such directory (give run directories, sweep "
                               "directories or folders of them)")
    root = _root(paths)
    dirs = sorted({d for p in paths for d in find_run_dirs(p.resolve())})
    if not dirs:
        raise ResultsError(f"{', '.join(map(str, paths))}: no run directories found")
    out = Path(out) if out is not None else root / "tensorboard"
    written, skipped = [], []
    for d in dirs:
        run = load_run(d, root)
        if isinstance(run, Skipped):
            skipped.append(run)
            continue
        target = out / run.path
        _replace(target, run)
        written.append((run.path, target))
    return Export(out, written, skipped)


def _replace(target: Path, run: Run) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob(EVENT_FILES):  # a second export would double every series
        old.unlink()
    write_tables(target, run.layers, run.metrics, run.record, run.config)
