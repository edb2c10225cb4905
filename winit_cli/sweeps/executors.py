"""Sweep executors: how a sweep's groups of members get trained. One registry, one factory.

An executor's `run(groups, on_progress)` takes groups of configs (each may train as one stacked
model, see `plan.groups`) and yields, for every member, a `RunOutcome` (its run directory is
written under the sweep) or a `MemberFailure`. A failing group never takes other groups down.
`groups` is an iterable that claims each group as it is drawn (comparison._claimed): draw a
group only when it is about to start. On KeyboardInterrupt (or when closed early) an executor
stops what it started, lets it save its records as interrupted, and returns.

Adding an executor is one class registered with `@register_executor("name")` (its factory takes
`ExecutorOptions`) plus its test; `winit compare --executor NAME` then finds it.
"""

from __future__ import annotations

import difflib
import multiprocessing
import os
import queue
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

from winit_cli import interrupts
from winit_cli.config import Config
from winit_cli.errors import ConfigError
from winit_cli.records.index import remove_runs

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
    def run(self, groups: Iterable[list[Config]],
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

    def run(self, groups: Iterable[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]:
        for group in groups:
            yield from self._group(group, on_progress)

    def _group(self, group: list[Config], on_progress: ProgressFn | None) -> list[Any]:
        from winit_cli.app.experiment import run_group

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


class ProcessExecutor:
    """Trains groups in this process and in up to `jobs - 1` helper processes, each on an equal
    share of the usable CPUs (one thread each on 2 cores: oversubscribed OpenMP threads wait on
    each other). Helpers report their steps through a queue, so the parent's progress bar
    moves. A helper that dies (a crash, the OOM killer) fails only the members of its group.

    A helper is given a group only once it has started (imported torch: a second or more);
    until then this process trains groups itself, handing the next group to a helper between
    its own steps as soon as one is ready. So a sweep too short to repay starting a process
    runs as with --jobs 1, and a sweep of one group (one shape) starts none. Groups are
    drawn as they start, so each is claimed only then (one is drawn ahead, to know whether
    there is a second). `train_here=False` leaves all training to the helpers.

    Helpers run in their own session: a Ctrl-C at the terminal reaches the parent alone, which
    stops them with the signal it received; they save what they measured and the parent returns
    once they have (or kills them after STOP_SECONDS)."""

    POLL_SECONDS = 0.2
    STOP_SECONDS = 60.0

    def __init__(self, jobs: int, data_dir: Path | None = None, train_here: bool = True):
        self.jobs, self.data_dir, self.train_here = jobs, data_dir, train_here

    def run(self, groups: Iterable[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]:
        from winit_cli.training import threads as th

        todo = iter(groups)
        first, second = next(todo, None), next(todo, None)
        here = InProcessExecutor(cached_splits(self.data_dir))
        if second is None and self.train_here:  # one group: nothing to share
            yield from here.run([first] if first else [], on_progress)
            return
        helpers = self.jobs - 1 if self.train_here else self.jobs
        share = max(1, th.usable_cpus() // self.jobs)
        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        pool = ProcessPoolExecutor(helpers, mp_context=context, initializer=_start_worker,
                                   initargs=(share,))
        running: dict[Future, list[Config]] = {}
        th.set_cpu_share(share)
        try:
            with context.Manager() as manager:
                drawn = chain([g for g in (first, second) if g], todo)
                yield from self._share(drawn, pool, helpers, share, manager.Queue(), running,
                                       here, on_progress)
        finally:
            th.set_cpu_share(None)
            if running:  # interrupted (or closed early): stop the helpers, keep their records
                _stop(pool, running, self.STOP_SECONDS)
            # Helpers still starting are not waited for: they exit once started.
            pool.shutdown(wait=False, cancel_futures=True)

    def _share(self, todo: Iterator[list[Config]], pool: ProcessPoolExecutor, helpers: int,
               share: int, steps: Any, running: dict[Future, list[Config]],
               here: InProcessExecutor, on_progress: ProgressFn | None) -> Iterator[Any]:
        """Draw a group for each helper that is free, also between the steps of a group this
        process trains meanwhile."""
        from winit_cli.training import threads as th

        starting = {pool.submit(_ready) for _ in range(helpers)}
        state = {"started": 0, "next": next(todo, None)}

        def dispatch() -> None:
            ready = {f for f in starting if f.done()}
            starting.difference_update(ready)
            state["started"] += len(ready)
            busy = sum(not f.done() for f in running)
            for _ in range(state["started"] - busy):
                if state["next"] is None:
                    return
                running[pool.submit(_work, state["next"], self.data_dir, steps)] = state["next"]
                state["next"] = next(todo, None)

        def progress(step: int, total: int, info: dict) -> None:
            if on_progress is not None:
                on_progress(step, total, info)
            dispatch()

        while state["next"] is not None or running:
            dispatch()
            for future in [f for f in running if f.done()]:
                yield from _outcomes(future, running.pop(future))
            _drain(steps, on_progress)
            if state["next"] is not None and self.train_here:
                # Alone (no helper started), this process may use every CPU.
                th.set_cpu_share(share if running or starting else None)
                mine, state["next"] = state["next"], next(todo, None)
                yield from here.run([mine], progress)
            elif running or starting:
                wait(running.keys() | starting, timeout=self.POLL_SECONDS,
                     return_when=FIRST_COMPLETED)


def _outcomes(future: Future, group: list[Config]) -> list[Any]:
    try:
        return future.result()
    except Exception as e:  # the worker itself died
        why = f"worker failed: {type(e).__name__}: {e}"
        return [MemberFailure(config, why) for config in group]


def _stop(pool: ProcessPoolExecutor, pending: dict[Future, list[Config]],
          patience: float) -> None:
    """Send the workers the signal that stopped this process (Ctrl-C if none was recorded):
    each saves its records as interrupted. Then wait for them, killing any that hang."""
    signum = interrupts.received or signal.SIGINT
    workers = list(getattr(pool, "_processes", {}).values())  # no public handle on them
    for process in workers:
        with suppress(ProcessLookupError, TypeError):
            os.kill(process.pid, signum)
    with interrupts.deferred():  # a second Ctrl-C does not cut the workers' saving short
        wait(pending, timeout=patience)
    for process in workers:
        if process.is_alive() and not all(f.done() for f in pending):
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(threads: int) -> None:
    """A worker: its own session (the terminal's Ctrl-C goes to the parent alone), no reaction
    to signals while idle, and SIGTERM when its parent dies (Linux), so that no orphan goes on
    writing into a sweep another process may be taking over. `threads`: its share of the CPUs,
    which `train.threads: auto` keeps within."""
    import torch

    import winit_cli.app.experiment  # noqa: F401  (ready means ready to train)
    from winit_cli.training.threads import set_cpu_share

    os.setsid()
    for s in interrupts.STOPPING:
        signal.signal(s, signal.SIG_IGN)
    torch.set_num_threads(threads)
    set_cpu_share(threads)
    with suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def _ready() -> None:
    """Returns once the worker that runs it has started (`_start_worker` runs first)."""


def _drain(steps: Any, on_progress: ProgressFn | None) -> None:
    latest = None
    while True:
        try:
            latest = steps.get_nowait()
        except queue.Empty:
            break
        except (OSError, EOFError):  # the manager is gone (shutting down): no more progress
            return
    if latest is not None and on_progress is not None:
        on_progress(*latest)


_WORKER_SPLITS: dict = {}


def _work(group: list[Config], data_dir: Path | None, steps: Any) -> list[Any]:
    """One group in a worker; the stop signals interrupt it only while it trains."""
    if "splits_for" not in _WORKER_SPLITS:
        _WORKER_SPLITS["splits_for"] = cached_splits(data_dir)

    def report(step: int, total: int, info: dict) -> None:
        with suppress(OSError, EOFError):
            steps.put((step, total, {"loss": info.get("loss", float("nan"))}))

    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupts.raise_on(signal.SIGTERM, signal.SIGHUP)
    try:
        return list(InProcessExecutor(_WORKER_SPLITS["splits_for"]).run([group], report))
    finally:
        for s in interrupts.STOPPING:
            signal.signal(s, signal.SIG_IGN)


@register_executor("local")
def _local(options: ExecutorOptions) -> Executor:
    """This machine: in this process (--jobs 1, same-shape members batched) or in worker
    processes (--jobs N)."""
    if options.address is not None:
        raise ConfigError("--address is for --executor ray")
    if options.jobs > 1:
        return ProcessExecutor(options.jobs, options.data_dir)
    return InProcessExecutor(cached_splits(options.data_dir, options.on_download))
