"""The command line: one function per command; parse, call the library, render with Rich.

torch is imported inside the commands, so `winit --help` answers at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console

from winit_cli.errors import ConfigError, WinitError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="winit: a lab for gradient-flow studies of weight initialization on MNIST.",
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
                 help="Folder holding the four MNIST IDX files (else config, $WINIT_DATA_DIR, "
                      "cache; downloaded if absent)."),
]


@app.callback()
def _group() -> None:
    """winit: a lab for gradient-flow studies of weight initialization on MNIST."""


@contextmanager
def user_errors() -> Iterator[None]:
    """A WinitError is the user's to fix: one red line, exit code 2. Anything else is a bug."""
    try:
        yield
    except WinitError as e:
        errors.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
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
    """Train one MLP on MNIST, recording per-layer gradients from step 0, and diagnose them."""
    from winit_cli.config import load_config
    from winit_cli.views import terminal as render

    with user_errors():
        cfg = load_config(config, set_ or [])
        outcome = render.run_with_progress(console, cfg, data_dir)
        render.run_report(console, outcome)


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
    data_dir: DataDirOption = None,
) -> None:
    """Compare init schemes (x activations x depths x widths x seeds); resumes if rerun."""
    from winit_cli.config import apply_override
    from winit_cli.sweeps import sweep
    from winit_cli.views import terminal as render

    with user_errors():
        if sweep_file is not None:
            given = [o for o, v in (("--base", base), ("--schemes", schemes), ("--activations",
                     activations), ("--depths", depths), ("--widths", widths), ("--grid", grid),
                     ("--seeds", seeds != 1 or None)) if v]
            if given:
                raise ConfigError(f"--sweep holds the grid; drop {', '.join(given)} "
                                  "(use --set for base values)")
            spec = sweep.load_spec(sweep_file)
            for item in set_ or []:
                apply_override(spec.base, item)
        else:
            axes = {"init.scheme": _split(schemes), "model.activation": _split(activations),
                    "model.depth": _split(depths, int, "--depths"),
                    "model.width": _split(widths, int, "--widths")}
            for item in grid or []:
                key, sep, values = item.partition("=")
                if not sep or not key.strip() or not values.strip():
                    raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2, "
                                      "e.g. --grid train.lr=0.1,0.01")
                axes[key.strip()] = [sweep.parse_value(v) for v in _split(values)]
            spec = sweep.spec_from_options(base, set_ or [], axes, list(range(seeds)), name)
        render.compare(console, spec, dry_run=dry_run, data_dir=data_dir, jobs=jobs)


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
    from winit_cli.views import terminal as render

    with user_errors():
        with console.status("reading runs and drawing plots"):
            result = build_report(paths or [], out=out, filters=filter_ or [])
        render.report_summary(console, result)


@app.command()
def schemes(
    name: Annotated[str | None, typer.Argument(
        help="Show this scheme's full docstring.", show_default=False)] = None,
    activation: Annotated[str, typer.Option(
        help="Activation for sigma_w^2 and chi, as in model.activation.")] = "relu",
    width: Annotated[int, typer.Option(min=1, help="Width of the square layer.")] = 512,
) -> None:
    """List the init schemes: formula, parameters, sigma_w^2 and chi at the fixed point."""
    from winit_cli.config import Activation
    from winit_cli.views import terminal as render

    with user_errors():
        known = get_args(Activation)
        if activation not in known:
            raise ConfigError(f"--activation: {activation!r} is not one of {', '.join(known)}")
        render.schemes(console, activation, width, name)


def main() -> None:
    app()
