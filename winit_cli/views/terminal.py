"""Rich rendering for the terminal: progress while training, tables from what was written."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from winit_cli.app.experiment import RunOutcome, load_splits, run_group
from winit_cli.config import Config
from winit_cli.inits import SCHEMES, activation_gain, get_scheme
from winit_cli.measure.predict import mean_field
from winit_cli.sweeps import sweep

VERDICT_STYLE = {"healthy": "green", "vanishing": "yellow", "exploding": "red",
                 "diverged": "bold red"}


def training_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), console=console, transient=False,
    )


def download_progress(console: Console):
    """A callback for data downloads, drawing one bar per file."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        console=console, transient=True)
    tasks: dict[str, int] = {}

    def update(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            progress.start()
            tasks[name] = progress.add_task(f"downloading {name}", total=total)
        progress.update(tasks[name], completed=done)
        if total is not None and done >= total:
            progress.stop()

    return update


def run_with_progress(console: Console, config: Config, data_dir: Path | None) -> RunOutcome:
    with console.status("loading MNIST"):
        splits = load_splits(config, data_dir, on_download=download_progress(console))
    console.print(
        f"[dim]{len(splits.x_train):,} train / {len(splits.x_val):,} val / "
        f"{len(splits.x_test):,} test examples; depth {config.model.depth}, "
        f"{config.model.activation}, init {config.init.scheme}[/]"
    )
    with training_progress(console) as progress:
        task = progress.add_task(config.name, total=None, loss="-")

        def on_progress(step: int, total: int, info: dict) -> None:
            progress.update(task, completed=step, total=total, loss=_fmt_loss(info["loss"]))

        def on_start(dirs: list[Path]) -> None:
            console.print(f"[dim]writing {dirs[0]}[/]")

        (outcome,) = run_group([config], splits, device=config.train.device,
                               on_progress=on_progress, on_start=on_start)
    return outcome


def _fmt_loss(loss: float) -> str:
    return f"{loss:.4f}" if math.isfinite(loss) else "[red]non-finite[/]"


def sci(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2e}"


def _signed(x) -> str:
    return "-" if x is None else f"{x:+.2f}"


def pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def run_report(console: Console, outcome: RunOutcome) -> None:
    """Per-layer gradient norms at init and at the end, the verdict, accuracy, the run's path."""
    layers = outcome.layers
    s = outcome.summary
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
    theory = s.get("theory") or {}
    if theory.get("applicable"):
        chi, xi = theory.get("chi"), theory.get("depth_scale")
        console.print(
            f"theory: chi* = {chi:.3g}, depth scale xi = {'inf' if xi is None else f'{xi:.3g}'}"
            f" layers; log10 ||dL/dz_1||/||dL/dz_L-1|| at init: predicted "
            f"{_signed(theory.get('predicted_log10_ratio'))}, measured "
            f"{_signed(theory.get('measured_log10_ratio'))}")
    elif theory:
        console.print(f"[dim]theory: not applicable ({theory.get('reason')})[/]")
    verdict = s["verdict"]["verdict"]
    console.print(f"verdict: [{VERDICT_STYLE[verdict]}]{s['verdict_text']}[/]")
    final = s["final"]
    console.print(
        f"accuracy: train {pct(final.get('train_accuracy'))}, val {pct(final.get('val_accuracy'))}"
        f", test {pct(final.get('test_accuracy'))}  ({final.get('steps')} steps, "
        f"{final.get('samples_per_second', 0):,.0f} samples/s)"
    )
    console.print(f"results: [bold]{outcome.run_dir}[/]")


def compare(console: Console, spec, *, dry_run: bool, data_dir: Path | None,
            jobs: int = 1) -> None:
    """Plan a sweep, say how many runs it holds, run what is not done, show the ranking."""
    plan = sweep.plan(spec)
    todo = plan.todo
    console.print(
        f"sweep [bold]{spec.name}[/]: {len(plan.members)} runs "
        f"({len(plan.members) - len(todo)} already done, {len(todo)} to run) in {plan.directory}"
    )
    if dry_run:
        table = Table(title="runs (dry run: nothing trained)")
        for column in (*spec.grid, "seed", "status"):
            table.add_column(column)
        for c in plan.members:
            status = "done" if c.content_hash() in plan.done else "to run"
            values = [str(sweep.grid_value(c, k)) for k in spec.grid]
            table.add_row(*values, str(c.train.seed), status)
        console.print(table)
        return
    if jobs > 1:
        executor = sweep.ProcessExecutor(jobs, data_dir)
    else:
        executor = sweep.InProcessExecutor(
            sweep.cached_splits(data_dir, on_download=download_progress(console)))
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
    ) as progress:
        overall = progress.add_task("runs", total=len(todo))
        current = progress.add_task("steps", total=None)

        def on_progress(step: int, total: int, info: dict) -> None:
            progress.update(current, completed=step, total=total)

        def on_member(outcome) -> None:
            progress.advance(overall)
            if isinstance(outcome, sweep.MemberFailure):
                console.print(f"[red]failed[/] {outcome.config.name}: {outcome.error}")
            else:
                v = outcome.summary["verdict"]["verdict"]
                console.print(f"[{VERDICT_STYLE[v]}]{v:>9}[/] {outcome.summary['name']}")

        frame = sweep.run_sweep(plan, spec, executor, on_progress=on_progress,
                                on_member=on_member)
    comparison_table(console, frame, [sweep.column_name(k) for k in spec.grid])
    console.print(f"comparison: [bold]{plan.directory / 'comparison.csv'}[/]")


def comparison_table(console: Console, frame, grid_columns: list[str]) -> None:
    table_data = sweep.ranked(frame, grid_columns)
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    table = Table(title="ranked by test accuracy" + (f" (mean ± std over {seeds} seeds)"
                                                     if seeds > 1 else ""))
    for column in grid_columns:
        table.add_column(column.removeprefix("init_").removeprefix("model_"))
    for column in ("verdict", "log10 dz ratio init", "test acc",
                   f"steps to {sweep.TARGET_ACCURACY:.0%} val", "diverged"):
        table.add_column(column, justify="right")
    for _, r in table_data.iterrows():
        spread = "" if seeds < 2 or math.isnan(r.test_accuracy_std) else \
            f" ± {100 * r.test_accuracy_std:.1f}"
        style = VERDICT_STYLE.get(r.verdict.split("/")[0], "")
        table.add_row(
            *[str(r[c]) for c in grid_columns], f"[{style}]{r.verdict}[/]",
            "-" if math.isnan(r.log10_ratio_init) else f"{r.log10_ratio_init:+.1f}",
            f"{pct(r.test_accuracy)}{spread}",
            "-" if math.isnan(r.steps_to_target) else f"{r.steps_to_target:.0f}"
            + ("" if r.reached_target == r.runs else f" ({r.reached_target}/{r.runs})"),
            f"{r.diverged}/{r.runs}",
        )
    console.print(table)
    if "status" in frame:
        for _, r in frame[~frame.status.isin(sweep.DONE)].iterrows():
            console.print(f"[red]{r.status}[/]: seed {r.seed} {r.get('error') or ''}")


def report_summary(console: Console, report) -> None:
    """`winit report`: the summary table, the recommendations, what was left out, where it went.

    `report` is a `winit_cli.report.Report`; its tables were read from files, not from a model.
    """

    def cell(x, spec: str = "{}") -> str:
        return "-" if x is None or pd.isna(x) else spec.format(x)

    frame = report.summary
    columns = list(frame.columns)
    grid = columns[columns.index("seed") + 1:columns.index("status")]
    # Columns with one value for every run go in the title, so the table fits 80 columns.
    shared = {c: frame[c].iloc[0] for c in ("activation", "depth", "width", "seed")
              if len(frame) and frame[c].nunique(dropna=False) == 1}
    varying = [c for c in ("activation", "depth", "width", "seed") if c not in shared]
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
            f"L{r.verdict_layer} s{cell(r.verdict_step)}"
        theory = "-" if pd.isna(r.log10_first_to_last_predicted) else \
            (f"{r.log10_first_to_last_predicted:+.1f}/"
             f"{cell(r.log10_first_to_last_measured, '{:+.1f}')}")
        table.add_row(
            str(r.scheme), *(cell(r[c]) for c in varying), *(cell(r[g]) for g in grid),
            f"[{VERDICT_STYLE.get(verdict, 'default')}]{escape(verdict)}[/]{status}", where,
            cell(r.log10_ratio_init, "{:+.1f}"), cell(r.log10_ratio_end, "{:+.1f}"), theory,
            pct(r.test_accuracy), cell(r.train_seconds, "{:.0f}"),
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


def schemes(console: Console, activation: str, width: int, name: str | None = None) -> None:
    """`winit schemes`: every init scheme with its formula, parameters (with defaults), and the
    sigma_w^2 and chi* it gives a square width x width layer; or one scheme's full docstring.

    chi* is sigma_w^2 E[phi'(sqrt(q*) z)^2] at the fixed point q* of the length map (reached from
    q = 1) with the scheme's bias variance; "-" where the theory does not apply.
    """
    def params(scheme) -> str:
        auto = {"gain": f"auto ({activation_gain(activation):.3g})", "std": "auto"}
        return ", ".join(f"{k}={auto.get(k, 'None') if v is None else v}"
                         for k, v in scheme.defaults.items()) or "none"

    def number(x: float | None, note: str = "") -> str:
        if x is None:
            return f"[dim]- ({note})[/]" if note else "-"
        return f"{x:.4g}"

    if name is not None:
        scheme = get_scheme(name, where="winit schemes")
        # Reflow each paragraph: the docstring's line breaks are for source files, not terminals.
        text = "\n\n".join(" ".join(part.split()) for part in scheme.doc.split("\n\n"))
        console.print(Panel(escape(text), title=f"[bold]{scheme.name}[/]", title_align="left",
                            expand=False), highlight=False)
        mf = mean_field(scheme, activation, width)
        for label, value in (
            ("formula", escape(scheme.formula)),
            ("parameters", escape(params(scheme))),
            ("not taken", ", ".join(scheme.not_taken) or "-"),
            ("data-dependent", "yes" if scheme.data_dependent else "no"),
            (f"σw² ({activation}, width {width})", number(mf.sigma_w2, mf.note)),
            ("χ* at the fixed point", number(mf.chi, mf.note)),
        ):
            console.print(f"[bold]{label}:[/] {value}", highlight=False)
        return

    table = Table(title=f"init schemes: σw² = fan_in Var(W) and χ* for a {width}x{width} "
                        f"{activation} layer (`winit schemes NAME` for the full docstring)",
                  show_lines=True)
    table.add_column("scheme", style="bold", no_wrap=True)
    table.add_column("summary / [dim]formula[/]", ratio=3)
    table.add_column("parameters (defaults) / [dim]not taken[/]", ratio=2)
    table.add_column("σw²", justify="right", no_wrap=True)
    table.add_column("χ*", justify="right", no_wrap=True)
    for scheme in SCHEMES.values():
        mf = mean_field(scheme, activation, width)
        note = "data" if scheme.data_dependent else ""
        not_taken = ", ".join(scheme.not_taken) or "-"
        table.add_row(scheme.name, f"{escape(scheme.summary)}\n[dim]{escape(scheme.formula)}[/]",
                      f"{escape(params(scheme))}\n[dim]not: {not_taken}[/]",
                      number(mf.sigma_w2, note), number(mf.chi))
    console.print(table)
    console.print("[dim]χ* < 1: gradients vanish with depth; > 1: they explode; '-': theory does "
                  "not apply (data-dependent or non-zero-mean weights) or there is no critical "
                  "point.[/]")
