"""Sweeps under concurrent use and partial failure: two real `winit compare` processes on one
sweep, claims that die with their process, a failed batched group, an interrupted member."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from winit_cli.records.reader import read_record
from winit_cli.runner.group import load_splits
from winit_cli.sweeps import comparison, executors
from winit_cli.sweeps import plan as planning
from winit_cli.sweeps import spec as specs
from winit_cli.sweeps.claims import Claims
from winit_cli.views.terminal import dry_run_table

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parents[1] / "corpus" / "runs"
SMALL = {"model": {"depth": 3, "width": 16}, "train": {"steps": 6, "batch_size": 64},
         "data": {"subset": 600, "val_size": 200}, "record": {"every": 2}}


def sweep(tmp_path: Path, grid: dict) -> specs.SweepSpec:
    base = json.loads(json.dumps(SMALL))
    base["output_dir"] = str(tmp_path)
    return specs.SweepSpec("t", base, grid, [0])


def folders(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in (sweep_dir / "runs").iterdir() if p.is_dir())


def index_matches_folders(sweep_dir: Path) -> None:
    """The sweep's runs.csv has one line per run folder, and no line for a removed one."""
    index = pd.read_csv(sweep_dir / "runs" / "runs.csv")
    assert sorted(index.path) == [str(p) for p in folders(sweep_dir)]


# --- two real processes -------------------------------------------------------------------------


@pytest.mark.mnist
@pytest.mark.slow
def test_two_concurrent_compares_train_each_member_once(mnist_path, tmp_path):
    """The second compare starts while the first trains the long member (the first is frozen
    with SIGSTOP meanwhile, so the overlap does not depend on timing): it used to delete that
    member's folder as stale and train everything again. Now it trains the two members the
    first has not reached, waits for the long one, and both processes end with the same
    complete comparison: each member exactly once, each folder whole."""
    args = [sys.executable, "-m", "winit_cli", "compare", "schemes", "--schemes", "he_normal",
            "--grid", "train.steps=300,40,41", "--set", "model.depth=3",
            "--set", "model.width=16", "--set", "data.subset=1000",
            "--set", f"output_dir={tmp_path / 'out'}"]
    env = {**os.environ, "WINIT_DATA_DIR": str(mnist_path), "COLUMNS": "200",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _wait_for_runs(tmp_path / "out", first, "running", 1)
    first.send_signal(signal.SIGSTOP)  # frozen mid-member, its claim held: the overlap is sure
    try:
        second = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        _wait_for_runs(tmp_path / "out", second, "complete", 2)
    finally:
        first.send_signal(signal.SIGCONT)
    outputs = [p.communicate(timeout=900) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert "waiting for 1 run(s) that another winit process is training" in outputs[1][0]
    (sweep_dir,) = (tmp_path / "out" / "sweeps").iterdir()
    runs = folders(sweep_dir)
    records = [read_record(p) for p in runs]
    assert len(runs) == 3 and sorted(r.final.steps for r in records) == [40, 41, 300]
    assert {r.status.value for r in records} == {"complete"}
    assert all((p / "config.yaml").is_file() for p in runs)
    for stdout, _ in outputs:  # both tabulate all three, from the same folders
        assert stdout.count("he_normal") >= 3 and "pending" not in stdout
    frame = pd.read_csv(sweep_dir / "comparison.csv")
    assert sorted(frame.run_id) == sorted(p.name for p in runs)
    assert set(frame.status) == {"complete"}
    index_matches_folders(sweep_dir)


def _wait_for_runs(out: Path, proc: subprocess.Popen, status: str, count: int) -> None:
    """Until `count` member folders of the sweep say `status`."""
    while proc.poll() is None:
        found = 0
        for summary in out.glob("sweeps/*/runs/*/summary.json"):
            with suppress(OSError, ValueError, KeyError):
                found += json.loads(summary.read_text())["status"] == status
        if found >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"compare ended early: {proc.communicate()}")


# --- claims ------------------------------------------------------------------------------------


def _hold(sweep_dir: Path, config_hash: str) -> subprocess.Popen:
    code = ("import sys\nfrom winit_cli.sweeps.claims import Claims\n"
            f"claims = Claims({str(sweep_dir)!r})\nassert claims.take({config_hash!r})\n"
            "print('held', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def _running_folder(runs_dir: Path, config_hash: str) -> Path:
    folder = runs_dir / "20260101-000000_in-progress"
    shutil.copytree(CORPUS / "good", folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary.update(status="running", config_hash=config_hash)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_a_claimed_member_is_skipped_and_its_folder_kept_until_its_holder_dies(tmp_path):
    """A member another live process holds is neither trained nor has its folder removed; once
    that process is SIGKILLed its claim is gone (the OS drops the lock) and the member is
    claimed here, its unfinished folder then removed to be redone."""
    s = sweep(tmp_path, {"init.scheme": ["he_normal", "normal"]})
    plan = planning.plan(s)
    held, free = plan.todo
    runs_dir = plan.directory / "runs"
    in_progress = _running_folder(runs_dir, held.content_hash())
    holder = _hold(plan.directory, held.content_hash())
    claims, busy = Claims(plan.directory), []
    try:
        claimed = list(comparison._claimed(planning.groups(plan.todo), claims, runs_dir, busy))
        assert claimed == [[free]] and busy == [held]
        assert in_progress.is_dir()
        assert Claims(plan.directory).held_elsewhere(held.content_hash())
    finally:
        claims.release_all()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    busy = []
    claimed = list(comparison._claimed(planning.groups([held]), claims, runs_dir, busy))
    assert claimed == [[held]] and busy == [] and not in_progress.exists()
    claims.release_all()


def test_the_groups_ahead_are_previewed_without_being_claimed(tmp_path):
    """--jobs N predicts the work left from the groups not drawn yet: ahead() lists them as
    planned, and only drawing a group claims its members."""
    s = sweep(tmp_path, {"init.scheme": ["he_normal"], "model.depth": [3, 4, 5]})
    plan = planning.plan(s)
    planned = planning.groups(plan.todo)
    claims, busy = Claims(plan.directory), []
    try:
        claimed = comparison._claimed(planned, claims, plan.directory / "runs", busy)
        assert claimed.ahead() == planned and len(planned) == 3
        assert next(claimed) == planned[0]
        assert claimed.ahead() == planned[1:]
        other = Claims(plan.directory)  # as another process: the groups ahead are free
        assert not other.held_elsewhere(planned[1][0].content_hash())
        assert other.held_elsewhere(planned[0][0].content_hash())
    finally:
        claims.release_all()


# --- partial failure ---------------------------------------------------------------------------


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_a_failed_batched_group_leaves_one_folder_per_member(tmp_path, monkeypatch):
    """The batched attempt fails, each member then succeeds alone: one (complete) folder per
    member, not an extra 'failed' one, and the index lists exactly those folders."""
    import winit_cli.runner.group as experiment

    real = experiment.train

    def train(configs, *args, **kwargs):
        if len(configs) > 1:
            raise RuntimeError("simulated failure of the batched group")
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(experiment, "train", train)
    s = sweep(tmp_path, {"init.scheme": ["he_normal", "normal", "xavier_normal"]})
    plan = planning.plan(s)
    frame = comparison.run_sweep(plan, s, executors.InProcessExecutor(load_splits))
    assert set(frame.status) == {"complete"} and len(frame) == 3
    runs = folders(plan.directory)
    assert len(runs) == 3 and {read_record(p).status.value for p in runs} == {"complete"}
    index_matches_folders(plan.directory)


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_an_interrupted_member_reads_interrupted_and_is_redone_cleanly(tmp_path, monkeypatch):
    """Ctrl-C during the second group: comparison.csv says 'interrupted' for it (it said
    'pending'), the dry run says it will be rerun, and the rerun removes its folder and its
    index line (the index kept lines for removed folders)."""
    import winit_cli.runner.group as experiment

    real = experiment.train

    def train(configs, splits, *, on_progress=None, **kwargs):
        def progress(step, total, info):
            if configs[0].model.depth == 4 and step >= 2:
                raise KeyboardInterrupt
            if on_progress:
                on_progress(step, total, info)
        return real(configs, splits, on_progress=progress, **kwargs)

    monkeypatch.setattr(experiment, "train", train)
    s = sweep(tmp_path, {"model.depth": [3, 4]})
    plan = planning.plan(s)
    with pytest.raises(KeyboardInterrupt):
        comparison.run_sweep(plan, s, executors.InProcessExecutor(load_splits))
    frame = pd.read_csv(plan.directory / "comparison.csv").set_index("model_depth")
    assert frame.status.to_dict() == {3: "complete", 4: "interrupted"}
    assert frame.loc[4, "steps"] == 2
    index_matches_folders(plan.directory)

    monkeypatch.setattr(experiment, "train", real)
    again = planning.plan(s)
    console = Console(record=True, width=200)
    dry_run_table(console, s, again, specs.grid_value)
    assert "to run (was interrupted)" in console.export_text()
    interrupted = [p for p in folders(plan.directory) if read_record(p).depth == 4]
    frame = comparison.run_sweep(again, s, executors.InProcessExecutor(load_splits))
    assert set(frame.status) == {"complete"}
    # The redo may reuse the interrupted folder's name (same second, same config): what must be
    # gone is the interrupted record, not the path.
    assert interrupted and len(folders(plan.directory)) == 2
    assert {read_record(p).status for p in folders(plan.directory)} == {"complete"}
    index_matches_folders(plan.directory)
