"""`winit report`: tables, plots and a written account of finished runs, from their files alone.

    <out>/summary.csv     one row per run: identity, grid values, verdict (where and when),
                          log10 gradient ratios, predicted vs measured, accuracies, time
          aggregate.csv   one row per configuration (everything but the seed): mean, std
          report.md       what happened, in sentences built from the numbers, with the plots
          report.html     the same, self-contained (plots embedded as data URIs)
          plots/*.png     per (activation, depth, width): gradient heatmaps, gradient flow at
                          step 0, training curves; and test accuracy vs depth

Runs are found by searching the given folders for directories holding config.yaml or
summary.json, so loose runs, sweeps (<sweep>/runs/<run-id>/) and copies of either all work. A run
whose summary says `running`, or whose summary or layers.csv is missing or unreadable, is listed
as not included and skipped. Paths are written relative to the folder searched and nothing
time-dependent is added: the same results give the same CSV files, byte for byte.

Grid columns are the config keys (dotted, written with underscores: train_lr) that differ among
the reported runs, plus a sweep's grid axes. Interrupted and failed runs are tabulated but never
ranked. The recommendation for an (activation, depth, width) is the configuration with the best
mean test accuracy among those whose every run completed with healthy gradients.

This module finds and reads the runs, builds the tables and draws the figures; the sentences and
the Markdown/HTML writer are in report_text.py.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from winit_cli.errors import ResultsError
from winit_cli.measure.diagnose import measured_first_to_last_hidden
from winit_cli.records import files as results
from winit_cli.records.files import RUN_MARKERS, Run, Skipped, find_run_dirs, finite, load_run
from winit_cli.sweeps.sweep import DONE, column_name
from winit_cli.views import plots
from winit_cli.views.report_text import config_label, group_title, intro_paragraphs, write_text

# Config keys that don't change what a run computes, and those that have their own column.
BOOKKEEPING = ("name", "output_dir", "data.dir")
OWN_COLUMN = ("init.scheme", "model.activation", "model.depth", "model.width", "model.widths",
              "train.seed")
HEAD = ("run_id", "path", "sweep", "scheme", "activation", "depth", "width", "seed")
MEASURED = ("status", "verdict", "verdict_layer", "verdict_step", "verdict_fraction_of_steps",
            "log10_ratio_init", "log10_ratio_end", "zero_grad_layers_init",
            "log10_first_to_last_measured", "log10_first_to_last_predicted")
FINAL = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
         "test_accuracy", "steps", "train_seconds", "samples_per_second")
INTEGER = ("depth", "seed", "verdict_layer", "verdict_step", "zero_grad_layers_init", "steps")
AVERAGED = ("log10_ratio_init", "log10_ratio_end", "log10_first_to_last_measured",
            "log10_first_to_last_predicted", "train_accuracy", "val_accuracy", "test_accuracy",
            "train_seconds")
GROUP = ("activation", "depth", "width")


@dataclass
class Report:
    out: Path
    summary: pd.DataFrame
    aggregate: pd.DataFrame
    skipped: list[Skipped]
    recommendations: list[str]  # one line per group, markdown inline (`code`, **bold**)
    files: list[Path]


# --- the summary table --------------------------------------------------------------------------


def _width(value: Any) -> Any:
    return "-".join(str(v) for v in value) if isinstance(value, list) else value


def grid_keys(runs: list[Run]) -> list[str]:
    """Config keys (beyond the usual columns) that tell these runs apart, plus sweep grid axes."""
    known = [r for r in runs if r.config]  # a run without config.yaml tells nothing apart
    keys = {k for r in known for k in r.sweep_grid if any(k in s.config for s in known)}
    for key in {k for r in known for k in r.config}:
        if len({json.dumps(r.config.get(key), default=str) for r in known}) > 1:
            keys.add(key)
    return sorted(k for k in keys if k not in BOOKKEEPING and k not in OWN_COLUMN)


def _init_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """The step-0 records (the network at initialization), one per layer, input side first."""
    return layers[layers.step == 0].drop_duplicates("layer").sort_values("layer")


def _first_to_last_hidden(init: pd.DataFrame) -> tuple[float | None, float | None]:
    """log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| at step 0, measured and (if saved) predicted; None
    where it is not a number or there is one hidden layer or none. `init`: `_init_rows`."""
    if len(init) < 3:
        return None, None
    predicted = None
    if "predicted_log10_grad_ratio" in init:
        p = init.predicted_log10_grad_ratio
        predicted = finite(float(p.iloc[0] - p.iloc[-2]))
    return finite(measured_first_to_last_hidden(init)), predicted


def summary_row(run: Run, grid: list[str]) -> dict[str, Any]:
    s, c = run.summary, run.config
    verdict = s.get("verdict")
    verdict = {"verdict": verdict} if isinstance(verdict, str) else (verdict or {})
    final = s.get("final") if isinstance(s.get("final"), dict) else {}
    theory = s.get("theory") if isinstance(s.get("theory"), dict) else {}
    init = _init_rows(run.layers)
    measured, predicted = _first_to_last_hidden(init)
    if finite(theory.get("predicted_log10_ratio")) is not None:
        predicted = theory["predicted_log10_ratio"]  # the run's own statement wins
    row = {
        "run_id": s.get("run_id") or Path(run.path).name, "path": run.path, "sweep": run.sweep,
        "scheme": s.get("scheme", c.get("init.scheme")),
        "activation": s.get("activation", c.get("model.activation")),
        "depth": s.get("depth", c.get("model.depth")),
        "width": _width(s.get("width", c.get("model.width"))),
        "seed": s.get("seed", c.get("train.seed")),
        **{column_name(k): c.get(k) for k in grid},
        "status": s.get("status"), "verdict": verdict.get("verdict"),
        "verdict_layer": verdict.get("layer"), "verdict_step": verdict.get("step"),
        "verdict_fraction_of_steps": verdict.get("fraction_of_steps"),
        "log10_ratio_init": verdict.get("log10_ratio_init"),
        "log10_ratio_end": verdict.get("log10_ratio_end"),
        # The verdict's ratios are empty where a gradient underflowed to 0: count those layers.
        "zero_grad_layers_init": int((init.act_grad_norm == 0).sum()) if len(init) else None,
        "log10_first_to_last_measured": measured, "log10_first_to_last_predicted": predicted,
        **{f"theory_{k}": v for k, v in sorted(theory.items()) if finite(v) is not None
           or v is None},
        **{k: final.get(k) for k in FINAL},
        "config_hash": s.get("config_hash"),
    }
    return row


def _order(value: Any) -> tuple:
    """A sort key for mixed cells: missing first, then numbers, then text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0, 0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, str(value))


def summary_frame(rows: list[dict], grid: list[str]) -> pd.DataFrame:
    theory = sorted({k for r in rows for k in r if k.startswith("theory_")})
    columns = [*HEAD, *map(column_name, grid), *MEASURED, *theory, *FINAL, "config_hash"]
    sort = [*GROUP, "scheme", *map(column_name, grid), "seed", "path"]
    rows = sorted(rows, key=lambda r: tuple(_order(r.get(k)) for k in sort))
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    integers = [c for c in map(column_name, grid) if all(
        r.get(c) is None or (isinstance(r[c], int) and not isinstance(r[c], bool)) for r in rows)]
    for c in [*INTEGER, *integers]:  # no "8.0" where a value is missing
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("Int64")
    return frame


def _rows_by_key(frame: pd.DataFrame, columns: list[str]) -> dict[tuple, list]:
    """Row labels per distinct value of `columns`, in order of first appearance; a missing cell
    is None in the key (pd.NA has no truth value to compare with)."""
    groups: dict[tuple, list] = {}
    keys = frame[columns].astype(object).itertuples(index=False)
    for i, row in zip(frame.index, keys, strict=True):
        groups.setdefault(tuple(None if pd.isna(v) else v for v in row), []).append(i)
    return groups


def aggregate_frame(summary: pd.DataFrame, grid: list[str]) -> pd.DataFrame:
    """Mean and std (over seeds) per configuration, for the runs that finished. The `members`
    column (summary row labels) is for this module; it is not written out."""
    keys = [*GROUP, "scheme", *map(column_name, grid)]
    done = summary[summary.status.isin(DONE)]
    rows = []
    for key, index in _rows_by_key(done, keys).items():
        g = done.loc[index]
        verdicts = g.verdict.fillna("unknown").value_counts().sort_index()
        row = dict(zip(keys, key, strict=True))
        row.update(members=index, runs=len(g), seeds=" ".join(str(s) for s in g.seed.dropna()),
                   verdicts=" ".join(f"{v}:{n}" for v, n in verdicts.items()),
                   healthy_runs=int(((g.verdict == "healthy") & (g.status == "complete")).sum()))
        for m in AVERAGED:
            values = pd.to_numeric(g[m], errors="coerce").dropna()
            row[f"{m}_mean"] = float(values.mean()) if len(values) else None
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        rows.append(row)
    columns = [*keys, "members", "runs", "seeds", "verdicts", "healthy_runs",
               *(f"{m}_{s}" for m in AVERAGED for s in ("mean", "std"))]
    frame = pd.DataFrame(rows, columns=columns)
    frame["depth"] = frame["depth"].astype("Int64")
    return frame


def by_group(aggregate: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Configurations per (activation, depth, width), in the table's order."""
    return {key: aggregate.loc[index]
            for key, index in _rows_by_key(aggregate, list(GROUP)).items()}


# --- filters ------------------------------------------------------------------------------------


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ResultsError(f"--filter {item!r}: expected KEY=VALUE, e.g. scheme=he_normal")
        wanted.setdefault(key.strip(), []).append(value.strip())
    return wanted


def _matches(value: Any, wanted: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return wanted.lower() in ("", "none", "null")
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == wanted


def _keep(fields: dict, wanted: dict[str, list[str]], strict: bool) -> bool:
    """Different keys must all match, a repeated key matches any of its values. A skipped run
    (strict=False) whose summary lacks a key is kept, so that broken runs are still listed."""
    for key, values in wanted.items():
        if key not in fields:
            if strict:
                return False
            continue
        if not any(_matches(fields[key], v) for v in values):
            return False
    return True


# --- plots --------------------------------------------------------------------------------------


def _slug(key: tuple) -> str:
    activation, depth, width = key
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{activation}_d{depth}_w{width}")


def _geomean(arrays: list[np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 ** np.mean(np.log10(np.stack(arrays)), axis=0)


def _flow_line(label: str, color: str, runs: list[Run]) -> plots.FlowLine:
    init = [_init_rows(r.layers) for r in runs]
    depth = min(len(f) for f in init)
    init = [f.iloc[:depth] for f in init]
    predicted = None
    if all("predicted_log10_grad_ratio" in f for f in init):
        # predicted norm = measured output-layer norm x 10^(predicted log10 ratio to it)
        predicted = _geomean([f.act_grad_norm.iloc[-1] * 10 ** f.predicted_log10_grad_ratio
                              .to_numpy(float) for f in init])
    return plots.FlowLine(label, color, init[0].layer.to_numpy(),
                          _geomean([f.act_grad_norm.to_numpy(float) for f in init]),
                          _geomean([f.weight_grad_norm.to_numpy(float) for f in init]), predicted)


def _heatmap_title(row: pd.Series, label: str) -> str:
    what = row.verdict or "?"
    if what in ("vanishing", "exploding", "diverged") and not pd.isna(row.verdict_layer):
        what += f" from layer {row.verdict_layer}, step {row.verdict_step}"
    return f"{label.replace('`', '')}, seed {row.seed}\n{what}"


def draw(out: Path, summary: pd.DataFrame, aggregate: pd.DataFrame, runs: dict[str, Run],
         labels: dict) -> dict[tuple | None, list[tuple[str, str]]]:
    """All figures, as {group: [(alt text, path relative to out)]}; None holds accuracy vs
    depth. Figures left from an earlier report in the same folder are removed first."""
    plot_dir = out / "plots"
    for stale in plot_dir.glob("*.png") if plot_dir.is_dir() else []:
        stale.unlink()
    colors = plots.colors_for(list(labels.values()))
    figures: dict[tuple | None, list[tuple[str, str]]] = {}
    for key, configs in list(by_group(aggregate).items())[:plots.MAX_GROUPS]:
        title, slug = group_title(key), _slug(key)
        flows, curves, panels = [], [], []
        for i, cfg in configs.iterrows():
            members = [runs[p] for p in summary.loc[cfg.members, "path"]]
            label = labels[i].replace("`", "")
            flows.append(_flow_line(label, colors[labels[i]], members))
            curves.append(plots.Curve(label, colors[labels[i]],
                                      [m.metrics for m in members if m.metrics is not None]))
            if len(panels) < plots.MAX_PANELS:
                first = summary.loc[cfg.members[0]]
                panels.append(plots.Panel(_heatmap_title(first, labels[i]),
                                          runs[first.path].layers))
        made = [
            ("gradient flow at init", plots.gradient_flow(
                flows, f"Gradient flow at initialization (step 0): {title}",
                plot_dir / f"gradient_flow_{slug}.png")),
            ("gradient heatmaps", plots.gradient_heatmaps(
                panels, f"log10 ||dL/dz|| by layer and step: {title}",
                plot_dir / f"heatmaps_{slug}.png")),
            ("training curves", plots.training_curves(
                curves, f"Training and validation: {title}", plot_dir / f"curves_{slug}.png")),
        ]
        figures[key] = [(alt, path.relative_to(out).as_posix()) for alt, path in made]
    depths = aggregate.groupby(["activation", "width"], dropna=False).depth.nunique()
    if (depths > 1).any():
        varied = aggregate.set_index(["activation", "width"]).index.isin(
            depths[depths > 1].index)
        scheme_colors = {row.scheme: colors[labels[i]] for i, row in aggregate.iterrows()}
        path = plots.accuracy_vs_depth(aggregate[varied], scheme_colors,
                                       plot_dir / "accuracy_vs_depth.png")
        figures[None] = [("test accuracy vs depth", path.relative_to(out).as_posix())]
    return figures


# --- the whole report ---------------------------------------------------------------------------


def _root_of(paths: list[Path]) -> Path:
    root = Path(os.path.commonpath([str(p) for p in paths]))
    return root.parent if any((root / m).is_file() for m in RUN_MARKERS) else root


def build_report(paths: list[Path], out: Path | None = None,
                 filters: list[str] = ()) -> Report:
    wanted = parse_filters(list(filters))
    paths = [Path(p) for p in paths] or [Path("results")]
    for p in paths:
        if not p.is_dir():
            what = "not a directory" if p.exists() else "no such directory"
            raise ResultsError(f"{p}: {what} (give run directories, sweep directories or "
                               "folders of them)")
    resolved = sorted({p.resolve() for p in paths})
    root = _root_of(resolved)
    # Beside the runs, never inside one: a run directory stays the record of that run.
    single_sweep = len(resolved) == 1 and not any((resolved[0] / m).is_file() for m in RUN_MARKERS)
    out = Path(out) if out is not None else (paths[0] if single_sweep else root) / "report"
    dirs = sorted({d for p in resolved for d in find_run_dirs(p)})
    if not dirs:
        raise ResultsError(f"{', '.join(map(str, paths))}: no run directories found (a run "
                           "directory holds config.yaml and summary.json)")
    loaded = [load_run(d, root) for d in dirs]
    runs = [r for r in loaded if isinstance(r, Run)]
    skipped = [s for s in loaded if isinstance(s, Skipped)]

    if wanted:
        grid = grid_keys(runs)
        rows = [summary_row(r, grid) for r in runs]
        known = set(HEAD) | set(MEASURED) | set(FINAL) | {k for r in rows for k in r} \
            | {k for r in runs for k in r.config}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise ResultsError(f"--filter {unknown[0]}: unknown field; known: "
                               f"{', '.join(sorted(set(HEAD) | set(MEASURED) | set(FINAL)))} "
                               "and dotted config keys such as model.depth")
        runs = [r for r, row in zip(runs, rows, strict=True)
                if _keep({**r.config, **row}, wanted, strict=True)]
        if not runs:
            raise ResultsError(f"no finished run matches --filter {' '.join(filters)}")
        skipped = [s for s in skipped if _keep(s.fields, wanted, strict=False)]

    grid = grid_keys(runs)
    summary = summary_frame([summary_row(r, grid) for r in runs], grid)
    aggregate = aggregate_frame(summary, grid)
    groups = by_group(aggregate)
    labels = {i: config_label(row, grid) for i, row in aggregate.iterrows()}
    files = [out / "summary.csv", out / "aggregate.csv"]
    results.write_csv(files[0], summary)
    results.write_csv(files[1], aggregate.drop(columns="members"))

    figures = draw(out, summary, aggregate, {r.path: r for r in runs}, labels) \
        if len(aggregate) else {}
    thresholds = ["/".join(sorted({f"{r.config.get(f'diagnose.{k}_decades', 2.0):g}"
                                   for r in runs}) or {"2"}) for k in ("vanish", "explode")]
    not_included = [*skipped, *_unranked(summary)]
    intro = intro_paragraphs(summary, groups, not_included, root, wanted, thresholds)
    doc, recommendations = write_text(summary, groups, not_included, grid, labels, figures, intro)
    results.atomic_write(out / "report.md", doc.markdown())
    results.atomic_write(out / "report.html", doc.html(out))
    files += [out / p for group in figures.values() for _, p in group]
    files += [out / "report.md", out / "report.html"]
    return Report(out, summary, aggregate.drop(columns="members"), not_included,
                  recommendations, files)


def _unranked(summary: pd.DataFrame) -> list[Skipped]:
    rest = summary[~summary.status.isin(DONE)]
    return [Skipped(r.path, f"status {r.status}: tabulated, not ranked") for _, r in
            rest.iterrows()]
