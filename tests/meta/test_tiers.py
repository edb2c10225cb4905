"""The tier markers cannot lie (tests/conftest.py): a unit test that starts a process, uses the
network or opens a dataset file fails, even where the code under test swallows the error, and
a test that asks for MNIST without the `mnist` marker stops the collection. Shown on a small
tree of tests with this conftest, run by pytest in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs pytest in a subprocess

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent

LIARS = '''
import multiprocessing
import os
import socket
import subprocess
from pathlib import Path

import pytest


def test_starts_a_process():
    subprocess.run(["true"])


def test_swallows_the_guards_error():
    try:
        subprocess.run(["true"])
    except Exception:
        pass


def test_opens_a_dataset_file():
    Path(os.environ["WINIT_TEST_MNIST"], "train-images-idx3-ubyte.gz").read_bytes()


def test_uses_the_network():
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", 1))
        except OSError:
            pass


def test_starts_a_multiprocessing_worker():
    worker = multiprocessing.get_context("spawn").Process(target=print)
    worker.start()
    worker.join()


def test_writes_its_tmp_path(tmp_path):
    (tmp_path / "x").write_text("y")


@pytest.mark.integration
def test_marked_integration_may_start_a_process():
    subprocess.run(["true"])
'''


def pytest_in(root: Path, data: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WINIT_TEST_MNIST": str(data),
           "WINIT_DATA_DIR": str(data)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "unit or integration", "tests"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "tests" / "unit" / "demo").mkdir(parents=True)
    shutil.copy(TESTS / "conftest.py", tmp_path / "tests")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"not really")
    return tmp_path, data


def test_a_unit_test_that_needs_more_fails(tree):
    root, data = tree
    (root / "tests" / "unit" / "demo" / "test_liars.py").write_text(LIARS)
    done = pytest_in(root, data)
    failed = {line.split("::")[1].split(" ")[0] for line in done.stdout.splitlines()
              if line.startswith("FAILED")}
    assert failed == {"test_starts_a_process", "test_swallows_the_guards_error",
                      "test_opens_a_dataset_file", "test_uses_the_network",
                      "test_starts_a_multiprocessing_worker"}, done.stdout[-3000:]
    assert "5 failed, 2 passed" in done.stdout
    for why in ("starts a process (subprocess.Popen", "opens a dataset file",
                "uses the network (socket.connect",
                "starts a process (multiprocessing.Process.start"):
        assert f"a unit test {why}" in done.stdout


def test_asking_for_mnist_without_the_marker_stops_the_collection(tree):
    root, data = tree
    (root / "tests" / "unit" / "demo" / "test_mnist.py").write_text(
        "def test_reads(mnist_path):\n    pass\n")
    done = pytest_in(root, data)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "test_reads: uses ['mnist_path'] but is not marked mnist" in done.stderr
