"""Sweep executors: how a sweep's groups of members get trained. One registry, one factory.

An executor's `run(groups, on_progress)` takes groups of configs (each may train as one stacked
model, see `plan.groups`) and yields, for every member, a `RunOutcome` (its run directory is
written under the sweep) or a `MemberFailure`. A failing group never takes other groups down.

Adding an executor is one class registered with `@register_executor("name")` (its factory takes
`ExecutorOptions`) plus its test; `winit compare --executor NAME` then finds it.
"""

from __future__ import annotations

import difflib
import multiprocessing
import os
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from winit_cli.config import Config
from winit_cli.errors import ConfigError

# (step, total steps, info) from whichever group is training
ProgressFn = Callable[[int, int, dict], None]


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


class Executor(Protocol):
    def run(self, groups: list[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]: ...


EXECUTORS: dict[str, Callable[[ExecutorOptions], Executor]] = {}


def register_executor(name: str):
    def add(factory: Callable[[ExecutorOptions], Executor]):
        EXECUTORS[name] = factory
        return factory

    return add


def make_executor(name: str, options: ExecutorOptions) -> Executor:
    if name not in EXECUTORS:
        close = difflib.get_close_matches(name, EXECUTORS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"--executor: unknown executor {name!r}; {hint}"
                          f"known: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name](options)


def cached_splits(data_dir: Path | None = None, on_download=None) -> Callable[[Config], Any]:
    """splits_for(config): the data splits a config needs, loaded once per distinct need."""
    from winit_cli.app.experiment import load_splits

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

    def run(self, groups: list[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]:
        from winit_cli.app.experiment import run_group

        for group in groups:
            try:
                yield from run_group(group, self.splits_for(group[0]), on_progress=on_progress)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                if len(group) == 1:
                    yield MemberFailure(group[0], f"{type(e).__name__}: {e}")
                    continue
                yield from self.run([[c] for c in group], on_progress)


class ProcessExecutor:
    """Runs groups in `jobs` local worker processes, each training its groups batched (as
    InProcessExecutor does) on cores // jobs threads. Workers report their steps through a
    queue, so the parent's progress bar moves. A worker that dies (a crash, the OOM killer)
    fails only the members of its group."""

    POLL_SECONDS = 0.2

    def __init__(self, jobs: int, data_dir: Path | None = None):
        self.jobs, self.data_dir = jobs, data_dir

    def run(self, groups: list[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]:
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with context.Manager() as manager, ProcessPoolExecutor(
                self.jobs, mp_context=context) as pool:
            steps = manager.Queue()
            pending = {pool.submit(_work, group, self.data_dir, threads, steps): group
                       for group in groups}
            try:
                while pending:
                    done, _ = wait(pending, timeout=self.POLL_SECONDS, return_when=FIRST_COMPLETED)
                    _drain(steps, on_progress)
                    for future in done:
                        group = pending.pop(future)
                        try:
                            yield from future.result()
                        except Exception as e:  # the worker itself died
                            why = f"worker failed: {type(e).__name__}: {e}"
                            yield from (MemberFailure(config, why) for config in group)
            except KeyboardInterrupt:
                pool.shutdown(cancel_futures=True)
                raise


def _drain(steps: Any, on_progress: ProgressFn | None) -> None:
    latest = None
    while True:
        try:
            latest = steps.get_nowait()
        except queue.Empty:
            break
    if latest is not None and on_progress is not None:
        on_progress(*latest)


_WORKER_SPLITS: dict = {}


def _work(group: list[Config], data_dir: Path | None, threads: int, steps: Any) -> list[Any]:
    import torch

    torch.set_num_threads(threads)
    if "splits_for" not in _WORKER_SPLITS:
        _WORKER_SPLITS["splits_for"] = cached_splits(data_dir)

    def report(step: int, total: int, info: dict) -> None:
        steps.put((step, total, {"loss": info.get("loss", float("nan"))}))

    return list(InProcessExecutor(_WORKER_SPLITS["splits_for"]).run([group], report))


@register_executor("local")
def _local(options: ExecutorOptions) -> Executor:
    """This machine: in this process (--jobs 1, same-shape members batched) or in worker
    processes (--jobs N)."""
    if options.address is not None:
        raise ConfigError("--address is for --executor ray")
    if options.jobs > 1:
        return ProcessExecutor(options.jobs, options.data_dir)
    return InProcessExecutor(cached_splits(options.data_dir, options.on_download))


@register_executor("ray")
def _ray(options: ExecutorOptions) -> Executor:
    """A Ray cluster (--address, else $RAY_ADDRESS, else Ray on this machine): one task per
    group, records sent back to this process (ray_executor.py; needs the ray extra)."""
    from winit_cli.sweeps.ray_executor import make_ray_executor

    return make_ray_executor(options)
