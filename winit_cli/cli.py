"""The command line: one function per command; parse, call the application layer (app/),
render with the views (views/), map errors to exit codes. torch is imported inside the commands,
so `winit --help` answers at once. `--json` puts one JSON document on stdout and nothing else
(progress goes to stderr); `--quiet` prints only the result's path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from winit_cli.errors import ResultsError, WinitError

app = typer.Typer(
    no_args_is_help=True, add_completion=True, rich_markup_mode="rich",
    help="winit: a lab for gradient-flow studies of weight initialization on MNIST and "
         "Fashion-MNIST.",
)
console = Console()
errors = Console(stderr=True)


# Typer's help prints each parameter's Python type beside it (`<bool>` for every flag and --help,
# `<list[Path]>` for an argument): noise to a user. Options here carry metavars; flags and
# arguments show none.
_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = \
    lambda self, ctx: None if self.is_flag and self.metavar is None else _option_type(self, ctx)
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set model.depth=30 (repeatable)."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", exists=True, file_okay=False, metavar="DIR",
                 help="Folder holding the dataset's four IDX files (else config, "
                      "$WINIT_DATA_DIR, cache; downloaded if absent)."),
]
QuietOption = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress or tables: print only the result's path.")]
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print the result as JSON on stdout, nothing else (progress on stderr).")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Show the config and the cost (steps, and minutes from a per-step time "
                      "measured here on random data); train nothing.")]


def _version(value: bool) -> None:
    if value:
        from winit_cli import __version__

        typer.echo(f"winit {__version__}")
        raise typer.Exit()


@app.callback()
def _group(version: Annotated[bool | None, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show winit's version and exit.")]
        = None) -> None:
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
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP turned into one by main()
        from winit_cli.interrupts import Terminated, exit_code

        how = f" by {e}" if isinstance(e, Terminated) else ""
        with suppress(OSError):  # after SIGHUP the terminal may be gone
            errors.print(f"[yellow]interrupted{how}: what was measured so far is saved[/]")
        raise typer.Exit(exit_code(e)) from None


def _shown(quiet: bool, as_json: bool) -> Console:
    """Where progress goes: the terminal; stderr beside --json (stdout holds the document)."""
    return Console(quiet=True) if quiet else Console(stderr=True) if as_json else console


def _print_json(data: dict) -> None:
    from winit_cli.views.json_out import dumps

    typer.echo(dumps(data))


@app.command()
def run(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                           help="Experiment YAML (see configs/).")],
    set_: SetOption = None,
    data_dir: DataDirOption = None,
    report: Annotated[bool, typer.Option(
        "--report", help="Also write the run's report and figures beside it "
                         "(as `winit report <run dir>` does).")] = False,
    dry_run: DryRunOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Train one MLP on the config's dataset (MNIST by default), recording per-layer gradients
    from step 0, and diagnose them."""
    from winit_cli.app.run import run_experiment
    from winit_cli.config import load_config
    from winit_cli.views import json_out
    from winit_cli.views.progress import RunProgress
    from winit_cli.views.terminal import run_report

    with user_errors():
        cfg = load_config(config, set_ or [])
        if dry_run:
            _dry_run(_shown(quiet, as_json), as_json, cfg, "config (dry run: nothing trained)",
                     [[cfg]], {"config": cfg.to_dict()})
            return
        outcome = run_experiment(cfg, data_dir, RunProgress(_shown(quiet, as_json)))
        report_dir = None
        if report:
            from winit_cli.app.report import build_report

            with _shown(quiet, as_json).status("drawing the run's figures"):
                report_dir = build_report([outcome.run_dir]).out
        if as_json:
            _print_json(json_out.run_result(outcome, report_dir))
        elif quiet:
            typer.echo(str(outcome.run_dir))
        else:
            run_report(console, outcome, report_dir)
        for note in outcome.notes:
            errors.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
        if outcome.unsaved:
            raise ResultsError(outcome.unsaved)


def _dry_run(shown: Console, as_json: bool, config, title: str, groups: list,
             payload: dict) -> None:
    """The config, then the cost: steps, and minutes from a per-step time measured here."""
    from winit_cli.app.estimate import estimate
    from winit_cli.views.terminal import cost_lines, show_config

    show_config(shown, config, title)
    with shown.status("timing a few steps of each model on random data"):
        cost = estimate(groups)
    if as_json:
        _print_json({**payload, "steps": cost.steps, "estimated_seconds": cost.seconds})
    else:
        cost_lines(shown, cost)


compare_app = typer.Typer(
    no_args_is_help=True, help="Train the same network under several choices, side by side."
)
app.add_typer(compare_app, name="compare")


@compare_app.command("schemes")
def compare_schemes(
    base: Annotated[Path | None, typer.Option(
        "--base", exists=True, dir_okay=False, metavar="FILE",
        help="Base config (default: a 20-layer ReLU MLP).")] = None,
    sweep_file: Annotated[Path | None, typer.Option(
        "--sweep", exists=True, dir_okay=False, metavar="FILE",
        help="Sweep YAML with name, base, grid (config key -> list of values) and seeds.",
    )] = None,
    schemes: Annotated[str | None, typer.Option(
        metavar="A,B", help="Comma-separated schemes (default: the main eight; see "
                            "`winit schemes`).")] = None,
    activations: Annotated[str | None, typer.Option(metavar="A,B", help="e.g. relu,tanh")] = None,
    depths: Annotated[str | None, typer.Option(metavar="N,N", help="e.g. 5,10,20,40")] = None,
    widths: Annotated[str | None, typer.Option(metavar="N,N", help="e.g. 128,512")] = None,
    seeds: Annotated[int, typer.Option(min=1, metavar="N",
                                       help="Seeds per grid point (0..N-1).")] = 1,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", metavar="KEY=V1,V2", help="Any other config key to vary (repeatable).")] = None,
    set_: SetOption = None,
    name: Annotated[str | None, typer.Option(
        metavar="NAME", help="Sweep name (default: the base's).")] = None,
    dry_run: DryRunOption = False,
    jobs: Annotated[int, typer.Option(
        min=1, metavar="N",
        help="Worker processes; 1 trains same-shape runs batched in this process.")] = 1,
    executor: Annotated[str, typer.Option(
        metavar="NAME",
        help="Where members train: local (this machine), or ray (a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="The cluster's address for --executor ray (default: "
                                "$RAY_ADDRESS, else a local Ray).")] = None,
    data_dir: DataDirOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Compare init schemes (x activations x depths x widths x seeds); resumes if rerun."""
    from winit_cli.app.compare import only_set_beside_sweep, split_option, sweep_spec

    with user_errors():
        if sweep_file is not None:
            only_set_beside_sweep(base=base, schemes=schemes, activations=activations,
                                  depths=depths, widths=widths, grid=grid, seeds=seeds != 1)
        axes = {"init.scheme": split_option(schemes), "model.activation":
                split_option(activations), "model.depth": split_option(depths, int, "--depths"),
                "model.width": split_option(widths, int, "--widths")}
        spec = sweep_spec(sweep_file, base, axes, grid or [], set_ or [], seeds, name)
        _sweep(spec, dry_run, jobs, executor, address, data_dir, quiet, as_json)


def _sweep(spec, dry_run, jobs, executor, address, data_dir, quiet, as_json) -> None:
    from winit_cli.app.compare import compare, plan_sweep
    from winit_cli.sweeps.executors import ExecutorOptions
    from winit_cli.views import json_out, terminal
    from winit_cli.views.progress import download_progress, sweep_progress

    shown = _shown(quiet, as_json)
    plan = plan_sweep(spec)
    terminal.sweep_header(shown, spec, plan)
    if dry_run:
        from winit_cli.sweeps.plan import groups
        from winit_cli.sweeps.spec import grid_value

        terminal.dry_run_table(shown, spec, plan, grid_value)
        _dry_run(shown, as_json, plan.members[0], "base config, as its first run resolves it "
                 f"(the grid varies {', '.join(spec.grid) or 'nothing'})", groups(plan.todo),
                 {"sweep_dir": str(plan.directory), "runs": len(plan.members),
                  "to_run": len(plan.todo)})
        return
    options = ExecutorOptions(jobs, data_dir, download_progress(shown), address)
    if not plan.todo:
        result = compare(spec, plan, executor=executor, options=options)
    else:
        with sweep_progress(shown, len(plan.todo)) as (on_progress, advance):
            def on_member(outcome) -> None:
                advance()
                terminal.member_line(shown, outcome)

            result = compare(spec, plan, executor=executor, options=options,
                             on_progress=on_progress, on_member=on_member,
                             on_wait=lambda configs: terminal.waiting_line(shown, configs))
    if as_json:
        _print_json(json_out.comparison_result(result))
    elif quiet:
        typer.echo(str(result.path))
    else:
        terminal.comparison_table(console, result.frame, list(spec.grid))
        console.print(f"comparison: [bold]{result.path}[/]\nnext: [cyan]winit report "
                      f"{plan.directory}[/]", highlight=False)


@app.command()
def phase(
    sigma_w2: Annotated[str, typer.Option(
        "--sigma-w2", help="Comma-separated weight variances sigma_w^2.")] = "0.5,1,1.5,2,3,4",
    depths: Annotated[str, typer.Option(help="Comma-separated depths.")] = "5,10,20,40",
    sigma_b2: Annotated[float, typer.Option("--sigma-b2", min=0, help="Bias variance.")] = 0.05,
    activation: Annotated[str, typer.Option(help="Hidden activation.")] = "tanh",
    width: Annotated[int, typer.Option(min=1, help="Hidden width.")] = 128,
    steps: Annotated[int, typer.Option(min=1, help="Training steps per cell.")] = 200,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per cell.")] = 1,
    subset: Annotated[int, typer.Option(min=1, help="Training examples used.")] = 10_000,
    c: Annotated[float, typer.Option("--c", min=0, help="Theory boundary: depth <= c xi_c.")] = 6.0,
    threshold: Annotated[float, typer.Option(
        help="A cell trained if its test accuracy exceeds this (default 2x chance).")] = 0.2,
    set_: SetOption = None,
    name: Annotated[str, typer.Option(help="Sweep name.")] = "phase",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs only.")] = False,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    data_dir: DataDirOption = None,
) -> None:
    """Trainability phase diagram over sigma_w^2 x depth, with mean-field theory overlaid.

    Its own command, not a `compare` option: compare ranks init schemes, while phase sweeps the
    mean-field parameters themselves (the `mean_field` scheme) and adds what compare has no
    place for: theory per sigma_w^2 (chi_1, xi_c), the phase.csv grid, the heatmap with the
    chi_1 = 1 and c xi_c boundaries, and how many cells the theory classifies correctly. It
    runs on the same sweep machinery: rerun it to resume; same-depth cells train batched.
    """
    from winit_cli.app.compare import split_option
    from winit_cli.app.phase import PhaseOptions, agreement_line, plan_phase, run_phase
    from winit_cli.sweeps.executors import ExecutorOptions
    from winit_cli.sweeps.spec import grid_value
    from winit_cli.views import terminal
    from winit_cli.views.progress import download_progress, sweep_progress

    with user_errors():
        options = PhaseOptions(
            split_option(sigma_w2, float, "--sigma-w2"), split_option(depths, int, "--depths"),
            sigma_b2,
            activation, width, steps, seeds, subset, c=c, threshold=threshold, name=name,
            overrides=set_ or [])
        spec, plan = planned = plan_phase(options)
        terminal.sweep_header(console, spec, plan)
        if dry_run:
            terminal.dry_run_table(console, spec, plan, grid_value)
            return
        with sweep_progress(console, len(plan.todo)) as (on_progress, advance):
            diagram = run_phase(
                options, executor_options=ExecutorOptions(jobs, data_dir,
                                                          download_progress(console)),
                on_progress=on_progress, on_member=lambda _: advance(), planned=planned)
        console.print(agreement_line(diagram.grid, options))
        console.print(f"grid: [bold]{diagram.grid_path}[/]\nfigure: [bold]{diagram.figure_path}[/]")


@app.command()
def report(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Run directories, sweep directories or folders of them (default: results/).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", file_okay=False, metavar="DIR",
        help="Folder for the report (default: <folder>/report for a folder of runs, "
             "report-<run id> beside a single run).")] = None,
    filter_: Annotated[list[str] | None, typer.Option(
        "--filter", "-f", metavar="KEY=VALUE",
        help="Keep runs whose summary field matches, e.g. --filter scheme=he_normal or depth=20 "
             "(repeatable: different keys must all match, a repeated key matches any value).",
    )] = None,
    formats: Annotated[list[str] | None, typer.Option(
        "--format", metavar="FMT", help="Also save figures as pdf or svg (repeatable); PNG is "
                                        "always written, for the HTML page.")] = None,
    dpi: Annotated[int, typer.Option(min=30, max=1200, metavar="N",
                                     help="Figure resolution.")] = 100,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Summarize finished runs from their files: CSV tables, plots, report.md and report.html."""
    from winit_cli.app.report import build_report, figure_output
    from winit_cli.views import json_out
    from winit_cli.views.report_terminal import report_summary

    with user_errors():
        output = figure_output(formats or [], dpi)
        with _shown(quiet, as_json).status("reading runs and drawing plots"):
            result = build_report(paths or [], out=out, filters=filter_ or [], output=output)
        if as_json:
            _print_json(json_out.report_result(result))
        elif quiet:
            typer.echo(str(result.out))
        else:
            report_summary(console, result)


export_app = typer.Typer(no_args_is_help=True, help="Convert finished runs for other tools.")
app.add_typer(export_app, name="export")


@export_app.command("tensorboard")
def export_tensorboard(
    paths: Annotated[list[Path], typer.Argument(
        help="Run directories, sweep directories or folders of them.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", file_okay=False,
        help="Folder for the event files (default: tensorboard/ beside the runs).")] = None,
) -> None:
    """Write TensorBoard event files for finished runs, read from their folders (one chart per
    quantity, layers as series): then `tensorboard --logdir OUT`."""
    from winit_cli.app.export import export_tensorboard as export

    with user_errors():
        result = export(paths, out)
        for skipped in result.skipped:
            console.print(f"[yellow]skipped[/] {skipped.path}: {skipped.reason}")
        console.print(f"{len(result.written)} runs exported to [bold]{result.out}[/]: "
                      f"tensorboard --logdir {result.out}", soft_wrap=True)


@app.command()
def schemes(
    name: Annotated[str | None, typer.Argument(
        help="Show this scheme's full docstring.", show_default=False)] = None,
    activation: Annotated[str, typer.Option(
        metavar="NAME", help="Activation for sigma_w^2 and chi, as in model.activation.")]
    = "relu",
    width: Annotated[int, typer.Option(min=1, metavar="N",
                                       help="Width of the square layer.")] = 512,
) -> None:
    """List the init schemes: formula, parameters, sigma_w^2, chi and depth scale xi."""
    from winit_cli.app.schemes import check_activation, scheme_detail, scheme_rows
    from winit_cli.views import schemes as view

    with user_errors():
        check_activation(activation)
        if name is not None:
            view.scheme_detail(console, scheme_detail(name, activation, width), activation, width)
        else:
            view.scheme_table(console, scheme_rows(activation, width), activation, width)


index_app = typer.Typer(no_args_is_help=True, help="The runs index (runs.csv) of a results folder.")
app.add_typer(index_app, name="index")


@index_app.command("rebuild")
def index_rebuild(
    path: Annotated[Path, typer.Argument(
        exists=True, file_okay=False, help="Results folder.")] = Path("results"),
) -> None:
    """Rewrite every runs.csv under PATH from the run folders themselves."""
    from winit_cli.app.index import rebuild

    with user_errors():
        for index, lines in rebuild(path):
            console.print(f"{index}: {lines} run(s)", highlight=False)


def main() -> None:
    import signal

    from winit_cli.interrupts import raise_on

    # `timeout`, `kill`, batch schedulers and closed terminals stop a run as Ctrl-C does: what
    # was measured is saved and the run is marked interrupted.
    raise_on(signal.SIGTERM, signal.SIGHUP)
    app()
