"""layers.csv as a frame, from the records a run kept: one row per recorded step and layer, the
same for CLI runs and `winit.watch` (which adds each module's `name` after `layer`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

HEAD = ("step", "epoch", "layer", "fan_in", "fan_out")


def layers_frame(steps: Sequence[tuple[int, int | None]], values: Sequence[np.ndarray],
                 fans: Sequence[tuple[int, int]], columns: Sequence[str]) -> pd.DataFrame:
    """Record i, at steps[i] = (step, epoch or None), holds values[i] ([L_i, len(columns)])
    for layers 1..L_i, whose (fan_in, fan_out) are the first L_i of `fans`; L_i may grow from
    one record to the next (a watched module that first runs later has rows from then on).
    The epoch column is an integer where every record has one, else float with NaN."""
    if not len(values):
        return pd.DataFrame(columns=[*HEAD, *columns])
    counts = np.array([len(v) for v in values])
    table = np.concatenate(values)  # [rows, len(columns)]
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    layer = np.arange(len(table)) - starts + 1  # 1-based within its record
    step, epoch = zip(*steps, strict=True)
    epochs = np.array(epoch) if None not in epoch else \
        np.array([np.nan if e is None else e for e in epoch], dtype=float)
    fan_in, fan_out = (np.array(f) for f in zip(*fans, strict=True))
    return pd.DataFrame({
        "step": np.repeat(np.array(step), counts),
        "epoch": np.repeat(epochs, counts),
        "layer": layer,
        "fan_in": fan_in[layer - 1],
        "fan_out": fan_out[layer - 1],
        **{name: table[:, j] for j, name in enumerate(columns)}})
