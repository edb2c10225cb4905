"""Numbers and settings as text, the same way on the terminal and in the report: exponents kept
whole, integral floats without a trailing `.0`, and the sentence that sets theory's depth scale
beside what was measured."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def missing(x: Any) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def sci(x: Any, digits: int = 3) -> str:
    """8.47e-02 (digits significant), `-` where nothing was measured; inf and nan spelled out."""
    if missing(x):
        return "-"
    return f"{float(x):.{digits - 1}e}" if math.isfinite(x) else str(float(x))


def signed(x: Any, decimals: int = 2) -> str:
    return "-" if missing(x) else f"{float(x):+.{decimals}f}"


def pct(x: Any, decimals: int = 1) -> str:
    return "-" if missing(x) else f"{100 * float(x):.{decimals}f}%"


def number(x: Any) -> str:
    """A value as people write it: 200 not 200.0 (pandas makes floats of integer columns with
    gaps), 0.001 not 1e-03, 1.1e+22 not 22 digits."""
    if missing(x):
        return "-"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def loss(x: float) -> str:
    """A training loss: 4 decimals, or 1.1e+22 when it runs away."""
    if not math.isfinite(x):
        return "non-finite"
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.1e}"


# How a setting reads, by column name (config key with underscores: train_steps).
_SETTING = {"train_steps": "{} steps", "train_epochs": "{} epochs", "train_lr": "lr {}",
            "train_optimizer": "{}", "train_batch_size": "batch {}", "model_bias": "bias {}"}


def setting(column: str, value: Any) -> str:
    """One config setting in words: `200 steps`, `lr 0.1`, `std=0.01`, `data_subset=1000`."""
    text = number(value)
    if column in _SETTING:
        return _SETTING[column].format(text).replace("1 epochs", "1 epoch")
    return f"{column.removeprefix('init_params_')}={text}"


def group_title(values: dict[str, Any]) -> str:
    """A group in words: `mnist, mlp relu, depth 20, width 256, 200 steps` (values by column:
    records/rows.group_keys)."""
    v = dict(values)
    text = (f"{v.pop('dataset')}, {v.pop('model_kind')} {v.pop('activation')}, "
            f"depth {number(v.pop('depth'))}, width {v.pop('width')}")
    return ", ".join([text, *(setting(k, x) for k, x in v.items() if not missing(x))])


# The scheme a `winit.watch` run records when the caller names none (watch(..., scheme=) names
# it), and how the report calls it: the init is the user's own, not an unknown one.
UNNAMED_SCHEME = "unknown"
USERS_INIT = "user's init"


def config_labels(configs: pd.DataFrame, compared: list[str], incidental: list[str],
                  code: bool = True) -> dict[Any, str]:
    """A label per configuration (rows of records/rows.aggregate): the scheme and the compared
    settings (its parameters); settings that change only what is recorded are added only where
    two labels would otherwise read the same. `code` wraps the scheme in backticks."""
    def label(row: pd.Series, columns: list[str]) -> str:
        if "init" in row and not missing(row["init"]):  # a sweep's init axis: normal(std=0.01)
            head, extra = str(row["init"]), []
        elif row["scheme"] == UNNAMED_SCHEME:  # a watched run whose init the user did not name
            return USERS_INIT
        else:
            head = str(row["scheme"])
            extra = [setting(c, row[c]) for c in columns if c != "init" and not missing(row[c])]
        head = f"`{head}`" if code else head
        return head + (f" ({', '.join(extra)})" if extra else "")

    labels = {i: label(row, compared) for i, row in configs.iterrows()}
    repeated = {t for t in labels.values() if list(labels.values()).count(t) > 1}
    for i, row in configs.iterrows():
        if labels[i] in repeated:
            labels[i] = label(row, [*compared, *incidental])
    return labels


def depth_scale_words(chi: float | None, xi: float | None, depth: Any) -> str:
    """Theory's reading of chi* and xi (Schoenholz et al. 2017), worded as an expectation to set
    beside the measured outcome: nets much deeper than about 6 xi are expected not to train."""
    if missing(chi):
        return ""
    if abs(chi - 1) <= 0.05:
        return f"chi* = {chi:.3g}, critical: no exponential vanishing or explosion with depth " \
               "is expected"
    text = f"chi* = {chi:.3g} per layer, so gradients are expected to " \
           f"{'vanish' if chi < 1 else 'explode'} with depth"
    if not missing(xi) and math.isfinite(xi) and xi > 0 and not missing(depth):
        relation = "beyond" if depth > 6 * xi else "within"
        text += (f", and nets much deeper than about 6 xi = {6 * xi:.3g} layers (xi = "
                 f"{xi:.3g}) not to train; depth {number(depth)} is {relation} that")
    return text
