"""`winit.advise(model, inputs)` and `winit.fix_init(model, inputs)`: gradient flow at init of
any nn.Module from one forward and backward pass on a batch, and a data-dependent fix.

The layers are `watch`'s (layers.py: every nn.Linear and nn.Conv1d/2d/3d, numbered 1, 2, ... in
the order they first run, the last taken as the output layer) and so are the hooks (hooks.py)
and the per-layer values (measure.py: dL/dz norms, dead and saturated fractions). Per layer:

- forward gain: E[z_l^2] / E[z_k^2], z_k the pre-activation of the recorded layer that feeds
  layer l (the one run just before it when none does directly; the model's input x for the
  first): the mean-field length map's q_l / q_{l-1}, 1 where the forward signal neither grows
  nor shrinks whatever the activation (He's ReLU layer halves q in phi and doubles it back).
- backward: log10 ||dL/dz_l|| / ||dL/dz_L||, in decades, the ratio the verdict reads
  (diagnosis/verdict.py, whose rule and thresholds give the overall verdict on this one step).
- flags: dead (at least DEAD_HIGH of the units off for the whole batch, ReLU family),
  saturated (at least SATURATED_HIGH within 0.01 of tanh's or sigmoid's asymptote), shrinks /
  grows (forward gain below 1/GAIN_FLAG or above GAIN_FLAG).

The pass runs in training mode (batch statistics, dropout on), as the first training step
would; afterwards every module's mode, every parameter's .grad, every buffer (BatchNorm's
running statistics) and torch's random number generators are as they were.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.diagnosis.verdict import diagnose, measured_first_to_last_hidden
from winit_cli.errors import ConfigError
from winit_cli.inits import unit_variance_
from winit_cli.measure.assembler import Assembler
from winit_cli.watcher.hooks import Call, Capture
from winit_cli.watcher.layers import Layer, find_layers
from winit_cli.watcher.measure import measure

DEAD_HIGH = 0.25
SATURATED_HIGH = 0.25
GAIN_FLAG = 3.0
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ModuleAdvice:
    """What one pass at init says of a model: `table` (one row per Linear/Conv layer), the
    overall `verdict` and the layer where it starts; str() and rich print it at 80 columns."""

    table: pd.DataFrame
    verdict: str  # healthy | vanishing | exploding | diverged
    layer: int | None  # where it starts (1 = input side), as numbered in `table`
    layer_name: str | None
    log10_first_to_last: float | None  # log10 ||dL/dz_1|| / ||dL/dz_{L-1}||, as a run's
    vanish_decades: float = 2.0
    explode_decades: float = 2.0
    not_recorded: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.verdict == "healthy":
            return "healthy: dL/dz stays within the thresholds at every layer"
        where = f" from layer {self.layer} ({self.layer_name})" if self.layer else ""
        return f"{self.verdict}{where}"

    def __rich__(self):
        from winit_cli.views.advise import module_advice

        return module_advice(self)

    def __str__(self) -> str:
        from rich.console import Console

        text = io.StringIO()
        Console(file=text, width=80, color_system=None).print(self)
        return text.getvalue().rstrip()

    __repr__ = __str__


def advise(model: nn.Module, inputs, targets: torch.Tensor | None = None,
           loss_fn: LossFn | None = None, *, vanish_decades: float = 2.0,
           explode_decades: float = 2.0) -> ModuleAdvice:
    """Gradient flow at init of any model, from one forward and backward pass on `inputs`::

        advice = winit.advise(model, x)          # x: a batch the model takes (a tuple: *x)
        print(advice)                            # the per-layer table and the verdict
        advice.verdict, advice.table             # "vanishing", a pandas DataFrame

    `targets` default to random labels over the output's last dimension, `loss_fn` to
    cross-entropy over it. The module, its parameters' .grad, its modes, buffers and torch's
    RNG are left as they were; nothing trains. What each column means: the module docstring.
    """
    layers, not_recorded = _layers(model, "winit.advise")
    with _untouched(model):
        calls, order, sums = _one_pass(model, layers, inputs, targets, loss_fn)
        assembler = Assembler()
        values, _ = measure(assembler, layers, calls, order)
        table = _table(layers, calls, order, sums, values, assembler.columns)
    return _verdict(table, vanish_decades, explode_decades, tuple(not_recorded))


def fix_init(model: nn.Module, inputs, targets: torch.Tensor | None = None,
             loss_fn: LossFn | None = None, *, tol: float = 0.1, max_iter: int = 10,
             passes: int = 3) -> ModuleAdvice:
    """Rescale each Linear/Conv weight, input side first, so that its output has unit variance
    on `inputs` (LSUV, Mishkin & Matas 2016: inits.unit_variance_, the step winit's `lsuv`
    scheme takes); return `advise` after, with the before values beside (`*_before` columns)
    and each layer's factor (`scale`)::

        advice = winit.fix_init(model, x)    # changes model's weights in place
        print(advice)

    One forward pass rescales every layer in the order they run, each seeing the layers below
    already fixed; up to `passes` passes are made while some layer is still off by more than
    `tol`. Only weights change (biases, buffers, modes and .grad are left as they were).

    Limits: it keeps each weight's direction and fixes only its scale (the paper also starts
    from orthonormal matrices); it makes forward variances 1 on this batch, which makes the
    backward gains near 1 where the mean-field picture holds (wide layers, activations applied
    to each layer's output), not for every architecture; a layer called several times per
    pass (shared weights) is rescaled on its first call; in a residual net each branch's
    layers are rescaled and the stream, which has no weights of its own, is not: an
    unnormalized stream still adds each branch's unit variance per block, and its gradient may
    still grow (use a residual scheme, Fixup or SkipInit, or scale the branches down);
    normalization layers make the weight scale irrelevant to their output, so there it
    changes little.
    """
    before = advise(model, inputs, targets, loss_fn)
    layers, _ = _layers(model, "winit.fix_init")
    scales = {id(layer.module): 1.0 for layer in layers if layer.has_dz}
    with _untouched(model, keep_weights=True):
        for _ in range(passes):
            if not _lsuv_pass(model, layers, inputs, scales, tol, max_iter):
                break
    after = advise(model, inputs, targets, loss_fn)
    table = after.table
    table.insert(table.columns.get_loc("forward_gain"), "forward_gain_before",
                 before.table.forward_gain.to_numpy())
    table.insert(table.columns.get_loc("backward_log10") + 1, "backward_log10_before",
                 before.table.backward_log10.to_numpy())
    table["scale"] = [scales[id(m)] for m in _modules_in_order(layers, table)]
    return after


def _layers(model: nn.Module, where: str) -> tuple[list[Layer], list[str]]:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}: expected a torch.nn.Module, got {type(model).__name__}")
    layers, not_recorded = find_layers(model)
    if not any(layer.has_dz for layer in layers):
        raise ConfigError(f"{where}: the model has no nn.Linear or nn.Conv layer")
    return layers, not_recorded


@contextmanager
def _untouched(model: nn.Module, keep_weights: bool = False):
    """Training mode, with no gradient in .grad, inside; outside, the modes, the .grad of
    every parameter, the buffers and torch's RNG as before (and the parameters' values unless
    `keep_weights`)."""
    modes = {m: m.training for m in model.modules()}
    params = list(model.parameters())
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    values = None if keep_weights else [p.detach().clone() for p in params]
    devices = sorted({p.device.index for p in params if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            for p in params:
                p.grad = None
            model.train()
            yield
    finally:
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            for b, saved in buffers:
                b.copy_(saved)
            for p, saved in zip(params, values or [], strict=False):
                p.copy_(saved)
        for m, training in modes.items():
            m.training = training


def _forward(model: nn.Module, inputs) -> torch.Tensor:
    out = model(*inputs) if isinstance(inputs, tuple | list) else model(inputs)
    if not isinstance(out, torch.Tensor):
        raise ConfigError("winit.advise: the model's output is not a tensor; pass loss_fn and "
                          "a model that returns one")
    return out


def _one_pass(model, layers, inputs, targets, loss_fn
              ) -> tuple[dict[int, list[Call]], list[int], dict[int, list[float]]]:
    """The captured calls, the Linear/Conv layers in the order they ran, and per layer the
    sums [sum x^2, x entries, sum z^2, z entries] over its calls, taken as z leaves the layer
    (before an in-place activation overwrites it)."""
    capture = Capture.of(model, layers)
    index = {id(layer.module): i for i, layer in enumerate(layers) if layer.has_dz}
    sums: dict[int, list[float]] = {}

    def moments(module, args, z):
        if isinstance(z, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
            x = args[0].detach().double()
            add = [float(x.pow(2).sum()), x.numel(), float(z.detach().double().pow(2).sum()),
                   z.numel()]
            acc = sums.setdefault(index[id(module)], [0.0] * 4)
            sums[index[id(module)]] = [a + b for a, b in zip(acc, add, strict=True)]

    handles = [layers[i].module.register_forward_hook(moments) for i in index.values()]
    capture.arm()
    try:
        with torch.enable_grad():
            out = _forward(model, inputs)
            if targets is None:  # random labels over the output's last dimension
                targets = torch.randint(0, out.shape[-1], out.shape[:-1], device=out.device)
            loss = (loss_fn(out, targets) if loss_fn is not None else
                    F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1)))
            loss.backward()
    finally:
        capture.disarm()
        for h in handles:
            h.remove()
    order = [i for i in capture.order if layers[i].has_dz]
    return capture.take(), order, sums


def _table(layers, calls, order, sums, values, columns) -> pd.DataFrame:
    """One row per Linear/Conv layer in the order they ran (module docstring)."""
    z_moment = {i: _ratio(sums[i][2], sums[i][3]) for i in order}
    rows = []
    for n, i in enumerate(order):
        source = calls[i][0].source if calls.get(i) else None
        below = z_moment[source] if source in z_moment and source != i else (
            z_moment[order[n - 1]] if n else _ratio(sums[i][0], sums[i][1]))
        v = dict(zip(columns, values[n], strict=True))
        rows.append({"layer": n + 1, "name": layers[i].name, "type": layers[i].type_name,
                     "fan_in": layers[i].fans()[0], "fan_out": layers[i].fans()[1],
                     "input_second_moment": _ratio(sums[i][0], sums[i][1]),
                     "z_second_moment": z_moment[i], "forward_gain": _ratio(z_moment[i], below),
                     "act_grad_norm": v["act_grad_norm"], "dead_fraction": v["dead_fraction"],
                     "saturated_fraction": v["saturated_fraction"]})
    table = pd.DataFrame(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        table.insert(table.columns.get_loc("act_grad_norm") + 1, "backward_log10",
                     np.log10(table.act_grad_norm / table.act_grad_norm.iloc[-1]))
    table["flagged"] = [_flags(r) for r in table.itertuples()]
    return table


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _flags(row) -> str:
    flags = []
    if row.dead_fraction >= DEAD_HIGH:
        flags.append("dead")
    if row.saturated_fraction >= SATURATED_HIGH:
        flags.append("saturated")
    if row.forward_gain < 1 / GAIN_FLAG:
        flags.append("shrinks")
    elif row.forward_gain > GAIN_FLAG:
        flags.append("grows")
    return " ".join(flags)


def _verdict(table: pd.DataFrame, vanish: float, explode: float,
             not_recorded: tuple[str, ...]) -> ModuleAdvice:
    step0 = pd.DataFrame({"layer": table.layer, "step": 0, "act_grad_norm": table.act_grad_norm})
    finite = np.isfinite(table.act_grad_norm).all()
    v = diagnose(step0, vanish_decades=vanish, explode_decades=explode,
                 diverged_step=None if finite else 0,
                 diverged_layer=None if finite else int(
                     table.layer[~np.isfinite(table.act_grad_norm)].max()))
    name = None if v.layer is None else str(table.name.iloc[v.layer - 1])
    ratio = measured_first_to_last_hidden(step0)
    return ModuleAdvice(table, v.verdict, v.layer, name, ratio if math.isfinite(ratio) else None,
                        vanish, explode, not_recorded)


def _lsuv_pass(model, layers, inputs, scales, tol, max_iter) -> bool:
    """One forward pass that rescales each Linear/Conv layer's weight on its first call, its
    output updated in place before the layers above see it; whether any layer was off."""
    seen, off = set(), []

    def hook(module, _inputs, z):
        if id(module) in seen or not isinstance(z, torch.Tensor):
            return
        seen.add(id(module))
        bias = module.bias
        if bias is not None and z.dim() > 2 and not isinstance(module, nn.Linear):
            bias = bias.view(-1, *[1] * (z.dim() - 2))  # a Conv's [C] against [B, C, *space]
        factor = unit_variance_(module.weight, bias, z, tol=tol, max_iter=max_iter)
        scales[id(module)] *= factor
        off.append(factor != 1.0)

    handles = [layer.module.register_forward_hook(hook) for layer in layers if layer.has_dz]
    try:
        with torch.no_grad():
            _forward(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return any(off)


def _modules_in_order(layers: list[Layer], table: pd.DataFrame) -> list[nn.Module]:
    by_name = {layer.name: layer.module for layer in layers}
    return [by_name[name] for name in table.name]
