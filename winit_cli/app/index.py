"""`winit index rebuild`: the runs indexes (runs.csv) of a results folder, rewritten from the run
folders, which are the record (after runs were deleted or copied in, or an index was damaged)."""

from __future__ import annotations

from pathlib import Path

from winit_cli.errors import ResultsError
from winit_cli.records.index import rebuild_indexes


def rebuild(path: Path) -> list[tuple[Path, int]]:
    """(index path, lines) for every folder under `path` that holds run folders."""
    try:
        rebuilt = rebuild_indexes(Path(path))
    except OSError as e:
        where = f"{e.filename}: " if isinstance(e.filename, str) else ""
        raise ResultsError(f"{path}: cannot rebuild the runs index ({where}{e.strerror or e})") \
            from None
    if not rebuilt:
        raise ResultsError(f"{path}: no run folders found (a run folder holds summary.json)")
    return rebuilt
