"""The command line: one function per command; parse, call the library, render with Rich.

torch is imported inside the commands, so `winit --help` answers at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .errors import WinitError

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
    typer.Option("--data-dir", file_okay=False,
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
    from . import render
    from .config import load_config

    with user_errors():
        cfg = load_config(config, set_ or [])
        outcome = render.run_with_progress(console, cfg, data_dir)
        render.run_report(console, outcome)


def main() -> None:
    app()
