"""The Ray executor on a real cluster: a head and a worker node on loopback in a namespace made
for the test (tests/raycluster.py), a driver running `winit compare schemes --executor ray`.

The nodes are given no MNIST (WINIT_DATA_DIR points nowhere): only the driver reads it, so a
sweep that completes proves the splits travelled through Ray's object store.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from raycluster import RayCluster
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.errors import ConfigError
from winit_cli.training.threads import set_cpu_share

SWEEP = ["--schemes", "he_normal,normal", "--depths", "3,4", "--set", "model.width=32",
         "--set", "data.subset=2000", "--set", "data.val_size=500", "--set", "record.every=5"]
STEPS = 100  # per member: enough to separate the schemes, little enough to keep the file short
# what two runs of one sweep may not share: ids, folders (output_dir is part of the sweep's
# name) and timings
VARIES = ["run_id", "path", "sweep", "train_seconds", "samples_per_second"]


def compare_args(out: Path, steps: int, *extra: str) -> list[str]:
    return ["compare", "schemes", *SWEEP, "--set", f"train.steps={steps}",
            "--set", f"output_dir={out}", *extra]


def sweep_dir(out: Path) -> Path:
    (found,) = (out / "sweeps").iterdir()
    return found


@pytest.fixture(autouse=True)
def no_ray_of_the_machine(monkeypatch):
    """The tests that run in this process see no RAY_ADDRESS or auth setting of the user's
    either (the cluster's processes get their own environment: raycluster.isolated_env)."""
    for name in [k for k in os.environ if k.startswith("RAY_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> RayCluster:
    nowhere = tmp_path_factory.mktemp("nodes")
    env = {"WINIT_DATA_DIR": str(nowhere / "no-mnist"), "XDG_CACHE_HOME": str(nowhere)}
    with RayCluster(sys.executable, workers=1, cpus=1, env=env) as started:
        yield started


def drive(cluster: RayCluster, mnist: Path, out: Path, steps: int, **popen):
    """The driver, inside the cluster's namespace; it alone is shown MNIST."""
    command = [sys.executable, "-m", "winit_cli", *compare_args(out, steps, "--executor", "ray")]
    env = {"WINIT_DATA_DIR": str(mnist), "PYTHONUNBUFFERED": "1"}
    if popen:
        return cluster.popen(command, env=env, **popen)
    return cluster.run(command, env=env, timeout=300)


@pytest.fixture(scope="module")
def reference(mnist_path, tmp_path_factory) -> Path:
    """The same sweep on the in-process executor, in this process."""
    out = tmp_path_factory.mktemp("in-process")
    # one thread, as each Ray task has (train.threads: auto would follow the machine's load,
    # and the last bits of a run's numbers follow its thread count)
    set_cpu_share(1)
    try:
        result = CliRunner().invoke(app, compare_args(out, STEPS), env={
            "WINIT_DATA_DIR": str(mnist_path), "XDG_CACHE_HOME": str(out / "cache")})
    finally:
        set_cpu_share(None)
    assert result.exit_code == 0, result.output
    return sweep_dir(out)


def assert_same_records(ray_sweep: Path, reference: Path) -> None:
    """comparison.csv equal but for run ids, paths and timings; every member's layers.csv and
    metrics.csv equal to the byte."""
    ours = pd.read_csv(ray_sweep / "comparison.csv")
    theirs = pd.read_csv(reference / "comparison.csv")
    pd.testing.assert_frame_equal(ours.drop(columns=VARIES), theirs.drop(columns=VARIES))
    assert set(ours.status) == {"complete"}
    for mine, ref in zip(ours.path, theirs.path, strict=True):
        for name in ("layers.csv", "metrics.csv"):
            assert (ray_sweep / mine / name).read_bytes() == (reference / ref / name).read_bytes()


def run_dirs(sweep: Path) -> dict[str, float]:
    return {p.name: (p / "summary.json").stat().st_mtime for p in (sweep / "runs").iterdir()
            if p.is_dir()}


@pytest.mark.cluster
@pytest.mark.mnist
@pytest.mark.slow
def test_ray_sweep_gives_the_in_process_records_and_resumes(cluster, reference, mnist_path,
                                                            tmp_path):
    """Seeds fix everything, so a sweep on two Ray nodes writes what the in-process executor
    writes; the folder is an ordinary sweep folder (config, index); the progress bar moves;
    a rerun trains nothing."""
    done = drive(cluster, mnist_path, tmp_path / "ray", STEPS)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = sweep_dir(tmp_path / "ray")
    assert_same_records(sweep, reference)
    # the tasks' steps reached the driver's progress bar
    assert re.search(rf"^steps .* {STEPS}/{STEPS} ", done.stdout, re.MULTILINE), done.stdout

    index = pd.read_csv(sweep / "runs" / "runs.csv")
    assert len(index) == 4 and all(Path(p).parent == sweep / "runs" for p in index.path)
    for run in (sweep / "runs" / name for name in run_dirs(sweep)):
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert Path(config["output_dir"]) == sweep / "runs"  # not the task's temporary folder
        environment = json.loads((run / "summary.json").read_text())["environment"]
        assert environment["threads"] == 1  # threads per task = the task's CPUs
        assert "--executor ray" in environment["command"]  # the driver's, not Ray's worker's

    before = run_dirs(sweep)
    again = drive(cluster, mnist_path, tmp_path / "ray", STEPS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 already done, 0 to run" in again.stdout
    assert run_dirs(sweep) == before


@pytest.mark.cluster
@pytest.mark.mnist
@pytest.mark.slow
def test_ctrl_c_cancels_the_tasks_and_keeps_finished_members(cluster, mnist_path, tmp_path):
    """SIGINT while a long member trains on the cluster: exit 130, the finished member's
    records stay, the long one is pending, and no task keeps running on any node."""
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "winit_cli", "compare", "schemes", "--schemes", "he_normal",
               "--grid", "train.steps=4,20000", "--set", "model.depth=3",
               "--set", "model.width=16", "--set", "data.subset=500",
               "--set", "data.val_size=100", "--set", "record.every=50",
               "--set", f"output_dir={out}", "--executor", "ray"]
    driver = cluster.popen(command, env={"WINIT_DATA_DIR": str(mnist_path)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None:
        if "complete" in statuses(out) and training(cluster):  # the short one is written
            break
        time.sleep(0.1)
    assert driver.poll() is None, f"the driver ended first: {driver.stderr.read()[-2000:]}"
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) == 130
    assert statuses(out) == ["complete", "pending"]
    deadline = time.time() + 60
    while training(cluster) and time.time() < deadline:
        time.sleep(0.2)
    assert not training(cluster), "a cancelled task is still training"


def statuses(out: Path) -> list[str]:
    found = list(out.glob("sweeps/*/comparison.csv"))
    return sorted(pd.read_csv(found[0]).status) if found else []


def training(cluster: RayCluster) -> list[int]:
    return [pid for pid, (_, cmd) in cluster.processes().items()
            if cmd.startswith("ray::train_group")]


PHASE = ["phase", "--sigma-w2", "1,2", "--depths", "2,3", "--width", "16", "--steps", "20",
         "--subset", "1000", "--set", "data.val_size=200"]


@pytest.mark.cluster
@pytest.mark.mnist
@pytest.mark.slow
def test_phase_on_ray_gives_the_in_process_grid(cluster, mnist_path, tmp_path):
    """`winit phase --executor ray` trains its cells on the cluster: the phase.csv of the
    in-process executor (on one thread, as a task trains), one run per cell."""
    set_cpu_share(1)
    try:
        local = CliRunner().invoke(app, [*PHASE, "--set", f"output_dir={tmp_path / 'local'}"],
                                   env={"WINIT_DATA_DIR": str(mnist_path),
                                        "XDG_CACHE_HOME": str(tmp_path / "cache")})
    finally:
        set_cpu_share(None)
    assert local.exit_code == 0, local.output
    done = cluster.run([sys.executable, "-m", "winit_cli", *PHASE, "--executor", "ray",
                        "--set", f"output_dir={tmp_path / 'ray'}"],
                       env={"WINIT_DATA_DIR": str(mnist_path)}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = pd.read_csv(sweep_dir(tmp_path / "ray") / "phase.csv")
    theirs = pd.read_csv(sweep_dir(tmp_path / "local") / "phase.csv")
    pd.testing.assert_frame_equal(ours, theirs)
    assert len(ours) == 4 and set(ours.runs) == {1}


@pytest.mark.cluster
@pytest.mark.mnist
@pytest.mark.slow
def test_a_worker_node_killed_mid_sweep_loses_no_member(cluster, reference, mnist_path,
                                                        tmp_path):
    """SIGKILL the worker node (raylet and workers) while it runs a group: Ray retries the
    group on the head, every member completes once, with the in-process numbers.
    The task is caught within its first second (each driver gets fresh Ray workers, which
    import torch inside the task) and frozen at once, so it cannot finish before its node dies.
    Last in this file: the cluster keeps only its head afterwards."""
    driver = drive(cluster, mnist_path, tmp_path / "ray", STEPS,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    victims: list[int] = []
    while time.time() < deadline and driver.poll() is None and not victims:
        victims = cluster.tasks_on_worker("train_group", 0)
        time.sleep(0.02)
    assert victims, "no group ever ran on the worker node"
    for pid in victims:
        signal_if_alive(pid, signal.SIGSTOP)
    killed = cluster.kill_worker(0)
    assert set(victims) <= set(killed)
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]
    sweep = sweep_dir(tmp_path / "ray")
    assert len(run_dirs(sweep)) == 4  # the killed attempt left nothing behind
    assert_same_records(sweep, reference)


def signal_if_alive(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, monkeypatch):
    """No Ray module: `--executor ray` is one red line naming the extra, exit 2, and the
    library raises the same ConfigError."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = CliRunner().invoke(app, compare_args(tmp_path, STEPS, "--executor", "ray"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --executor ray needs Ray, which is not installed: pip install 'winit[ray]'"]
    from winit_cli.sweeps.ray_executor import RayExecutor

    with pytest.raises(ConfigError, match=r"winit\[ray\]"):
        next(RayExecutor(lambda c: None).run([[]]))


@pytest.mark.parametrize(("extra", "message"), [
    (["--executor", "ray", "--jobs", "2"], "--jobs is for the local executor"),
    (["--address", "127.0.0.1:1"], "--address is for --executor ray"),
    # nothing listens on port 1: refused at once, where Ray itself would wait for minutes
    (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at"),
    (["--executor", "ray", "--address", "ray://127.0.0.1:1"], "cannot reach the Ray cluster"),
    (["--executor", "ray", "--address", "head"], "expected HOST:PORT"),
])
def test_executor_options_that_do_not_fit_are_one_error_line(tmp_path, extra, message):
    """Options that cannot work fail at once, in one line, before anything trains."""
    result = CliRunner().invoke(app, compare_args(tmp_path, STEPS, *extra))
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
