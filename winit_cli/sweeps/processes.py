"""The local executor: --jobs 1 trains in this process (InProcessExecutor); --jobs N also in
helper processes (ProcessExecutor), started only when the work left repays it (pacing.py).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import suppress
from itertools import chain
from pathlib import Path
from typing import Any

from winit_cli import interrupts
from winit_cli.config import Config
from winit_cli.errors import ConfigError
from winit_cli.sweeps.executors import (
    EXECUTORS,
    Executor,
    ExecutorOptions,
    InProcessExecutor,
    MemberFailure,
    cached_splits,
)
from winit_cli.training import ProgressFn


class ProcessExecutor:
    """Trains groups in this process and, where the work left repays starting them, in up to
    `jobs - 1` helper processes, each on an equal share of the usable CPUs (one thread each on 2
    cores: oversubscribed OpenMP threads wait on each other). Helpers report their steps through
    a queue, so the parent's progress bar moves. A helper that dies (a crash, the OOM killer)
    fails only the members of its group.

    This process starts the first group at once on every thread, as --jobs 1 does. Between its
    steps it times them (pacing.StepTimer), predicts the seconds of the groups not started yet,
    and starts helpers only if they exceed REPAY_SECONDS; else it trains on alone, and checks
    again with the next group. A helper is given a group only once it has started; until then
    this process goes on training groups itself, handing the next one to a helper between its
    own steps as soon as one is ready. A sweep of one group (one shape) starts none. Groups are
    drawn as they start, so each is claimed only then (one is drawn ahead, to know whether there
    is a second). `train_here=False` leaves all training to helpers, started at once.

    Helpers run in their own session: a Ctrl-C at the terminal reaches the parent alone, which
    stops them with the signal it received; they save what they measured and the parent returns
    once they have (or kills them after STOP_SECONDS)."""

    POLL_SECONDS = 0.2
    STOP_SECONDS = 60.0
    # A helper starts in about 2 s of one core (spawn, import torch and winit, load MNIST, on
    # the 2-core development machine), and meanwhile this process trains on its share. Beside
    # a helper, each process on one thread of 2 runs at ~0.7 of one process's speed on both
    # (training/threads.py), so together they do ~1.4x: a helper saves ~0.3 of the work it
    # shares. Repaying a 2 s start takes ~7 s of later work; 10 s leaves a margin for groups
    # that do not split evenly (the last one may run alone on one thread).
    REPAY_SECONDS = 10.0

    def __init__(self, jobs: int, data_dir: Path | None = None, train_here: bool = True,
                 on_note: Callable[[str], None] | None = None):
        self.jobs, self.data_dir, self.train_here = jobs, data_dir, train_here
        self.on_note = on_note or (lambda text: None)

    def run(self, groups: Iterable[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]:
        from winit_cli.sweeps.pacing import lookahead
        from winit_cli.training import threads as th

        todo, ahead = lookahead(groups)
        first, second = next(todo, None), next(todo, None)
        here = InProcessExecutor(cached_splits(self.data_dir))
        if second is None and self.train_here:  # one group: nothing to share
            yield from here.run([first] if first else [], on_progress)
            return
        helpers = _Helpers(self.jobs - 1 if self.train_here else self.jobs,
                           max(1, th.usable_cpus() // self.jobs), self.data_dir)
        try:
            drawn = chain([g for g in (first, second) if g], todo)
            yield from self._share(drawn, ahead, helpers, here, on_progress)
        finally:
            th.set_cpu_share(None)
            helpers.close(self.STOP_SECONDS)

    def _share(self, todo: Iterator[list[Config]], ahead: Callable[[], list[list[Config]]],
               helpers: _Helpers, here: InProcessExecutor,
               on_progress: ProgressFn | None) -> Iterator[Any]:
        """Train groups here, and hand one to each helper that is free, also between the steps
        of a group this process trains meanwhile."""
        from winit_cli.sweeps.pacing import StepTimer

        state: dict[str, Any] = {"next": next(todo, None), "timer": None, "told": False}
        if not self.train_here:
            helpers.start()

        def dispatch() -> None:
            for _ in range(helpers.free()):
                if state["next"] is None:
                    break
                helpers.give(state["next"])
                state["next"] = next(todo, None)
            helpers.set_share()

        def progress(step: int, total: int, info: dict) -> None:
            if on_progress is not None:
                on_progress(step, total, info)
            timer = state["timer"]
            seconds_per_step = timer.observe(step, total) if timer else None
            if seconds_per_step is not None:
                self._decide(seconds_per_step, state["current"], state, ahead, helpers)
            dispatch()

        while state["next"] is not None or helpers.running:
            dispatch()
            yield from helpers.finished()
            helpers.drain(on_progress)
            if state["next"] is not None and self.train_here:
                mine, state["next"] = state["next"], next(todo, None)
                state["current"] = mine
                state["timer"] = None if helpers.started else StepTimer()
                yield from here.run([mine], progress)
            elif helpers.busy():
                helpers.wait(self.POLL_SECONDS)
                interrupts.check()

    def _decide(self, seconds_per_step: float, current: list[Config], state: dict,
                ahead: Callable[[], list[list[Config]]], helpers: _Helpers) -> None:
        """Start the helpers if the groups not started yet are predicted to repay it; say what
        was decided (a decision against them once a sweep)."""
        from winit_cli.sweeps.pacing import predict_later

        later = ([state["next"]] if state["next"] is not None else []) + ahead()
        if not later:  # this is the last group: nothing a helper could take
            return
        seconds = predict_later(seconds_per_step, current, later)
        took = f"~{seconds:.0f} s" if seconds >= 1 else "under a second"
        left = f"the {len(later)} group(s) left would train here in {took}"
        if seconds > self.REPAY_SECONDS:
            helpers.start()
            self.on_note(f"--jobs {self.jobs}: starting {helpers.count} helper process(es): "
                         f"{left}")
        elif not state["told"]:
            state["told"] = True
            self.on_note(f"--jobs {self.jobs}: no helper process yet: {left}, too little to "
                         "repay starting one")


class _Helpers:
    """A sweep's helper processes, started only when `start` is called: the pool, the queue
    their steps come back through, and the groups they train."""

    def __init__(self, count: int, share: int, data_dir: Path | None):
        self.count, self.share, self.data_dir = count, share, data_dir
        self.pool: ProcessPoolExecutor | None = None
        self.manager: Any = None
        self.steps: Any = None
        self.starting: set[Future] = set()
        self.ready = 0
        self.running: dict[Future, list[Config]] = {}

    @property
    def started(self) -> bool:
        return self.pool is not None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        self.pool = ProcessPoolExecutor(self.count, mp_context=context,
                                        initializer=_start_worker, initargs=(self.share,))
        self.manager = context.Manager()
        self.steps = self.manager.Queue()
        self.starting = {self.pool.submit(_ready) for _ in range(self.count)}
        self.set_share()

    def free(self) -> int:
        """Helpers that have started and train no group."""
        ready = {f for f in self.starting if f.done()}
        self.starting.difference_update(ready)
        self.ready += len(ready)
        return self.ready - sum(not f.done() for f in self.running)

    def give(self, group: list[Config]) -> None:
        self.running[self.pool.submit(_work, group, self.data_dir, self.steps)] = group

    def busy(self) -> bool:
        return bool(self.starting) or any(not f.done() for f in self.running)

    def set_share(self) -> None:
        """This process on its share of the CPUs while a helper starts or trains; alone, on
        all of them (ThreadControl reads it before every step)."""
        from winit_cli.training import threads as th

        th.set_cpu_share(self.share if self.busy() else None)

    def finished(self) -> Iterator[Any]:
        for future in [f for f in self.running if f.done()]:
            yield from _outcomes(future, self.running.pop(future))

    def drain(self, on_progress: ProgressFn | None) -> None:
        if self.steps is not None:
            _drain(self.steps, on_progress)

    def wait(self, timeout: float) -> None:
        wait(self.running.keys() | self.starting, timeout=timeout, return_when=FIRST_COMPLETED)

    def close(self, patience: float) -> None:
        """Stop what was started: the step queue's manager, then any helper still training
        (interrupted or closed early: they keep their records). Helpers still starting are
        not waited for: they exit once started."""
        if self.manager is not None:
            self.manager.shutdown()
        if self.running:
            _stop(self.pool, self.running, patience)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


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

    import winit_cli.runner.group  # noqa: F401  (ready means ready to train)
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

    interrupts.stop_on(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    try:
        return list(InProcessExecutor(_WORKER_SPLITS["splits_for"]).run([group], report))
    finally:
        for s in interrupts.STOPPING:
            signal.signal(s, signal.SIG_IGN)


@EXECUTORS.register("local")
def _local(options: ExecutorOptions) -> Executor:
    """This machine: in this process (--jobs 1, same-shape members batched) or in worker
    processes (--jobs N)."""
    if options.address is not None:
        raise ConfigError("--address is for --executor ray")
    if options.jobs > 1:
        return ProcessExecutor(options.jobs, options.data_dir, on_note=options.on_note)
    return InProcessExecutor(cached_splits(options.data_dir, options.on_download))
