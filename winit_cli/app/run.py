"""`winit run`: one experiment, end to end: load the data, train one member, write its run.

What the terminal shows while this happens is the observer's business (views/progress.py
implements one with Rich); the application only says what stage it is at.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from winit_cli.app import preflight
from winit_cli.app.experiment import RunOutcome, load_splits, run_group
from winit_cli.config import Config


class RunObserver(Protocol):
    def loading_data(self) -> AbstractContextManager: ...
    def download(self, name: str, done: int, total: int | None) -> None: ...
    def data_loaded(self, splits, config: Config) -> None: ...
    def training(self, config: Config) -> AbstractContextManager: ...
    def started(self, run_dirs: list[Path]) -> None: ...
    def progress(self, step: int, total: int, info: dict) -> None: ...


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


def run_experiment(config: Config, data_dir: Path | None = None,
                   observer: RunObserver | None = None) -> RunOutcome:
    obs = observer or Silent()
    preflight.check(config)  # before the data and the model take any memory
    with obs.loading_data():
        splits = load_splits(config, data_dir, on_download=obs.download)
    obs.data_loaded(splits, config)
    with obs.training(config):
        (outcome,) = run_group([config], splits, on_progress=obs.progress, on_start=obs.started)
    return outcome
