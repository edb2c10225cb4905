"""Sweeps: grid expansion, batching, resume after a kill, failures isolated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.errors import ConfigError
from winit_cli.runner.group import load_splits
from winit_cli.sweeps import comparison, executors, processes
from winit_cli.sweeps import plan as planning
from winit_cli.sweeps import spec as specs

REPO = Path(__file__).resolve().parents[3]
SMALL = {"model": {"depth": 4, "width": 32}, "train": {"steps": 6, "batch_size": 64},
         "data": {"subset": 600, "val_size": 200}, "record": {"every": 2}}


def spec(tmp_path: Path, grid: dict, seeds=(0,)) -> specs.SweepSpec:
    base = json.loads(json.dumps(SMALL))
    base["output_dir"] = str(tmp_path)
    return specs.SweepSpec("t", base, grid, list(seeds))


def test_grid_expands_to_every_point_and_seed(tmp_path):
    s = spec(tmp_path, {"init.scheme": ["he_normal", "normal"], "model.depth": [3, 5]},
             seeds=[0, 1, 2])
    members = s.members()
    assert len(members) == 2 * 2 * 3
    points = {(c.init.scheme, c.model.depth, c.train.seed) for c in members}
    assert len(points) == 12
    assert all(c.data.subset == 600 for c in members)  # the base is kept


def test_grid_scheme_drops_base_params_that_belong_to_another_scheme(tmp_path):
    s = spec(tmp_path, {"init.scheme": ["xavier_normal", "normal"]})
    s.base["init"] = {"scheme": "normal", "params": {"std": 0.05}}
    # xavier takes no std; normal keeps the base's
    assert [c.init.params for c in s.members()] == [{}, {"std": 0.05}]


def test_grid_with_a_bad_value_names_it(tmp_path):
    with pytest.raises(ConfigError, match="model.depth"):
        spec(tmp_path, {"model.depth": [3, 0]}).members()


def test_sweep_file_spec(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model: {depth: 3, width: 16}\ninit: {scheme: normal, params: {std: 1e-2}}\n")
    f = tmp_path / "sweep.yaml"
    f.write_text("name: s\nbase: base.yaml\ngrid:\n  init.params.std: [1e-2, 0.1]\nseeds: 2\n")
    s = specs.load_spec(f)
    assert [c.init.params["std"] for c in s.members()] == [0.01, 0.01, 0.1, 0.1]
    f.write_text("name: s\ngrids: {}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        specs.load_spec(f)


def test_groups_batch_same_shape_members_only(tmp_path):
    s = spec(tmp_path, {"init.scheme": ["he_normal", "normal", "normal_l2"],
                        "model.depth": [3, 5]}, seeds=[0, 1])
    groups = planning.groups(s.members())
    assert sorted(len(g) for g in groups) == [6, 6]
    for g in groups:
        assert len({c.model.depth for c in g}) == 1


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_sweep_writes_comparison_and_resumes_without_rerunning(tmp_path):
    s = spec(tmp_path, {"init.scheme": ["he_normal", "normal"]}, seeds=[0, 1])
    plan = planning.plan(s)
    assert len(plan.todo) == 4
    frame = comparison.run_sweep(plan, s, executors.InProcessExecutor(load_splits))
    assert len(frame) == 4 and set(frame.status) == {"complete"}
    on_disk = pd.read_csv(plan.directory / "comparison.csv")
    assert list(on_disk.run_id) == list(frame.run_id)
    assert {"init_scheme", "seed", "verdict", "test_accuracy", "steps_to_target"} <= set(on_disk)
    assert (plan.directory / "sweep.yaml").exists()
    again = planning.plan(s)
    assert again.todo == [] and len(again.done) == 4


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_a_failing_member_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    import winit_cli.training.step as train_module

    real = train_module.initialize

    def broken(model, member, scheme, params, generator, **options):
        if scheme == "xavier_normal":
            raise RuntimeError("simulated failure")
        real(model, member, scheme, params, generator, **options)

    monkeypatch.setattr(train_module, "initialize", broken)
    s = spec(tmp_path, {"init.scheme": ["he_normal", "xavier_normal", "normal"]})
    frame = comparison.run_sweep(planning.plan(s), s, executors.InProcessExecutor(load_splits))
    status = dict(zip(frame.init_scheme, frame.status, strict=True))
    assert status == {"he_normal": "complete", "xavier_normal": "failed", "normal": "complete"}
    assert "simulated failure" in frame.set_index("init_scheme").loc["xavier_normal", "error"]


def test_compare_dry_run_lists_runs_and_trains_nothing(tmp_path):
    """With no dataset on the machine (an empty WINIT_DATA_DIR and cache) the cost is timed on
    random data of the dataset's shape: nothing is downloaded or read."""
    (tmp_path / "no-data").mkdir()
    result = CliRunner().invoke(app, [
        "compare", "schemes", "--schemes", "he_normal,normal", "--depths", "3,5", "--seeds", "2",
        "--set", f"output_dir={tmp_path}", "--dry-run"],
        env={"WINIT_DATA_DIR": str(tmp_path / "no-data"), "XDG_CACHE_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "8 runs" in result.output
    assert not list(tmp_path.rglob("summary.json"))


def test_compare_unknown_scheme_is_one_error_line(tmp_path):
    result = CliRunner().invoke(app, ["compare", "schemes", "--schemes", "he_normall",
                                      "--set", f"output_dir={tmp_path}", "--dry-run"])
    assert result.exit_code == 2
    assert "did you mean 'he_normal'" in result.stderr


def _statuses(root: Path) -> dict[Path, str]:
    """Each run directory under `root` with the status its summary.json says (written
    atomically: a summary is either absent or whole)."""
    return {p.parent: json.loads(p.read_text())["status"] for p in root.rglob("summary.json")}


@pytest.mark.integration
@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.usefixtures("winit_data_dir")
def test_killed_sweep_resumes_with_nothing_lost_or_duplicated(tmp_path):
    """SIGKILL the CLI once the short group has finished and the long one has started: the
    rerun redoes only the long one, replacing its stale directory. The kill waits for both
    summaries on disk, not for a delay, so it holds however slow the machine is."""
    args = [sys.executable, "-m", "winit_cli", "compare", "schemes", "--schemes", "he_normal",
            "--grid", "train.steps=4,3000", "--set", "model.depth=3", "--set", "model.width=16",
            "--set", "data.subset=500", "--set", "data.val_size=100", "--set", "record.every=50",
            "--set", f"output_dir={tmp_path}"]
    # one thread: two contended ones are many times slower on a shared machine
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and sorted(_statuses(tmp_path).values()) != ["complete",
                                                                               "running"]:
            time.sleep(0.05)
        assert proc.poll() is None, f"winit ended before the kill: {proc.communicate()}"
    finally:
        proc.kill()  # SIGKILL: no chance to write anything more
        proc.wait()
    statuses = _statuses(tmp_path)
    (short_done,) = [p for p, status in statuses.items() if status == "complete"]
    runs = short_done.parent
    assert sorted(statuses.values()) == ["complete", "running"]

    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "1 already done, 1 to run" in done.stdout
    after = sorted(p.name for p in runs.iterdir() if p.is_dir())
    assert short_done.name in after and len(after) == 2  # the stale one was replaced, not kept
    comparison = pd.read_csv(runs.parent / "comparison.csv")
    assert len(comparison) == 2 and comparison.run_id.is_unique
    assert set(comparison.status) == {"complete"}


def test_first_nonfinite_layer_follows_the_order_values_arise():
    from winit_cli.measure.assembler import first_nonfinite_layer
    from winit_cli.measure.quantities import columns

    values = torch.ones(6, len(columns()), dtype=torch.float64)
    assert first_nonfinite_layer(values) is None
    backward = values.clone()
    backward[:4, columns().index("act_grad_norm")] = float("nan")  # overflow at 4, NaN below
    assert first_nonfinite_layer(backward) == 4
    forward = backward.clone()
    forward[2:, columns().index("act_std")] = float("inf")  # the forward pass overflows at 3
    assert first_nonfinite_layer(forward) == 3


def test_grid_keeps_the_parameters_a_scheme_takes_whatever_the_axis_order(tmp_path):
    s = spec(tmp_path, {"init.params.std": [0.05], "init.scheme": ["normal", "normal_l2"]})
    s.base["init"] = {"params": {"mode": "fan_out", "l2": 0.01}}
    params = {c.init.scheme: c.init.params for c in s.members()}
    assert params["normal"] == {"std": 0.05}  # mode and l2 belong to other schemes
    assert params["normal_l2"] == {"std": 0.05, "l2": 0.01}
    crossed = spec(tmp_path, {"init.params.std": [0.05], "init.scheme": ["he_normal"]})
    with pytest.raises(ConfigError, match="he_normal does not take 'std'"):
        crossed.members()  # an explicit axis the scheme cannot take is an error, not dropped


@pytest.mark.parametrize(("args", "message"), [
    (["--depths", "5,ten"], "--depths"),
    (["--grid", "train.lr"], "--grid"),
    (["--sweep", str(REPO / "configs" / "sweeps" / "l2.yaml"), "--depths", "3"], "drop --depths"),
])
def test_compare_bad_options_are_one_error_line(tmp_path, args, message):
    """Wherever pytest is started from: the sweep file is named by its absolute path."""
    result = CliRunner().invoke(app, ["compare", "schemes", *args, "--dry-run",
                                      "--set", f"output_dir={tmp_path}"],
                                catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.usefixtures("winit_data_dir")
def test_process_executor_gives_the_in_process_results(tmp_path):
    """Groups trained in helper processes (train_here=False: all of them) give the records a
    run in this process gives."""
    s = spec(tmp_path / "a", {"init.scheme": ["he_normal", "normal"], "model.depth": [3, 4]})
    local = executors.InProcessExecutor(executors.cached_splits())
    here = comparison.run_sweep(planning.plan(s), s, local)
    s2 = spec(tmp_path / "b", {"init.scheme": ["he_normal", "normal"], "model.depth": [3, 4]})
    helpers_only = processes.ProcessExecutor(jobs=2, train_here=False)
    there = comparison.run_sweep(planning.plan(s2), s2, helpers_only)
    assert set(there.status) == {"complete"} and len(there) == 4
    key = ["init_scheme", "model_depth"]
    a, b = here.set_index(key).sort_index(), there.set_index(key).sort_index()
    assert list(a.verdict) == list(b.verdict)
    assert ((a.log10_ratio_init - b.log10_ratio_init).abs() < 1e-3).all()
