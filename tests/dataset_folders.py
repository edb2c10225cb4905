"""Dataset folders for the datasets' tests: the four files linked from a real copy, some left
out, and an environment that never reaches the user's cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MNIST_NAMES


def seed_folder(dest: Path, source: Path, skip: tuple[str, ...] = ()) -> Path:
    """Symlink the four files from `source` into `dest`, except those in `skip`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in MNIST_NAMES:
        if name not in skip:
            (dest / name).symlink_to(source / name)
    return dest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the real user cache, whatever the environment says (autouse in every
    test module that imports it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("WINIT_DATA_DIR", raising=False)
