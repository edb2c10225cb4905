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
"""

from __future__ import annotations

import base64
import html
import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from . import plots, results
from .errors import ResultsError

RUN_MARKERS = ("config.yaml", "summary.json")
RANKED = ("complete", "diverged")  # interrupted and failed runs are tabulated, never ranked
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
MAX_GROUPS = 16  # groups drawn (the tables and text cover all of them)
MAX_PANELS = 12  # heatmap panels per group: one run (the lowest seed) per configuration


@dataclass
class Run:
    path: str  # relative to the folder searched
    summary: dict
    config: dict[str, Any]  # config.yaml flattened to dotted keys
    layers: pd.DataFrame
    metrics: pd.DataFrame | None
    sweep: str | None
    sweep_grid: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    fields: dict = field(default_factory=dict, compare=False)


@dataclass
class Report:
    out: Path
    summary: pd.DataFrame
    aggregate: pd.DataFrame
    skipped: list[Skipped]
    recommendations: list[str]  # one line per group, markdown inline (`code`, **bold**)
    files: list[Path]


# --- finding and reading runs -------------------------------------------------------------------


def find_run_dirs(path: Path) -> list[Path]:
    """Directories under `path` (itself included) holding a run's files; runs don't nest."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(m in filenames for m in RUN_MARKERS):
            found.append(Path(dirpath))
            dirnames[:] = []
    return found


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):  # an empty mapping (init.params: {}) adds no key
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, list):
        tree = json.dumps(tree)
    return {prefix[:-1]: tree} if prefix else {}


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def _sweep_of(run_dir: Path) -> tuple[str | None, tuple[str, ...]]:
    """<sweep>/runs/<run-id>: the sweep's name and its grid keys, from sweep.yaml."""
    sweep_dir = run_dir.parent.parent
    if run_dir.parent.name != "runs" or not (sweep_dir / "sweep.yaml").is_file():
        return None, ()
    try:
        grid = (yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) or {}).get("grid") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        grid = {}
    return sweep_dir.name, tuple(grid) if isinstance(grid, dict) else ()


def load_run(run_dir: Path, root: Path) -> Run | Skipped:
    rel = run_dir.relative_to(root).as_posix()
    if not (run_dir / "summary.json").is_file():
        return Skipped(rel, "no summary.json")
    try:
        summary = results.read_json(run_dir / "summary.json")
    except ResultsError:
        return Skipped(rel, "summary.json is unreadable")
    if not isinstance(summary, dict):
        return Skipped(rel, "summary.json is not a JSON object")
    fields = {k: summary[k] for k in ("scheme", "activation", "depth", "width", "seed", "status")
              if k in summary}
    if summary.get("status") in (None, "running"):
        return Skipped(rel, f"status {summary.get('status') or 'missing'} (unfinished, or its "
                            "process died)", fields)
    layers = _read_csv(run_dir / "layers.csv")
    if layers is None:
        return Skipped(rel, "layers.csv is missing or unreadable", fields)
    missing = {"step", "layer", "act_grad_norm", "weight_grad_norm"} - set(layers.columns)
    if missing or not len(layers):
        why = f"lacks columns {sorted(missing)}" if missing else "has no records"
        return Skipped(rel, f"layers.csv {why}", fields)
    try:
        config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError):
        config = {}
    sweep, grid = _sweep_of(run_dir)
    return Run(rel, summary, config, layers, _read_csv(run_dir / "metrics.csv"), sweep, grid)


# --- the summary table --------------------------------------------------------------------------


def _column(key: str) -> str:
    return key.replace(".", "_")


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):  # numpy scalars are Real
        return None
    return float(x) if math.isfinite(x) else None


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
    return layers[layers.step == 0].drop_duplicates("layer").set_index("layer").sort_index()


def first_to_last_hidden(layers: pd.DataFrame) -> tuple[float | None, float | None]:
    """log10 ||dL/dz_1|| / ||dL/dz_{L-1}|| at step 0, measured and (if saved) predicted."""
    init = _init_rows(layers)
    if len(init) < 3:
        return None, None
    first, last = init.index[0], init.index[-2]
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = _number(float(np.log10(init.act_grad_norm[first] / init.act_grad_norm[last])))
    predicted = None
    if "predicted_log10_grad_ratio" in init:
        p = init.predicted_log10_grad_ratio
        predicted = _number(float(p[first] - p[last]))
    return measured, predicted


def summary_row(run: Run, grid: list[str]) -> dict[str, Any]:
    s, c = run.summary, run.config
    verdict = s.get("verdict")
    verdict = {"verdict": verdict} if isinstance(verdict, str) else (verdict or {})
    final = s.get("final") if isinstance(s.get("final"), dict) else {}
    theory = s.get("theory") if isinstance(s.get("theory"), dict) else {}
    measured, predicted = first_to_last_hidden(run.layers)
    if _number(theory.get("predicted_log10_ratio")) is not None:
        predicted = theory["predicted_log10_ratio"]  # the run's own statement wins
    row = {
        "run_id": s.get("run_id") or Path(run.path).name, "path": run.path, "sweep": run.sweep,
        "scheme": s.get("scheme", c.get("init.scheme")),
        "activation": s.get("activation", c.get("model.activation")),
        "depth": s.get("depth", c.get("model.depth")),
        "width": _width(s.get("width", c.get("model.width"))),
        "seed": s.get("seed", c.get("train.seed")),
        **{_column(k): c.get(k) for k in grid},
        "status": s.get("status"), "verdict": verdict.get("verdict"),
        "verdict_layer": verdict.get("layer"), "verdict_step": verdict.get("step"),
        "verdict_fraction_of_steps": verdict.get("fraction_of_steps"),
        "log10_ratio_init": verdict.get("log10_ratio_init"),
        "log10_ratio_end": verdict.get("log10_ratio_end"),
        # The verdict's ratios are empty where a gradient underflowed to 0: count those layers.
        "zero_grad_layers_init": int((_init_rows(run.layers).act_grad_norm == 0).sum())
        if (run.layers.step == 0).any() else None,
        "log10_first_to_last_measured": measured, "log10_first_to_last_predicted": predicted,
        **{f"theory_{k}": v for k, v in sorted(theory.items()) if _number(v) is not None
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
    columns = [*HEAD, *map(_column, grid), *MEASURED, *theory, *FINAL, "config_hash"]
    sort = [*GROUP, "scheme", *map(_column, grid), "seed", "path"]
    rows = sorted(rows, key=lambda r: tuple(_order(r.get(k)) for k in sort))
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    integers = [c for c in map(_column, grid) if all(
        r.get(c) is None or (isinstance(r[c], int) and not isinstance(r[c], bool)) for r in rows)]
    for c in [*INTEGER, *integers]:  # no "8.0" where a value is missing
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("Int64")
    return frame


def _keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """Row keys with None for missing cells (pd.NA has no truth value to compare with)."""
    return [tuple(None if pd.isna(v) else v for v in row)
            for row in frame[columns].astype(object).itertuples(index=False)]


def aggregate_frame(summary: pd.DataFrame, grid: list[str]) -> pd.DataFrame:
    """Mean and std (over seeds) per configuration, for the runs that finished. The `members`
    column (summary row labels) is for this module; it is not written out."""
    keys = [*GROUP, "scheme", *map(_column, grid)]
    done = summary[summary.status.isin(RANKED)]
    groups: dict[tuple, list[int]] = {}
    for i, key in zip(done.index, _keys(done, keys), strict=True):
        groups.setdefault(key, []).append(i)
    rows = []
    for key, index in groups.items():
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


# --- the written report -------------------------------------------------------------------------


def _pct(x: Any) -> str:
    return "n/a" if _number(x) is None else f"{100 * x:.1f}%"


def _decades(x: Any) -> str:
    return "n/a" if _number(x) is None else f"10^{x:+.2f}"


def _span(values: pd.Series) -> str:
    v = sorted({int(x) for x in values.dropna()})
    if not v:
        return "?"
    return str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"


def _mean(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def config_label(row: pd.Series | dict, grid: list[str]) -> str:
    extra = ", ".join(f"{_column(k)}={row[_column(k)]}" for k in grid
                      if not pd.isna(row[_column(k)]))
    return f"`{row['scheme']}`" + (f" ({extra})" if extra else "")


def group_title(key: tuple) -> str:
    activation, depth, width = key
    return f"{activation}, depth {depth}, width {width}"


def _chi_words(chi: float, xi: float | None, depth: Any) -> str:
    """Theory's reading of chi* (the per-layer factor on the mean squared gradient, at the
    fixed point) and of the depth scale xi."""
    if abs(chi - 1) <= 0.05:
        return f"chi* = {chi:.3g}: critical, no exponential vanishing or explosion with depth"
    text = f"chi* = {chi:.3g} per layer: {'below' if chi < 1 else 'above'} 1, so deep " \
           f"nets {'vanish' if chi < 1 else 'explode'}"
    if xi is not None and math.isfinite(xi) and xi > 0 and _number(depth) is not None:
        deeper = "deeper" if depth > 6 * xi else "not deeper"
        text += (f"; depth scale xi = {xi:.3g} layers, and depth {depth} is {deeper} than "
                 f"6 xi = {6 * xi:.3g}")
    return text


def _theory_clause(members: pd.DataFrame) -> str:
    predicted = _mean(members.log10_first_to_last_predicted)
    if predicted is None:
        return ""
    text = (f" Mean-field theory predicted a first-to-last-hidden-layer ratio of "
            f"{_decades(predicted)} at init; measured "
            f"{_decades(_mean(members.log10_first_to_last_measured))}.")
    chi = _mean(members["theory_chi"]) if "theory_chi" in members else None
    if chi is not None:
        xi = _mean(members["theory_depth_scale"]) if "theory_depth_scale" in members else None
        text = text[:-1] + f" ({_chi_words(chi, xi, members.depth.iloc[0])})."
    return text


def describe(label: str, members: pd.DataFrame, agg: pd.Series) -> str:
    """What happened to one configuration, every claim with its number."""
    n = len(members)
    parts = []
    for v in ("diverged", "exploding", "vanishing", "healthy"):
        sub = members[members.verdict == v]
        if not len(sub):
            continue
        runs = f"{len(sub)} of {n} run{'s' if n > 1 else ''}"
        if v == "healthy":
            parts.append(f"healthy in {runs}")
        elif v == "diverged":
            parts.append(f"diverged in {runs} at step {_span(sub.verdict_step)} (non-finite "
                         f"values from layer {_span(sub.verdict_layer)})")
        else:
            parts.append(f"{v} in {runs}, from layer {_span(sub.verdict_layer)} at step "
                         f"{_span(sub.verdict_step)} (in "
                         f"{_pct(_mean(sub.verdict_fraction_of_steps))} of recorded steps)")
    text = f"{label}: {'; '.join(parts) or 'no verdict recorded'}."
    init, end = _mean(members.log10_ratio_init), _mean(members.log10_ratio_end)
    ratios = [f"{_decades(x)} {when}" for x, when in ((init, "at init"), (end, "at the end"))
              if x is not None]
    if ratios:
        text += (" The most extreme layer's ||dL/dz|| relative to the output layer's was "
                 f"{' and '.join(ratios)}.")
    zeros = _mean(members.zero_grad_layers_init)
    if zeros:
        text += (f" At init ||dL/dz|| underflowed to exactly 0 in {zeros:g} layer"
                 f"{'s' if zeros != 1 else ''}{' (mean over seeds)' if n > 1 else ''}.")
    text += _theory_clause(members)
    spread = f" ± {100 * agg.test_accuracy_std:.1f}" if _number(agg.test_accuracy_std) else ""
    seeds = f" (mean of {n} seeds)" if n > 1 else ""
    return text + f" Test accuracy {_pct(agg.test_accuracy_mean)}{spread}{seeds}."


def recommend(title: str, ranked: pd.DataFrame, summary: pd.DataFrame, labels: dict) -> str:
    """Which init to use here: the best mean test accuracy among configurations all of whose
    runs completed healthy."""
    healthy = ranked[ranked.healthy_runs == ranked.runs]
    best = ranked.iloc[0]
    if not len(healthy):
        return (f"**{title}:** no configuration kept healthy gradients, so none is "
                f"recommended; the best test accuracy was {_pct(best.test_accuracy_mean)} "
                f"({labels[best.name]}, {best.verdicts}).")
    pick = healthy.iloc[0]
    text = (f"**{title}:** use {labels[pick.name]}: the highest test accuracy among "
            f"configurations with healthy gradients, {_pct(pick.test_accuracy_mean)}")
    text += f" (mean of {pick.runs} seeds)." if pick.runs > 1 else "."
    if best.name != pick.name and _number(best.test_accuracy_mean) is not None:
        text += (f" {labels[best.name]} scored higher, {_pct(best.test_accuracy_mean)}, but its "
                 f"gradients were not healthy ({best.verdicts}).")
    return text + _theory_clause(summary.loc[pick.members])


class Doc:
    """A few block types, written out as Markdown and as self-contained HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def add(self, kind: str, *content) -> None:
        self.blocks.append((kind, *content))

    def markdown(self) -> str:
        out = []
        for kind, *c in self.blocks:
            if kind == "h":
                out.append(f"{'#' * c[0]} {c[1]}")
            elif kind == "p":
                out.append(c[0])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in c[0]))
            elif kind == "img":
                out.append(f"![{c[1]}]({c[0]})")
            elif kind == "table":
                cells = [[str(x).replace("|", "\\|") for x in row] for row in [c[0], *c[1]]]
                out += ["\n".join(["| " + " | ".join(cells[0]) + " |",
                                   "|" + "---|" * len(cells[0]),
                                   *("| " + " | ".join(r) + " |" for r in cells[1:])])]
        return "\n\n".join(out) + "\n"

    def html(self, base: Path) -> str:
        body = []
        for kind, *c in self.blocks:
            if kind == "h":
                body.append(f"<h{c[0]}>{_inline(c[1])}</h{c[0]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(c[0])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in c[0]) + "</ul>")
            elif kind == "img":
                data = base64.b64encode((base / c[0]).read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(c[1])}" '
                            f'src="data:image/png;base64,{data}"></figure>')
            elif kind == "table":
                head = "".join(f"<th>{html.escape(str(x))}</th>" for x in c[0])
                rows = "".join("<tr>" + "".join(f"<td>{_inline(str(x))}</td>" for x in r)
                               + "</tr>" for r in c[1])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        return HTML.format(body="\n".join(body))


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)
    return re.sub(r"10\^([+-]?[0-9]+(?:\.[0-9]+)?|x)", r"10<sup>\1</sup>", text)


HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>winit report</title><style>
body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}} img{{max-width:100%}} code{{background:#f3f3f3;padding:0 .2em}}
table{{border-collapse:collapse;font-size:.85em}} td,th{{border:1px solid #ccc;padding:.2em .5em;
text-align:right}} th{{background:#f3f3f3}} figure{{margin:1em 0}}
</style></head><body>
{body}
</body></html>
"""


def _runs_table(summary: pd.DataFrame, grid: list[str]) -> tuple[list[str], list[list[str]]]:
    cols = ["path", "scheme", "activation", "depth", "width", "seed", *map(_column, grid)]
    header = [*cols, "status", "verdict", "log10 ratio init", "log10 ratio end",
              "predicted / measured", "test acc", "train s"]
    rows = []
    for _, r in summary.iterrows():
        where = f" (layer {r.verdict_layer}, step {r.verdict_step})" \
            if not pd.isna(r.verdict_layer) else ""
        theory = "-" if pd.isna(r.log10_first_to_last_predicted) else \
            f"{r.log10_first_to_last_predicted:+.2f} / {r.log10_first_to_last_measured:+.2f}"
        rows.append([*("-" if pd.isna(r[c]) else r[c] for c in cols), r.status,
                     f"{r.verdict}{where}", _fmt(r.log10_ratio_init), _fmt(r.log10_ratio_end),
                     theory, _pct(r.test_accuracy), _fmt(r.train_seconds, "{:.1f}")])
    return header, rows


def _fmt(x: Any, spec: str = "{:+.2f}") -> str:
    return "-" if _number(x) is None else spec.format(x)


# --- plots --------------------------------------------------------------------------------------


def _slug(key: tuple) -> str:
    activation, depth, width = key
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{activation}_d{depth}_w{width}")


def _step0(layers: pd.DataFrame) -> pd.DataFrame:
    return layers[layers.step == layers.step.min()].drop_duplicates("layer").sort_values("layer")


def _geomean(arrays: list[np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 ** np.mean(np.log10(np.stack(arrays)), axis=0)


def _flow_line(label: str, color: str, runs: list[Run]) -> plots.FlowLine:
    init = [_step0(r.layers) for r in runs]
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


def by_group(aggregate: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Configurations per (activation, depth, width), in the table's order."""
    groups: dict[tuple, list[int]] = {}
    for i, key in zip(aggregate.index, _keys(aggregate, list(GROUP)), strict=True):
        groups.setdefault(key, []).append(i)
    return {key: aggregate.loc[index] for key, index in groups.items()}


def draw(out: Path, summary: pd.DataFrame, aggregate: pd.DataFrame, runs: dict[str, Run],
         labels: dict) -> dict[tuple | None, list[tuple[str, str]]]:
    """All figures, as {group: [(alt text, path relative to out)]}; None holds accuracy vs
    depth. Figures left from an earlier report in the same folder are removed first."""
    plot_dir = out / "plots"
    for stale in plot_dir.glob("*.png") if plot_dir.is_dir() else []:
        stale.unlink()
    colors = plots.colors_for(list(labels.values()))
    figures: dict[tuple | None, list[tuple[str, str]]] = {}
    for key, configs in list(by_group(aggregate).items())[:MAX_GROUPS]:
        title, slug = group_title(key), _slug(key)
        flows, curves, panels = [], [], []
        for i, cfg in configs.iterrows():
            members = [runs[p] for p in summary.loc[cfg.members, "path"]]
            label = labels[i].replace("`", "")
            flows.append(_flow_line(label, colors[labels[i]], members))
            curves.append(plots.Curve(label, colors[labels[i]],
                                      [m.metrics for m in members if m.metrics is not None]))
            if len(panels) < MAX_PANELS:
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
    out = Path(out) if out is not None else (paths[0] if len(resolved) == 1 else root) / "report"
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
    labels = {i: config_label(row, grid) for i, row in aggregate.iterrows()}
    files = [out / "summary.csv", out / "aggregate.csv"]
    results.write_csv(files[0], summary)
    results.write_csv(files[1], aggregate.drop(columns="members"))

    figures = draw(out, summary, aggregate, {r.path: r for r in runs}, labels) \
        if len(aggregate) else {}
    thresholds = ["/".join(sorted({f"{r.config.get(f'diagnose.{k}_decades', 2.0):g}"
                                   for r in runs}) or {"2"}) for k in ("vanish", "explode")]
    not_included = [*skipped, *_unranked(summary)]
    doc, recommendations = write_text(summary, aggregate, not_included, grid, labels, figures,
                                      intro=_intro(summary, aggregate, not_included, root,
                                                   wanted, thresholds))
    results.atomic_write(out / "report.md", doc.markdown())
    results.atomic_write(out / "report.html", doc.html(out))
    files += [out / p for group in figures.values() for _, p in group]
    files += [out / "report.md", out / "report.html"]
    return Report(out, summary, aggregate.drop(columns="members"), not_included,
                  recommendations, files)


def _unranked(summary: pd.DataFrame) -> list[Skipped]:
    rest = summary[~summary.status.isin(RANKED)]
    return [Skipped(r.path, f"status {r.status}: tabulated, not ranked") for _, r in
            rest.iterrows()]


def _intro(summary, aggregate, not_included, root, wanted, thresholds) -> list[str]:
    n_groups = len(by_group(aggregate))
    intro = (f"{len(summary)} runs from `{root.name}` in {n_groups} group"
             f"{'s' if n_groups != 1 else ''} (activation, depth, width); "
             f"{len(not_included)} not included or not ranked (listed at the end).")
    if wanted:
        intro += " Filter: " + ", ".join(f"`{k}={'|'.join(v)}`" for k, v in wanted.items()) + "."
    rule = ("A run is *vanishing* (*exploding*) when the gradient backpropagated to some layer, "
            f"||dL/dz_l||, is more than 10^{thresholds[0]} times smaller (10^{thresholds[1]} "
            "times larger) than at the output layer at a recorded step; *where* is the layer "
            "nearest the output where that holds, *when* the first such step. Ratios below are "
            "that ratio, written 10^x.")
    return [intro, rule]


def write_text(summary, aggregate, not_included, grid, labels, figures, intro):
    """The document: recommendations first, then what happened per group, with its figures."""
    doc = Doc()
    doc.add("h", 1, "winit report")
    for paragraph in intro:
        doc.add("p", paragraph)
    recommendations, sections = [], []
    for key, configs in by_group(aggregate).items():
        ranked = configs.assign(_acc=configs.test_accuracy_mean.fillna(-1.0),
                                _label=[labels[i] for i in configs.index]) \
            .sort_values(["_acc", "_label"], ascending=[False, True], kind="stable")
        recommendations.append(recommend(group_title(key), ranked, summary, labels))
        order = ", ".join(f"{labels[i]} {_pct(c.test_accuracy_mean)}"
                          for i, c in ranked.iterrows())
        sections += [("h", 3, group_title(key)),
                     ("ul", [describe(labels[i], summary.loc[c.members], c)
                             for i, c in ranked.iterrows()]),
                     ("p", f"Ranked by test accuracy: {order}."),
                     *(("img", path, alt) for alt, path in figures.get(key, []))]
        if len(configs) > MAX_PANELS and key in figures:
            sections.append(("p", f"The heatmaps show the first {MAX_PANELS} of "
                                  f"{len(configs)} configurations."))
    doc.add("h", 2, "Recommendations")
    doc.add("ul", recommendations or ["No finished runs: nothing to recommend."])
    doc.add("h", 2, "What happened")
    doc.blocks += sections
    if None in figures:
        doc.add("h", 2, "Test accuracy vs depth")
        doc.add("img", figures[None][0][1], figures[None][0][0])
    if len(by_group(aggregate)) > MAX_GROUPS:
        doc.add("p", f"Plots are drawn for the first {MAX_GROUPS} of "
                     f"{len(by_group(aggregate))} groups; the tables cover all of them.")
    doc.add("h", 2, "Runs")
    doc.add("table", *_runs_table(summary, grid))
    doc.add("p", "Full numbers: `summary.csv` (one row per run) and `aggregate.csv` (mean and "
                 "std over seeds per configuration).")
    doc.add("h", 2, "Not included")
    doc.add("ul", [f"`{s.path}`: {s.reason}" for s in not_included] or ["none"])
    return doc, recommendations
