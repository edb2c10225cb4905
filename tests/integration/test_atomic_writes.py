"""Every file winit leaves is written atomically: to a temp file beside it, then renamed, so a
reader (or a crash) never meets half a file under the final name.

Python's audit hooks see every `open` (builtin and os.open) and every `os.rename`/`os.replace`,
whatever the code path: the tests watch a whole run, a report and a sweep, and require that no
final file is ever opened for writing under its own name, and that each one arrives by a rename
from a file written in the same folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from winit_cli.app.report import build_report
from winit_cli.config import validate
from winit_cli.records.files import atomic_write
from winit_cli.runner.group import load_splits, run_group
from winit_cli.sweeps import comparison, executors
from winit_cli.sweeps import plan as planning
from winit_cli.sweeps import spec as specs

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_events: list[tuple[str, tuple]] | None = None  # collecting while a list


def _hook(event: str, args: tuple) -> None:
    if _events is not None and event in ("open", "os.rename"):
        _events.append((event, args))


sys.addaudithook(_hook)  # hooks cannot be removed: this one records only inside `watch`


class watch:
    """Collect the file writes and renames under `root` while in the block."""

    def __init__(self, root: Path):
        self.root = str(Path(root).resolve())
        self.written: set[str] = set()
        self.renamed: list[tuple[str, str]] = []

    def __enter__(self) -> watch:
        global _events
        _events = []
        return self

    def __exit__(self, *exc) -> None:
        global _events
        events, _events = _events, None
        for event, args in events:
            if event == "open":
                path, mode, flags = args
                writes = (mode is not None and any(c in mode for c in "wax+")) or \
                    (mode is None and flags is not None and flags & _WRITE_FLAGS)
                if writes and isinstance(path, str | bytes | os.PathLike):
                    self.written.add(self._full(path))
            else:
                self.renamed.append((self._full(args[0]), self._full(args[1])))

    @staticmethod
    def _full(path) -> str:
        return str(Path(os.fsdecode(path)).resolve())

    def _staged(self, path: str) -> str:
        """Where `path` was written if a whole folder holding it was renamed into place (a
        report is built in a staging folder that then replaces the old one)."""
        for src, dst in reversed(self.renamed):
            if path.startswith(dst + os.sep):  # only a folder's rename has paths below it
                return src + path[len(dst):]
        return path

    def check(self, finals: list[Path]) -> None:
        """Each final file arrived by a rename from a temp file written beside it, and was
        never opened for writing itself."""
        destinations = {dst: src for src, dst in self.renamed}
        assert finals, "nothing to check"
        for final in finals:
            path = self._staged(self._full(final))
            assert path not in self.written, f"{final} was written in place"
            assert path in destinations, f"{final} did not arrive by a rename"
            source = destinations[path]
            assert source in self.written and Path(source).parent == Path(path).parent, source
            assert not Path(source).exists(), f"temp file {source} left behind"


def finals_under(root: Path) -> list[Path]:
    """The files a user reads: everything but lock files."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


@pytest.fixture
def tiny(tmp_path):
    return {"model": {"depth": 3, "width": 16}, "train": {"steps": 6, "batch_size": 64},
            "data": {"subset": 640, "val_size": 100},
            "record": {"every": 2, "checkpoint_seconds": 0}, "output_dir": str(tmp_path / "runs")}


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.usefixtures("winit_data_dir")
def test_a_run_and_its_report_write_every_file_atomically(tiny, tmp_path):
    """Protects atomic writes of config.yaml, summary.json, layers.csv and metrics.csv (also at
    every checkpoint), runs.csv, and the report's CSV, markdown, HTML and plots."""
    config = validate(tiny)
    splits = load_splits(config)
    with watch(tmp_path) as run:
        run_group([config, config.model_copy(update={"name": "other"})], splits)
    files = finals_under(tmp_path / "runs")
    assert {p.name for p in files} == {"config.yaml", "summary.json", "layers.csv",
                                       "metrics.csv", "runs.csv"}
    run.check(files)
    assert len(run.renamed) > 20  # checkpoints rewrote the tables after every step

    with watch(tmp_path) as report:
        build_report([tmp_path / "runs"], out=tmp_path / "report")
    files = finals_under(tmp_path / "report")
    assert {p.suffix for p in files} >= {".csv", ".md", ".html", ".png"}
    report.check(files)


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_a_sweep_writes_its_files_atomically(tiny, tmp_path):
    """Protects sweep.yaml and comparison.csv (rewritten after every group)."""
    s = specs.SweepSpec("atomic", tiny, {"init.scheme": ["he_normal", "normal"]}, [0])
    with watch(tmp_path) as sweep:
        comparison.run_sweep(planning.plan(s), s, executors.InProcessExecutor(load_splits))
    directory = planning.plan(s).directory
    sweep.check([directory / "sweep.yaml", directory / "comparison.csv",
                 *finals_under(directory / "runs")])


def test_a_failed_write_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    """A write that fails midway (here: the disk refuses to sync) leaves the file as it was,
    and no temp file."""
    target = tmp_path / "layers.csv"
    atomic_write(target, "step,layer\n0,1\n")

    def refuse(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "step,layer\n0,1\n10,1\n")
    assert target.read_text() == "step,layer\n0,1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["layers.csv"]
