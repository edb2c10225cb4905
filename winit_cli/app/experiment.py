"""One experiment end to end: data, training, records. `winit run` and every sweep executor
come here.

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

import numpy as np
import pandas as pd

from winit_cli import interrupts
from winit_cli.app.events import LiveEvents, write_events
from winit_cli.config import Config
from winit_cli.datasets import ProgressFn as DownloadProgress
from winit_cli.datasets import Splits, load_dataset, make_splits
from winit_cli.diagnosis.predict import predict_run
from winit_cli.diagnosis.predict_families import explain
from winit_cli.diagnosis.verdict import (
    Verdict,
    diagnose,
    measured_first_to_last_hidden,
    zero_gradient_layers,
)
from winit_cli.measure.histograms import histogram_frame
from winit_cli.records.files import finite, finite_values
from winit_cli.records.schema import (
    Environment,
    FinalRecord,
    JacobianRecord,
    RunRecord,
    Status,
    TheoryRecord,
    VerdictRecord,
)
from winit_cli.records.writer import RunWriter, environment, first_record, utcnow
from winit_cli.training.loop import MemberLog, ProgressFn, flushes_subnormals, resolve_device, train

# The validation split is fixed, not drawn from the run's seed, so that every run of every sweep
# is validated on the same examples.
SPLIT_SEED = 0


@dataclass
class RunResult:
    """One member's records, in memory: what a run directory holds."""

    record: RunRecord
    layers: pd.DataFrame
    metrics: pd.DataFrame
    spectrum: pd.DataFrame | None = None  # spectrum.csv, with record.jacobian
    histograms: pd.DataFrame | None = None  # histograms.csv, with record.histograms


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


def layers_frame(log: MemberLog) -> pd.DataFrame:
    if not log.layer_values:
        return pd.DataFrame(columns=["step", "epoch", "layer", "fan_in", "fan_out",
                                     *log.layer_columns])
    values = np.stack([v.numpy() for v in log.layer_values])  # [records, L, Q]
    n, depth, _ = values.shape
    fan_in, fan_out = zip(*log.layer_shapes, strict=True)  # from the model: one per layer
    steps = np.array(log.layer_steps)
    frame = pd.DataFrame({
        "step": np.repeat(steps[:, 0], depth),
        "epoch": np.repeat(steps[:, 1], depth),
        "layer": np.tile(np.arange(1, depth + 1), n),
        "fan_in": np.tile(fan_in, n),
        "fan_out": np.tile(fan_out, n),
    })
    for j, name in enumerate(log.layer_columns):
        frame[name] = values[:, :, j].reshape(-1)
    return frame


def verdict_of(log: MemberLog, layers: pd.DataFrame) -> Verdict:
    d = log.config.diagnose
    return diagnose(layers, vanish_decades=d.vanish_decades, explode_decades=d.explode_decades,
                    diverged_step=log.diverged_step, diverged_layer=log.diverged_layer)


def input_second_moment(splits: Splits, chunk: int = 8192) -> float:
    """mean_i E[x_i^2] over the training inputs: where the mean-field length map starts."""
    x = splits.x_train
    total = sum(float(x[i:i + chunk].double().pow(2).sum()) for i in range(0, len(x), chunk))
    return total / x.numel()


def verdict_record(verdict: Verdict, layers: pd.DataFrame) -> VerdictRecord:
    """summary.json's verdict block: the verdict and the gradient ratios the views show (also
    for runs of `winit.watch`, from their Linear and Conv layers)."""
    step0 = layers[layers.step == 0].sort_values("layer")
    end = layers[layers.step == layers.step.max()] if len(layers) else step0
    return VerdictRecord(
        **finite_values(verdict.to_dict()),
        log10_first_to_last=finite(measured_first_to_last_hidden(step0)) if len(step0) else None,
        log10_first_to_last_end=finite(measured_first_to_last_hidden(end)) if len(end) else None,
        zero_grad_layers_init=zero_gradient_layers(step0) if len(step0) else None)


def jacobian_record(log: MemberLog, theory: dict) -> tuple[JacobianRecord | None,
                                                              pd.DataFrame | None]:
    """summary.json's `jacobian` block and spectrum.csv (value, weight: one row per singular
    value, weights summing to 1), or (None, None) when the run did not ask for them."""
    config = log.config.record
    if not config.jacobian:
        return None, None
    if log.jacobian is None:
        reason = log.jacobian_reason or "not measured (the run stopped before step 0)"
        return JacobianRecord(method="none", inputs=config.jacobian_inputs, reason=reason), None
    summary = log.jacobian
    ratio = theory.get("predicted_log10_ratio")
    # predicted log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| is half the sum of log10 chi_l, l = 1..L-2
    predicted = 10.0 ** (2 * ratio) if ratio is not None else None
    record = JacobianRecord(**finite_values({
        "mean_sq": summary.mean_sq, "max": summary.max, "spread": summary.spread,
        "spread_uncertainty": summary.spread_uncertainty,
        "zero_fraction": summary.zero_fraction, "predicted_mean_sq": predicted}),
        method=summary.method, inputs=config.jacobian_inputs)
    frame = pd.DataFrame({"value": summary.singular_values.numpy(),
                          "weight": summary.weights.numpy()})
    return record, frame


def assemble(log: MemberLog, start: RunRecord, input_moment: float,
             error: str | None = None) -> RunResult:
    """A member's final record and tables: its verdict and the theory beside its step 0."""
    layers, theory = predict_run(log.config, layers_frame(log), input_moment)
    status = Status(log.status)
    final = log.final or {"steps": log.layer_steps[-1][0] if log.layer_steps else 0}
    jacobian, spectrum = jacobian_record(log, theory)
    environment = start.environment.model_copy(update=log.threads)  # what training used
    record = start.model_copy(update={
        "status": status, **_verdict_fields(log, layers, status, error, theory),
        "theory": TheoryRecord(**finite_values(theory)), "jacobian": jacobian,
        "environment": environment,
        "final": FinalRecord(**finite_values(final)),
        "error": None if status is Status.DIVERGED else error})
    return RunResult(record, layers, pd.DataFrame(log.metrics), spectrum, histograms_of(log))


def histograms_of(log: MemberLog) -> pd.DataFrame | None:
    """histograms.csv's table, with record.histograms (measure/histograms.py)."""
    if not log.config.record.histograms:
        return None
    return histogram_frame(log.layer_steps[:len(log.histograms)], log.histograms)


def _verdict_fields(log: MemberLog, layers: pd.DataFrame, status: Status,
                    error: str | None, theory: dict) -> dict:
    """The verdict, or none: a failed run's measurements stop wherever the error struck, and a
    run that recorded nothing has nothing to judge, so neither is called healthy. The family's
    theory is appended where it explains the verdict (e.g. BatchNorm named for its explosion)."""
    if status is Status.FAILED:
        return {"verdict": None, "verdict_text": f"no verdict: the run failed ({error})"}
    if not len(layers):
        return {"verdict": None, "verdict_text": "no verdict: nothing was recorded (stopped "
                                                 "before the gradients at step 0 were measured)"}
    found = verdict_of(log, layers)
    verdict = verdict_record(found, layers)
    return {"verdict": verdict,
            "verdict_text": found.describe() + explain(verdict.verdict, verdict.step, theory)}


def salvage(log: MemberLog, start: RunRecord, error: str) -> RunResult:
    """What `assemble` could not finish: the tables as measured, no verdict, no theory, and
    the status failed, so that no run is left saying it is still running."""
    steps = log.layer_steps[-1][0] if log.layer_steps else 0
    record = start.model_copy(update={
        "status": Status.FAILED, "verdict": None, "error": error,
        "verdict_text": f"no verdict: the run failed ({error})",
        "final": FinalRecord(steps=steps)})
    return RunResult(record, layers_frame(log), pd.DataFrame(log.metrics))


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
    writer = RunWriter(config, result.record.environment, result.record.data_source)
    record = result.record.model_copy(update={"run_id": writer.dir.name,
                                              "started_at": result.record.started_at})
    writer.finish(record, result.layers, result.metrics, result.spectrum, result.histograms)
    if config.record.tensorboard:
        write_events(writer.dir, result.layers, result.metrics, writer.notes)
    return RunOutcome(writer.dir, writer.record, result.layers, writer.unsaved, writer.notes)


def _start_writers(configs: list[Config], env: Environment, source: str | None
                   ) -> list[RunWriter]:
    """One writer (run folder) per config, or none at all: an error on the third leaves no
    folders from the first two."""
    writers: list[RunWriter] = []
    try:
        for c in configs:
            writers.append(RunWriter(c, env, source))
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
        if events is not None:
            events.finish(logs, notes)
        with interrupts.deferred():
            return [finish_member(w, log, error) for w, log in zip(writers, logs, strict=True)]

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
            log.status = status.value
