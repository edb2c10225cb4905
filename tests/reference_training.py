"""An independent training loop for one config, to check what winit records against.

Plain `torch.nn.Linear` layers and `torch.optim`, statistics computed from their definitions
(measure/quantities.py's docstring) in float64, no stacking, no batched norms, no recompute band. It
shares with winit only what is an input to the experiment rather than a computation: the scheme
functions that draw the initial weights (tested against their distributions in test_inits.py)
and the batch order (`training.schedule.Batches`, tested in test_training_schedule.py).

`reference_run(config, splits)` returns what layers.csv and metrics.csv should hold, and the
final test loss and accuracy:

- step s is the network after s updates; at a recorded step the statistics are those of batch s
  at those parameters, before update s (step 0 is the network at initialization);
- L2 (train.weight_decay, plus a scheme's `l2`) is added to the weight gradients after recording,
  so the record is the data loss's gradient; biases are not decayed;
- the train loss and accuracy of a metrics row are the means over the steps since the previous
  row (that row's step excluded, this one included);
- validation runs at the start of an evaluation step (every `record.eval_every` steps, by
  default once an epoch, and at the last step), on the parameters after s updates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.config import Config
from winit_cli.datasets import Splits
from winit_cli.inits import get_scheme
from winit_cli.training.schedule import Batches

ACTIVATIONS = {"relu": F.relu, "leaky_relu": F.leaky_relu, "tanh": torch.tanh,
               "sigmoid": torch.sigmoid, "linear": lambda z: z}
# Both sides compute in float32 with different kernels, so values agree to float32 rounding at
# step 0 and drift apart slowly as the rounding differences are trained on: RTOL covers a few
# dozen steps. Fractions (of units, of examples) are counts that winit divides in float32.
RTOL = 2e-4
EXACT = ("step", "epoch", "layer", "fan_in", "fan_out")
FRACTIONS = ("dead_fraction", "saturated_fraction", "train_accuracy", "val_accuracy")


def build(config: Config, input_size: int, classes: int) -> list[nn.Linear]:
    """The network as Linear layers, drawn layer by layer (input side first) from the seed."""
    m = config.model
    sizes = [input_size, *(m.widths if m.widths is not None else [m.width] * (m.depth - 1)),
             classes]
    generator = torch.Generator().manual_seed(config.train.seed)
    scheme = get_scheme(config.init.scheme)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layer = nn.Linear(fan_in, fan_out, bias=config.model.bias)
        with torch.no_grad():
            scheme.fill(layer.weight, layer.bias, activation=config.model.activation,
                        generator=generator, **config.init.params)
        layers.append(layer)
    return layers


def forward(layers: list[nn.Linear], activation: str, x: torch.Tensor):
    """Logits, and every layer's z and output h (logits last); z keeps its gradient."""
    phi = ACTIVATIONS[activation]
    pre, post, h = [], [], x
    for l, layer in enumerate(layers):
        z = layer(h)
        if z.requires_grad:
            z.retain_grad()
        h = z if l == len(layers) - 1 else phi(z)
        pre.append(z)
        post.append(h)
    return h, pre, post


def norm(t: torch.Tensor | None) -> float:
    return math.nan if t is None else float(t.detach().double().pow(2).sum().sqrt())


def layer_stats(layers, pre, post, activation: str) -> list[dict]:
    rows = []
    for l, (layer, z, h) in enumerate(zip(layers, pre, post, strict=True)):
        hidden = l < len(layers) - 1
        z64, h64 = z.detach().double(), h.detach().double()
        mean = float(h64.mean())
        dead = saturated = math.nan
        if hidden and activation in ("relu", "leaky_relu"):
            dead = float((z64 <= 0).all(dim=0).double().mean())
        if hidden and activation == "tanh":
            saturated = float((h64.abs() > 0.99).double().mean())
        if hidden and activation == "sigmoid":
            saturated = float(((h64 < 0.01) | (h64 > 0.99)).double().mean())
        rows.append({
            "weight_grad_norm": norm(layer.weight.grad),
            "bias_grad_norm": norm(None if layer.bias is None else layer.bias.grad),
            "act_grad_norm": norm(z.grad), "weight_norm": norm(layer.weight),
            "act_mean": mean,
            "act_std": float(((h64 - mean) ** 2).sum().div(h64.numel() - 1).sqrt()),
            "dead_fraction": dead, "saturated_fraction": saturated, "update_ratio": math.nan,
        })
    return rows


def optimizer(config: Config, params) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr)
    if t.optimizer == "momentum":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum)
    return torch.optim.SGD(params, lr=t.lr)


@torch.no_grad()
def evaluate(layers, activation: str, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits, _, _ = forward(layers, activation, x)
    losses = F.cross_entropy(logits, y, reduction="none").double()
    return float(losses.mean()), float((logits.argmax(1) == y).double().mean())


def reference_run(config: Config, splits: Splits) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(layers, metrics, final) for one config trained alone, as layers.csv and metrics.csv
    should hold them (layers without the theory columns)."""
    torch.manual_seed(config.train.seed)
    t, activation = config.train, config.model.activation
    layers = build(config, splits.input_size, splits.classes)
    params = [p for layer in layers for p in layer.parameters()]
    opt = optimizer(config, params)
    decay = t.weight_decay + float(get_scheme(config.init.scheme).resolve(
        config.init.params).get("l2", 0.0))
    per_epoch = math.ceil(len(splits.x_train) / t.batch_size)
    steps = t.steps or t.epochs * per_epoch
    every, eval_every = config.record.every, config.record.eval_every or per_epoch
    batches = Batches(splits.x_train, splits.y_train, [t.seed], t.batch_size)
    layer_rows, metric_rows, window = [], [], []
    for step in range(steps + 1):
        recorded = step % every == 0 or step == steps
        evaluated = (step > 0 and step % eval_every == 0) or step == steps
        validation = evaluate(layers, activation, splits.x_val, splits.y_val) \
            if evaluated else None
        xb, yb = batches.get(step)
        opt.zero_grad(set_to_none=True)
        logits, pre, post = forward(layers, activation, xb[0])
        loss = F.cross_entropy(logits, yb[0])
        loss.backward()
        window.append((loss.item(), float((logits.argmax(1) == yb[0]).double().mean())))
        stats = layer_stats(layers, pre, post, activation) if recorded else None
        if step < steps:
            before = [layer.weight.detach().clone() for layer in layers]
            with torch.no_grad():
                for layer in layers:
                    layer.weight.grad += decay * layer.weight
            opt.step()
            if stats is not None:
                for row, layer, old in zip(stats, layers, before, strict=True):
                    row["update_ratio"] = norm(layer.weight - old) / norm(old)
        epoch = step // per_epoch
        if stats is not None:
            for l, (row, layer) in enumerate(zip(stats, layers, strict=True)):
                layer_rows.append({"step": step, "epoch": epoch, "layer": l + 1,
                                   "fan_in": layer.in_features, "fan_out": layer.out_features,
                                   **row})
        if recorded or evaluated:
            row = {"step": step, "epoch": epoch,
                   "train_loss": sum(v[0] for v in window) / len(window),
                   "train_accuracy": sum(v[1] for v in window) / len(window)}
            if validation is not None:
                row["val_loss"], row["val_accuracy"] = validation
            metric_rows.append(row)
            window = []
    test_loss, test_accuracy = evaluate(layers, activation, splits.x_test, splits.y_test)
    return (pd.DataFrame(layer_rows), pd.DataFrame(metric_rows),
            {"test_loss": test_loss, "test_accuracy": test_accuracy, "steps": steps})


def assert_frames_match(actual: pd.DataFrame, expected: pd.DataFrame, what: str) -> None:
    """Same rows and columns (actual may have more columns); numbers within RTOL, act_mean
    within RTOL of the layer's act_std (a mean near 0 has no relative precision)."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} rows, expected {len(expected)}"
    assert set(expected.columns) <= set(actual.columns), what
    actual = actual.reset_index(drop=True)
    for column in expected.columns:
        a = actual[column].to_numpy(dtype=float)
        e = expected[column].to_numpy(dtype=float)
        assert (np.isnan(a) == np.isnan(e)).all(), f"{what} {column}: empty cells differ"
        if column in EXACT:
            tol = 0
        elif column in FRACTIONS:
            tol = 1e-6
        elif column == "act_mean":
            tol = RTOL * expected.act_std.to_numpy(dtype=float) + RTOL * np.abs(e)
        else:
            tol = RTOL * np.abs(e)
        bad = ~np.isnan(e) & ~(np.abs(a - e) <= tol)
        assert not bad.any(), (f"{what} {column}: rows {np.flatnonzero(bad).tolist()} differ\n"
                               f"winit {a[bad][:5]}\nreference {e[bad][:5]}")
