"""Tables on the terminal, drawn from what was written: a run's record and layers, a sweep's
comparison rows, a report's tables. Nothing here trains or reads a live model."""

from __future__ import annotations

import math
import re

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from winit_cli.records.rows import FINISHED, TARGET_ACCURACY, aggregate, column_name, ranked

VERDICT_STYLE = {"healthy": "green", "vanishing": "yellow", "exploding": "red",
                 "diverged": "bold red"}


def sci(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2e}"


def _signed(x) -> str:
    return "-" if x is None else f"{x:+.2f}"


def pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def run_report(console: Console, outcome) -> None:
    """Per-layer gradient norms at init and at the end, the verdict, accuracy, the run's path."""
    layers = outcome.layers
    r = outcome.record
    first, last = layers["step"].min(), layers["step"].max()
    init = layers[layers.step == first].set_index("layer")
    end = layers[layers.step == last].set_index("layer")
    table = Table(title=f"per-layer gradients: step {first} (init) and step {last} (end)")
    table.add_column("layer", justify="right")
    table.add_column("shape", justify="right")
    predicted = "predicted_log10_grad_ratio" in init and bool(
        init.predicted_log10_grad_ratio.notna().any())
    labels = ["||dL/dz|| init", *(["theory"] if predicted else []), "||dL/dz|| end",
              "||dL/dW|| init", "||dL/dW|| end", "dead/sat end"]
    for label in labels:
        table.add_column(label, justify="right")
    output = init.act_grad_norm.iloc[-1]
    for layer in init.index:
        a, b = init.loc[layer], end.loc[layer]
        frac = b.dead_fraction if not math.isnan(b.dead_fraction) else b.saturated_fraction
        # theory predicts ratios to the output layer: scaled by its measured norm to compare
        theory = [sci(output * 10 ** a.predicted_log10_grad_ratio)] if predicted else []
        table.add_row(str(layer), f"{int(a.fan_in)}→{int(a.fan_out)}", sci(a.act_grad_norm),
                      *theory, sci(b.act_grad_norm), sci(a.weight_grad_norm),
                      sci(b.weight_grad_norm), pct(frac))
    console.print(table)
    theory = r.theory
    if theory is not None and theory.applicable:
        chi, xi = theory.chi, theory.depth_scale
        console.print(
            f"theory: chi* = {chi:.3g}, depth scale xi = {'inf' if xi is None else f'{xi:.3g}'}"
            f" layers; log10 ||dL/dz_1||/||dL/dz_L-1|| at init: predicted "
            f"{_signed(theory.predicted_log10_ratio)}, measured "
            f"{_signed(theory.measured_log10_ratio)}")
    elif theory is not None:
        console.print(f"[dim]theory: not applicable ({theory.reason})[/]")
    if r.verdict is not None:
        console.print(f"verdict: [{VERDICT_STYLE[r.verdict.verdict]}]{r.verdict_text}[/]")
    elif r.verdict_text:
        console.print(f"verdict: [dim]{escape(r.verdict_text)}[/]")
    final = r.final
    console.print(
        f"accuracy: train {pct(final.train_accuracy)}, val {pct(final.val_accuracy)}"
        f", test {pct(final.test_accuracy)}  ({final.steps} steps, "
        f"{final.samples_per_second or 0:,.0f} samples/s)"
    )
    console.print(f"results: [bold]{outcome.run_dir}[/]")


def _cell(x, spec: str = "{}") -> str:
    return "-" if x is None or pd.isna(x) else spec.format(x)


def comparison_table(console: Console, frame: pd.DataFrame, grid: list[str]) -> None:
    """A sweep's configurations ranked by mean test accuracy (records/rows.aggregate: the same
    ranking `winit report` uses), then the members that did not finish."""
    configs = aggregate(frame, grid)
    columns = [column_name(k) for k in grid]
    labels = {i: " ".join(str(row[c]) for c in columns) for i, row in configs.iterrows()}
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    table = Table(title="ranked by test accuracy" + (f" (mean ± std over {seeds} seeds)"
                                                     if seeds > 1 else ""))
    for column in columns:
        table.add_column(column.removeprefix("init_").removeprefix("model_"))
    for column in ("verdicts", "log10 dz ratio init", "test acc",
                   f"steps to {TARGET_ACCURACY:.0%} val", "diverged"):
        table.add_column(column, justify="right")
    for _, r in ranked(configs, labels).iterrows():
        spread = "" if seeds < 2 or r.test_accuracy_std is None or pd.isna(
            r.test_accuracy_std) else f" ± {100 * r.test_accuracy_std:.1f}"
        style = VERDICT_STYLE.get(r.verdicts.split(":")[0], "")
        reached = "" if r.reached_target == r.runs else f" ({r.reached_target}/{r.runs})"
        table.add_row(
            *[str(r[c]) for c in columns], f"[{style}]{r.verdicts}[/]",
            _cell(r.log10_ratio_init_mean, "{:+.1f}"), f"{pct(r.test_accuracy_mean)}{spread}",
            _cell(r.steps_to_target_mean, "{:.0f}") + (reached if r.reached_target else ""),
            f"{r.diverged_runs}/{r.runs}",
        )
    console.print(table)
    for _, r in frame[~frame.status.isin(FINISHED)].iterrows():
        console.print(f"[red]{r.status}[/]: seed {r.seed} {r.get('error') or ''}")


def sweep_header(console: Console, spec, sweep_plan) -> None:
    done = len(sweep_plan.members) - len(sweep_plan.todo)
    console.print(f"sweep [bold]{escape(spec.name)}[/]: {len(sweep_plan.members)} runs "
                  f"({done} already done, {len(sweep_plan.todo)} to run) in "
                  f"{escape(str(sweep_plan.directory))}")


def member_line(console: Console, outcome) -> None:
    """One line per member as it finishes: its verdict, or why it failed."""
    record = getattr(outcome, "record", None)
    if record is None:
        console.print(f"[red]failed[/] {escape(outcome.config.name)}: {escape(outcome.error)}")
        return
    v = record.verdict.verdict if record.verdict else record.status.value
    console.print(f"[{VERDICT_STYLE.get(v, 'default')}]{v:>9}[/] {escape(record.name)}")


def waiting_line(console: Console, configs: list) -> None:
    """Members another live winit process is training: this one waits for them."""
    console.print(f"waiting for {len(configs)} run(s) that another winit process is training")


def dry_run_table(console: Console, spec, sweep_plan, grid_value) -> None:
    table = Table(title="runs (dry run: nothing trained)")
    for column in (*spec.grid, "seed", "status"):
        table.add_column(column)
    for c in sweep_plan.members:
        h = c.content_hash()
        was = sweep_plan.unfinished.get(h)
        status = "done" if h in sweep_plan.done else f"to run (was {was})" if was else "to run"
        table.add_row(*[str(grid_value(c, k)) for k in spec.grid], str(c.train.seed), status)
    console.print(table)


def report_summary(console: Console, report) -> None:
    """`winit report`: the summary table, the recommendations, what was left out, where it went.

    `report` is an `app.report.Report`; its tables were read from files, not from a model.
    """
    frame = report.summary
    columns = list(frame.columns)
    grid = columns[columns.index("seed") + 1:columns.index("status")]
    # Columns with one value for every run go in the title, so the table fits 80 columns.
    identity = ("dataset", "model_kind", "activation", "depth", "width", "seed")
    shared = {c: frame[c].iloc[0] for c in identity
              if len(frame) and frame[c].nunique(dropna=False) == 1}
    varying = [c for c in identity if c not in shared]
    title = f"{len(frame)} runs" + "".join(f", {k} {v}" for k, v in shared.items())
    table = Table(title=f"{title} (every column: summary.csv)", box=box.SIMPLE_HEAD,
                  caption="where: layer (L) and step the verdict starts; dz: log10 of the most "
                          "extreme layer's ||dL/dz|| over the output layer's, at init and end; "
                          "theory: the same ratio first over last hidden layer at init, "
                          "predicted / measured")
    for name in ("scheme", *varying, *grid, "verdict", "where"):
        table.add_column(name)
    for name in ("dz init", "dz end", "theory", "test acc", "time s"):
        table.add_column(name, justify="right")
    for _, r in frame.iterrows():
        verdict = r.verdict if isinstance(r.verdict, str) else "?"
        status = "" if r.status in ("complete", verdict) else f" ({r.status})"
        where = "-" if pd.isna(r.verdict_layer) else \
            f"L{r.verdict_layer} s{_cell(r.verdict_step)}"
        theory = "-" if pd.isna(r.log10_first_to_last_predicted) else \
            (f"{r.log10_first_to_last_predicted:+.1f}/"
             f"{_cell(r.log10_first_to_last_measured, '{:+.1f}')}")
        table.add_row(
            str(r.scheme), *(_cell(r[c]) for c in varying), *(_cell(r[g]) for g in grid),
            f"[{VERDICT_STYLE.get(verdict, 'default')}]{escape(verdict)}[/]{status}", where,
            _cell(r.log10_ratio_init, "{:+.1f}"), _cell(r.log10_ratio_end, "{:+.1f}"), theory,
            pct(r.test_accuracy), _cell(r.train_seconds, "{:.0f}"),
        )
    console.print(table if len(frame) else "[yellow]no finished runs to tabulate[/]")
    for line in report.recommendations:
        console.print(_markdown_inline(line), highlight=False)
    for s in report.skipped:
        console.print(f"[yellow]not included:[/] {escape(s.path)}: {escape(s.reason)}",
                      highlight=False)
    console.print(f"report: [bold]{escape(str(report.out))}[/] (summary.csv, aggregate.csv, "
                  f"report.md, report.html, {len(report.files) - 4} plots)", highlight=False)


def _markdown_inline(text: str) -> str:
    """`code` and **bold** from the report's Markdown, as Rich markup."""
    text = escape(text)
    text = re.sub(r"`([^`]+)`", r"[cyan]\1[/]", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"[bold]\1[/]", text)


