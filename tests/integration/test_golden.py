"""A refactoring must not move a number: the golden run's files, byte for byte.

tests/golden/ holds a config and the layers.csv and metrics.csv that winit wrote for it before
the package was reorganised; this trains the same config and seed through the CLI and compares.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from winit_cli.cli import app

pytestmark = [pytest.mark.mnist, pytest.mark.slow]

GOLDEN = Path(__file__).parents[1] / "golden"
# Where the golden files were written: on other SIMD kernels float sums run in another order.
CAPABILITY = ("x86_64", "AVX512", "2.13.0+cpu")
# ... and with how many intra-op threads: the number of threads splits the sums too, so the run
# uses this many whatever the machine has (the rest of the suite runs on one, see conftest.py).
THREADS = 2


def _here() -> tuple[str, str, str]:
    return platform.machine(), torch.backends.cpu.get_cpu_capability(), torch.__version__


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
    if _here() == CAPABILITY:
        assert actual == expected, f"{name} differs from the golden file"
        return
    a, e = pd.read_csv(golden_run / name), pd.read_csv(GOLDEN / name)
    assert list(a.columns) == list(e.columns)
    pd.testing.assert_frame_equal(a, e, check_exact=False, rtol=1e-4, atol=0)
