"""`winit export tensorboard`: TensorBoard event files for finished runs, from their files alone
(layers.csv and metrics.csv; tags as records/tensorboard.py lays them out).

    <out>/<run path>/events.out.tfevents.*    one folder per run, its path as found under the
                                              folder searched, so `tensorboard --logdir <out>`
                                              lists the runs by name

<out> defaults to `tensorboard/` beside the runs (never inside a run folder: a run's folder
stays its record). Exporting again replaces the event folders of the runs exported, each
whole: written aside, then swapped in (records/folders.py), so an interrupted export leaves the
previous event files as they were. A folder holding files winit did not write is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from winit_cli.errors import ResultsError
from winit_cli.records.folders import check_replaceable, staged
from winit_cli.records.reader import RUN_MARKERS, Skipped, find_run_dirs, load_run
from winit_cli.records.tensorboard import write_tables


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
    runs, skipped = [], []
    for d in dirs:
        run = load_run(d, root)
        (skipped if isinstance(run, Skipped) else runs).append(run)
    for run in runs:  # all refused before any is written
        check_replaceable(out / run.path, "--out")
    written = []
    for run in runs:
        target = out / run.path
        with staged(target, "winit export tensorboard", "event files") as staging:
            write_tables(staging, run.layers, run.metrics, run.record, run.config)
        written.append((run.path, target))
    return Export(out, written, skipped)
