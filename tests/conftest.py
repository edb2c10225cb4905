"""Shared fixtures: the real MNIST files (never downloaded, never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def shared_mnist_dir() -> Path:
    """$WINIT_TEST_MNIST if set, else the shared folder beside the repository."""
    env = os.environ.get("WINIT_TEST_MNIST")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    path = shared_mnist_dir()
    missing = [n for n in MNIST_NAMES if not (path / n).is_file()]
    if missing:
        # A hard failure, not a skip: these tests are meaningless without the real data.
        pytest.fail(f"MNIST files {missing} not found in {path}; set WINIT_TEST_MNIST")
    return path


@pytest.fixture
def winit_data_dir(mnist_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point winit at the shared MNIST folder and at a private, empty cache."""
    monkeypatch.setenv("WINIT_DATA_DIR", str(mnist_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return mnist_path


@pytest.fixture(scope="session")
def mnist_raw(mnist_path: Path):
    """The four files decoded once per session (about a second), found through $WINIT_DATA_DIR."""
    from winit_cli.datasets.loader import load_mnist

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINIT_DATA_DIR", str(mnist_path))
        mp.setenv("XDG_CACHE_HOME", str(mnist_path / "no-such-cache"))  # never the user's cache
        raw = load_mnist(download=False)
    assert raw.source == mnist_path
    return raw
