"""`winit report`: tables, plots and a written account of finished runs, from their files alone.

    <out>/summary.csv     one row per run: identity, grid values, verdict (where and when),
                          log10 gradient ratios, predicted vs measured, accuracies, time
          aggregate.csv   one row per configuration (everything but the seed): mean, std
          report.md       what happened, in sentences built from the numbers, with the plots
          report.html     the same, self-contained (plots embedded as data URIs)
          plots/*.png     per (activation, depth, width): gradient heatmaps, gradient flow at
                          step 0, training curves, per-layer quantities over training, mean
                          and max |dL/dW| per layer at --grad-flow-step; and test accuracy vs
                          depth

Runs are found by searching the given folders for directories holding config.yaml or
summary.json, so loose runs, sweeps (<sweep>/runs/<run-id>/) and copies of either all work. A run
whose summary says `running`, or whose summary or layers.csv is missing or unreadable, is listed
as not included and skipped. Paths are written relative to the folder searched and nothing
time-dependent is added: the same results give the same CSV files, byte for byte.

Grid columns are the config keys (dotted, written with underscores: train_lr) that differ among
the reported runs, plus a sweep's grid axes (`train.epochs` is not one where `train.steps`
overrides it). Interrupted and failed runs are tabulated but never ranked. Runs are compared
only within a group (records/rows.group_keys): the same dataset, model and every other setting
but the init (scheme and parameters) and the seed, so runs with different budgets are never
ranked together. The recommendation for a group is the configuration with the best mean test
accuracy among those whose every run completed with healthy gradients.

This module finds the runs and reads them through the run store (records/store.py, which
keeps what it read under <folder searched>/.winit/), builds the tables (records/rows.py, the
same rows `compare` writes) and hands them to the views: figures (views/figures.py) and the
written account (views/report_text.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from winit_cli import interrupts
from winit_cli.app.spectrum_theory import report_curves
from winit_cli.errors import ResultsError
from winit_cli.records.files import atomic_write, write_csv
from winit_cli.records.folders import staged
from winit_cli.records.held import ByGroup
from winit_cli.records.reader import RUN_MARKERS, Run, Skipped, find_run_dirs
from winit_cli.records.reuse import FigureCache
from winit_cli.records.rows import (
    FINAL,
    FINISHED,
    HEAD,
    MEASURED,
    OWN_COLUMN,
    aggregate,
    by_group,
    compared_columns,
    group_keys,
    incidental_columns,
    is_watched,
    ranked,
    rows_frame,
    run_row,
)
from winit_cli.records.store import STORE, RunStore
from winit_cli.views.figures import drawing
from winit_cli.views.plots import FORMATS, Output
from winit_cli.views.report_text import intro_paragraphs, write_text
from winit_cli.views.words import config_labels, group_title

# Config keys that don't change what a run computes (those with a column of their own: OWN_COLUMN).
BOOKKEEPING = ("name", "output_dir", "data.dir")


@dataclass
class Report:
    out: Path
    summary: pd.DataFrame
    aggregate: pd.DataFrame
    skipped: list[Skipped]
    recommendations: list[str]  # one line per group, markdown inline (`code`, **bold**)
    files: list[Path]
    # group title -> its configurations (rows of records/rows.aggregate, with `members`: row
    # labels in `summary`), best first; configurations are labelled by `labels`
    groups: dict[str, pd.DataFrame] = field(default_factory=dict)
    labels: dict = field(default_factory=dict)


def setting(config: dict[str, Any], key: str) -> Any:
    """A config key's value as far as it decides what was trained (None where it is not set):
    `train.epochs` is none where `train.steps` overrides it."""
    if key == "train.epochs" and config.get("train.steps") is not None:
        return None
    return config.get(key)


def grid_keys(runs: list[Run]) -> list[str]:
    """Config keys (beyond the usual columns) that tell these runs apart, plus sweep grid axes.
    A `winit.watch` run's config adds none: what groups it is its model class, its Linear/Conv
    layer count and width and its dataset (the usual columns); its scheme, where the user named
    one, is the compared axis; the optimizer's settings are not part of its group."""
    # no config.yaml: tells nothing
    known = [r.config for r in runs if r.config and not is_watched(r.config)]
    present = {k for c in known for k in c}
    if not any("train.epochs" in c and c.get("train.steps") is None for c in known):
        present.discard("train.epochs")  # set only where train.steps overrides it
    keys = {k for r in runs for k in r.sweep_grid if k in present}
    for key in present.difference(BOOKKEEPING, OWN_COLUMN):  # never grid columns
        values = [setting(c, key) for c in known] if key == "train.epochs" else \
            [c.get(key) for c in known]
        if not _same_everywhere(values):
            keys.add(key)
    return sorted(k for k in keys if k not in BOOKKEEPING and k not in OWN_COLUMN)


def _same_everywhere(values: list[Any]) -> bool:
    """Whether every value is the first one, told apart as their JSON text tells them (1, 1.0
    and True are three; -0.0 is not 0.0). Values of one type, equal (floats: the same repr),
    are the same without writing any JSON: the common case, checked at C speed, where a loop
    over every key of 10,000 runs' configs took a second."""
    first = values[0]
    kinds = set(map(type, values))
    if kinds == {float}:
        if len(set(map(repr, values))) == 1:
            return True
    elif len(kinds) == 1 and values.count(first) == len(values):
        return True
    text = _distinct(first)
    return all(type(v) is type(first) and type(v) is not float and v == first
               or _distinct(v) == text for v in values)


def _distinct(value: Any) -> str:
    """A config value as JSON text, which tells values apart (1, 1.0 and True are three). The
    encoder json keeps for dumps without options where that can write it: one made per call
    (default=str) took seconds over every key of 10,000 runs' configs."""
    try:
        return json.dumps(value)
    except TypeError:  # a value JSON has no type for: as its text, as before
        return json.dumps(value, default=str)


def summary_rows(runs: list[Run], grid: list[str]) -> list[dict[str, Any]]:
    return [run_row(r, {k: None if is_watched(r.config) else setting(r.config, k)
                        for k in grid}) for r in runs]


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


# --- the whole report ---------------------------------------------------------------------------


def _root_of(paths: list[Path]) -> Path:
    root = Path(os.path.commonpath([str(p) for p in paths]))
    return root.parent if any((root / m).is_file() for m in RUN_MARKERS) else root


def default_out(paths: list[Path], filters: list[str] = ()) -> Path:
    """Where a report goes unless --out says: named after what it reports, so that reports of
    different things never overwrite each other, and never inside a run directory (a run
    directory stays its record).

        results/                  -> results/report
        results/sweeps/relu30-ab12/ -> results/sweeps/relu30-ab12/report
        results/<run-id>/         -> results/report-<run-id>
        several paths             -> <their common folder>/report-<a>+<b>...
        --filter scheme=he_normal -> ...report-scheme=he_normal (beside the unfiltered one)
    """
    resolved = sorted({Path(p).resolve() for p in paths})
    is_run = [any((p / m).is_file() for m in RUN_MARKERS) for p in resolved]
    if len(resolved) == 1 and not is_run[0]:
        folder, name = Path(paths[0]), "report"
    elif len(resolved) == 1:
        folder, name = Path(paths[0]).parent, f"report-{resolved[0].name}"
    else:
        folder = _root_of(resolved)
        names = "+".join(p.name for p in resolved)
        if len(names) > 60:
            digest = hashlib.sha256(names.encode()).hexdigest()[:6]
            names = f"{resolved[0].name}-and-{len(resolved) - 1}-more-{digest}"
        name = f"report-{names}"
    if filters:
        name += "-" + re.sub(r"[^A-Za-z0-9_.=+-]", "-", "-".join(sorted(filters)))
    return folder / name


def _locate(paths: list[Path], out: Path | None,
            filters: list[str] = ()) -> tuple[list[Path], Path, Path]:
    """The run directories under `paths`, the folder their paths are relative to, and where
    the report goes (`default_out` unless `out` is given)."""
    for p in paths:
        if not p.is_dir():
            what = "not a directory" if p.exists() else "no such directory"
            raise ResultsError(f"{p}: {what} (give run directories, sweep directories or "
                               "folders of them)")
    resolved = sorted({p.resolve() for p in paths})
    root = _root_of(resolved)
    out = Path(out) if out is not None else default_out(paths, filters)
    # Path order is that of their parts (compared as tuples: 10,000 paths sort at C speed)
    dirs = sorted({d for p in resolved for d in find_run_dirs(p)}, key=lambda d: d.parts)
    if not dirs:
        raise ResultsError(f"{', '.join(map(str, paths))}: no run directories found (a run "
                           "directory holds config.yaml and summary.json)")
    return dirs, root, out


def _filtered(runs: list[Run], skipped: list[Skipped], wanted: dict[str, list[str]],
              filters: list[str]) -> tuple[list[Run], list[Skipped]]:
    grid = grid_keys(runs)
    rows = summary_rows(runs, grid)
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
    return runs, [s for s in skipped if _keep(s.fields, wanted, strict=False)]


def figure_output(formats: list[str], dpi: int, grad_flow_step: int = 0) -> Output:
    """--format, --dpi and --grad-flow-step as the figures' Output; an unknown format is a user
    error."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ResultsError(f"--format {unknown[0]}: expected one of {', '.join(FORMATS)}")
    return Output(tuple(formats), dpi, grad_flow_step)


def build_report(paths: list[Path], out: Path | None = None, filters: list[str] = (),
                 output: Output = Output()) -> Report:
    """The report of the runs under `paths`; figures as PNG plus `output.formats`."""
    wanted = parse_filters(list(filters))
    searched = [Path(p) for p in paths] or [Path("results")]
    dirs, root, out = _locate(searched, out, list(filters))
    store = RunStore(root).sync(dirs, within=searched)
    loaded = store.runs()
    runs = [r for r in loaded if isinstance(r, Run)]
    skipped = [s for s in loaded if isinstance(s, Skipped)]
    if wanted:
        runs, skipped = _filtered(runs, skipped, wanted, list(filters))
    # Whole or not at all: everything is written into a staging folder beside `out`, which then
    # takes its place; an error half way leaves the previous report as it was. A folder that
    # holds anything winit's manifest does not list is refused, never replaced.
    with staged(out, "winit report", "report") as staging:
        reuse = FigureCache(root / STORE.parent / "figures",
                            {p: row.identity for p, row in store.rows.items()}) \
            if store.writable else None
        report = _write(staging, runs, skipped, root, wanted, output, reuse)
        if reuse:
            reuse.prune()
    return dataclasses.replace(
        report, out=out, files=[out / f.relative_to(staging) for f in report.files])


def _write(out: Path, runs: list[Run], skipped: list[Skipped], root: Path,
           wanted: dict[str, list[str]], output: Output, reuse: FigureCache | None) -> Report:
    grid = grid_keys(runs)
    summary = rows_frame(summary_rows(runs, grid), grid)
    configs = aggregate(summary, grid)
    groups = by_group(configs, grid)
    titles = {key: group_title(dict(zip(group_keys(grid), key, strict=True))) for key in groups}
    labels: dict = {}
    for group in groups.values():  # labels tell configurations apart within their group
        labels.update(config_labels(group, compared_columns(grid), incidental_columns(grid)))
    files = [out / "summary.csv", out / "aggregate.csv"]
    # a group's tables are read when it is drawn, and let go of after: memory follows the
    # largest group drawn, not the number of runs
    by_path = ByGroup({r.path: r for r in runs},
                      [list(summary.loc[[i for m in g.members for i in m], "path"])
                       for g in groups.values()])
    with drawing(out, summary, configs, by_path, labels, output, grid, report_curves(runs),
                 reuse, between=interrupts.check) if len(configs) else nullcontext({}) \
            as figures:
        # the tables and the text written while worker processes save the figures
        write_csv(files[0], summary)
        write_csv(files[1], configs.drop(columns="members"))
        interrupts.check()
        widths = _widths_figures([r.dir for r in runs], out / "plots", output, reuse)
        if widths:  # `winit widths` sweeps: the coordinate check and lr transfer, from CSVs
            figures["widths"] = [(alt, p.relative_to(out).as_posix()) for alt, p in widths]
        thresholds = ["/".join(sorted({f"{r.config.get(f'diagnose.{k}_decades', 2.0):g}"
                                       for r in runs}) or {"2"}) for k in ("vanish", "explode")]
        not_included = [*skipped, *_unranked(summary)]
        intro = intro_paragraphs(summary, list(titles.values()), not_included, root, wanted,
                                 thresholds)
        doc, recommendations = write_text(summary, groups, titles, not_included, grid, labels,
                                          figures, intro)
        atomic_write(out / "report.md", doc.markdown())
    atomic_write(out / "report.html", doc.html(out))  # embeds the figures: every one written
    files += [out / p for group in figures.values() for _, p in group]
    files += [out / "report.md", out / "report.html"]
    ranked_groups = {titles[k]: ranked(g, labels) for k, g in groups.items()}
    return Report(out, summary, configs.drop(columns="members"), not_included,
                  recommendations, files, ranked_groups, labels)


def _widths_figures(run_dirs: list[Path], plot_dir: Path, output: Output,
                    reuse: FigureCache | None) -> list:
    """app/widths.report_figures where some runs lie in a sweep (<sweep>/runs/<run-id>): a
    `winit widths` sweep's figures are drawn from its own files. Imported only then: it brings
    the sweeps' machinery, a fifth of a warm report's start-up, which loose runs never need."""
    if not any(d.parent.name == "runs" for d in run_dirs):
        return []
    from winit_cli.app.widths import report_figures

    return report_figures(run_dirs, plot_dir, output, reuse)


def _unranked(summary: pd.DataFrame) -> list[Skipped]:
    rest = summary[~summary.status.isin(FINISHED)]
    return [Skipped(r.path, f"status {r.status}: tabulated, not ranked") for _, r in
            rest.iterrows()]
