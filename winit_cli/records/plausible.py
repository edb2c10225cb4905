"""What no honest run record holds: a record is read back only if its values could have been
measured. summary.json's schema types every field; this checks what types cannot: accuracies
are fractions, counts and norms are not negative, a width is positive, an MLP's layer rows are
its depth's, a (step, layer) row is written once. A run that fails is left out with the reason
(`winit report`, `compare`), never reported: a test accuracy of 7.0 once showed as 700.0% and was
recommended.

Non-finite values are not implausible: winit writes an unmeasurable number as null (an empty
cell), and a diverged run's norms may be inf; both are shown as such, never ranked.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from winit_cli.records.schema import RunRecord

# Columns of layers.csv and metrics.csv that are fractions of something, and those that are
# counts or norms (every `*_norm` column too).
FRACTIONS = ("dead_fraction", "saturated_fraction", "train_accuracy", "val_accuracy",
             "test_accuracy")
NOT_NEGATIVE = ("step", "epoch", "fan_in", "fan_out", "update_ratio", "act_std")


def record_problem(record: RunRecord) -> str | None:
    """Why summary.json's values cannot be true, or None (its schema bounds the final numbers:
    accuracies in [0, 1], counts and seconds not negative)."""
    widths = record.width if isinstance(record.width, list) else [record.width]
    if record.depth < 1:
        return f"summary.json: depth {record.depth} (at least 1)"
    if not widths or min(widths) < 1:
        return f"summary.json: width {record.width_label} (positive)"
    return None


def out_of_bounds(column: str, values: np.ndarray) -> np.ndarray | None:
    """Where a column's values (floats; NaN compares False) cannot be true, or None where the
    column has no bounds."""
    with np.errstate(invalid="ignore"):
        if column in FRACTIONS:
            return (values < 0) | (values > 1)
        if column in NOT_NEGATIVE or column.endswith("_norm") or "_abs_" in column:
            return values < 0
    return None


def suspects(table: pa.Table, owner: np.ndarray, keys: tuple[str, ...] = ("step", "layer")
             ) -> set[int]:
    """The owners (runs, numbered in `owner`, one per row) of many runs' rows of one table in
    which table_problem could find something: a value out of bounds or a key pair seen twice.
    One pass over all of them; only these runs need table_problem's own reading."""
    found: set[int] = set()
    for column in table.column_names:
        kind = table.schema.field(column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            continue
        bad = out_of_bounds(column, table[column].to_numpy(zero_copy_only=False).astype(float))
        if bad is not None:
            found.update(np.unique(owner[bad]).tolist())
    present = [k for k in keys if k in table.column_names]
    if present:
        frame = pd.DataFrame({"owner": owner, **{k: table[k].to_numpy(zero_copy_only=False)
                                                 for k in present}})
        found.update(np.unique(owner[frame.duplicated().to_numpy()]).tolist())
    return found


def layers_suspects(layer: np.ndarray, owner: np.ndarray, depth: np.ndarray,
                    mlp: np.ndarray) -> set[int]:
    """The owners in which layers_problem could find something, in one pass over many runs'
    layers.csv rows (`depth` and `mlp` by owner): not every layer whole and at least 1, or an
    MLP whose layers are not exactly 1 to its depth."""
    frame = pd.DataFrame({"owner": owner, "layer": layer.astype(float)})
    per = frame.groupby("owner").layer.agg(["min", "max", "nunique"])
    whole = frame.assign(whole=np.isfinite(frame.layer) & (frame.layer % 1 == 0)
                         ).groupby("owner").whole.all()
    want = depth[per.index.to_numpy()]
    ok = (per["min"] >= 1) & whole & (~mlp[per.index.to_numpy()] | (
        (per["min"] == 1) & (per["max"] == want) & (per["nunique"] == want)))
    return set(per.index[~ok.to_numpy()].tolist())


def table_problem(name: str, frame: pd.DataFrame) -> str | None:
    """Why a run's table (layers.csv, metrics.csv) cannot be true, or None."""
    # numpy, not a pandas operation per column: a cold report checks every run's tables
    numeric = set(frame.select_dtypes("number").columns)
    for column in frame.columns:
        if column not in numeric:
            continue
        bad = out_of_bounds(column, frame[column].to_numpy(dtype=float, na_value=np.nan))
        if bad is not None and bad.any():
            row = int(bad.nonzero()[0][0])
            fraction = column in FRACTIONS
            what = "a fraction in [0, 1]" if fraction else "negative"
            verb = "is not" if fraction else "is"
            return f"{name} line {row + 2}: {column} {frame[column].iloc[row]:g} {verb} {what}"
    keys = [k for k in ("step", "layer") if k in frame.columns]
    if keys:
        twice = frame.duplicated(keys)
        if twice.any():
            row = int(twice.to_numpy().nonzero()[0][0])
            where = ", ".join(f"{k} {frame[k].iloc[row]}" for k in keys)
            return f"{name} line {row + 2}: a second row for {where}"
    return None


def layers_problem(record: RunRecord, layers: pd.DataFrame) -> str | None:
    """Why layers.csv cannot be this record's: a layer numbered below 1, or an MLP whose
    layer rows are not its depth's (layers 1 to depth, as many as its Linear layers)."""
    if (layers["layer"] < 1).any():
        return f"layers.csv: layer {int(layers['layer'].min())} (numbered from 1)"
    if record.model_kind == "mlp":
        found = sorted(int(v) for v in layers["layer"].unique() if not math.isnan(v))
        if found != list(range(1, record.depth + 1)):
            return f"layers.csv: rows for layers {found[0]} to {found[-1]} " \
                   f"({len(found)} of them), but depth is {record.depth}"
    return None
