"""Rich rendering for the terminal: progress while training, tables from what was written."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
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

from .config import Config
from .runner import RunOutcome

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
    from .runner import load_splits, run_group

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
    for label in ("||dL/dz|| init", "||dL/dz|| end", "||dL/dW|| init", "||dL/dW|| end"):
        table.add_column(label, justify="right")
    table.add_column("dead/sat end", justify="right")
    for layer in init.index:
        a, b = init.loc[layer], end.loc[layer]
        frac = b.dead_fraction if not math.isnan(b.dead_fraction) else b.saturated_fraction
        table.add_row(str(layer), f"{int(a.fan_in)}→{int(a.fan_out)}", sci(a.act_grad_norm),
                      sci(b.act_grad_norm), sci(a.weight_grad_norm), sci(b.weight_grad_norm),
                      pct(frac))
    console.print(table)
    verdict = s["verdict"]["verdict"]
    console.print(f"verdict: [{VERDICT_STYLE[verdict]}]{s['verdict_text']}[/]")
    final = s["final"]
    console.print(
        f"accuracy: train {pct(final.get('train_accuracy'))}, val {pct(final.get('val_accuracy'))}"
        f", test {pct(final.get('test_accuracy'))}  ({final.get('steps')} steps, "
        f"{final.get('samples_per_second', 0):,.0f} samples/s)"
    )
    console.print(f"results: [bold]{outcome.run_dir}[/]")


def compare(console: Console, spec, *, dry_run: bool, data_dir: Path | None) -> None:
    """Plan a sweep, say how many runs it holds, run what is not done, show the ranking."""
    from . import sweep
    from .runner import load_splits

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
            values = [str(sweep._grid_value(c, k)) for k in spec.grid]
            table.add_row(*values, str(c.train.seed), status)
        console.print(table)
        return
    cache: dict = {}

    def splits_for(config: Config):
        key = (config.data.val_size, config.data.subset, config.data.dir)
        if key not in cache:
            cache[key] = load_splits(config, data_dir, on_download=download_progress(console))
        return cache[key]

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

        frame = sweep.run_sweep(plan, spec, sweep.InProcessExecutor(splits_for),
                                on_progress=on_progress, on_member=on_member)
    comparison_table(console, frame, [sweep._column(k) for k in spec.grid])
    console.print(f"comparison: [bold]{plan.directory / 'comparison.csv'}[/]")


def comparison_table(console: Console, frame, grid_columns: list[str]) -> None:
    from .sweep import DONE, TARGET_ACCURACY, ranked

    table_data = ranked(frame, grid_columns)
    seeds = frame["seed"].nunique() if "seed" in frame else 1
    table = Table(title="ranked by test accuracy" + (f" (mean ± std over {seeds} seeds)"
                                                     if seeds > 1 else ""))
    for column in grid_columns:
        table.add_column(column.removeprefix("init_").removeprefix("model_"))
    for column in ("verdict", "log10 dz ratio init", "test acc",
                   f"steps to {TARGET_ACCURACY:.0%} val", "diverged"):
        table.add_column(column, justify="right")
    for _, r in table_data.iterrows():
        spread = "" if seeds < 2 or math.isnan(r.test_accuracy_std) else \
            f" ± {100 * r.test_accuracy_std:.1f}"
        style = VERDICT_STYLE.get(r.verdict.split("/")[0], "")
        table.add_row(
            *[str(r[c]) for c in grid_columns], f"[{style}]{r.verdict}[/]",
            "-" if math.isnan(r.log10_ratio_init) else f"{r.log10_ratio_init:+.1f}",
            f"{pct(r.test_accuracy)}{spread}",
            "-" if math.isnan(r.steps_to_target) else f"{r.steps_to_target:.0f}",
            f"{r.diverged}/{r.runs}",
        )
    console.print(table)
    if "status" in frame:
        for _, r in frame[~frame.status.isin(DONE)].iterrows():
            console.print(f"[red]{r.status}[/]: seed {r.seed} {r.get('error') or ''}")
