"""The written part of `winit report`: sentences built from the numbers, and the document.

`describe` says what happened to one configuration and `recommend` which init to use for one
group (records/rows.group_keys: everything but the init and the seed), every claim with its
number;
`write_text` puts them, the figures and the table of runs into a `Doc` (views/doc.py), which
writes itself out as Markdown and as one self-contained HTML page. Everything here reads the
tables `report` built from the run files.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from winit_cli.records.files import finite
from winit_cli.records.rows import DZ_RATIO, column_name, ranked
from winit_cli.views.doc import Doc
from winit_cli.views.figures import caption
from winit_cli.views.plots import MAX_GROUPS, MAX_PANELS
from winit_cli.views.words import depth_scale_words, number

# --- numbers in words ---------------------------------------------------------------------------


def _pct(x: Any) -> str:
    return "n/a" if finite(x) is None else f"{100 * x:.1f}%"


def _decades(x: Any) -> str:
    return "n/a" if finite(x) is None else f"10^{x:+.2f}"


def _span(values: pd.Series) -> str:
    v = sorted({int(x) for x in values.dropna()})
    if not v:
        return "?"
    return str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"


def _mean(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _fmt(x: Any, spec: str = "{:+.2f}") -> str:
    return "-" if finite(x) is None else spec.format(x)


# --- sentences ----------------------------------------------------------------------------------


def _expectation(members: pd.DataFrame, agg: pd.Series | None = None) -> str:
    """Theory's reading of chi* and xi as an expectation, and (given `agg`) what was measured
    beside it."""
    chi = _mean(members["theory_chi"]) if "theory_chi" in members else None
    if chi is None:
        return ""
    xi = _mean(members["theory_depth_scale"]) if "theory_depth_scale" in members else None
    text = f" Theory: {depth_scale_words(chi, xi, members.depth.iloc[0])}"
    if agg is not None:
        text += f"; measured: {_verdict_counts(agg)}, test accuracy {_pct(agg.test_accuracy_mean)}"
    return text + "."


def _theory_clause(members: pd.DataFrame, agg: pd.Series) -> str:
    """Theory's prediction of the dz ratio and its depth-scale expectation, each set beside
    what was measured."""
    predicted = _mean(members.log10_first_to_last_predicted)
    if predicted is None:
        return ""
    return (f" Mean-field theory predicted a dz ratio of {_decades(predicted)} at init; "
            f"measured {_decades(_mean(members.log10_first_to_last_measured))}."
            + _expectation(members, agg))


def _verdict_counts(agg: pd.Series) -> str:
    """`healthy:2 vanishing:1` as `2 of 3 runs healthy, 1 vanishing`."""
    counts = [part.split(":") for part in str(agg.verdicts).split()]
    words = [f"{n} {v}" for v, n in counts]
    if len(words) == 1 and agg.runs == 1:
        return counts[0][0]
    return f"{words[0]} of {agg.runs} runs" + "".join(f", {w}" for w in words[1:])


def _against_prediction(members: pd.DataFrame) -> str:
    """Where theory's verdict at init (the measured verdict's rule on the predicted ratios, as
    `winit advise` gives it) differs from the measured one, how often and how; nothing where they
    agree or theory made no prediction. A measured verdict that began after step 0 arose in
    training, which the prediction at init does not speak of: the step says so."""
    if "theory_predicted_verdict" not in members:
        return ""
    predicted = members[members.theory_predicted_verdict.notna() & members.verdict.notna()]
    differ = predicted[predicted.theory_predicted_verdict != predicted.verdict]
    if not len(differ):
        return ""
    cases = []
    for r in differ.itertuples():
        when = f" from step {int(r.verdict_step)}" if finite(r.verdict_step) else ""  # 0: none
        case = f"{r.theory_predicted_verdict} predicted, {r.verdict} measured{when}"
        cases += [] if case in cases else [case]
    return (f" Theory's verdict at init differs from the measured one in {len(differ)} of "
            f"{len(predicted)} run{'s' if len(predicted) > 1 else ''} ({'; '.join(cases)}).")


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
    init = _mean(members.log10_first_to_last_measured)
    predicted = _mean(members.log10_first_to_last_predicted)
    end = _mean(members.log10_first_to_last_end)
    ratios = [f"{_decades(init)} at init"
              + (f" (theory {_decades(predicted)})" if predicted is not None else "")] \
        if init is not None else []
    ratios += [f"{_decades(end)} at the end"] if end is not None else []
    if ratios:
        text += f" The dz ratio was {' and '.join(ratios)}."
    zeros = _mean(members.zero_grad_layers_init)
    if zeros:
        text += (f" At init ||dL/dz|| underflowed to exactly 0 in {zeros:g} layer"
                 f"{'s' if zeros != 1 else ''}{' (mean over seeds)' if n > 1 else ''}.")
    text += _expectation(members) + _against_prediction(members)
    spread = f" ± {100 * agg.test_accuracy_std:.1f}" if finite(agg.test_accuracy_std) else ""
    return text + f" Test accuracy {_pct(agg.test_accuracy_mean)}{spread}{_over_seeds(agg)}."


def _over_seeds(agg: pd.Series) -> str:
    """` (mean of 3 seeds)`; repeats of one seed (same config hash) are said to be repeats."""
    repeats = int(agg.get("repeats", 0) or 0)
    n_seeds = int(agg.get("n_seeds", agg.runs))
    said = [f"mean of {n_seeds} seeds"] if n_seeds > 1 else []
    if repeats:
        said.append(f"{repeats} repeat{'s' if repeats > 1 else ''} of the same seed counted once")
    return f" ({'; '.join(said)})" if said else ""


def recommend(title: str, order: pd.DataFrame, summary: pd.DataFrame, labels: dict) -> str:
    """Which init to use here: the best mean test accuracy among configurations all of whose
    runs completed healthy."""
    healthy = order[order.healthy_runs == order.runs]
    best = order.iloc[0]
    if not len(healthy):
        return (f"**{title}:** no configuration kept healthy gradients, so none is "
                f"recommended; the best test accuracy was {_pct(best.test_accuracy_mean)} "
                f"({labels[best.name]}, {best.verdicts}).")
    pick = healthy.iloc[0]
    text = (f"**{title}:** use {labels[pick.name]}: the highest test accuracy among "
            f"configurations with healthy gradients, {_pct(pick.test_accuracy_mean)}")
    text += f"{_over_seeds(pick)}."
    if best.name != pick.name and finite(best.test_accuracy_mean) is not None:
        text += (f" {labels[best.name]} scored higher, {_pct(best.test_accuracy_mean)}, but its "
                 f"gradients were not healthy ({best.verdicts}).")
    return text + _theory_clause(summary.loc[pick.members], pick) + basis(order, pick, labels)


SEEDS_TO_TRUST = 3  # seeds per configuration before a ranking is more than one draw


def basis(order: pd.DataFrame, pick: pd.Series, labels: dict) -> str:
    """What a recommendation rests on: how many candidates, how many seeds, and whether the
    runner-up is within the spread over seeds; with what to run to firm it up."""
    seeds = sorted({int(n) for n in order.n_seeds})
    seeds_text = f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''}" if len(seeds) == 1 \
        else f"{seeds[0]}-{seeds[-1]} seeds"
    if len(order) == 1:
        return (f" *Rests on 1 candidate, {seeds_text}: nothing was compared; train other inits "
                "beside it (`winit compare schemes`, or `watch(..., scheme=)`) to rank it.*")
    text = f" *Rests on {len(order)} candidates, {seeds_text} each"
    rest = order.drop(index=pick.name)
    runner = rest.iloc[0]
    gap = pick.test_accuracy_mean - runner.test_accuracy_mean \
        if finite(runner.test_accuracy_mean) is not None else None
    stds = [x for x in (pick.test_accuracy_std, runner.test_accuracy_std) if finite(x) is not None]
    if gap is not None:
        text += f"; {labels[runner.name]} next, {100 * gap:.1f} points behind"
        if stds and abs(gap) <= max(stds):
            text += (f", within the spread over seeds (std up to {100 * max(stds):.1f} points): "
                     "the order between them is not settled")
    text += "."
    if seeds[0] < SEEDS_TO_TRUST:
        one = "One seed" if seeds[0] == 1 else f"{seeds[0]} seeds"
        text += f" {one}: rerun with --seeds {SEEDS_TO_TRUST} before trusting this ranking."
    return text + "*"


def intro_paragraphs(summary, titles, not_included, root, wanted, thresholds) -> list[str]:
    """Where the runs came from, which groups they form, what was left out, the rule behind
    every verdict and the one ratio every sentence quotes."""
    n_groups = len(titles)
    intro = (f"{len(summary)} run{'s' if len(summary) != 1 else ''} from `{root.name}` in "
             f"{n_groups} group"
             f"{'s' if n_groups != 1 else ''}; {len(not_included)} not included or not ranked "
             "(listed at the end). Runs are ranked only within a group: the runs in one differ "
             "only in their init (scheme and its parameters) and seed, never in data, model "
             "or training budget.")
    if titles:
        intro += " Groups: " + "; ".join(titles) + "."
    if wanted:
        intro += " Filter: " + ", ".join(f"`{k}={'|'.join(v)}`" for k, v in wanted.items()) + "."
    rule = ("A run is *vanishing* (*exploding*) when the gradient backpropagated to some layer, "
            f"||dL/dz_l||, is more than 10^{thresholds[0]} times smaller (10^{thresholds[1]} "
            "times larger) than at the output layer at a recorded step; *where* is the layer "
            "nearest the output where that holds, *when* the first such step. Every ratio "
            f"quoted below is the {DZ_RATIO}, written 10^x.")
    return [intro, rule]


# --- the document -------------------------------------------------------------------------------


def write_text(summary, groups, titles, not_included, grid, labels, figures, intro):
    """The document: recommendations first, then what happened per group (`groups`: the
    aggregate rows per group key; `titles`: each key in words), with its figures."""
    doc = Doc()
    doc.add("h", 1, "winit report")
    for paragraph in intro:
        doc.add("p", paragraph)
    doc.add("toc")
    recommendations, sections, table_order = [], [], []
    for key, configs in groups.items():
        order = ranked(configs, labels)
        for rank, (_, c) in enumerate(order.iterrows(), start=1):
            table_order.append((key, [(i, rank, labels[c.name]) for i in
                                      summary.loc[c.members].sort_values("seed").index]))
        recommendations.append(recommend(titles[key], order, summary, labels))
        sections += [("h", 3, titles[key]),
                     ("ul", [describe(labels[i], summary.loc[c.members], c)
                             for i, c in order.iterrows()]),
                     ("p", "Ranked by test accuracy: " + ", ".join(
                         f"{labels[i]} {_pct(c.test_accuracy_mean)}"
                         for i, c in order.iterrows()) + "."),
                     *(("img", path, alt, caption(path)) for alt, path in
                       figures.get(key, []))]
        if len(configs) > MAX_PANELS and key in figures:
            sections.append(("p", f"The heatmaps show the first {MAX_PANELS} of "
                                  f"{len(configs)} configurations."))
    doc.add("h", 2, "Recommendations")
    doc.add("ul", recommendations or ["No finished runs: nothing to recommend."])
    doc.add("h", 2, "What happened")
    doc.blocks += sections
    if None in figures:
        doc.add("h", 2, "Across depths")
        for alt, path in figures[None]:
            doc.add("img", path, alt, caption(path))
    if "widths" in figures:  # winit widths: alt text is the sweep's verdicts
        doc.add("h", 2, "Width: coordinate check and learning-rate transfer")
        for alt, path in figures["widths"]:
            doc.add("p", alt)
            doc.add("img", path, alt, caption(path))
    if len(groups) > MAX_GROUPS:
        doc.add("p", f"Plots are drawn for the first {MAX_GROUPS} of "
                     f"{len(groups)} groups; the tables cover all of them.")
    doc.add("h", 2, "Runs")
    doc.add("p", "Per group, best first (rank: by mean test accuracy over seeds, the same for "
                 "every seed of a configuration); runs that did not finish last, unranked.")
    for key in groups:
        rows = [row for k, part in table_order if k == key for row in part]
        doc.add("h", 3, f"Runs: {titles[key]}")
        doc.add("table", *_runs_table(summary, grid, rows))
    ranked_rows = {i for _, part in table_order for i, _, _ in part}
    rest = [(i, "-", str(scheme)) for i, scheme in zip(summary.index, summary.scheme,
                                                         strict=True) if i not in ranked_rows]
    if rest:
        doc.add("h", 3, "Runs not ranked")
        doc.add("table", *_runs_table(summary, grid, rest, trim=False))
    doc.add("p", "Full numbers: `summary.csv` (one row per run) and `aggregate.csv` (mean and "
                 "std over seeds per configuration).")
    doc.add("h", 2, "Not included")
    doc.add("ul", [f"`{s.path}`: {s.reason}" for s in not_included] or ["none"])
    return doc, recommendations


def _runs_table(summary: pd.DataFrame, grid: list[str], order: list[tuple[Any, Any, str]],
                trim: bool = True) -> tuple[list[str], list[list[str]]]:
    """One group's runs in `order` ((row label, rank, configuration label)), or (rank "-") the
    runs not ranked. A run is named by its folder (summary.csv has the whole path); columns
    whose every cell is the same (the group's own settings, in its heading) are left out unless
    `trim` is False, so that the table fits a narrow window."""
    optional = ["scheme", "activation", "depth", "width", *map(column_name, grid)]
    header = ["rank", "run", "init", "seed", *optional, "status", "verdict",
              "dz ratio init (log10)", "theory", "dz ratio end", "test acc", "train s"]
    rows = []
    # the cells as summary.loc[i] holds them, from each column's array: a Series per row was
    # most of the time a warm report of 10,000 runs took
    shown = ["path", "seed", *optional, "status", "verdict", "verdict_layer", "verdict_step",
             "log10_first_to_last_measured", "log10_first_to_last_predicted",
             "log10_first_to_last_end", "test_accuracy", "train_seconds"]
    cells = {c: summary[c].to_numpy() for c in dict.fromkeys(shown)}
    at = summary.index.get_indexer([i for i, _, _ in order])
    for (_, rank, label), k in zip(order, at, strict=True):
        r = {c: values[k] for c, values in cells.items()}
        where = f" (layer {r['verdict_layer']}, step {r['verdict_step']})" \
            if not pd.isna(r["verdict_layer"]) else ""
        rows.append([str(rank), str(r["path"]).rstrip("/").rsplit("/", 1)[-1],
                     label.replace("`", ""), number(r["seed"]),
                     *(number(r[c]) for c in optional), r["status"], f"{r['verdict']}{where}",
                     _fmt(r["log10_first_to_last_measured"]),
                     _fmt(r["log10_first_to_last_predicted"]),
                     _fmt(r["log10_first_to_last_end"]), _pct(r["test_accuracy"]),
                     _fmt(r["train_seconds"], "{:.1f}")])
    same = {j for j, name in enumerate(header) if name == "scheme" or trim and name in optional
            and len({row[j] for row in rows}) == 1}
    keep = [j for j in range(len(header)) if j not in same]
    return [header[j] for j in keep], [[row[j] for j in keep] for row in rows]
