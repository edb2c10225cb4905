"""`winit report` through the run store and its kept figures: after folders are deleted, added,
changed and damaged between reports, the report is the one a cold rebuild (no store, no kept
figures) writes, file for file."""

from __future__ import annotations

import json
import shutil
import time

from runs_folder import make_run

from winit_cli.app.report import build_report
from winit_cli.views import figures


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_kept_store_reports_what_a_cold_rebuild_reports(tmp_path, monkeypatch):
    root = tmp_path / "results"
    for i in range(9):
        make_run(root, i, groups=3, crossed_at=(None, 10, 20)[i % 3])
    build_report([root], out=tmp_path / "first")
    assert (root / ".winit" / "store" / "runs.parquet").is_file()
    assert len(list((root / ".winit" / "figures").iterdir())) == 3  # one entry per group

    # groups by width (one scheme each): 64 (runs 0 3 6), 65 (1 4 7), 66 (2 5 8); the last is
    # left as it was (and every label stays, so no colour moves)
    shutil.rmtree(root / "run-003")
    make_run(root, 12, groups=3, crossed_at=10)  # joins group 64
    make_run(root, 14, groups=5, crossed_at=20)  # a group of its own (68)
    summary = json.loads((root / "run-006" / "summary.json").read_text())
    summary["final"]["test_accuracy"] = 0.5
    (root / "run-006" / "summary.json").write_text(json.dumps(summary))
    (root / "run-007" / "layers.csv").write_text("step,layer\n0,x\n")  # damaged: skipped
    (root / "run-001" / "summary.json").write_text("{")  # damaged: skipped
    drawn = []
    draw_group = figures._group_figures
    monkeypatch.setattr(figures, "_group_figures",
                        lambda key, *a: drawn.append(key[4]) or draw_group(key, *a))
    kept = build_report([root], out=tmp_path / "kept")
    assert sorted(drawn) == ["64", "65", "68"]  # 66's were copied from the first report

    shutil.rmtree(root / ".winit")
    build_report([root], out=tmp_path / "cold")
    assert len(kept.summary) == 8 and len(kept.skipped) == 2
    assert _files(tmp_path / "kept") == _files(tmp_path / "cold")


def test_figures_saved_by_workers_are_those_saved_in_process(tmp_path, monkeypatch):
    """views/plots.Painter: a report whose figures were saved by forked worker processes
    (groups, and a group's figures, dealt out over them) is the report saved in one process,
    byte for byte."""
    from winit_cli.views import plots

    root = tmp_path / "results"
    for i in range(9):
        make_run(root, i, groups=3, crossed_at=(None, 10, 20)[i % 3])
    monkeypatch.setattr(plots, "PAINTERS_FROM_RUNS", 0)
    monkeypatch.setattr(plots, "MAX_PAINTERS", 2)
    monkeypatch.setattr(plots.os, "cpu_count", lambda: 2)  # two workers, whatever the machine
    started = []
    real_start = plots.multiprocessing.process.BaseProcess.start
    monkeypatch.setattr(plots.multiprocessing.process.BaseProcess, "start",
                        lambda self: started.append(self) or real_start(self))
    build_report([root], out=tmp_path / "workers")
    assert started  # the figures were saved by workers
    shutil.rmtree(root / ".winit")
    monkeypatch.setattr(plots, "MAX_PAINTERS", 1)
    build_report([root], out=tmp_path / "here")
    assert _files(tmp_path / "workers") == _files(tmp_path / "here")


def test_a_stuck_figure_worker_is_stopped_and_its_figures_saved_here(tmp_path, monkeypatch):
    """A forked worker that never finishes (a lock another thread held at the fork) does not
    hang the report: past its deadline it is killed, its half-written files removed and its
    figures saved in the report's own process, the same bytes as a report saved in one."""
    import os

    from winit_cli.views import plots

    root = tmp_path / "results"
    for i in range(4):
        make_run(root, i, groups=2)
    parent, real_save = os.getpid(), plots.save

    def stuck_in_a_worker(fig, path, output=plots.Output()):
        if os.getpid() != parent:  # a forked worker: leave a half-written file and stop there
            (path.parent / f".{path.name}.abc.tmp").write_bytes(b"half")
            while True:
                time.sleep(1)
        return real_save(fig, path, output)

    monkeypatch.setattr(plots, "save", stuck_in_a_worker)
    monkeypatch.setattr(plots, "PAINTERS_FROM_RUNS", 0)
    monkeypatch.setattr(plots, "MAX_PAINTERS", 2)
    monkeypatch.setattr(plots.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(plots, "WORKER_SECONDS_PER_FIGURE", 0.5)
    build_report([root], out=tmp_path / "workers")
    shutil.rmtree(root / ".winit")
    monkeypatch.setattr(plots, "MAX_PAINTERS", 1)
    build_report([root], out=tmp_path / "here")
    assert _files(tmp_path / "workers") == _files(tmp_path / "here")
    assert not list((tmp_path / "workers").rglob("*.tmp"))
