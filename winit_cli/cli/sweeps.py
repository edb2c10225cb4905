"""`winit compare`, `winit phase` and `winit widths`: sweeps, on the shared sweep machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from winit_cli.cli import common

compare_app = typer.Typer(
    no_args_is_help=True, help="Train the same network under several choices, side by side."
)
common.app.add_typer(compare_app, name="compare")


ExecutorOption = Annotated[str, typer.Option(
    metavar="NAME", help="Where members train: local (this machine), or ray (a Ray cluster).")]
AddressOption = Annotated[str | None, typer.Option(
    metavar="ADDRESS", help="The cluster's address for --executor ray (default: $RAY_ADDRESS, "
                            "else a local Ray).")]


def _sweep_dry_run(shown, as_json: bool, spec, plan, data_dir, base_is: str) -> None:
    """A sweep's --dry-run (compare, phase, widths alike): its members' table, then the base
    config and the estimate of what would run."""
    from winit_cli.sweeps.plan import groups
    from winit_cli.sweeps.spec import grid_value
    from winit_cli.views import terminal

    terminal.dry_run_table(shown, spec, plan, grid_value)
    common.dry_run(shown, as_json, plan.members[0], base_is, groups(plan.todo),
                   {"sweep_dir": str(plan.directory), "runs": len(plan.members),
                    "to_run": len(plan.todo)}, data_dir)


def _planned_sweep(shown, as_json: bool, planned, dry_run: bool, jobs: int, address,
                   data_dir, base_is: str, train):
    """What `winit phase` and `winit widths` do alike with their planned sweep: its header,
    then with --dry-run its table and cost (and None), else `train(executor_options,
    on_progress, advance)` under the sweep's progress bar, and what it returns."""
    from winit_cli.sweeps.executors import ExecutorOptions
    from winit_cli.views import terminal
    from winit_cli.views.progress import download_progress, sweep_progress

    spec, plan = planned
    terminal.sweep_header(shown, spec, plan)
    if dry_run:
        _sweep_dry_run(shown, as_json, spec, plan, data_dir, base_is)
        return None
    executor_options = ExecutorOptions(jobs, data_dir, download_progress(shown), address,
                                       on_note=lambda text: terminal.executor_note(shown, text))
    with sweep_progress(shown, len(plan.todo)) as (on_progress, advance):
        return train(executor_options, on_progress, advance)


def index_notes(outcome) -> None:
    """What went wrong beside a member's run (its runs index line), as `winit run` says it."""
    for note in getattr(outcome, "notes", None) or []:
        common.errors.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


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
    set_: common.SetOption = None,
    name: Annotated[str | None, typer.Option(
        metavar="NAME", help="Sweep name (default: the base's).")] = None,
    dry_run: common.DryRunOption = False,
    jobs: Annotated[int, typer.Option(
        min=1, metavar="N",
        help="Worker processes; 1 trains same-shape runs batched in this process.")] = 1,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    data_dir: common.DataDirOption = None,
    quiet: common.QuietOption = False,
    as_json: common.JsonOption = False,
) -> None:
    """Compare init schemes (x activations x depths x widths x seeds); resumes if rerun."""
    from winit_cli.app.compare import (
        only_set_beside_sweep,
        scheme_option,
        split_option,
        sweep_spec,
    )

    with common.user_errors():
        if sweep_file is not None:
            only_set_beside_sweep(base=base, schemes=schemes, activations=activations,
                                  depths=depths, widths=widths, grid=grid, seeds=seeds != 1)
        axes = {"init.scheme": scheme_option(schemes), "model.activation":
                split_option(activations), "model.depth": split_option(depths, int, "--depths"),
                "model.width": split_option(widths, int, "--widths")}
        spec = sweep_spec(sweep_file, base, axes, grid or [], set_ or [], seeds, name)
        _sweep(spec, dry_run, jobs, executor, address, data_dir, quiet, as_json)


def _sweep(spec, dry_run, jobs, executor, address, data_dir, quiet, as_json) -> None:
    from winit_cli.app.compare import compare, plan_sweep
    from winit_cli.sweeps.executors import ExecutorOptions
    from winit_cli.views import json_out, terminal
    from winit_cli.views.progress import download_progress, sweep_progress

    shown = common.shown(quiet, as_json)
    plan = plan_sweep(spec)
    terminal.sweep_header(shown, spec, plan)
    if dry_run:
        _sweep_dry_run(shown, as_json, spec, plan, data_dir, "base config, as its first run "
                       f"resolves it (the grid varies {', '.join(spec.grid) or 'nothing'})")
        return
    options = ExecutorOptions(jobs, data_dir, download_progress(shown), address,
                              on_note=lambda text: terminal.executor_note(shown, text))
    if not plan.todo:
        result = compare(spec, plan, executor=executor, options=options)
    else:
        with sweep_progress(shown, len(plan.todo)) as (on_progress, advance):
            def on_member(outcome) -> None:
                advance()
                terminal.member_line(shown, outcome)
                index_notes(outcome)

            result = compare(spec, plan, executor=executor, options=options,
                             on_progress=on_progress, on_member=on_member,
                             on_wait=lambda configs: terminal.waiting_line(shown, configs))
    if as_json:
        common.print_json(json_out.comparison_result(result))
    elif quiet:
        typer.echo(str(result.path))
    else:
        terminal.comparison_table(common.console, result.frame, list(spec.grid))
        common.console.print(f"comparison: [bold]{result.path}[/]\nnext: [cyan]winit report "
                      f"{plan.directory}[/]", highlight=False)


@common.app.command()
def phase(
    sigma_w2: Annotated[str, typer.Option(
        "--sigma-w2", metavar="X,Y", help="Comma-separated weight variances sigma_w^2.")]
    = "0.5,1,1.5,2,3,4",
    depths: Annotated[str, typer.Option(metavar="N,N", help="Comma-separated depths.")]
    = "5,10,20,40",
    sigma_b2: Annotated[float, typer.Option("--sigma-b2", min=0, metavar="X",
                                            help="Bias variance.")] = 0.05,
    activation: Annotated[str, typer.Option(metavar="NAME", help="Hidden activation.")] = "tanh",
    width: Annotated[int, typer.Option(min=1, metavar="N", help="Hidden width.")] = 128,
    steps: Annotated[int, typer.Option(min=1, metavar="N", help="Training steps per cell.")]
    = 200,
    seeds: Annotated[int, typer.Option(min=1, metavar="N", help="Seeds per cell.")] = 1,
    subset: Annotated[int, typer.Option(min=1, metavar="N", help="Training examples used.")]
    = 10_000,
    c: Annotated[float, typer.Option("--c", min=0, metavar="X",
                                     help="Theory boundary: depth <= c xi_c.")] = 6.0,
    threshold: Annotated[float, typer.Option(
        metavar="ACC", help="A cell trained if its test accuracy exceeds this (default 2x "
                            "chance).")] = 0.2,
    set_: common.SetOption = None,
    name: Annotated[str, typer.Option(metavar="NAME", help="Sweep name.")] = "phase",
    dry_run: common.DryRunOption = False,
    jobs: Annotated[int, typer.Option(min=1, metavar="N", help="Worker processes.")] = 1,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    data_dir: common.DataDirOption = None,
    as_json: common.JsonOption = False,
) -> None:
    """Trainability phase diagram over sigma_w^2 x depth, with mean-field theory overlaid.

    Its own command, not a `compare` option: compare ranks init schemes, while phase sweeps the
    mean-field parameters themselves (the `mean_field` scheme) and adds what compare has no
    place for: theory per sigma_w^2 (chi_1, xi_c), the phase.csv grid, the heatmap with the
    chi_1 = 1 and c xi_c boundaries, and how many cells the theory classifies correctly. It
    runs on the same sweep machinery: rerun it to resume; same-depth cells train batched.
    """
    from winit_cli.app.compare import split_option
    from winit_cli.app.phase import PhaseOptions

    with common.user_errors():
        options = PhaseOptions(
            split_option(sigma_w2, float, "--sigma-w2"), split_option(depths, int, "--depths"),
            sigma_b2,
            activation, width, steps, seeds, subset, c=c, threshold=threshold, name=name,
            overrides=set_ or [])
        _phase(options, dry_run, jobs, executor, address, data_dir, as_json)


def _phase(options, dry_run: bool, jobs: int, executor: str, address: str | None, data_dir,
           as_json: bool) -> None:
    from winit_cli.app import phase as app_phase
    from winit_cli.views import json_out

    shown = common.shown(False, as_json)
    planned = app_phase.plan_phase(options)
    diagram = _planned_sweep(
        shown, as_json, planned, dry_run, jobs, address, data_dir,
        "base config, as its first cell resolves it",
        lambda executor_options, on_progress, advance: app_phase.run_phase(
            options, executor=executor, executor_options=executor_options,
            on_progress=on_progress, on_member=lambda o: (advance(), index_notes(o)),
            planned=planned))
    if diagram is None:  # a dry run
        return
    line = app_phase.agreement_line(diagram.grid, options)
    if as_json:
        common.print_json(json_out.phase_result(
            diagram, app_phase.agreement(diagram.grid), app_phase.best_c(diagram.grid), line))
        return
    common.console.print(line)
    common.console.print(f"grid: [bold]{diagram.grid_path}[/]\n"
                         f"figure: [bold]{diagram.figure_path}[/]")


@common.app.command()
def widths(
    widths_: Annotated[str, typer.Option(
        "--widths", metavar="N,N", help="Comma-separated hidden widths.")] = "128,256,512,1024",
    parametrizations: Annotated[str, typer.Option(
        metavar="A,B", help="standard, ntk, mup (model.parametrization).")] = "standard,mup",
    lrs: Annotated[str | None, typer.Option(
        metavar="X,Y", help="Learning rates: adds learning-rate transfer (lr_transfer.csv); "
                            "default: train.lr alone.")] = None,
    steps: Annotated[int, typer.Option(min=1, metavar="N", help="Training steps per run (the "
                                       "coordinate check records steps 0..N).")] = 3,
    seeds: Annotated[int, typer.Option(min=1, metavar="N", help="Seeds per cell.")] = 1,
    set_: common.SetOption = None,
    name: Annotated[str, typer.Option(metavar="NAME", help="Sweep name.")] = "widths",
    dry_run: common.DryRunOption = False,
    jobs: Annotated[int, typer.Option(min=1, metavar="N", help="Worker processes.")] = 1,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    data_dir: common.DataDirOption = None,
    as_json: common.JsonOption = False,
) -> None:
    """Coordinate check and learning-rate transfer across widths, per parametrization.

    Trains an MLP (depth 4, ReLU, Adam, lr 1e-3, 10,000 MNIST examples; change any of it with
    --set) at every width under each parametrization (base width: the smallest), recording each
    layer's mean |z_l| at steps 0..N. Writes coord.csv and coord_slopes.csv (slope of
    coordinate size vs width per layer and step, beside the theory's: 0 is stable) and
    coord.png; with --lrs, lr_transfer.csv and lr_transfer.png (train loss vs lr per width, the
    best lr per width and its spread). Yang et al. 2021 (Tensor Programs V). Rerun to resume.
    """
    from winit_cli.app.compare import split_option
    from winit_cli.app.widths import WidthOptions

    with common.user_errors():
        options = WidthOptions(
            split_option(widths_, int, "--widths"), split_option(parametrizations),
            split_option(lrs, float, "--lrs") if lrs else None, steps, seeds, name=name,
            overrides=set_ or [])
        _widths(options, dry_run, jobs, executor, address, data_dir, as_json)


def _widths(options, dry_run: bool, jobs: int, executor: str, address, data_dir,
            as_json: bool) -> None:
    from winit_cli.app import widths as app_widths
    from winit_cli.views import json_out
    from winit_cli.views.widths import slope_table

    shown = common.shown(False, as_json)
    planned = app_widths.plan_widths(options)
    study = _planned_sweep(
        shown, as_json, planned, dry_run, jobs, address, data_dir,
        "base config, as its first run resolves it",
        lambda executor_options, on_progress, advance: app_widths.run_widths(
            options, executor=executor, executor_options=executor_options,
            on_progress=on_progress, on_member=lambda _: advance(), planned=planned))
    if study is None:  # a dry run
        return
    verdicts = list(app_widths.verdicts(study.slopes).values()) if len(study.slopes) else []
    spreads = app_widths.spread_lines(study.lr_transfer) \
        if study.lr_transfer is not None else []
    d = study.directory
    files = [d / "coord.csv", d / "coord_slopes.csv", d / "coord.png"]
    if study.lr_transfer is not None:
        files += [d / "lr_transfer.csv", d / "lr_transfer.png"]
    if as_json:
        common.print_json({"sweep_dir": str(d), "files": [str(f) for f in files],
                           "verdicts": verdicts, "lr_spread": spreads,
                           "slopes": json_out.records(study.slopes),
                           "lr_transfer": json_out.records(study.lr_transfer)
                           if study.lr_transfer is not None else None})
        return
    if len(study.slopes):
        common.console.print(slope_table(study.slopes))
    for line in [*verdicts, *spreads]:
        common.console.print(line, highlight=False)
    common.console.print("\n".join(f"[bold]{f}[/]" for f in files), highlight=False)
