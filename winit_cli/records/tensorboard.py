"""TensorBoard event files for a run, written with PyTorch's own writer
(`torch.utils.tensorboard.SummaryWriter`; needs the `tensorboard` extra:
`pip install 'winit[tensorboard]'`).

Tag layout, one scalar series per tag, the step being the training step:

    <quantity>/<layer>   a column of layers.csv for one layer: act_grad_norm/features.0,
                         weight_grad_norm/layer_03, ... The layer is the module's own name for
                         runs of `winit.watch`, layer_01, layer_02, ... (input side first) for
                         runs of the CLI.
    metrics/<column>     a column of metrics.csv: metrics/train_loss, metrics/val_accuracy.

TensorBoard's Scalars tab groups the tags by quantity (one section per quantity, one chart per
layer); its Custom Scalars tab has one chart per quantity with every layer as a series (a layout
written with the events). Empty cells (a quantity that does not apply, an update not yet made)
and non-finite values are not written: layers.csv keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from winit_cli.errors import ConfigError
from winit_cli.records.reader import TEXT_COLUMNS

# layers.csv columns that say which row it is, not what was measured (a residual net's block
# and role among them); the predicted_* columns (theory, step 0 only) are left out too.
IDENTITY = ("step", "epoch", "layer", "fan_in", "fan_out", "block", *TEXT_COLUMNS)
NOT_METRICS = ("step", "epoch")
FLUSH_SECONDS = 5  # how stale a live chart may be


def layer_tag(quantity: str, layer: str) -> str:
    return f"{quantity}/{layer}"


def cli_layer_name(layer: int) -> str:
    """The name a CLI run's layer (1-based) gets in tags: its layers.csv has no name column."""
    return f"layer_{layer:02d}"


def cli_layer_names(depth: int) -> list[str]:
    return [cli_layer_name(l) for l in range(1, depth + 1)]


def measured_columns(layers: pd.DataFrame) -> list[str]:
    """The columns of a layers.csv that hold measurements (measure/quantities.py `columns()`)."""
    return [c for c in layers.columns if c not in IDENTITY and not c.startswith("predicted_")]


def custom_layout(quantities: Sequence[str]) -> dict:
    """The Custom Scalars tab: one multi-line chart per quantity, a series per layer."""
    per_layer = {q: ["Multiline", [rf"^{q}/"]] for q in quantities}
    metrics = {"loss": ["Multiline", [r"^metrics/.*loss"]],
               "accuracy": ["Multiline", [r"^metrics/.*accuracy"]]}
    return {"winit: per-layer quantities": per_layer, "winit: metrics": metrics}


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        raise ConfigError("TensorBoard output needs the tensorboard package: "
                          "pip install 'winit[tensorboard]'") from None
    return SummaryWriter


class EventWriter:
    """Event files in `log_dir` (a run folder), in the layout above, for layers.csv's measured
    `quantities` (in its column order)."""

    def __init__(self, log_dir: Path, quantities: Sequence[str],
                 flush_secs: int = FLUSH_SECONDS):
        self.quantities = list(quantities)
        self._writer = _summary_writer()(log_dir=str(log_dir), flush_secs=flush_secs)
        self._writer.add_custom_scalars(custom_layout(self.quantities))

    def layers(self, step: int, names: Sequence[str], values: np.ndarray) -> None:
        """One recorded step: values [layers, quantities], a row per name."""
        for j, quantity in enumerate(self.quantities):
            for name, value in zip(names, values[:, j], strict=True):
                self._scalar(layer_tag(quantity, name), value, step)

    def metrics(self, row: dict) -> None:
        """One row of metrics.csv (it holds its step)."""
        for column, value in row.items():
            if column not in NOT_METRICS and isinstance(value, int | float | np.floating):
                self._scalar(f"metrics/{column}", value, int(row["step"]))

    def _scalar(self, tag: str, value, step: int) -> None:
        value = float(value)
        if math.isfinite(value):
            self._writer.add_scalar(tag, value, int(step))

    def close(self) -> None:
        self._writer.close()


def write_tables(log_dir: Path, layers: pd.DataFrame, metrics: pd.DataFrame | None) -> None:
    """Event files for a finished run, from its layers.csv and metrics.csv."""
    columns = measured_columns(layers)
    names = pd.Series(_names(layers), index=layers.index)
    writer = EventWriter(log_dir, columns)
    try:
        for step, rows in layers.groupby("step", sort=True):
            rows = rows.sort_values("layer")
            writer.layers(int(step), names[rows.index].tolist(), rows[columns].to_numpy(float))
        for row in _records(metrics):
            writer.metrics(row)
    finally:
        writer.close()


def _names(layers: pd.DataFrame) -> list[str]:
    """Each row's layer as tags name it: the module's name (watched runs) or layer_01, ..."""
    if "name" in layers:
        return layers["name"].astype(str).tolist()
    return [cli_layer_name(int(l)) for l in layers["layer"]]


def _records(metrics: pd.DataFrame | None) -> Iterable[dict]:
    if metrics is None or "step" not in metrics:
        return []
    return metrics.to_dict("records")
