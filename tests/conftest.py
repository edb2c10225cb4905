"""Shared fixtures: the real MNIST and Fashion-MNIST files (never downloaded, never copied into
the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The tests train tiny nets, for which one thread is as fast as several on an idle machine and
# far faster on a loaded one (threads spin waiting for each other): set before torch is imported,
# here and in every subprocess a test starts (a user's explicit setting is kept).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Both datasets publish the same four file names.
MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def shared_data_dir(folder: str, env_var: str, dataset: str) -> Path:
    """Where the tests read a dataset: `$env_var` if set; else where winit itself finds it
    (`datasets.find_dir`: $WINIT_DATA_DIR, then the user cache, which scripts/setup.sh links to
    the shared copy); else `shared/data/<folder>` beside the repository or beside one of its
    parents (a git worktree may sit a level or two below the main checkout)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser().resolve()
    from winit_cli.datasets import find_dir, get_dataset

    found = find_dir(get_dataset(dataset))
    if found is not None:
        return Path(found).resolve()
    repo = Path(__file__).resolve().parents[1]
    for parent in repo.parents:
        candidate = parent / "shared" / "data" / folder
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / folder


def shared_mnist_dir() -> Path:
    """$WINIT_TEST_MNIST if set, else MNIST found as winit finds it (see `shared_data_dir`)."""
    return shared_data_dir("mnist", "WINIT_TEST_MNIST", "mnist")


def _required(path: Path, what: str, env_var: str) -> Path:
    missing = [n for n in MNIST_NAMES if not (path / n).is_file()]
    if missing:
        # A hard failure, not a skip: these tests are meaningless without the real data.
        pytest.fail(f"{what} files {missing} not found in {path}; set WINIT_DATA_DIR (or "
                    f"{env_var}) to a folder holding them")
    return path


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The same as OMP_NUM_THREADS=1, should torch have been imported before this conftest."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    return _required(shared_mnist_dir(), "MNIST", "WINIT_TEST_MNIST")


@pytest.fixture(scope="session")
def fashion_path() -> Path:
    """The shared Fashion-MNIST copy ($WINIT_TEST_FASHION_MNIST overrides): recompressed files
    whose gzip bytes differ from upstream's, the payloads identical."""
    path = shared_data_dir("fashion-mnist", "WINIT_TEST_FASHION_MNIST", "fashion_mnist")
    return _required(path, "Fashion-MNIST", "WINIT_TEST_FASHION_MNIST")


@pytest.fixture
def winit_data_dir(mnist_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point winit at the shared MNIST folder and at a private, empty cache."""
    monkeypatch.setenv("WINIT_DATA_DIR", str(mnist_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return mnist_path


@pytest.fixture(scope="session")
def mnist_raw(mnist_path: Path):
    """The four files decoded once per session (about a second), found through $WINIT_DATA_DIR."""
    from winit_cli.datasets import load_dataset

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINIT_DATA_DIR", str(mnist_path))
        mp.setenv("XDG_CACHE_HOME", str(mnist_path / "no-such-cache"))  # never the user's cache
        raw = load_dataset("mnist", download=False)
    assert raw.source == mnist_path
    return raw


@pytest.fixture(scope="session")
def fashion_raw(fashion_path: Path):
    """Fashion-MNIST decoded once per session, found through --data-dir."""
    from winit_cli.datasets import load_dataset

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WINIT_DATA_DIR", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(fashion_path / "no-such-cache"))
        raw = load_dataset("fashion_mnist", fashion_path, download=False)
    assert raw.source == fashion_path
    return raw
