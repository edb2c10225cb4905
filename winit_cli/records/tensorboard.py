"""TensorBoard event files for a run, written with PyTorch's own writer
(`torch.utils.tensorboard.SummaryWriter`; needs the `tensorboard` extra:
`pip install 'winit[tensorboard]'`).

Tag layout, one scalar series per tag, the step being the training step:

    <quantity>/<layer>   a column of layers.csv for one layer: act_grad_norm/features.0,
                         weight_grad_norm/layer_03, ... The layer is the module's own name for
                         runs of `winit.watch`, layer_01, layer_02, ... (input side first) for
                         runs of the CLI.
    metrics/<column>     a column of metrics.csv: metrics/train_loss, metrics/val_accuracy.
    outcome/<number>     a finished run's outcome, at its last step: test_accuracy,
                         dz_ratio_init (log10, measured), ... (OUTCOME)
    winit/verdict        text: the verdict in words, with theory's prediction where it made one

The finished run's config (dotted keys) and its scheme, model and verdict are its hparams
(TensorBoard's HParams tab, one row per run, the outcome/ numbers as its metrics), so that a
TensorBoard user sees which init did what, not only curves.

TensorBoard's Scalars tab groups the tags by quantity (one section per quantity, one chart per
layer); its Custom Scalars tab has one chart per quantity with every layer as a series (a layout
written with the events). Empty cells (a quantity that does not apply, an update not yet made)
and non-finite values are not written: layers.csv keeps them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from winit_cli.errors import ConfigError
from winit_cli.records.schema import RunRecord
from winit_cli.records.tables import TEXT_COLUMNS

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

    def outcome(self, record: RunRecord, config: dict[str, Any]) -> None:
        """A finished run's verdict as text and its config as hparams (see the top), written
        at its last step. `config`: config.yaml flattened to dotted keys."""
        from torch.utils.tensorboard.summary import hparams

        step = max(int(record.final.steps) - 1, 0)
        self._writer.add_text("winit/verdict", verdict_markdown(record), step)
        numbers = {f"outcome/{k}": v for k, v in outcome_numbers(record).items()}
        for tag, value in numbers.items():
            self._scalar(tag, value, step)
        # hparams() makes the three summaries the HParams plugin reads; written into this
        # run's own event file (SummaryWriter.add_hparams would open a folder of its own)
        writer = self._writer._get_file_writer()
        for summary in hparams(hparam_values(record, config), numbers):
            writer.add_summary(summary)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


# outcome/<name> scalars: a run's final numbers and its dz ratio (records/rows.DZ_RATIO)
OUTCOME = ("test_accuracy", "test_loss", "val_accuracy", "train_loss", "dz_ratio_init",
           "dz_ratio_predicted", "dz_ratio_end")
# config keys that say where a run was, not what it was: not hparams
NOT_HPARAMS = ("output_dir", "data.dir")


def outcome_numbers(record: RunRecord) -> dict[str, float]:
    """The finite OUTCOME numbers of a finished run."""
    v, theory = record.verdict, record.theory
    values = {**{k: getattr(record.final, k) for k in OUTCOME if hasattr(record.final, k)},
              "dz_ratio_init": v.log10_first_to_last if v else None,
              "dz_ratio_end": getattr(v, "log10_first_to_last_end", None) if v else None,
              "dz_ratio_predicted": theory.predicted_log10_ratio if theory else None}
    return {k: float(values[k]) for k in OUTCOME
            if values.get(k) is not None and math.isfinite(values[k])}


def hparam_values(record: RunRecord, config: dict[str, Any]) -> dict[str, Any]:
    """The run's hparams: what it was (scheme, model, depth, width, seed) and its verdict, then
    its config's keys; values the plugin cannot hold (lists, None) as text."""
    values = {"scheme": record.scheme, "model_kind": record.model_kind,
              "activation": record.activation, "depth": record.depth,
              "width": record.width, "seed": record.seed, "status": record.status.value,
              "verdict": record.verdict.verdict if record.verdict else "none",
              **{k: v for k, v in config.items() if k not in NOT_HPARAMS}}
    return {k: v if isinstance(v, bool | int | float | str) else json.dumps(v)
            for k, v in values.items()}


def verdict_markdown(record: RunRecord) -> str:
    """The verdict as the report words it, and what it rests on."""
    v, theory = record.verdict, record.theory
    lines = [f"**{record.scheme}**, {record.model_kind} {record.activation}, depth "
             f"{record.depth}, seed {record.seed}: {record.status.value}.",
             record.verdict_text or "no verdict recorded"]
    if v is not None and v.log10_first_to_last is not None:
        lines.append(f"dz ratio at init (log10 ||dL/dz_1|| / ||dL/dz_(L-1)||): "
                     f"{v.log10_first_to_last:+.2f}")
    if theory is not None and theory.applicable and theory.predicted_log10_ratio is not None:
        lines.append(f"mean-field prediction: {theory.predicted_log10_ratio:+.2f}"
                     + (f", chi* = {theory.chi:.3g}" if theory.chi is not None else ""))
    elif theory is not None and theory.reason:
        lines.append(f"theory: not applicable ({theory.reason})")
    return "\n\n".join(lines)


def write_tables(log_dir: Path, layers: pd.DataFrame, metrics: pd.DataFrame | None,
                 record: RunRecord | None = None, config: dict[str, Any] | None = None) -> None:
    """Event files for a finished run, from its layers.csv and metrics.csv; with its `record`
    (summary.json) and flattened `config`, its verdict and hparams too."""
    columns = measured_columns(layers)
    names = pd.Series(_names(layers), index=layers.index)
    writer = EventWriter(log_dir, columns)
    try:
        for step, rows in layers.groupby("step", sort=True):
            rows = rows.sort_values("layer")
            writer.layers(int(step), names[rows.index].tolist(), rows[columns].to_numpy(float))
        for row in _records(metrics):
            writer.metrics(row)
        if record is not None:
            writer.outcome(record, config or {})
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
