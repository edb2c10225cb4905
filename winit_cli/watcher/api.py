"""`winit_cli.watch`: winit's per-layer probes on anyone's model and training loop.

What is recorded, every `every` steps from step 0 (steps count calls of `probe.step`):

- each nn.Linear and nn.Conv1d/2d/3d, named as `model.named_modules()` names it and numbered
  1, 2, ... in the order the modules first run (the last is taken as the output layer): the
  columns of a CLI run's layers.csv: ||dL/dW||, ||dL/db||, ||dL/dz|| with z the module's output,
  ||W||, the update ratio ||W' - W|| / ||W||, the mean and std of h = phi(z), the dead (ReLU
  family) and saturated (tanh, sigmoid) fractions. For a Conv, z is the output feature map
  [B, C_out, *spatial], after the bias and before any normalization or activation, and
  ||dL/dz|| is its Frobenius norm over batch, channels and positions (measure.py: the layout).
- nn.BatchNorm1d/2d/3d and nn.LayerNorm: their weight's and bias's gradient norms and norms, and
  the update ratio.
- any other module that owns parameters is listed once (a warning, and config.yaml's
  model.not_recorded); everything else is still recorded.

How it behaves:

- gradient accumulation: call `probe.step` once per optimizer step, after the last backward;
  the recorded batch is every forward pass since the previous step, together;
- forward passes under torch.no_grad or torch.inference_mode (evaluation) are not recorded; a
  forward pass with gradients on between steps counts towards the next step;
- the update ratio comes from a hook on `optimizer.step()` (weights are copied on recorded steps
  only); with no optimizer, or when `probe.step` is not followed by `optimizer.step()`, it stays
  empty;
- CUDA: the values are reduced on the device and moved to the CPU once per recorded step; the
  steps in between cost one addition (the loss) on the device, no synchronisation and no hooks;
- with AMP's GradScaler, gradients are those of the scaled loss (ratios and the verdict are not
  affected): call `scaler.unscale_(optimizer)` before `probe.step` for the weight gradients;
- `tensorboard=True` writes TensorBoard event files into the run folder as it trains (the tag
  layout: records/tensorboard.py).

The verdict is the CLI's (diagnosis/verdict.py) on the Linear and Conv layers' dL/dz. With
`scheme` (a name from `winit schemes`, `scheme_params` its parameters) and a model that is an MLP
of Linear layers with one known activation between them (watcher/structure.py), summary.json
holds the mean-field prediction beside step 0, from `input_second_moment` (mean of x^2 over the
inputs; default: that of step 0's batch). Otherwise the theory is "not applicable", with why.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
import yaml
from torch import nn

from winit_cli.config import content_hash
from winit_cli.errors import ConfigError
from winit_cli.inits import get_scheme
from winit_cli.measure.assembler import Assembler
from winit_cli.records.schema import RunRecord
from winit_cli.records.tensorboard import EventWriter
from winit_cli.records.writer import RunWriter, environment, utcnow
from winit_cli.status import Status
from winit_cli.watcher.layers import find_layers
from winit_cli.watcher.probe import Settings, Watch
from winit_cli.watcher.run_config import run_config
from winit_cli.watcher.summary import UNKNOWN

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # as config.Config.name: it becomes part of a folder name


def watch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, every: int = 10,
          out: str | Path = "results", name: str | None = None, tensorboard: bool = False,
          scheme: str = UNKNOWN, scheme_params: dict | None = None, dataset: str = UNKNOWN,
          seed: int | None = None, input_second_moment: float | None = None,
          vanish_decades: float = 2.0, explode_decades: float = 2.0,
          checkpoint_seconds: float = 30.0) -> Watch:
    """Record winit's per-layer gradient statistics while `model` trains in your own loop::

        probe = winit.watch(model, optimizer, every=10, out="results")
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            probe.step(loss)          # after the last backward, before optimizer.step()
            optimizer.step()
            optimizer.zero_grad()
        run = probe.close()           # run.verdict, run.layers (layers.csv), run.dir

    Every `every` steps from step 0, each nn.Linear and nn.Conv1d/2d/3d gets a row of
    layers.csv; for a Conv, dL/dz is the gradient w.r.t. its output feature map and its norm is
    over batch, channels and positions. What else is recorded, and how gradient accumulation,
    evaluation under no_grad, CUDA and the update ratio are handled: this module's docstring.
    `scheme` names the init used (see `winit schemes`): with it, an MLP gets the mean-field
    prediction beside step 0. `tensorboard=True` also writes TensorBoard event files.
    """
    _check(model, optimizer, every, scheme)
    name = name if name is not None else type(model).__name__
    if not NAME.match(name):
        raise ConfigError(f"winit.watch: name {name!r} may hold only letters, digits, _ . -")
    layers, unrecorded = find_layers(model)
    if not any(layer.has_dz for layer in layers):
        raise ConfigError("winit.watch: the model has no nn.Linear or nn.Conv layer to record")
    if unrecorded:
        warnings.warn("winit.watch: parameters not recorded: " + "; ".join(unrecorded),
                      stacklevel=2)
    settings = Settings(every, scheme, dict(scheme_params or {}), input_second_moment,
                        (vanish_decades, explode_decades), checkpoint_seconds)
    device = str(next(model.parameters()).device)
    seed = _seed(seed)
    config = run_config(name=name, model=model, layers=layers, unrecorded=unrecorded,
                        optimizer=optimizer, scheme=scheme, params=settings.scheme_params,
                        seed=seed, device=device, dataset=dataset, every=every,
                        tensorboard=tensorboard, thresholds=settings.thresholds, out=Path(out))
    folder = RunWriter(Path(out), yaml.safe_dump(config, sort_keys=False),
                       _start_record(config, device, seed))
    assembler = Assembler()  # the quantities registered now are the run's columns
    events = EventWriter(folder.dir, assembler.columns) if tensorboard else None
    return Watch(model, optimizer, layers, unrecorded, folder, assembler, settings, events)


def _check(model, optimizer, every, scheme) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"winit.watch: expected a torch.nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError("winit.watch: optimizer must be a torch.optim.Optimizer or None")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"winit.watch: every must be a positive integer, got {every!r}")
    if scheme != UNKNOWN:
        get_scheme(scheme, where="winit.watch scheme")


def _seed(seed: int | None) -> int:
    """The given seed, else torch's (what torch.manual_seed set); -1 when torch was never seeded
    and drew a random 64-bit seed that the records' integer columns cannot hold."""
    if seed is not None:
        return int(seed)
    initial = torch.initial_seed()
    return initial if initial < 2**63 else -1


def _flushes_subnormals(device: str) -> bool:
    """Whether the CPU flushes subnormals now (torch.set_flush_denormal has no getter): a
    subnormal float32 times 1 reads back as 0 when it does."""
    if not device.startswith("cpu"):
        return False
    return float(torch.tensor([1e-40], dtype=torch.float32) * 1.0) == 0.0


def _start_record(config: dict, device: str, seed: int) -> RunRecord:
    """The record of the run just started; its folder gives it its run_id."""
    return RunRecord(
        run_id="", name=config["name"], config_hash=content_hash(config),
        started_at=utcnow().isoformat(timespec="seconds"), status=Status.RUNNING,
        scheme=config["init"]["scheme"], activation=UNKNOWN, depth=0, width=0, seed=seed,
        dataset=config["data"]["dataset"], model_kind=config["model"]["kind"],
        environment=environment(device, _flushes_subnormals(device)))
