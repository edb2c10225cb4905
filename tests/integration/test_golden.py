"""A refactoring must not move a number: the golden run's files, byte for byte.

tests/golden/ holds a config and the layers.csv and metrics.csv that winit wrote for it; this
trains the same config and seed through the CLI and compares. Byte for byte on a CPU with the
same fingerprint as the one that wrote them (tests/golden/MACHINE); elsewhere the BLAS and
vector kernels sum in another order, and every number must lie within TOLERANCE of its
column's scale (measured between two machines with AVX-512: at most 1.1e-6).
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from winit_cli.cli import app

pytestmark = [pytest.mark.mnist, pytest.mark.slow]

GOLDEN = Path(__file__).parents[1] / "golden"
# How many intra-op threads: the number of threads splits the sums too, so the run uses this
# many whatever the machine has (the rest of the suite runs on one, see conftest.py).
THREADS = 2
TOLERANCE = 1e-5  # of the column's largest |value|: a real change moves numbers far more


def machine_fingerprint() -> dict[str, str]:
    """What decides the last bits: the architecture, torch's build and its vector kernels, and
    the CPU's model and instruction-set flags (BLAS libraries pick kernels by them)."""
    model, flags = "", ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    return {"machine": platform.machine(), "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability(), "cpu": model,
            "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16]}


@pytest.fixture(scope="module")
def golden_run(mnist_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("golden")
    env = {"WINIT_DATA_DIR": str(mnist_path), "XDG_CACHE_HOME": str(out / "cache"),
           "COLUMNS": "200"}
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        result = CliRunner().invoke(app, ["run", str(GOLDEN / "config.yaml"), "--set",
                                          f"output_dir={out / 'results'}"], env=env)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (run_dir,) = [p for p in (out / "results").iterdir() if p.is_dir()]
    return run_dir


@pytest.mark.parametrize("name", ["layers.csv", "metrics.csv"])
def test_golden_files_unchanged(golden_run: Path, name: str) -> None:
    expected, actual = (GOLDEN / name).read_text(), (golden_run / name).read_text()
    if machine_fingerprint() == json.loads((GOLDEN / "MACHINE").read_text()):
        assert actual == expected, f"{name} differs from the golden file"
        return
    problems = beyond_tolerance(pd.read_csv(golden_run / name), pd.read_csv(GOLDEN / name))
    assert not problems, f"{name}: {problems}"


def beyond_tolerance(a: pd.DataFrame, e: pd.DataFrame) -> list[str]:
    """What differs between a and the golden e by more than TOLERANCE of a column's scale."""
    if list(a.columns) != list(e.columns) or a.shape != e.shape:
        return [f"columns or shape differ: {list(a.columns)} {a.shape} vs {e.shape}"]
    problems = []
    for column in e.columns:
        x, y = a[column], e[column]
        if not pd.api.types.is_numeric_dtype(y):
            problems += [] if x.equals(y) else [f"{column} differs"]
            continue
        x, y = x.to_numpy(float), y.to_numpy(float)
        if (np.isnan(x) != np.isnan(y)).any():
            problems.append(f"{column}: empty cells differ")
        elif np.isfinite(y).any():
            worst, scale = np.nanmax(np.abs(x - y)), np.nanmax(np.abs(y))
            if worst > TOLERANCE * scale:
                problems.append(f"{column}: off by {worst / scale:.2e} of its scale")
    return problems


def test_the_tolerance_catches_a_moved_number() -> None:
    """Guards the guard: one number moved by 1e-4 of its column's scale is caught, and a
    difference of 1e-7 of it (another summation order) is not."""
    golden = pd.read_csv(GOLDEN / "layers.csv")
    scale = golden.act_grad_norm.abs().max()
    for moved_by, caught in ((1e-4, True), (1e-7, False)):
        moved = golden.copy()
        moved.loc[3, "act_grad_norm"] += moved_by * scale
        assert bool(beyond_tolerance(moved, golden)) is caught
