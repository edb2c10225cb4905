"""Signals sent to a real `winit` process: SIGTERM and SIGHUP (timeout, kill, a batch scheduler,
a closed terminal) stop a run as Ctrl-C does, and Ctrl-C to the parent of a `--jobs 2` sweep
stops its workers. Signals are sent once a step after 0 is on disk, never after a fixed delay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pandas as pd
import pytest
from cli_text import QUICKSTART

pytestmark = pytest.mark.mnist

REPO = Path(__file__).resolve().parents[2]
QUICK = str(QUICKSTART)
LONG = ["--set", "model.depth=3", "--set", "model.width=16", "--set", "data.subset=1000",
        "--set", "train.epochs=200", "--set", "record.every=2",
        "--set", "record.checkpoint_seconds=0"]


def _env(mnist_path: Path, tmp_path: Path) -> dict:
    return {**os.environ, "WINIT_DATA_DIR": str(mnist_path),
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200",
            "OMP_NUM_THREADS": "1"}  # 2 contended threads are many times slower than 1


def wait_for_steps(pattern: str, root: Path, proc: subprocess.Popen, runs: int = 1) -> None:
    """Until `runs` run folders matching `pattern` under `root` hold a recorded step after 0
    (checkpoints every step): there is something measured to keep, however slow the machine."""
    while proc.poll() is None:
        recorded = 0
        for layers in root.glob(pattern):
            with suppress(pd.errors.EmptyDataError, AttributeError, KeyError, OSError):
                recorded += pd.read_csv(layers).step.max() > 0
        if recorded >= runs:
            return
        time.sleep(0.05)
    raise AssertionError(f"winit exited before recording a step: {proc.communicate()}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_termination_signals_save_what_was_measured(sig, code, mnist_path, tmp_path):
    """SIGTERM/SIGHUP mid-run: exit 128 + signal, the run 'interrupted' (was left 'running',
    with up to 30 s of measurements lost), its tables and index line on disk."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "winit_cli", "run", QUICK, *LONG,
                             "--set", f"output_dir={out}"], cwd=REPO,
                            env=_env(mnist_path, tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_steps("*/layers.csv", out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    name = signal.Signals(sig).name
    assert f"interrupted by {name}: what was measured so far is saved" in err
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["error"] == f"interrupted by {name}"
    layers = pd.read_csv(run_dir / "layers.csv")
    assert summary["final"]["steps"] == layers.step.max() > 0
    assert list(pd.read_csv(out / "runs.csv").status) == ["interrupted"]


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_ctrl_c_to_the_parent_of_jobs_2_stops_the_workers(mnist_path, tmp_path):
    """`compare --jobs 2`, SIGINT to the parent only (not its process group): it kept running
    until the workers finished and never wrote comparison.csv. Now the workers stop, save their
    runs as interrupted, the parent exits 130, and comparison.csv lists both as interrupted."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "winit_cli", "compare", "schemes", "--schemes", "he_normal",
         "--depths", "3,4", *LONG[2:], "--jobs", "2",
         # long enough that the depth-4 group is predicted to repay a helper at once
         "--set", "train.epochs=5000", "--set", f"output_dir={out}"],
        cwd=REPO, env=_env(mnist_path, tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    wait_for_steps("sweeps/*/runs/*/layers.csv", out, proc, runs=2)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    deadline = time.time() + 120  # a bound for a hung worker, not a measured time
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "a worker outlived its parent"
    (sweep,) = (out / "sweeps").iterdir()
    comparison = pd.read_csv(sweep / "comparison.csv")
    assert sorted(comparison.model_depth) == [3, 4]
    assert set(comparison.status) == {"interrupted"}
    for run_dir in (sweep / "runs").iterdir():
        if run_dir.is_dir():
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["status"] == "interrupted", summary["error"]
            assert summary["error"] == "interrupted by the user (Ctrl-C)"
            assert pd.read_csv(run_dir / "layers.csv").step.max() > 0
