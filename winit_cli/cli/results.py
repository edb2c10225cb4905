"""Commands that read what runs left: `winit report`, `winit schemes`, `winit index`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from winit_cli.cli import common


@common.app.command()
def report(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATHS",
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
    grad_flow_step: Annotated[int, typer.Option(
        min=0, metavar="STEP", help="Step of the mean and max |dL/dW| per-layer bars "
                                    "(plot_grad_flow): the last recorded step at or before it.")
    ] = 0,
    quiet: common.QuietOption = False,
    as_json: common.JsonOption = False,
) -> None:
    """Summarize finished runs from their files: CSV tables, plots, report.md and report.html."""
    from winit_cli.app.report import build_report, figure_output
    from winit_cli.views import json_out
    from winit_cli.views.report_terminal import report_summary

    with common.user_errors():
        output = figure_output(formats or [], dpi, grad_flow_step)
        with common.shown(quiet, as_json).status("reading runs and drawing plots"):
            result = build_report(paths or [], out=out, filters=filter_ or [], output=output)
        if as_json:
            common.print_json(json_out.report_result(result))
        elif quiet:
            typer.echo(str(result.out))
        else:
            report_summary(common.console, result)


@common.app.command()
def schemes(
    name: Annotated[str | None, typer.Argument(
        metavar="SCHEME", help="Show this scheme's full docstring.", show_default=False)] = None,
    activation: Annotated[str, typer.Option(
        metavar="NAME", help="Activation for sigma_w^2 and chi, as in model.activation.")]
    = "relu",
    width: Annotated[int, typer.Option(min=1, metavar="N",
                                       help="Width of the square layer.")] = 512,
) -> None:
    """List the init schemes: formula, parameters, sigma_w^2, chi and depth scale xi."""
    from winit_cli.app.schemes import check_activation, scheme_detail, scheme_rows
    from winit_cli.views import schemes as view

    with common.user_errors():
        check_activation(activation)
        out = common.console
        if name is not None:
            view.scheme_detail(out, scheme_detail(name, activation, width), activation, width)
        else:
            view.scheme_table(out, scheme_rows(activation, width), activation, width)


index_app = typer.Typer(no_args_is_help=True, help="The runs index (runs.csv) of a results folder.")
common.app.add_typer(index_app, name="index")


@index_app.command("rebuild")
def index_rebuild(
    path: Annotated[Path, typer.Argument(
        exists=True, file_okay=False, metavar="PATH", help="Results folder.")] = Path("results"),
) -> None:
    """Rewrite every runs.csv under PATH from the run folders themselves."""
    from winit_cli.app.index import rebuild

    with common.user_errors():
        for index, lines in rebuild(path):
            common.console.print(f"{index}: {lines} run(s)", highlight=False)


export_app = typer.Typer(no_args_is_help=True, help="Convert finished runs for other tools.")
common.app.add_typer(export_app, name="export")


@export_app.command("tensorboard")
def export_tensorboard(
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATHS", help="Run directories, sweep directories or folders of them.",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", file_okay=False, metavar="DIR",
        help="Folder for the event files (default: tensorboard/ beside the runs).")] = None,
) -> None:
    """Write TensorBoard event files for finished runs, read from their folders (one chart per
    quantity, layers as series): then `tensorboard --logdir OUT`."""
    from winit_cli.app.export import export_tensorboard as export

    with common.user_errors():
        result = export(paths, out)
        for skipped in result.skipped:
            common.console.print(f"[yellow]skipped[/] {skipped.path}: {skipped.reason}")
        common.console.print(f"{len(result.written)} runs exported to [bold]{result.out}[/]: "
                             f"tensorboard --logdir {result.out}", soft_wrap=True)
