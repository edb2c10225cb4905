"""Sweeps on a Ray cluster: each batched group is a Ray task; its records come back as objects.

    winit compare schemes ... --executor ray                          # RAY_ADDRESS, else local Ray
    winit compare schemes ... --executor ray --address HOST:6379      # or ray://HOST:10001

Workers need winit installed (the same version) but no shared filesystem and no MNIST: the
driver loads each distinct data split once and puts it in Ray's object store, and every task
reads it from there. A task trains its group on a private temporary folder and returns the
folder's files as bytes; the driver writes them under the sweep's runs/ folder, so the sweep
folder looks exactly as if the in-process executor had made it.

A task asks for `cpus_per_task` CPUs and trains on that many threads (one GPU as well when
train.device is cuda), so Ray never puts more work on a node than it has cores. A task whose
worker or node dies is retried `max_retries` times, then its members are reported failed; a
member that raises inside a task is retried alone there, as InProcessExecutor does. Ctrl-C
cancels the outstanding tasks; members already written stay, and the next run resumes.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from winit_cli.config import Config, dump_yaml
from winit_cli.errors import ConfigError
from winit_cli.records import files as results
from winit_cli.sweeps.sweep import InProcessExecutor, MemberFailure

INSTALL_HINT = "pip install 'winit[ray]'"
MAX_RETRIES = 2  # a lost node or a killed worker; an exception in training is not retried by Ray


def import_ray():
    """The ray module, or a one-line ConfigError saying how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}"
                          ) from None
    return ray


@dataclass
class GroupRecords:
    """What a task sends back: every file it wrote, by path relative to its output folder
    (`<run-id>/summary.json`..., and `runs.csv`), and per member of the group, in order, the
    run-id that finished it or the error that failed it."""

    files: dict[str, bytes]
    outcomes: list[tuple[str | None, str | None]]  # (run-id, error), one per member


def train_group(group: list[Config], splits: Any, threads: int, argv: list[str]) -> GroupRecords:
    """The Ray task: train `group` on `threads` threads into a temporary folder, return its files.

    `argv` is the driver's command line, which each run's summary records as its command."""
    import torch

    torch.set_num_threads(threads)
    position = {c.content_hash(): i for i, c in enumerate(group)}
    outcomes: list[tuple[str | None, str | None]] = [(None, "no record returned")] * len(group)
    with tempfile.TemporaryDirectory(prefix="winit-task-") as tmp:
        root = Path(tmp)
        local = [c.model_copy(update={"output_dir": root}) for c in group]
        saved_argv, sys.argv = sys.argv, list(argv)
        try:
            for outcome in InProcessExecutor(lambda _config: splits).run([local]):
                if isinstance(outcome, MemberFailure):
                    outcomes[position[outcome.config.content_hash()]] = (None, outcome.error)
                else:
                    outcomes[position[outcome.summary["config_hash"]]] = (outcome.run_dir.name,
                                                                          None)
        finally:
            sys.argv = saved_argv
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")}  # not runs.csv's lock file
    return GroupRecords(files, outcomes)


class RayExecutor:
    """Runs each group as a Ray task on the cluster at `address` (else $RAY_ADDRESS, else a
    Ray started on this machine); yields a RunOutcome or a MemberFailure per member."""

    def __init__(self, splits_for: Callable[[Config], Any], address: str | None = None,
                 cpus_per_task: int = 1, max_retries: int = MAX_RETRIES):
        self.splits_for, self.address = splits_for, address
        self.cpus_per_task, self.max_retries = cpus_per_task, max_retries

    def run(self, batches: list[list[Config]], on_progress=None) -> Iterator[Any]:
        ray = import_ray()
        if not batches:  # all done already: no cluster needed
            return
        ours = connect(ray, self.address)
        pending: list = []
        try:
            check_fits(ray, batches, self.cpus_per_task)
            submitted = self._submit(ray, batches)
            pending = list(submitted)
            while pending:
                (ready,), pending = ray.wait(pending, num_returns=1)
                group = submitted[ready]
                try:
                    records = ray.get(ready)
                except ray.exceptions.RayError as e:  # retries spent, or the task itself broke
                    cause = getattr(e, "cause", None) or e  # a RayTaskError wraps the real one
                    reason = f"worker failed: {type(cause).__name__}: {_first_line(cause)}"
                    yield from (MemberFailure(c, reason) for c in group)
                    continue
                yield from write_records(records, group)
        finally:
            # Ctrl-C, or the consumer stopped early: what is still running is nobody's now.
            for ref in pending:
                ray.cancel(ref, force=True)
            if ours:  # a connection the caller made is the caller's to close
                ray.shutdown()

    def _submit(self, ray, batches: list[list[Config]]) -> dict:
        task = ray.remote(train_group)
        shared: dict[int, Any] = {}  # id(splits) -> its object ref: each split sent once
        submitted = {}
        for group in batches:
            splits = self.splits_for(group[0])
            if id(splits) not in shared:
                shared[id(splits)] = (ray.put(splits), splits)  # keep splits alive: ids stay unique
            options = {"num_cpus": self.cpus_per_task, "max_retries": self.max_retries,
                       "num_gpus": 1 if group[0].train.device == "cuda" else 0,
                       # one task per free slot on every node, not packed onto the driver's
                       "scheduling_strategy": "SPREAD"}
            ref = task.options(**options).remote(group, shared[id(splits)][0],
                                                  self.cpus_per_task, list(sys.argv))
            submitted[ref] = group
        return submitted


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


def check_fits(ray, batches: list[list[Config]], cpus_per_task: int) -> None:
    """A task no node can hold would wait forever (for an autoscaler): say so instead."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if not any(n.get("CPU", 0) >= cpus_per_task for n in nodes):
        raise ConfigError(f"no node of the Ray cluster has {cpus_per_task} CPUs for a task")
    if any(g[0].train.device == "cuda" for g in batches) and \
            not any(n.get("GPU", 0) >= 1 for n in nodes):
        raise ConfigError("train.device is cuda but the Ray cluster has no GPU; "
                          "use train.device=cpu (or auto)")


def write_records(records: GroupRecords, group: list[Config]) -> Iterator[Any]:
    """Write a task's run directories under the sweep's runs/ folder; yield each member's
    RunOutcome (or MemberFailure) as the in-process executor would have."""
    from winit_cli.app.experiment import RunOutcome

    runs = Path(group[0].output_dir)
    by_hash = {c.content_hash(): c for c in group}
    by_dir: dict[str, dict[str, bytes]] = {}
    for rel, data in records.files.items():
        top, _, rest = rel.partition("/")
        if rest:
            by_dir.setdefault(top, {})[rest] = data
    placed = {name: _place_run(runs, name, files, by_hash) for name, files in by_dir.items()}
    _append_index(runs, records.files.get(results.INDEX), placed)
    for config, (run_id, error) in zip(group, records.outcomes, strict=True):
        if run_id is None:
            yield MemberFailure(config, error or "no record returned")
            continue
        run_dir = placed[run_id]
        yield RunOutcome(run_dir, results.read_json(run_dir / "summary.json"),
                         pd.read_csv(run_dir / "layers.csv"))


def _place_run(runs: Path, name: str, files: dict[str, bytes], by_hash: dict[str, Config]
               ) -> Path:
    """One run directory, made whole in a hidden folder and then renamed into place, so a
    driver killed half-way leaves nothing that looks like a run. Returns where it went."""
    import json

    summary = json.loads(files["summary.json"])
    config = by_hash[summary["config_hash"]]
    files = {**files, "config.yaml": dump_yaml(config).encode()}  # the driver's output_dir
    partial = runs / f".{name}.partial"
    for rel, data in files.items():
        results.atomic_write(partial / rel, data)
    for n in range(1000):  # as results.new_run_dir: a numeric suffix if the name is taken
        target = runs / (name if n == 0 else f"{name}-{n}")
        try:
            partial.rename(target)  # fails if target exists and is not an empty folder
            return target
        except OSError:
            continue
    raise results.ResultsError(f"{runs}: cannot place run directory {name}")


def _append_index(runs: Path, index_csv: bytes | None, placed: dict[str, Path]) -> None:
    """The task's runs.csv lines, their paths pointing at the driver's copies."""
    if not index_csv:
        return
    rows = pd.read_csv(io.BytesIO(index_csv), dtype=str, keep_default_na=False)
    for row in rows.to_dict("records"):
        row["path"] = str(placed.get(row["run_id"], row["path"]))
        results.append_index(runs, row)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
