"""Finding run folders (records/reader.find_run_dirs) without listing each: the same folders,
in the same order, as a walk with os.walk that lists every folder (written here), over a tree
with sweeps, loose runs, hidden folders, links to runs kept elsewhere, a link back up the tree,
a run linked beside itself, a dangling link for a marker and a marker that is a folder."""

from __future__ import annotations

import os
from pathlib import Path

from winit_cli.records.reader import find_run_dirs

MARKERS = ("config.yaml", "summary.json")


def walked(path: Path) -> list[Path]:
    """Run folders as os.walk finds them: each folder listed, links followed, each once."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(m in filenames for m in MARKERS):
            found.append(Path(dirpath))
            dirnames[:] = []
    return found


def _run(folder: Path, *files: str) -> Path:
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text("{}")
    return folder


def test_the_folders_and_order_of_a_full_walk(tmp_path):
    root = tmp_path / "results"
    for i in (3, 1, 2):
        _run(root / f"loose-{i}", "config.yaml", "summary.json")
    _run(root / "sweep-b" / "runs" / "r2", "summary.json")
    _run(root / "sweep-b" / "runs" / "r1", "config.yaml")  # no summary: still a run folder
    (root / "sweep-b" / "sweep.yaml").write_text("grid: {}")
    _run(root / "sweep-a" / "runs" / "r0", "summary.json", "layers.csv")
    _run(root / ".winit" / "store" / "hidden", "summary.json")  # hidden: never searched
    _run(root / "loose-1" / "nested", "summary.json")  # inside a run: runs don't nest
    elsewhere = _run(tmp_path / "kept-elsewhere", "summary.json")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "linked-again").symlink_to(elsewhere, target_is_directory=True)  # counted once
    (root / "sweep-a" / "up").symlink_to(root, target_is_directory=True)  # no endless walk
    dangling = _run(root / "dangling", "layers.csv")
    (dangling / "summary.json").symlink_to(tmp_path / "gone")  # a marker all the same
    odd = _run(root / "odd", "layers.csv")
    (odd / "summary.json").mkdir()  # a folder named like a marker is none
    _run(odd / "summary.json" / "inner", "config.yaml")
    _run(root / "empty" / "deeper")

    expected = walked(root)
    assert find_run_dirs(root) == expected
    names = [p.relative_to(root).as_posix() for p in expected]
    assert "linked" in names and "linked-again" not in names and "dangling" in names
    assert "odd" not in names and "odd/summary.json/inner" in names
    assert find_run_dirs(root / "loose-2") == walked(root / "loose-2") == [root / "loose-2"]
    assert find_run_dirs(tmp_path / "no such folder") == []
