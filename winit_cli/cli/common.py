"""What every command shares: the Typer app, the consoles, the common options, and the mapping
of errors to exit codes. Commands print through `console` read from this module at call time
(`common.console`), so a test can replace it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from winit_cli.errors import WinitError, printable

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


def _usage_name(self: typer.core.TyperArgument) -> str:
    """An argument on the usage line as usage lines name them: CONFIG when required, [PATHS]
    when optional, then ... when repeatable; not Typer's `{config}`."""
    name = self.metavar or self.name.upper()
    return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")


typer.core.TyperArgument._usage_display_name = _usage_name


def as_paragraphs(text: str) -> str:
    """Help text as paragraphs that the terminal wraps: the lines within each paragraph
    (paragraphs are separated by blank lines) joined with spaces. Docstrings are wrapped at the
    source's width, and Typer's rich mode keeps those breaks after the first paragraph, which
    leaves ragged lines on any other width. A paragraph that starts with Click's \\b keeps
    its line breaks."""
    parts = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in parts)


def tidy_help(typer_app: typer.Typer) -> None:
    """Every command's and group's help text (docstring or help=) as paragraphs, in place,
    for this app and the apps added to it. Called once every command is registered."""
    if isinstance(typer_app.info.help, str):
        typer_app.info.help = as_paragraphs(typer_app.info.help)
    infos = [*typer_app.registered_commands, *typer_app.registered_groups,
             *([typer_app.registered_callback] if typer_app.registered_callback else [])]
    for info in infos:
        if isinstance(info.help, str):
            info.help = as_paragraphs(info.help)
        if info.callback is not None and info.callback.__doc__:
            info.callback.__doc__ = as_paragraphs(info.callback.__doc__)
        if isinstance(getattr(info, "typer_instance", None), typer.Typer):
            tidy_help(info.typer_instance)

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
    "--dry-run", help="Show the config and the wall time it will take, by part (start-up, "
                      "data, setup, steps, evaluation, writing), each timed here on the "
                      "group's model or counted from its schedule; train nothing.")]


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
    """A WinitError is the user's to fix: one red line, exit code 2. Anything else is a bug.
    A stop signal received during the block (see interrupts) stops it at its end at the latest."""
    from winit_cli import interrupts

    try:
        interrupts.check()
        yield
        interrupts.check()
    except WinitError as e:
        # escaped: a message may hold brackets (`pip install 'winit[ray]'`) that are not markup
        errors.print(f"[bold red]error:[/] {escape(printable(str(e)))}", highlight=False,
                     soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP turned into one by main()
        from winit_cli.interrupts import Terminated, exit_code

        _say_interrupted(f" by {e}" if isinstance(e, Terminated) else "")
        raise typer.Exit(exit_code(e)) from None


def _say_interrupted(how: str) -> None:
    with suppress(OSError):  # after SIGHUP the terminal may be gone
        errors.print(f"[yellow]interrupted{how}: what was measured so far is saved[/]")


def exit_interrupted(code: object) -> None:
    """At the `winit` command's exit: if a stop signal arrived and no command turned it into its
    exit code (it came outside every safe point, or before a command started), exit with that
    code now: a signalled process never reports success, nor 130 (Typer's Ctrl-C) for SIGTERM."""
    import signal

    from winit_cli import interrupts

    if interrupts.received is None or code == 128 + interrupts.received:
        return
    _say_interrupted("" if interrupts.received == signal.SIGINT
                     else f" by {signal.Signals(interrupts.received).name}")
    raise SystemExit(128 + interrupts.received)


def shown(quiet: bool, as_json: bool) -> Console:
    """Where progress goes: the terminal; stderr beside --json (stdout holds the document)."""
    return Console(quiet=True) if quiet else Console(stderr=True) if as_json else console


def print_json(data: dict) -> None:
    from winit_cli.views.json_out import dumps

    typer.echo(dumps(data))


def dry_run(shown: Console, as_json: bool, config, title: str, groups: list,
            payload: dict, data_dir: Path | None = None) -> None:
    """The config, then the cost: each part of the run's wall time measured here or counted."""
    from winit_cli.app.estimate import estimate
    from winit_cli.views import progress  # noqa: F401  imported by a real run: part of start-up
    from winit_cli.views.terminal import cost_lines, show_config

    show_config(shown, config, title)
    with shown.status("timing a few steps of each model"):
        # This process's age is a run's start-up only when it is the `winit` command (main()),
        # not a test or a library caller.
        cost = estimate(groups, data_dir, measure_startup=started_by_main)
    if as_json:
        from winit_cli.views.json_out import cost_estimate

        print_json({**payload, "steps": cost.steps, "estimated_seconds": cost.seconds,
                    "estimate": cost_estimate(cost)})
    else:
        cost_lines(shown, cost)


# Set by cli.main(): this process is the `winit` command, so its age is its start-up.
started_by_main = False
