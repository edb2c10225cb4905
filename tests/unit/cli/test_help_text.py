"""`--help` of every command reads well at any terminal width: prose wraps where the width says,
not where a docstring's source lines happened to end, and usage lines name arguments the way
usage lines do (CONFIG, [PATHS]...), not as Typer's `{config}`.

The commands are discovered from the Typer app, so a new command is checked without editing
this file. What "no ragged break" means here, precisely: in a paragraph of prose, a line may
end only where the next line's first word would not have fit after it. Lines are checked in
two places:

- the description (between the usage line and the first panel), paragraph by paragraph
  (paragraphs are separated by blank lines); its text may reach column width - 1 (Rich pads it
  by one column at each side);
- the panels (Arguments, Options, Commands): a row continues the row above when its text starts
  at a column where the row above also has text, after a space (the description column of a
  table), and is not one of Typer's own annotations ("[default: ...]", "[required]", ...),
  which Typer puts on a line of their own; the text may reach the column before the closing
  border's padding.

One column of slack is allowed in both places.
"""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from winit_cli.cli import app

WIDTHS = (80, 200)


def command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the app, as the words that name it (the app itself: ()).
    (Typer vendors its own Click: a group is what has subcommands.)"""
    found = [prefix]
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            if not sub.hidden:
                found += command_paths(sub, (*prefix, name))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def render(path: tuple[str, ...], width: int) -> str:
    """`winit PATH --help` as a terminal of `width` columns shows it. Typer reads
    $TERMINAL_WIDTH once, when its rich_utils is first imported, into MAX_WIDTH (which then
    overrides $COLUMNS): set both for this call."""
    import typer.rich_utils

    kept = typer.rich_utils.MAX_WIDTH
    typer.rich_utils.MAX_WIDTH = width
    try:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(width)})
    finally:
        typer.rich_utils.MAX_WIDTH = kept
    assert result.exit_code == 0, result.output
    return result.output


def first_word(text: str) -> str:
    return text.split()[0] if text.split() else ""


def ragged_description(lines: list[str], width: int) -> list[str]:
    """Lines of the description that end while the next word would have fit after them."""
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:"))
    end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
    body = [line.rstrip() for line in lines[start + 1:end]]
    usage_ends = next((i for i, line in enumerate(body) if not line.strip()), 0)
    found = []
    for a, b in zip(body[usage_ends:], body[usage_ends + 1:], strict=False):
        if a.strip() and b.strip() and len(a) + 1 + len(first_word(b)) <= width - 2:
            found.append(f"{a!r} then {b.strip()!r}")
    return found


def ragged_panels(lines: list[str]) -> list[str]:
    """Rows of a panel's text column that end while the next row's first word would have fit."""
    found = []
    rows = [line for line in lines if line.startswith("│") and line.rstrip().endswith("│")]
    for a, b in zip(rows, rows[1:], strict=False):
        inner_a, inner_b = a.rstrip()[1:-1], b.rstrip()[1:-1]
        text_b = inner_b.strip()
        if not text_b or text_b.startswith("["):
            continue
        column = len(inner_b) - len(inner_b.lstrip())
        continues = column > 1 and inner_a[column - 1:column] == " " and \
            inner_a[column:].strip() != ""
        limit = len(inner_a) - 1  # the closing border's padding
        if continues and len(inner_a.rstrip()) + 1 + len(first_word(text_b)) <= limit - 1:
            found.append(f"{a.strip()!r} then {text_b!r}")
    return found


def usage_line(lines: list[str]) -> str:
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:"))
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line.strip())
    return " ".join(block)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "winit")
def test_help_wraps_at_the_terminal_width(path: tuple[str, ...], width: int) -> None:
    lines = render(path, width).splitlines()
    assert max(len(line) for line in lines) <= width
    ragged = ragged_description(lines, width) + ragged_panels(lines)
    assert not ragged, f"winit {' '.join(path)} --help at {width} columns:\n" + "\n".join(ragged)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "winit")
def test_usage_line_names_arguments_readably(path: tuple[str, ...]) -> None:
    usage = usage_line(render(path, 80).splitlines())
    assert not re.search(r"[{}]", usage), usage
    arguments = usage.partition("[OPTIONS]")[2]
    assert arguments == arguments.upper(), f"an argument named in lower case: {usage}"


def test_every_command_is_discovered() -> None:
    """The walk reaches the nested commands (compare schemes, index rebuild, export ...)."""
    assert {("run",), ("compare", "schemes"), ("phase",), ("report",)} <= set(COMMANDS)


def test_the_check_finds_a_ragged_break() -> None:
    """The checks themselves: a hard-wrapped description and panel row are caught, a well
    wrapped one is not."""
    lines = [" Usage: winit x [OPTIONS]", "", " First line.", "",
             " A paragraph that breaks", " early while the next word fits.", ""]
    assert ragged_description(lines, 80)
    assert not ragged_description(lines[:5], 80)
    panel = ["│ run      Train one MLP, recording                                            │",
             "│          per-layer gradients from step 0.                                    │"]
    assert ragged_panels(panel)
