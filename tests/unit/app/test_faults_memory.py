"""A model too big for memory is refused before anything is allocated, with the estimate and
the machine's available memory (app/preflight.py). The estimate's parameter and optimizer parts
are checked against torch's own count; the limits are read from /proc/meminfo, the cgroup and
ulimit -v, each tested on files laid out as the kernel writes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_text import QUICKSTART, plain, printed_lines
from typer.testing import CliRunner

from winit_cli.app import preflight
from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
QUICK = str(QUICKSTART)


@pytest.mark.parametrize(("optimizer", "state_tensors"), [("sgd", 0), ("momentum", 1),
                                                          ("adam", 2)])
def test_parameters_and_optimizer_state_match_torch(optimizer, state_tensors):
    """Parameter bytes (weights + gradients) and optimizer state, for K = 3 members, against
    nn.Linear layers of the same shapes and the state torch's optimizer really keeps after a
    step (Adam: two moments; the estimate adds the probe's copy of the weights)."""
    config = load_config(None, ["model.depth=4", "model.widths=[32, 16, 8]",
                                f"train.optimizer={optimizer}"])
    layers = [torch.nn.Linear(a, b) for a, b in [(784, 32), (32, 16), (16, 8), (8, 10)]]
    params = [p for layer in layers for p in layer.parameters()]
    numel = sum(p.numel() for p in params)
    assert preflight.parameter_count(config) == numel
    est = preflight.estimate(config, members=3)
    assert est.parameters == 3 * 2 * 4 * numel  # weights + gradients, float32, K = 3
    opt = {"sgd": lambda: torch.optim.SGD(params, lr=0.1),
           "momentum": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9),
           "adam": lambda: torch.optim.Adam(params)}[optimizer]()
    sum(layer(torch.ones(1, layer.in_features)).sum() for layer in layers).backward()
    opt.step()
    state = sum(t.numel() for s in opt.state.values() for t in s.values()
                if torch.is_tensor(t) and t.dim() > 0)
    assert state == state_tensors * numel
    probe_copy = numel if optimizer == "adam" else 0
    assert est.optimizer == 3 * 4 * (state + probe_copy)


def test_refusal_names_the_estimate_and_the_limit():
    config = load_config(None, ["model.depth=4", "model.width=25000"])
    with pytest.raises(ConfigError) as e:
        preflight.check(config, free=(4 * 10**9, "cgroup memory limit"))
    message = str(e.value)
    assert "needs about" in message and "4.0 GB is available (cgroup memory limit)" in message
    assert "width 25000" in message and "\n" not in message
    preflight.check(load_config(None, ["model.depth=4", "model.width=256"]),
                    free=(4 * 10**9, "cgroup memory limit"))  # a small one passes


def test_jobs_multiply_the_largest_group():
    config = load_config(None, ["model.depth=4", "model.width=4000"])
    one = preflight.estimate(config, members=2).total
    free = (int(one * 1.5), "MemAvailable")
    preflight.check(config, members=2, concurrent=1, free=free)
    with pytest.raises(ConfigError, match="2 groups at once"):
        preflight.check(config, members=2, concurrent=2, free=free)


def test_meminfo_and_cgroup_files(tmp_path):
    """MemAvailable in kB; cgroup v2 (memory.max - memory.current) and v1 (limit_in_bytes -
    usage_in_bytes) for the process's own cgroup, or the mount's root in a container; an
    unlimited cgroup (max, or v1's huge number) is no limit."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683652 kB\nMemAvailable:    2000000 kB\n")
    assert preflight._meminfo(meminfo) == 2_000_000 * 1024
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/user.slice/job\n")
    (root / "user.slice" / "job").mkdir(parents=True)
    (root / "user.slice" / "job" / "memory.max").write_text("4294967296\n")
    (root / "user.slice" / "job" / "memory.current").write_text("1073741824\n")
    assert preflight._cgroup(root, proc) == 3 * 1024**3
    (root / "user.slice" / "job" / "memory.max").write_text("max\n")
    assert preflight._cgroup(root, proc) is None
    proc.write_text("4:memory:/docker/abc\n0::/\n")
    (root / "memory").mkdir()
    (root / "memory" / "memory.limit_in_bytes").write_text("2147483648\n")
    (root / "memory" / "memory.usage_in_bytes").write_text("1073741824\n")
    assert preflight._cgroup(root, proc) == 1024**3  # /docker/abc not mounted: the root's
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert preflight._cgroup(root, proc) is None


@pytest.mark.mnist
def test_width_200000_is_refused_before_anything_runs(winit_data_dir, tmp_path):
    """It tracebacked after loading the data (or was OOM-killed): now one line, no folder."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", QUICK, "--set", "model.depth=4",
                                      "--set", "model.width=200000",
                                      "--set", f"output_dir={out}"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    (line,) = printed_lines(result.stderr)
    assert "model too big" in line and "GB is available" in line
    assert not out.exists()


@pytest.mark.mnist
def test_compare_refuses_before_training(winit_data_dir, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", "schemes", "--schemes", "he_normal,normal",
                                      "--depths", "4", "--widths", "200000",
                                      "--set", f"output_dir={out}"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "2 members of depth 4, width 200000" in plain(result.stderr)
    assert not list(out.rglob("summary.json"))


@pytest.mark.integration
@pytest.mark.mnist
@pytest.mark.slow
def test_width_25000_under_a_4_gb_address_space_limit(mnist_path, tmp_path):
    """The issue's case: width 25000 under a 4 GB limit (here ulimit -v, set with prlimit) was
    killed or tracebacked; it is refused with the limit named. A small model under the same
    limit still runs, so the refusal is the estimate's, not the limit's."""
    env = {**os.environ, "WINIT_DATA_DIR": str(mnist_path), "COLUMNS": "300",
           "OMP_NUM_THREADS": "1"}
    limit = ["prlimit", f"--as={4 * 1024**3}"]
    big = subprocess.run([*limit, sys.executable, "-m", "winit_cli", "run", QUICK,
                          "--set", "model.width=25000", "--set", f"output_dir={tmp_path / 'a'}"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert big.returncode == 2, big.stderr
    assert "address-space limit (ulimit -v)" in big.stderr and "Traceback" not in big.stderr
    small = subprocess.run([*limit, sys.executable, "-m", "winit_cli", "run", QUICK,
                            "--set", "model.depth=3", "--set", "model.width=16",
                            "--set", "train.steps=3", "--set", "data.subset=500",
                            "--set", f"output_dir={tmp_path / 'b'}"],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert small.returncode == 0, small.stderr
