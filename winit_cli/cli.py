"""The command line: one function per command; parse, call the application layer (app/),
render with the views (views/), map errors to exit codes.

torch is imported inside the commands, so `winit --help` answers at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.markup import escape

from winit_cli.errors import ConfigError, WinitError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="winit: a lab for gradient-flow studies of weight initialization on MNIST and "
         "Fashion-MNIST.",
)
console = Console()
errors = Console(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set model.depth=30 (repeatable)."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", exists=True, file_okay=False,
                 help="Folder holding the dataset's four IDX files (else config, "
                      "$WINIT_DATA_DIR, cache; downloaded if absent)."),
]


@app.callback()
def _group() -> None:
    """winit: a lab for gradient-flow studies of weight initialization on MNIST and
    Fashion-MNIST."""


@contextmanager
def user_errors() -> Iterator[None]:
    """A WinitError is the user's to fix: one red line, exit code 2. Anything else is a bug."""
    try:
        yield
    except WinitError as e:
        # escaped: a message may hold brackets (`pip install 'winit[ray]'`) that are not markup
        errors.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted: what was measured so far is saved[/]")
        raise typer.Exit(130) from None


@app.command()
def run(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                           help="Experiment YAML (see configs/).")],
    set_: SetOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Train one MLP on the config's dataset (MNIST by default), recording per-layer gradients
    from step 0, and diagnose them."""
    from winit_cli.app.run import run_experiment
    from winit_cli.config import load_config
    from winit_cli.views.progress import RunProgress
    from winit_cli.views.terminal import run_report

    with user_errors():
        cfg = load_config(config, set_ or [])
        outcome = run_experiment(cfg, data_dir, RunProgress(console))
        run_report(console, outcome)


compare_app = typer.Typer(
    no_args_is_help=False, help="Train the same network under several choices, side by side."
)
app.add_typer(compare_app, name="compare")


def _split(text: str | None, kind: type = str, option: str = "") -> list:
    """'5,10,20' -> [5, 10, 20]; a value of the wrong kind is a user error."""
    values = [v.strip() for v in text.split(",") if v.strip()] if text else []
    try:
        return [kind(v) for v in values]
    except ValueError:
        raise ConfigError(
            f"{option}: expected comma-separated {kind.__name__}s (got {text!r})") from None


def _only_set_beside_sweep(**given) -> None:
    """A sweep file holds the grid: options that would change it are a user error."""
    clash = [f"--{k}" for k, v in given.items() if v]
    if clash:
        raise ConfigError(f"--sweep holds the grid; drop {', '.join(clash)} "
                          "(use --set for base values)")


@compare_app.command("schemes")
def compare_schemes(
    base: Annotated[Path | None, typer.Option(
        "--base", exists=True, dir_okay=False, help="Base config (default: a 20-layer ReLU MLP)."
    )] = None,
    sweep_file: Annotated[Path | None, typer.Option(
        "--sweep", exists=True, dir_okay=False,
        help="Sweep YAML with name, base, grid (config key -> list of values) and seeds.",
    )] = None,
    schemes: Annotated[str | None, typer.Option(
        help="Comma-separated schemes (default: the main eight; see `winit schemes`).")] = None,
    activations: Annotated[str | None, typer.Option(help="e.g. relu,tanh")] = None,
    depths: Annotated[str | None, typer.Option(help="e.g. 5,10,20,40")] = None,
    widths: Annotated[str | None, typer.Option(help="e.g. 128,512")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per grid point (0..N-1).")] = 1,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", metavar="KEY=V1,V2", help="Any other config key to vary (repeatable).")] = None,
    set_: SetOption = None,
    name: Annotated[str | None, typer.Option(help="Sweep name (default: the base's).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the runs, train nothing.")] = False,
    jobs: Annotated[int, typer.Option(
        min=1, help="Worker processes; 1 trains same-shape runs batched in this process.")] = 1,
    executor: Annotated[str, typer.Option(
        help="Where members train: local (this machine), or ray (a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(
        help="The cluster's address for --executor ray (default: $RAY_ADDRESS, else a "
             "local Ray).")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Compare init schemes (x activations x depths x widths x seeds); resumes if rerun."""
    from winit_cli.app.compare import compare, plan_sweep, sweep_spec
    from winit_cli.sweeps.executors import ExecutorOptions
    from winit_cli.sweeps.spec import grid_value
    from winit_cli.views import terminal
    from winit_cli.views.progress import download_progress, sweep_progress

    with user_errors():
        if sweep_file is not None:
            _only_set_beside_sweep(base=base, schemes=schemes, activations=activations,
                                   depths=depths, widths=widths, grid=grid, seeds=seeds != 1)
        axes = {"init.scheme": _split(schemes), "model.activation": _split(activations),
                "model.depth": _split(depths, int, "--depths"),
                "model.width": _split(widths, int, "--widths")}
        spec = sweep_spec(sweep_file, base, axes, grid or [], set_ or [], seeds, name)
        plan = plan_sweep(spec)
        terminal.sweep_header(console, spec, plan)
        if dry_run:
            terminal.dry_run_table(console, spec, plan, grid_value)
            return
        options = ExecutorOptions(jobs, data_dir, download_progress(console), address)
        with sweep_progress(console, len(plan.todo)) as (on_progress, advance):
            def on_member(outcome) -> None:
                advance()
                terminal.member_line(console, outcome)

            result = compare(spec, plan, executor=executor, options=options,
                             on_progress=on_progress, on_member=on_member)
        terminal.comparison_table(console, result.frame, list(spec.grid))
        console.print(f"comparison: [bold]{result.path}[/]")


@app.command()
def report(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Run directories, sweep directories or folders of them (default: results/).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", file_okay=False,
        help="Folder for the report (default: <path>/report for one path, else beside the "
             "paths' common folder).")] = None,
    filter_: Annotated[list[str] | None, typer.Option(
        "--filter", "-f", metavar="KEY=VALUE",
        help="Keep runs whose summary field matches, e.g. --filter scheme=he_normal or depth=20 "
             "(repeatable: different keys must all match, a repeated key matches any value).",
    )] = None,
) -> None:
    """Summarize finished runs from their files: CSV tables, plots, report.md and report.html."""
    from winit_cli.app.report import build_report
    from winit_cli.views.terminal import report_summary

    with user_errors():
        with console.status("reading runs and drawing plots"):
            result = build_report(paths or [], out=out, filters=filter_ or [])
        report_summary(console, result)


@app.command()
def schemes(
    name: Annotated[str | None, typer.Argument(
        help="Show this scheme's full docstring.", show_default=False)] = None,
    activation: Annotated[str, typer.Option(
        help="Activation for sigma_w^2 and chi, as in model.activation.")] = "relu",
    width: Annotated[int, typer.Option(min=1, help="Width of the square layer.")] = 512,
) -> None:
    """List the init schemes: formula, parameters, sigma_w^2 and chi at the fixed point."""
    from winit_cli.app.schemes import scheme_detail, scheme_rows
    from winit_cli.config import Activation
    from winit_cli.views import schemes as view

    with user_errors():
        known = get_args(Activation)
        if activation not in known:
            raise ConfigError(f"--activation: {activation!r} is not one of {', '.join(known)}")
        if name is not None:
            view.scheme_detail(console, scheme_detail(name, activation, width), activation, width)
        else:
            view.scheme_table(console, scheme_rows(activation, width), activation, width)


def main() -> None:
    app()
