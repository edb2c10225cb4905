"""The probe on a user's training loop: hooks armed for the recorded steps, the measurements of
each, the update ratio after the optimizer's step, and the run folder at the end.

Step s is the s-th call of `step()` (from 0), one per optimizer step. A step is recorded when
s % every == 0; the hooks are armed from the end of step s - 1 to the end of step s, so they see
exactly that step's forward and backward passes, and nothing in between.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml
from pydantic import ValidationError
from torch import nn

from winit_cli.diagnosis.verdict import NO_HIDDEN_LAYER
from winit_cli.errors import ConfigError
from winit_cli.measure.assembler import (
    Assembler,
    first_nonfinite_layer,
    plain_sgd,
    set_update_ratio,
    sgd_updates,
    weight_updates,
)
from winit_cli.records.reader import flatten
from winit_cli.records.schema import FinalRecord, RunRecord
from winit_cli.records.tensorboard import EventWriter
from winit_cli.records.writer import RunWriter
from winit_cli.status import Status
from winit_cli.training.window import Window
from winit_cli.watcher import summary
from winit_cli.watcher.hooks import Capture
from winit_cli.watcher.layers import Layer
from winit_cli.watcher.measure import measure
from winit_cli.watcher.structure import Structure, read_structure


@dataclass(frozen=True)
class Settings:
    every: int
    scheme: str
    scheme_params: dict
    input_second_moment: float | None
    thresholds: tuple[float, float]  # vanish, explode decades
    checkpoint_seconds: float


@dataclass(frozen=True)
class WatchedRun:
    """A finished watched run: its folder and what was written there."""

    dir: Path
    record: RunRecord
    layers: pd.DataFrame  # layers.csv
    metrics: pd.DataFrame  # metrics.csv

    @property
    def verdict(self) -> str | None:
        """healthy, vanishing, exploding or diverged; None when there is none to give (nothing
        was recorded, or the run failed)."""
        return self.record.verdict.verdict if self.record.verdict is not None else None

    @property
    def verdict_text(self) -> str:
        return self.record.verdict_text or self.verdict


class Watch:
    """Made by `winit_cli.watch` (see there): call `step(loss)` once per optimizer step, after
    the last backward and before `optimizer.step()`, then `close()`. Also a context manager."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 layers: list[Layer], unrecorded: list[str], folder: RunWriter,
                 assembler: Assembler, settings: Settings, events: EventWriter | None):
        self.model, self.optimizer, self.layers = model, optimizer, layers
        self.unrecorded, self.folder, self.start = unrecorded, folder, folder.record
        self.assembler, self.settings, self.events = assembler, settings, events
        self.capture = Capture.of(model, layers)
        self.records: list[summary.Recorded] = []
        self.metrics: list[dict] = []
        self.structure: Structure | None = None
        self.steps = 0
        self.diverged: tuple[int, int | None] | None = None
        self.gradless: list[int] = []  # recorded steps that no gradient reached
        self.window = Window(1)
        # the record waiting for its update ratio, its rows that have a weight, and copies of
        # those weights (None where the optimizer's step is read instead: `plain_sgd`)
        self._update: tuple[summary.Recorded, list[int], list[torch.Tensor] | None] | None = None
        self._emitted = 0  # records written to TensorBoard
        self._saved_at = time.perf_counter()
        self._run: WatchedRun | None = None
        self._hook = optimizer.register_step_post_hook(self._after_optimizer_step) \
            if optimizer is not None else None
        self.capture.arm()  # step 0 is always recorded
        _warn_shared(layers)

    @property
    def dir(self) -> Path:
        return self.folder.dir

    @property
    def run(self) -> WatchedRun | None:
        """The finished run, once closed (by close(), or on leaving a `with` block)."""
        return self._run

    # --- each step ------------------------------------------------------------------------------

    def step(self, loss: torch.Tensor | float, epoch: int | None = None) -> bool:
        """Count one optimizer step; on a recorded one, measure what its forward and backward
        passes left. Returns whether this step was recorded."""
        if self._run is not None:
            raise ConfigError("probe.step: this probe is closed")
        self._settle()
        self._add_loss(loss)
        step, recorded = self.steps, self.steps % self.settings.every == 0
        if recorded:
            self._record(step, epoch)
        self.steps += 1
        if self.steps % self.settings.every == 0:
            self.capture.arm()
        else:
            self.capture.disarm()
        return recorded

    def _add_loss(self, loss: torch.Tensor | float) -> None:
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ConfigError(f"probe.step(loss): expected the scalar loss, got a tensor of "
                                  f"shape {tuple(loss.shape)}")
            loss = loss.detach().reshape(()).float()  # summed on its device: see Window
        else:
            loss = float(loss)
        self.window.add(train_loss=[loss])

    def _record(self, step: int, epoch: int | None) -> None:
        calls = self.capture.take()
        order = list(self.capture.order)
        values, measured = measure(self.assembler, self.layers, calls, order)
        gradless = bool(calls) and all(c.grad is None for cs in calls.values() for c in cs)
        if gradless:
            self._no_gradient(step)
        if self.structure is None:
            self.structure = read_structure(self.layers, order, calls, self._input_moment(),
                                            self.unrecorded)
            self._warn_not_run(order)
            self._warn_reused(calls)
        record = summary.Recorded(step, epoch, values, measured)
        self.records.append(record)
        self.metrics.append(self.window.row(0, step, epoch))
        self.window.reset()
        self._check_divergence(record, gradless)
        if self.optimizer is not None:  # the update ratio waits for the optimizer's step
            rows = [r for r, i in enumerate(order) if self.layers[i].weight is not None]
            weights = [self.layers[order[r]].weight for r in rows]
            # as one member's, [1, ...], as weight_updates reads them; no copy where the update
            # is read from the optimizer after its step, as the CLI reads it
            read = plain_sgd(self.optimizer, weights) and all(w.grad is not None for w in weights)
            before = None if read else \
                [w.detach()[None].clone() for w in weights]
            self._update = (record, rows, before)
        else:
            self._emit()
        if time.perf_counter() - self._saved_at > self.settings.checkpoint_seconds:
            self.folder.write_tables(self.layers_frame(), pd.DataFrame(self.metrics))
            self._saved_at = time.perf_counter()

    def _input_moment(self) -> float | None:
        x, self.capture.first_input = self.capture.first_input, None
        return None if x is None else float(x.double().pow(2).mean())

    def _warn_not_run(self, order: list[int]) -> None:
        missing = [layer.name for i, layer in enumerate(self.layers) if i not in order]
        if missing:
            warnings.warn(f"winit.watch: {', '.join(missing)} did not run in step 0's forward "
                          "pass; they have rows from the first step they run in", stacklevel=4)

    def _no_gradient(self, step: int) -> None:
        """A recorded step whose backward never reached the model: its gradient columns are
        empty, not measured, and the run gets no verdict (NaN gradients once read 'healthy')."""
        if not self.gradless:
            warnings.warn(f"winit.watch: step {step}: no gradient reached the recorded layers; "
                          "call probe.step(loss) after loss.backward(). Such steps' gradient "
                          "columns are empty and the run gets no verdict", stacklevel=4)
        self.gradless.append(step)

    def _warn_reused(self, calls: dict) -> None:
        """A module run more often than the others in a step (used twice in one forward pass,
        not gradient accumulation, which runs every layer as often)."""
        counts = {i: len(c) for i, c in calls.items()}
        reused = [self.layers[i].name for i, n in counts.items() if n > min(counts.values())]
        if reused:
            warnings.warn(f"winit.watch: {', '.join(reused)} ran more than once in a forward "
                          "pass (a module used twice): each of its rows pools every use (dL/dz "
                          "over all of them; dL/dW, their summed gradient)", stacklevel=5)

    def _check_divergence(self, record: summary.Recorded, gradless: bool = False) -> None:
        """Diverged: the loss or a measured value is not finite (seen at recorded steps only,
        so the step is known to within `every`), at the CLI's first non-finite layer. A step
        that no gradient reached is judged by its loss alone."""
        if self.diverged is not None:
            return
        layer = None if gradless else first_nonfinite_layer(record.values, record.measured)
        if layer is not None or not math.isfinite(self.metrics[-1]["train_loss"]):
            self.diverged = (record.step, layer)

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        """update_ratio of the update that followed a recorded step, as the CLI's."""
        if self._update is None:
            return
        record, rows, before = self._update
        if rows:
            weights = [self.layers[self.capture.order[r]].weight for r in rows]
            updates = sgd_updates(self.optimizer, weights, one_member=True) if before is None \
                else weight_updates(before, [w.detach()[None] for w in weights])
            set_update_ratio(record.values[None], self.assembler.columns, updates, rows)
        self._update = None
        self._emit()

    def _settle(self) -> None:
        """A recorded step that no optimizer step followed keeps an empty update_ratio."""
        self._update = None
        self._emit()

    def _emit(self) -> None:
        """Write the records not yet in the TensorBoard files."""
        if self.events is not None:
            for record, row in zip(self.records[self._emitted:], self.metrics[self._emitted:],
                                   strict=True):
                names = [self.layers[i].name for i in self.capture.order[:len(record.values)]]
                self.events.layers(record.step, names, record.values)
                self.events.metrics(row)
        self._emitted = len(self.records)

    # --- the end --------------------------------------------------------------------------------

    def layers_frame(self) -> pd.DataFrame:
        return summary.layers_frame(self.layers, self.capture.order, self.records,
                                    self.assembler.columns)

    def close(self, **final) -> WatchedRun:
        """Finish the run: its verdict, the theory where it applies, and the run folder.
        Keyword arguments fill the record's final numbers (test_accuracy=..., test_loss=...,
        val_accuracy=...), as summary.json's `final` block names them."""
        return self._finish(Status.COMPLETE, None, final)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self._run is not None:
            return
        if kind is None:
            self.close()
        elif issubclass(kind, KeyboardInterrupt):
            self._finish(Status.INTERRUPTED, "interrupted by the user", {})
        else:
            self._finish(Status.FAILED, f"{kind.__name__}: {error}", {})

    def _finish(self, status: Status, error: str | None, final: dict) -> WatchedRun:
        if self._run is not None:
            return self._run
        check_final(final)
        self._settle()
        self.capture.disarm()
        self.capture.take()
        if self._hook is not None:
            self._hook.remove()
        record, layers = self._final_record(status, error, final)
        metrics = pd.DataFrame(self.metrics, columns=["step", "epoch", "train_loss"])
        self.folder.finish(record, layers, metrics)
        for note in filter(None, [self.folder.unsaved, *self.folder.notes]):
            warnings.warn(f"winit.watch: {note}", stacklevel=3)
        if self.events is not None:
            self._close_events()
        self._run = WatchedRun(self.folder.dir, self.folder.record, layers, metrics)
        return self._run

    def _close_events(self) -> None:
        """The verdict and hparams, then the event files closed. Events are a copy of the
        tables: a failure here is a warning and never costs the run its records."""
        try:
            config = flatten(yaml.safe_load(self.folder.config_yaml) or {})
            self.events.outcome(self.folder.record, config)
        except Exception as e:
            warnings.warn(f"winit.watch: TensorBoard verdict not written ({type(e).__name__}: "
                          f"{e})", stacklevel=4)
        self.events.close()

    def _final_record(self, status: Status, error: str | None, final: dict
                      ) -> tuple[RunRecord, pd.DataFrame]:
        s = self.settings
        frame = self.layers_frame()
        dz = summary.dz_layers(self.layers, self.capture.order)
        found, verdict = summary.verdict(frame, dz, *s.thresholds, self.diverged)
        text = summary.describe(found, frame)
        if status is Status.FAILED or not len(frame):  # as for CLI runs: nothing to judge
            verdict, text = None, (f"no verdict: the run failed ({error})" if error else
                                   "no verdict: nothing was recorded")
        elif len(dz) < 2:
            verdict, text = None, NO_HIDDEN_LAYER
        elif self.gradless:
            verdict, text = None, (
                f"no verdict: no gradient reached the model at {len(self.gradless)} of "
                f"{len(self.records)} recorded steps (first: step {self.gradless[0]}); "
                "probe.step(loss) was called before loss.backward(), or without it")
        frame, theory = summary.theory(frame, self.structure, s.scheme, s.scheme_params,
                                       s.input_second_moment)
        widths = [self.layers[self.capture.order[n - 1]].width() for n in dz]
        hidden = widths[:-1] or widths
        update = {
            "status": Status.DIVERGED if self.diverged is not None else status,
            "verdict": verdict, "verdict_text": text, "theory": theory,
            "final": FinalRecord(**{"steps": self.steps, "train_window_steps": s.every, **final}),
            "activation": self.structure.activation if self.structure else summary.UNKNOWN,
            "depth": len(dz), "width": hidden[0] if len(set(hidden)) == 1 else hidden,
            "error": error}
        return self.start.model_copy(update=update), frame


def _warn_shared(layers: list[Layer]) -> None:
    """Layers that share one weight tensor (tied weights): the gradient torch leaves on it is
    the sum over all of them, so each one's dL/dW, weight norm and update ratio are the shared
    tensor's, not its own."""
    owners: dict[int, list[str]] = {}
    for layer in layers:
        if layer.weight is not None:
            owners.setdefault(id(layer.weight), []).append(layer.name)
    for names in (n for n in owners.values() if len(n) > 1):
        warnings.warn(f"winit.watch: {' and '.join(names)} share one weight: each row's dL/dW, "
                      "weight norm and update ratio are the shared weight's (its gradient "
                      "summed over every layer that uses it)", stacklevel=4)


# Final numbers the probe counts itself: a value given to close() would replace the truth.
COUNTED = ("steps", "train_window_steps")


def check_final(final: dict) -> None:
    """The final numbers given to `close()`, refused in one line before anything is written if
    unknown, counted by the probe, or impossible (an accuracy of 7.0, a negative count)."""
    known = sorted(set(FinalRecord.model_fields) - set(COUNTED))
    for key in final:
        if key in COUNTED:
            raise ConfigError(f"probe.close: {key} is counted by the probe; give only "
                              f"{', '.join(known)}")
        if key not in known:
            raise ConfigError(f"probe.close: unknown final value {key!r}; known: "
                              f"{', '.join(known)}")
    try:
        FinalRecord(**final)
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"probe.close: {first['loc'][0]}={first['input']!r}: "
                          f"{first['msg'].lower()}") from None
