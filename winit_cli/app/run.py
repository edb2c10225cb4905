"""`winit run`: one experiment, end to end: load the data, train one member, write its run.

What the terminal shows while this happens is the observer's business (views/progress.py
implements one with Rich); the application only says what stage it is at.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from winit_cli.app import preflight
from winit_cli.config import Config
from winit_cli.runner.group import RunOutcome, load_splits, run_group


class RunObserver(Protocol):
    def loading_data(self) -> AbstractContextManager: ...
    def download(self, name: str, done: int, total: int | None) -> None: ...
    def data_loaded(self, splits, config: Config) -> None: ...
    def training(self, config: Config) -> AbstractContextManager: ...
    def started(self, run_dirs: list[Path]) -> None: ...
    def progress(self, step: int, total: int, info: dict) -> None: ...
    def warn(self, text: str) -> None: ...


class Silent:
    """An observer that shows nothing (for library use and tests)."""

    def loading_data(self):
        return nullcontext()

    def download(self, name, done, total):
        pass

    def data_loaded(self, splits, config):
        pass

    def training(self, config):
        return nullcontext()

    def started(self, run_dirs):
        pass

    def progress(self, step, total, info):
        pass

    def warn(self, text):
        pass


def data_source_warning(source: Path | None, data_dir: Path | None, config: Config) -> str | None:
    """A warning when $WINIT_DATA_DIR is set but the data came from somewhere else: the lookup
    falls through a folder that lacks the files (to the cache, say), and a user who pointed
    winit at their own copy should not believe they trained on it."""
    env = os.environ.get("WINIT_DATA_DIR", "")
    if not env or source is None or data_dir is not None or config.data.dir is not None:
        return None
    wanted, used = Path(env).expanduser().resolve(), Path(source).resolve()
    if used == wanted or wanted in used.parents:
        return None
    return (f"$WINIT_DATA_DIR is {env}, which does not hold the {config.data.dataset} files; "
            f"they were read from {source}")


def run_experiment(config: Config, data_dir: Path | None = None,
                   observer: RunObserver | None = None) -> RunOutcome:
    obs = observer or Silent()
    preflight.check(config)  # before the data and the model take any memory
    with obs.loading_data():
        splits = load_splits(config, data_dir, on_download=obs.download)
    obs.data_loaded(splits, config)
    warning = data_source_warning(splits.source, data_dir, config)
    if warning:
        obs.warn(warning)
    with obs.training(config):
        (outcome,) = run_group([config], splits, on_progress=obs.progress, on_start=obs.started)
    return outcome
