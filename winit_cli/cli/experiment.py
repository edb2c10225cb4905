"""`winit run`: one experiment, its table, its report, its cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from winit_cli.cli import common
from winit_cli.errors import ResultsError


@common.app.command()
def run(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                           metavar="CONFIG",
                                           help="Experiment YAML (see configs/).")],
    set_: common.SetOption = None,
    data_dir: common.DataDirOption = None,
    report: Annotated[bool, typer.Option(
        "--report", help="Also write the run's report and figures beside it "
                         "(as `winit report <run dir>` does).")] = False,
    dry_run: common.DryRunOption = False,
    quiet: common.QuietOption = False,
    as_json: common.JsonOption = False,
) -> None:
    """Train one MLP, recording per-layer gradients from step 0, and diagnose them.

    The data is the config's dataset (MNIST by default).
    """
    from winit_cli.app.run import run_experiment
    from winit_cli.config import load_config
    from winit_cli.views import json_out
    from winit_cli.views.progress import RunProgress
    from winit_cli.views.terminal import run_report

    with common.user_errors():
        cfg = load_config(config, set_ or [])
        if dry_run:
            common.dry_run(common.shown(quiet, as_json), as_json, cfg,
                           "config (dry run: nothing trained)", [[cfg]], {"config": cfg.to_dict()},
                           data_dir)
            return
        outcome = run_experiment(cfg, data_dir, RunProgress(common.shown(quiet, as_json)))
        report_dir = None
        if report:
            from winit_cli.app.report import build_report

            with common.shown(quiet, as_json).status("drawing the run's figures"):
                report_dir = build_report([outcome.run_dir]).out
        if as_json:
            common.print_json(json_out.run_result(outcome, report_dir))
        elif quiet:
            typer.echo(str(outcome.run_dir))
        else:
            run_report(common.console, outcome, report_dir)
        for note in outcome.notes:
            common.errors.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
        if outcome.unsaved:
            raise ResultsError(outcome.unsaved)
