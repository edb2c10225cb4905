"""Sweep executors: how a sweep's groups of members get trained. One registry, one factory.

An executor's `run(groups, on_progress)` takes groups of configs (each may train as one stacked
model, see `plan.groups`) and yields, for every member, a `RunOutcome` (its run directory is
written under the sweep) or a `MemberFailure`. A failing group never takes other groups down.
`groups` is an iterable that claims each group as it is drawn (comparison._claimed): draw a
group only when it is about to start. On KeyboardInterrupt (or when closed early) an executor
stops what it started, lets it save its records as interrupted, and returns.

Adding an executor is one class registered with `@EXECUTORS.register("name")` (its factory takes
`ExecutorOptions`) plus its test; `winit compare --executor NAME` then finds it. The local one
(this process, or helper processes for --jobs N) is in processes.py, the Ray one in
ray_executor.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from winit_cli.config import Config
from winit_cli.records.index import remove_runs
from winit_cli.registry import Registry
from winit_cli.training import ProgressFn


@dataclass
class MemberFailure:
    config: Config
    error: str


@dataclass
class ExecutorOptions:
    jobs: int = 1  # local worker processes; 1 trains in this process
    data_dir: Path | None = None
    on_download: Callable | None = None  # (file name, bytes done, total) while fetching data
    address: str | None = None  # a cluster's address, for executors that have one
    on_note: Callable[[str], None] | None = None  # one line on what an executor decided


class Executor(Protocol):
    def run(self, groups: Iterable[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]: ...


# Each entry is a factory: a class (or function) taking ExecutorOptions.
EXECUTORS: Registry[Callable[[ExecutorOptions], Executor]] = Registry("executor")


def make_executor(name: str, options: ExecutorOptions) -> Executor:
    return EXECUTORS.lookup(name, "--executor")(options)


def cached_splits(data_dir: Path | None = None, on_download=None) -> Callable[[Config], Any]:
    """splits_for(config): the data splits a config needs, loaded once per distinct need."""
    from winit_cli.runner.group import load_splits

    cache: dict = {}

    def splits_for(config: Config):
        d = config.data
        key = (d.dataset, d.val_size, d.subset, d.dir)
        if key not in cache:
            cache[key] = load_splits(config, data_dir, on_download=on_download)
        return cache[key]

    return splits_for


class InProcessExecutor:
    """Trains each group as one stacked model in this process. If a group fails, its members
    are retried one by one, so one failing member never takes the others down."""

    def __init__(self, splits_for: Callable[[Config], Any]):
        self.splits_for = splits_for

    def run(self, groups: Iterable[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]:
        for group in groups:
            yield from self._group(group, on_progress)

    def _group(self, group: list[Config], on_progress: ProgressFn | None) -> list[Any]:
        from winit_cli.runner.group import run_group

        started: list[Path] = []
        try:
            outcomes = run_group(group, self.splits_for(group[0]), on_progress=on_progress,
                                 on_start=started.extend)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            if len(group) == 1:
                return [MemberFailure(group[0], f"{type(e).__name__}: {e}")]
            # Each member gets one folder: the batched attempt's are removed before the retries.
            remove_runs(started)
            return [o for config in group for o in self._group([config], on_progress)]
        return [MemberFailure(c, o.unsaved) if o.unsaved else o
                for c, o in zip(group, outcomes, strict=True)]
