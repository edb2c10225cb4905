"""The training loop with probes, for K same-shape members at once (K = 1 for `winit run`).

Step s means the parameters after s updates. At a recorded step the probe measures the gradient
of batch s at those parameters, before update s; step 0 is the network at initialization. The
last step S has no update: it is recorded (and evaluated) as the trained network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from winit_cli import interrupts
from winit_cli.config import Config, dig
from winit_cli.datasets import Splits
from winit_cli.diagnosis.verdict import LOSS_BLOWUP
from winit_cli.errors import ConfigError
from winit_cli.measure.assembler import first_nonfinite_layer
from winit_cli.measure.jacobian import JacobianSpectrum
from winit_cli.measure.quantities import columns
from winit_cli.status import Status
from winit_cli.training import ProgressFn
from winit_cli.training.schedule import Schedule, samples_in
from winit_cli.training.spectrum import init_spectra, spectrum_reason
from winit_cli.training.step import Group, StepResult, evaluate, run_step, setup
from winit_cli.training.threads import ThreadControl
from winit_cli.training.window import Window

# What members of one batched group must share; everything else (scheme, seed, L2) may differ.
SHARED_KEYS = ("model", "train.epochs", "train.steps", "train.batch_size", "train.optimizer",
               "train.lr", "train.momentum", "train.device", "train.flush_subnormals",
               "train.threads", "data", "record")


@dataclass
class MemberLog:
    """Everything measured for one member, which the application layer writes to its run
    directory; nothing here draws."""

    config: Config
    layer_shapes: list[tuple[int, int]] = field(default_factory=list)  # (fan_in, fan_out) each
    layer_columns: tuple[str, ...] = field(default_factory=columns)  # of layer_values (Probe)
    layer_steps: list[tuple[int, int]] = field(default_factory=list)  # (step, epoch)
    layer_values: list[torch.Tensor] = field(default_factory=list)  # [L, Q] float64 each
    histograms: list[torch.Tensor] = field(default_factory=list)  # [L, 2, bins] at layer_steps
    metrics: list[dict] = field(default_factory=list)
    status: Status = Status.RUNNING
    diverged_step: int | None = None
    diverged_layer: int | None = None
    diverged_cause: str | None = None  # a divergence with finite values (the loss blew up)
    final: dict = field(default_factory=dict)  # final train/val/test loss and accuracy
    jacobian: JacobianSpectrum | None = None  # at step 0, with record.jacobian
    jacobian_reason: str | None = None  # why record.jacobian measured nothing
    threads: dict = field(default_factory=dict)  # threads.ThreadControl.summary()
    window_steps: int = 0  # how many steps the last metrics row's train values average


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    return torch.device(name)


def flushes_subnormals(config: Config) -> bool:
    """Whether a run of `config` flushes subnormals (only CPUs have the 10x penalty)."""
    return config.train.flush_subnormals and resolve_device(config.train.device).type == "cpu"


def check_shared(configs: list[Config]) -> None:
    """Raise a ConfigError naming the first key of SHARED_KEYS on which the configs differ."""
    first = configs[0].to_dict()
    for config in configs[1:]:
        other = config.to_dict()
        for key in SHARED_KEYS:
            differs = _first_difference(dig(first, key), dig(other, key), key)
            if differs is not None:
                raise ConfigError(
                    f"{differs}: configs {configs[0].name!r} and {config.name!r} differ, but "
                    f"members trained together must share {', '.join(SHARED_KEYS)}")


def _first_difference(a: Any, b: Any, key: str) -> str | None:
    """The dotted key of the first leaf where a and b differ, or None if they are equal."""
    if a == b:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for sub in dict.fromkeys([*a, *b]):
            found = _first_difference(a.get(sub), b.get(sub), f"{key}.{sub}")
            if found is not None:
                return found
    return key


def train(configs: list[Config], splits: Splits, *, on_progress: ProgressFn | None = None,
          on_checkpoint: Callable[[list[MemberLog]], None] | None = None,
          checkpoint_seconds: float = 30.0, logs: list[MemberLog] | None = None,
          on_record: Callable[[list[MemberLog]], None] | None = None) -> list[MemberLog]:
    """Train every config as one member of a stacked model; they must agree on SHARED_KEYS.

    `logs` (one per config) may be passed in so the caller keeps what was measured if training
    is interrupted. `on_record(logs)` is called after every step, once its records are in the
    logs (for live TensorBoard scalars).
    """
    check_shared(configs)
    device = resolve_device(configs[0].train.device)
    flush = flushes_subnormals(configs[0])
    if flush:
        # set_flush_denormal returns only whether the CPU supports it, so restore to False.
        torch.set_flush_denormal(True)
    logs = logs if logs is not None else [MemberLog(c) for c in configs]
    threads = ThreadControl(configs[0].train.threads)
    try:
        _train(logs, splits, device, threads, on_progress, on_checkpoint, checkpoint_seconds,
               on_record)
    except KeyboardInterrupt:
        for log in logs:
            if log.status is Status.RUNNING:
                log.status = Status.INTERRUPTED
        raise
    finally:
        for log in logs:
            log.threads = threads.summary()
        threads.restore()
        if flush:
            torch.set_flush_denormal(False)
    return logs


def log_step(logs: list[MemberLog], plan: Schedule, step: int, result: StepResult,
             alive: list[bool], window: Window, first_losses: list[float]) -> None:
    """Append each live member's layer record and metrics row for this step, and its divergence.

    A member's rows do not depend on its neighbours: a redo for another member's divergence adds
    no row to it.
    """
    newly_diverged = [a and not f for a, f in zip(alive, result.finite, strict=True)]
    epoch = plan.epoch(step)
    for i, log in enumerate(logs):
        if not alive[i]:
            continue
        if result.recorded or newly_diverged[i]:
            log.layer_steps.append((step, epoch))
            log.layer_values.append(result.values[i].cpu())
            if result.histograms is not None:
                log.histograms.append(result.histograms[i])
        if newly_diverged[i]:
            log.status, log.diverged_step = Status.DIVERGED, step
            log.diverged_layer = first_nonfinite_layer(result.values[i])
            loss = result.losses[i]
            if log.diverged_layer is None and math.isfinite(loss) and first_losses[i]:
                log.diverged_cause = (f"the training loss reached {loss:.3g}, over "
                                      f"{LOSS_BLOWUP:,.0f} times its first value "
                                      f"({first_losses[i]:.3g})")
        if result.recorded or result.evaluation or newly_diverged[i]:
            row = window.row(i, step, epoch)
            if result.evaluation:
                row["val_loss"], row["val_accuracy"] = (result.evaluation[0][i],
                                                        result.evaluation[1][i])
            log.metrics.append(row)
            log.window_steps = window.steps
    if result.recorded or result.evaluation:
        window.reset()


def _train(logs, splits, device, threads, on_progress, on_checkpoint, checkpoint_seconds,
           on_record):
    group = setup([log.config for log in logs], splits, device)
    threads.start()  # after setup, whose time measures the load
    for log in logs:
        log.layer_shapes = group.model.layer_shapes()
        log.layer_columns = group.probe.columns
    record_spectra(logs, group, splits)
    steps = group.plan.steps
    alive = [True] * len(logs)
    window = Window(len(logs))
    started = last_checkpoint = time.perf_counter()
    for step in range(steps + 1):
        interrupts.check()  # a stop signal ends the run between steps, never inside one
        threads.before_step(step)
        begun = time.perf_counter()
        result = run_step(group, step, alive)
        threads.after_step(time.perf_counter() - begun, ordinary=result.evaluation is None)
        window.add(train_loss=result.losses, train_accuracy=result.accuracies)
        log_step(logs, group.plan, step, result, alive, window, group.first_losses)
        if on_record is not None:
            on_record(logs)
        alive = [a and f for a, f in zip(alive, result.finite, strict=True)]
        if on_progress is not None and (step % 20 == 0 or result.recorded or step == steps):
            on_progress(step, steps, {"loss": _mean_alive(result.losses, alive),
                                      "elapsed": time.perf_counter() - started})
        if not any(alive):
            break
        if on_checkpoint and time.perf_counter() - last_checkpoint > checkpoint_seconds:
            on_checkpoint(logs)
            last_checkpoint = time.perf_counter()
    finish(logs, group, splits, device, time.perf_counter() - started)


def record_spectra(logs: list[MemberLog], group: Group, splits: Splits) -> None:
    """The Jacobian spectrum of every member at initialization, if the config asks for it."""
    config = logs[0].config  # record and model are shared by the group
    if not config.record.jacobian:
        return
    reason = spectrum_reason(group.model, config.model.kind)
    spectra = [None] * len(logs) if reason else init_spectra(
        group.model, splits.x_train, config.record.jacobian_inputs)
    for log, spectrum in zip(logs, spectra, strict=True):
        log.jacobian, log.jacobian_reason = spectrum, reason


def finish(logs: list[MemberLog], group: Group, splits: Splits, device: torch.device,
           elapsed: float) -> None:
    """Evaluate on the test split; fill each member's final numbers and close its status."""
    test = evaluate(group.model, splits.x_test.to(device), splits.y_test.to(device))
    k, batch_size = len(logs), logs[0].config.train.batch_size
    n_train = len(splits.x_train)
    for i, log in enumerate(logs):
        last = log.metrics[-1] if log.metrics else {}
        steps = last.get("step", 0)
        # A diverged member's weights are non-finite: it has no accuracy to report.
        measured = log.status is not Status.DIVERGED
        log.final = {
            "train_loss": last.get("train_loss") if measured else None,
            "train_accuracy": last.get("train_accuracy") if measured else None,
            "train_window_steps": log.window_steps,
            "val_loss": last.get("val_loss") if measured else None,
            "val_accuracy": last.get("val_accuracy") if measured else None,
            "test_loss": test[0][i] if measured else None,
            "test_accuracy": test[1][i] if measured else None,
            "steps": steps, "group_size": k, "group_seconds": elapsed,
            # Members of a group train together: each is charged an equal share of the time.
            "train_seconds": elapsed / k,
            "samples_per_second": samples_in(steps, n_train, batch_size) * k / elapsed,
        }
        if log.status is Status.RUNNING:
            log.status = Status.COMPLETE


def _mean_alive(losses: list[float], alive: list[bool]) -> float:
    live = [loss for loss, a in zip(losses, alive, strict=True) if a]
    return sum(live) / len(live) if live else float("nan")
