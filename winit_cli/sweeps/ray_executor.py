"""Sweeps on a Ray cluster: each batched group is a Ray task; its records come back as objects.

    winit compare schemes ... --executor ray                          # RAY_ADDRESS, else local Ray
    winit compare schemes ... --executor ray --address HOST:6379      # or ray://HOST:10001

Workers need winit installed (the same version) but no shared filesystem and no dataset: the
driver loads each distinct data split once and puts it in Ray's object store, and every task
reads it from there. A task trains its group in memory (`train_records`) and returns each
member's records; the driver writes them as run directories under the sweep (`write_result`),
so the sweep folder is the one the local executors make.

A task asks for `cpus_per_task` CPUs and trains on that many threads (one GPU as well when
train.device is cuda), so Ray never puts more work on a node than it has cores. A task whose
worker or node dies is retried `max_retries` times, then its members are reported failed; a
member that raises inside a task is retried alone there, as InProcessExecutor does. Steps
reach the driver's progress bar through a queue actor. Ctrl-C cancels the outstanding tasks;
members already written stay, and the next run resumes.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from winit_cli import interrupts
from winit_cli.config import Config
from winit_cli.errors import ConfigError
from winit_cli.sweeps.executors import EXECUTORS, ExecutorOptions, MemberFailure, cached_splits
from winit_cli.training import ProgressFn

INSTALL_HINT = "pip install 'winit[ray]'"
MAX_RETRIES = 2  # a lost node or a killed worker; an exception in training is not retried by Ray
POLL_SECONDS = 0.2  # how often the driver moves the progress bar while tasks run
REPORT_SECONDS = 0.5  # how often a task sends its step: each send is a call to an actor


def import_ray():
    """The ray module, or a one-line ConfigError saying how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}"
                          ) from None
    return ray


def make_ray_executor(options: ExecutorOptions) -> RayExecutor:
    if options.jobs > 1:
        raise ConfigError("--jobs is for the local executor; on Ray each group is a task")
    import_ray()  # no Ray: say so before anything is trained
    return RayExecutor(cached_splits(options.data_dir, options.on_download), options.address)


def train_group(group: list[Config], splits: Any, threads: int, steps: Any = None) -> list[Any]:
    """The Ray task: each member's records (a RunResult), or the error that failed it (a str).
    `steps`, a Ray queue, if given, receives (step, total, info) now and then."""
    import torch

    from winit_cli.runner.group import train_records
    from winit_cli.training.threads import set_cpu_share

    torch.set_num_threads(threads)
    # train.threads: auto would otherwise take every idle CPU of the machine, not the task's
    set_cpu_share(threads)
    try:
        return train_records(group, splits, on_progress=_reporter(steps))
    except Exception as e:
        if len(group) == 1:
            return [f"{type(e).__name__}: {e}"]
        return [train_group([c], splits, threads, steps)[0] for c in group]
    finally:
        set_cpu_share(None)


def _reporter(steps: Any) -> ProgressFn | None:
    if steps is None:
        return None
    last: list[float | None] = [0.0]  # None: stop reporting

    def report(step: int, total: int, info: dict) -> None:
        if last[0] is None or (time.monotonic() - last[0] < REPORT_SECONDS and step < total):
            return
        last[0] = time.monotonic()
        try:
            steps.put_nowait((step, total, {"loss": info.get("loss", float("nan"))}))
        except Exception:  # the queue's node is gone: a progress bar is not worth a run
            last[0] = None

    return report


class RayExecutor:
    """Runs each group as a Ray task on the cluster at `address` (else $RAY_ADDRESS, else a
    Ray started on this machine); yields a RunOutcome or a MemberFailure per member."""

    def __init__(self, splits_for: Callable[[Config], Any], address: str | None = None,
                 cpus_per_task: int = 1, max_retries: int = MAX_RETRIES):
        self.splits_for, self.address = splits_for, address
        self.cpus_per_task, self.max_retries = cpus_per_task, max_retries

    def run(self, groups: Iterable[list[Config]],
            on_progress: ProgressFn | None = None) -> Iterator[Any]:
        ray = import_ray()
        # Taken all at once (the sweep may hand them over lazily, claiming each as it is asked
        # for): Ray queues every task itself, so a second driver of this sweep finds them claimed.
        groups = list(groups)
        if not groups:  # all done already: no cluster needed
            return
        ours = connect(ray, self.address)
        pending: list = []
        try:
            check_fits(ray, groups, self.cpus_per_task)
            steps = _step_queue(ray) if on_progress else None
            submitted = self._submit(ray, groups, steps)
            pending = list(submitted)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                steps = _drain(steps, on_progress)
                interrupts.check()
                for ref in ready:
                    # dropped once collected: a ref held keeps its records in the driver's
                    # memory, which would then grow with the sweep instead of staying flat
                    yield from self._collect(ray, ref, submitted.pop(ref))
        finally:
            # Ctrl-C, or the consumer stopped early: what is still running is nobody's now.
            for ref in pending:
                ray.cancel(ref, force=True)
            if ours:  # a connection the caller made is the caller's to close
                ray.shutdown()

    def _submit(self, ray, groups: list[list[Config]], steps: Any) -> dict:
        task = ray.remote(train_group)
        shared: dict[int, Any] = {}  # id(splits) -> (its object ref, splits): each sent once
        submitted = {}
        for group in groups:
            splits = self.splits_for(group[0])
            if id(splits) not in shared:
                shared[id(splits)] = (ray.put(splits), splits)  # kept alive: ids stay unique
            options = {"num_cpus": self.cpus_per_task, "max_retries": self.max_retries,
                       "num_gpus": 1 if group[0].train.device == "cuda" else 0,
                       # one task per free slot on every node, not packed onto the driver's
                       "scheduling_strategy": "SPREAD"}
            ref = task.options(**options).remote(group, shared[id(splits)][0],
                                                  self.cpus_per_task, steps)
            submitted[ref] = group
        return submitted

    def _collect(self, ray, ref: Any, group: list[Config]) -> Iterator[Any]:
        """A finished task's members, written under the sweep; or why they are not."""
        from winit_cli.runner.group import write_result

        try:
            results = ray.get(ref)
        except ray.exceptions.RayError as e:  # retries spent, or the task itself broke
            cause = getattr(e, "cause", None) or e  # a RayTaskError wraps the real one
            why = f"worker failed: {type(cause).__name__}: {_first_line(cause)}"
            yield from (MemberFailure(c, why) for c in group)
            return
        for config, result in zip(group, results, strict=True):
            if isinstance(result, str):
                yield MemberFailure(config, result)
            else:
                yield write_result(_as_driven_here(result), config)


def _as_driven_here(result: Any) -> Any:
    """The worker recorded its own command line (Ray's worker script): record the driver's."""
    env = result.record.environment.model_copy(update={"command": " ".join(sys.argv)})
    record = result.record.model_copy(update={"environment": env})
    return type(result)(record, result.layers, result.metrics)


def _step_queue(ray) -> Any:
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # 0 CPUs: an actor takes one by default, which would keep a task off a 1-CPU node. On the
    # driver's node where it can be: a lost worker node should not take the progress bar along.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})


def _drain(steps: Any, on_progress: ProgressFn | None) -> Any:
    """Show the latest step reported; the queue, or None once it is lost (a bar is cosmetic)."""
    if steps is None or on_progress is None:
        return steps
    try:
        waiting = steps.qsize()
        latest = steps.get_nowait_batch(waiting) if waiting else []
    except Exception:
        return None
    if latest:
        on_progress(*latest[-1])
    return steps


def connect(ray, address: str | None) -> bool:
    """ray.init at `address`; None lets Ray read $RAY_ADDRESS, else start Ray on this machine.
    False if Ray was connected already (by the caller)."""
    if ray.is_initialized():
        return False
    given = address or os.environ.get("RAY_ADDRESS")
    if given and given not in ("auto", "local"):
        _check_reachable(given)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING", configure_logging=False)
    except ConnectionError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'}: "
                          f"{_first_line(e)}") from None
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Ray waits minutes on an address nobody answers at: try a TCP connection first."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except ValueError:
        raise ConfigError(f"Ray address {address!r}: expected HOST:PORT or ray://HOST:PORT"
                          ) from None
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: "
                          f"{e.strerror or type(e).__name__}") from None


def check_fits(ray, groups: list[list[Config]], cpus_per_task: int) -> None:
    """A task no node can hold would wait forever (for an autoscaler): say so instead."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if not any(n.get("CPU", 0) >= cpus_per_task for n in nodes):
        raise ConfigError(f"no node of the Ray cluster has {cpus_per_task} CPUs for a task")
    if any(g[0].train.device == "cuda" for g in groups) and \
            not any(n.get("GPU", 0) >= 1 for n in nodes):
        raise ConfigError("train.device is cuda but the Ray cluster has no GPU; "
                          "use train.device=cpu (or auto)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@EXECUTORS.register("ray")
def _ray(options: ExecutorOptions) -> RayExecutor:
    """A Ray cluster (--address, else $RAY_ADDRESS, else Ray on this machine): one task per
    group, records sent back to this process (needs the ray extra)."""
    return make_ray_executor(options)
