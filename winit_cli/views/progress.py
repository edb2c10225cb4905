"""Progress on the terminal while the application works: Rich bars for data downloads,
training steps and sweep members. These implement the observers app/run.py and app/compare.py
call; they draw only what they are told."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from winit_cli.views import words


def fmt_loss(loss: float) -> str:
    """4 decimals, 1.1e+22 when it runs away (not 22 digits), red when non-finite."""
    return words.loss(loss) if math.isfinite(loss) else "[red]non-finite[/]"


def download_progress(console: Console):
    """A callback for data downloads, drawing one bar per file."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        console=console, transient=True)
    tasks: dict[str, int] = {}

    def update(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            progress.start()
            tasks[name] = progress.add_task(f"downloading {name}", total=total)
        progress.update(tasks[name], completed=done)
        if total is not None and done >= total:
            progress.stop()

    return update


class RunProgress:
    """`winit run`: a spinner while the data loads, then a bar of training steps with the loss."""

    def __init__(self, console: Console):
        self.console = console
        self.download = download_progress(console)
        self._bar: Progress | None = None
        self._task = None

    @contextmanager
    def loading_data(self):
        with self.console.status("loading data"):
            yield

    def data_loaded(self, splits, config) -> None:
        source = f" from {splits.source}" if splits.source else ""
        self.console.print(
            f"[dim]{escape(config.data.dataset)}{escape(source)}: {len(splits.x_train):,} train"
            f" / {len(splits.x_val):,} val / {len(splits.x_test):,} test examples; depth "
            f"{config.model.depth}, {config.model.activation}, init {config.init.scheme}[/]",
            highlight=False)

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)

    @contextmanager
    def training(self, config):
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=self.console, transient=False)
        with self._bar:
            self._task = self._bar.add_task(config.name, total=None, loss="-")
            yield

    def started(self, run_dirs: list[Path]) -> None:
        self.console.print(f"[dim]writing {run_dirs[0]}[/]")

    def progress(self, step: int, total: int, info: dict) -> None:
        self._bar.update(self._task, completed=step, total=total, loss=fmt_loss(info["loss"]))


@contextmanager
def sweep_progress(console: Console, members: int):
    """Bars for a sweep: members done, and steps of the group training now. Yields
    (on_progress, advance) callbacks."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                  console=console) as bar:
        overall = bar.add_task("runs", total=members)
        current = bar.add_task("steps", total=None)

        def on_progress(step: int, total: int, info: dict) -> None:
            bar.update(current, completed=step, total=total)

        yield on_progress, lambda: bar.advance(overall)
