"""Runs as table rows, and the one aggregation over seeds: `compare` and `report` both use
these, so they tabulate and rank the same runs the same way.

`run_row` flattens a run record into one tidy row (comparison.csv, summary.csv); `aggregate`
groups rows by configuration (everything but the seed) into mean and std over distinct seeds,
repeats of one seed (same config hash) counting once; `ranked` orders configurations by mean
test accuracy.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from winit_cli.config import LATER_DEFAULTS
from winit_cli.records.reader import TARGET_ACCURACY, Run, steps_to  # noqa: F401 (re-exported)
from winit_cli.status import Status

HEAD = ("run_id", "path", "sweep", "dataset", "model_kind", "scheme", "activation", "depth",
        "width", "seed")
MEASURED = ("status", "verdict", "verdict_layer", "verdict_step", "verdict_fraction_of_steps",
            "log10_ratio_init", "log10_ratio_end", "zero_grad_layers_init",
            "log10_first_to_last_measured", "log10_first_to_last_predicted",
            "log10_first_to_last_end")
FINAL = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
         "test_accuracy", "steps", "train_seconds", "samples_per_second")
TAIL = ("steps_to_target", "error", "config_hash")
INTEGER = ("depth", "seed", "verdict_layer", "verdict_step", "zero_grad_layers_init", "steps",
           "steps_to_target")
AVERAGED = ("log10_ratio_init", "log10_ratio_end", "log10_first_to_last_measured",
            "log10_first_to_last_predicted", "log10_first_to_last_end", "train_accuracy",
            "val_accuracy", "test_accuracy", "steps_to_target", "train_seconds")
FINISHED = tuple(s.value for s in Status if s.finished)

# The one gradient ratio every table and sentence quotes (columns log10_first_to_last_*): the
# one mean-field theory predicts. The verdict's own rule compares each layer with the output
# layer instead (log10_ratio_init/_end: the most extreme such ratio); that is written to the CSV
# files but not shown beside this one.
DZ_FORMULA = "log10 ||dL/dz_1|| / ||dL/dz_{L-1}||"
DZ_RATIO = (f"dz ratio = {DZ_FORMULA}: the gradient backpropagated to the first hidden layer "
            "over the last hidden layer's (what mean-field theory predicts)")


# config.yaml's `source` in a `winit.watch` run's folder: its config says what was watched (the
# class, its modules, the optimizer's settings), not what to train, so it adds no grid column.
WATCH_SOURCE = "winit.watch"


def is_watched(config: dict[str, Any]) -> bool:
    """Whether a run's (flattened) config is a `winit.watch` run's."""
    return config.get("source") == WATCH_SOURCE


def column_name(key: str) -> str:
    """A config key as a column: model.depth -> model_depth."""
    return key.replace(".", "_")


def model_label(kind: str, config: dict[str, Any]) -> str:
    """The model kind with the options that make it a different network, for the model_kind
    column: `mlp`, `mlp+batchnorm`, `resmlp(k=1, learnable alpha)+layernorm+dropout=0.1`. Runs
    of different networks then never share a group, a ranking or a recommendation. `config` is
    config.yaml flattened (dotted keys); keys it lacks (older runs) read as their defaults."""
    config = {**LATER_DEFAULTS, **config}
    options = []
    if kind == "resmlp":
        k, alpha = config["model.branch_layers"], config["model.branch_scale"]
        learnable = config["model.learnable_scale"]
        options = [f"k={k}"] * (k != 2) + [f"alpha={alpha:g}"] * (alpha != 1.0)
        if learnable:
            options.append("learnable alpha")
    label = kind + (f"({', '.join(options)})" if options else "")
    norm, dropout = config["model.norm"], config["model.dropout"]
    return label + (f"+{norm}norm" if norm not in (None, "none") else "") + \
        (f"+dropout={dropout:g}" if dropout else "")


# Config keys model_label puts into model_kind: not grid columns of their own.
MODEL_LABEL_KEYS = tuple(k for k in LATER_DEFAULTS if k.startswith("model."))


def record_fields(run: Run) -> dict[str, Any]:
    """What a run's row says from its record, config, path and sweep: all of run_row but the
    grid values and steps_to_target. The run store keeps these per run (records/stored.py), so
    that a report does not parse every summary.json again."""
    r = run.record
    v = r.verdict
    theory = r.theory.model_dump(exclude_none=True) if r.theory else {}
    return {
        "run_id": r.run_id, "path": run.path, "sweep": run.sweep, "dataset": r.dataset,
        "model_kind": model_label(r.model_kind, run.config), "scheme": r.scheme,
        "activation": r.activation, "depth": r.depth, "width": r.width_label, "seed": r.seed,
        "status": r.status.value, "verdict": v.verdict if v else None,
        "verdict_layer": v.layer if v else None, "verdict_step": v.step if v else None,
        "verdict_fraction_of_steps": v.fraction_of_steps if v else None,
        "log10_ratio_init": v.log10_ratio_init if v else None,
        "log10_ratio_end": v.log10_ratio_end if v else None,
        "zero_grad_layers_init": v.zero_grad_layers_init if v else None,
        "log10_first_to_last_measured": v.log10_first_to_last if v else None,
        "log10_first_to_last_predicted": theory.get("predicted_log10_ratio"),
        "log10_first_to_last_end": getattr(v, "log10_first_to_last_end", None) if v else None,
        **{f"theory_{k}": value for k, value in sorted(theory.items())},
        **{k: getattr(r.final, k) for k in FINAL},
        "error": r.error, "config_hash": r.config_hash,
    }


def row_fields(run: Run) -> dict[str, Any]:
    """record_fields(run), as the run store kept them where it did (no summary.json parsed)."""
    return run.fields if run.fields is not None else record_fields(run)


def run_row(run: Run, grid_values: dict[str, Any]) -> dict[str, Any]:
    """One run as a row: identity, grid values (config key -> value), what was measured."""
    fields = row_fields(run)
    head = {k: fields[k] for k in HEAD}
    return {**head, **{column_name(k): value for k, value in grid_values.items()},
            **{k: value for k, value in fields.items() if k not in head},
            "steps_to_target": run.steps_to_target}


def _order(value: Any) -> tuple:
    """A sort key for mixed cells: missing first, then numbers, then text."""
    if value is None or (isinstance(value, float) and value != value):
        return (0, 0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, str(value))


def rows_frame(rows: list[dict], grid: list[str], sort: bool = True) -> pd.DataFrame:
    """Rows as a frame with a fixed column order, integers kept integers where cells are
    missing (no "8.0"), sorted by identity unless `sort` is False."""
    theory = sorted({k for r in rows for k in r if k.startswith("theory_")})
    grid_cols = [column_name(k) for k in grid]
    columns = [*HEAD, *grid_cols, *MEASURED, *theory, *FINAL, *TAIL]
    if sort:
        keys = ["dataset", "model_kind", "activation", "depth", "width", "scheme", *grid_cols,
                "seed", "path"]
        rows = sorted(rows, key=lambda r: tuple(_order(r.get(k)) for k in keys))
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    integers = [c for c in grid_cols if all(
        r.get(c) is None or (isinstance(r[c], int) and not isinstance(r[c], bool)) for r in rows)]
    for c in [*INTEGER, *integers]:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("Int64")
    return frame


def rows_by_key(frame: pd.DataFrame, columns: list[str]) -> dict[tuple, list]:
    """Row labels per distinct value of `columns`, in order of first appearance; a missing cell
    is None in the key (pd.NA has no truth value to compare with)."""
    groups: dict[tuple, list] = {}
    keys = frame[columns].astype(object).itertuples(index=False)
    for i, row in zip(frame.index, keys, strict=True):
        groups.setdefault(tuple(None if pd.isna(v) else v for v in row), []).append(i)
    return groups


# Runs are compared only within a group: the same dataset, model, budget and every other setting;
# only the compared axis (the init: scheme and its parameters) and the seed differ inside one.
GROUP = ("dataset", "model_kind", "activation", "depth", "width")


def is_compared(key: str) -> bool:
    """Whether a config key belongs to the compared axis: the init scheme and its parameters."""
    return key == "init" or key.startswith("init.")


def is_incidental(key: str) -> bool:
    """Keys that change what is recorded or how it is judged, never what is trained: runs that
    differ only in these are still compared (their labels say how they differ)."""
    return key.startswith(("record.", "diagnose."))


# Config keys shown in a column of their own (HEAD): a grid over them adds no group key.
OWN_COLUMN = ("init.scheme", "model.activation", "model.depth", "model.width", "model.widths",
              "train.seed", "data.dataset", "model.kind", *MODEL_LABEL_KEYS)


def group_keys(grid: list[str]) -> list[str]:
    """The columns that define a group: GROUP and the grid keys outside the compared axis."""
    return [*GROUP, *(column_name(k) for k in grid if not is_compared(k)
                      and not is_incidental(k) and k not in OWN_COLUMN)]


def compared_columns(grid: list[str]) -> list[str]:
    """Grid columns of the compared axis beyond the scheme itself (its parameters)."""
    return [column_name(k) for k in grid if is_compared(k) and k != "init.scheme"]


def incidental_columns(grid: list[str]) -> list[str]:
    return [column_name(k) for k in grid if is_incidental(k)]


def by_group(configs: pd.DataFrame, grid: list[str] = ()) -> dict[tuple, pd.DataFrame]:
    """Configurations (rows of `aggregate`) per group, in table order; keys follow
    `group_keys(grid)`."""
    keys = group_keys(list(grid))
    return {key: configs.loc[index] for key, index in rows_by_key(configs, keys).items()}


def config_keys(grid: list[str]) -> list[str]:
    """The columns that identify a configuration: everything that defines it but the seed."""
    return [*GROUP, "scheme", *map(column_name, grid)]


def aggregate(frame: pd.DataFrame, grid: list[str]) -> pd.DataFrame:
    """Mean and std over seeds per configuration, for the finished runs. The `members` column
    (row labels in `frame`) is for the views; it is not written out.

    Runs with the same config hash computed the same thing (the hash covers the seed): they are
    repeats, one observation, not independent seeds. Each seed's numbers are the mean of its
    repeats, and the mean and std are over distinct seeds; `runs` counts every run, `n_seeds`
    the distinct seeds and `repeats` the runs beyond one per seed."""
    keys = config_keys(grid)
    done = frame[frame.status.isin(FINISHED)]
    rows = []
    for key, index in rows_by_key(done, keys).items():
        g = done.loc[index]
        identity = g.config_hash.fillna(g.seed.astype(str))  # a row without a hash: its seed
        verdicts = g.verdict.fillna("unknown").value_counts().sort_index()
        row = dict(zip(keys, key, strict=True))
        row.update(members=index, runs=len(g), n_seeds=identity.nunique(),
                   repeats=len(g) - identity.nunique(),
                   seeds=" ".join(str(s) for s in g.seed.dropna().drop_duplicates()),
                   verdicts=" ".join(f"{v}:{n}" for v, n in verdicts.items()),
                   healthy_runs=int(((g.verdict == "healthy") & (g.status == "complete")).sum()),
                   diverged_runs=int((g.verdict == "diverged").sum()),
                   reached_target=int(g.steps_to_target.notna().sum()))
        for m in AVERAGED:
            per_seed = pd.to_numeric(g[m], errors="coerce").groupby(identity.to_numpy()).mean()
            values = per_seed.dropna()
            row[f"{m}_mean"] = float(values.mean()) if len(values) else None
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        rows.append(row)
    columns = [*keys, "members", "runs", "n_seeds", "repeats", "seeds", "verdicts",
               "healthy_runs", "diverged_runs", "reached_target",
               *(f"{m}_{s}" for m in AVERAGED for s in ("mean", "std"))]
    out = pd.DataFrame(rows, columns=columns)
    out["depth"] = out["depth"].astype("Int64")
    return out


def ranked(configs: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """Configurations best mean test accuracy first (missing last), ties by label."""
    return (configs.assign(_acc=configs.test_accuracy_mean.astype(float).fillna(-1.0),
                           _label=[labels[i] for i in configs.index])
            .sort_values(["_acc", "_label"], ascending=[False, True], kind="stable")
            .drop(columns=["_acc", "_label"]))
