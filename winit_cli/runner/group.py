"""Train a group and write its records: data, training, run folders. `winit run`, every sweep
executor and the Ray task come here.

Several configs that agree on `training.SHARED_KEYS` train together as one stacked model; each
still gets its own ordinary run directory. `train_records` keeps everything in memory (for
executors whose workers share no disk with the driver); `run_group` writes run directories as it
goes, with checkpoints, so a crash loses at most a checkpoint interval.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import yaml

from winit_cli import interrupts
from winit_cli.config import Config
from winit_cli.datasets import ProgressFn as DownloadProgress
from winit_cli.datasets import Splits, load_dataset, make_splits
from winit_cli.records.reader import flatten
from winit_cli.records.schema import Environment, RunRecord
from winit_cli.records.writer import RunWriter, environment, first_record, utcnow
from winit_cli.runner.events import LiveEvents, write_events
from winit_cli.runner.member import RunResult, assemble, histograms_of, layers_frame, salvage
from winit_cli.status import Status
from winit_cli.training.loop import MemberLog, ProgressFn, flushes_subnormals, resolve_device, train

# The validation split is fixed, not drawn from the run's seed, so that every run of every sweep
# is validated on the same examples.
SPLIT_SEED = 0


@dataclass
class RunOutcome:
    """A finished member: its directory and what was written there. `unsaved` says why its
    files are not in `run_dir` (and where they are instead); `notes`, what else went wrong
    around it (a checkpoint or its index line could not be written)."""

    run_dir: Path
    record: RunRecord
    layers: pd.DataFrame
    unsaved: str | None = None
    notes: list[str] = field(default_factory=list)


def load_splits(config: Config, data_dir: Path | None = None,
                on_download: DownloadProgress | None = None) -> Splits:
    raw = load_dataset(config.data.dataset, data_dir, config.data.dir, on_progress=on_download)
    return make_splits(raw, config.data.val_size, config.data.subset, seed=SPLIT_SEED)


def input_second_moment(splits: Splits, chunk: int = 8192) -> float:
    """mean_i E[x_i^2] over the training inputs: where the mean-field length map starts.

    Each chunk is squared in float64 (exact: a float32's square fits a double) in one buffer
    reused for every chunk: a new pair of 51 MB tensors per chunk spent most of the time on
    fresh pages (half the time, measured on MNIST: 0.75 s against 1.5 s), for the same bits."""
    x = splits.x_train
    buffer = torch.empty(min(chunk, len(x)), x.shape[1], dtype=torch.float64)
    total = 0.0
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk]
        total += float(buffer[:len(part)].copy_(part).square_().sum())
    return total / x.numel()


def group_environment(configs: list[Config]) -> Environment:
    device = configs[0].train.device
    return environment(str(resolve_device(device)), flushes_subnormals(configs[0]))


def train_records(configs: list[Config], splits: Splits, *,
                  on_progress: ProgressFn | None = None) -> list[RunResult]:
    """Train configs as one stacked model and return each member's records, writing nothing:
    for workers that share no disk with the driver, which writes them (`write_result`)."""
    env = group_environment(configs)
    moment = input_second_moment(splits)
    source = str(splits.source) if splits.source else None
    started = utcnow()
    starts = [first_record(c, "", started, env, source) for c in configs]
    logs = train(configs, splits, on_progress=on_progress)
    return [assemble(log, start, moment) for log, start in zip(logs, starts, strict=True)]


def write_result(result: RunResult, config: Config) -> RunOutcome:
    """A run directory for records computed elsewhere (`train_records`)."""
    writer = RunWriter.for_config(config, result.record.environment,
                                  result.record.data_source)
    record = result.record.model_copy(update={"run_id": writer.dir.name,
                                              "started_at": result.record.started_at})
    writer.finish(record, result.layers, result.metrics, result.spectrum, result.histograms)
    if config.record.tensorboard:
        write_events(writer.dir, result.layers, result.metrics, writer.notes, writer.record,
                     flat_config(writer))
    return RunOutcome(writer.dir, writer.record, result.layers, writer.unsaved, writer.notes)


def flat_config(writer: RunWriter) -> dict:
    """A run's config.yaml (as its writer wrote it) flattened to dotted keys."""
    return flatten(yaml.safe_load(writer.config_yaml) or {})


def _start_writers(configs: list[Config], env: Environment, source: str | None
                   ) -> list[RunWriter]:
    """One writer (run folder) per config, or none at all: an error on the third leaves no
    folders from the first two."""
    writers: list[RunWriter] = []
    try:
        for c in configs:
            writers.append(RunWriter.for_config(c, env, source))
    except BaseException:
        for w in writers:
            shutil.rmtree(w.dir, ignore_errors=True)
        raise
    return writers


def run_group(configs: list[Config], splits: Splits, *,
              on_progress: ProgressFn | None = None,
              on_start: Callable[[list[Path]], None] | None = None) -> list[RunOutcome]:
    """Train configs that share a shape as one stacked model; write one run directory each."""
    env = group_environment(configs)
    moment = input_second_moment(splits)
    source = str(splits.source) if splits.source else None
    writers = _start_writers(configs, env, source)
    events = LiveEvents([w.dir for w in writers]) if configs[0].record.tensorboard else None
    if on_start:
        on_start([w.dir for w in writers])
    logs = [MemberLog(c) for c in configs]
    notes: list[str] = []

    def checkpoint(current: list[MemberLog]) -> None:
        for w, log in zip(writers, current, strict=True):
            try:
                w.write_tables(layers_frame(log), pd.DataFrame(log.metrics), histograms_of(log))
            except OSError as e:  # training goes on: the final write retries, or rescues
                note = f"{w.dir}: checkpoint not written ({e.strerror or e})"
                if note not in notes:
                    notes.append(note)

    def finish(error: str | None = None) -> list[RunOutcome]:
        with interrupts.deferred():
            outcomes = [finish_member(w, log, error) for w, log in zip(writers, logs, strict=True)]
        if events is not None:  # after the records: the verdicts go into the events too
            said = len(notes)
            events.finish(logs, notes, [(o.record, flat_config(w))
                                        for o, w in zip(outcomes, writers, strict=True)])
            for o in outcomes:
                o.notes.extend(notes[said:])
        return outcomes

    def finish_member(w: RunWriter, log: MemberLog, error: str | None) -> RunOutcome:
        try:
            result = assemble(log, w.record, moment, error)
        except Exception as e:  # a bug in the theory or the diagnosis loses no measurement
            result = salvage(log, w.record, f"{type(e).__name__} while assembling the "
                                            f"record: {e}")
        w.finish(result.record, result.layers, result.metrics, result.spectrum,
                 result.histograms)
        return RunOutcome(w.dir, w.record, result.layers, w.unsaved, [*notes, *w.notes])

    try:
        train(configs, splits, on_progress=on_progress, on_checkpoint=checkpoint, logs=logs,
              checkpoint_seconds=configs[0].record.checkpoint_seconds,
              on_record=events.update if events is not None else None)
    except KeyboardInterrupt as e:  # Ctrl-C, and SIGTERM/SIGHUP (see interrupts)
        _mark_unfinished(logs, Status.INTERRUPTED)
        finish(interrupts.reason(e))
        raise
    except Exception as e:
        _mark_unfinished(logs, Status.FAILED)
        finish(f"{type(e).__name__}: {e}")
        raise
    return finish()


def _mark_unfinished(logs: list[MemberLog], status: Status) -> None:
    """A member that had already diverged keeps that status."""
    for log in logs:
        if log.status in (Status.RUNNING, Status.INTERRUPTED):
            log.status = status
