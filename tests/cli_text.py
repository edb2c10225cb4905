"""What the CLI printed, as a person reads it, for tests that check its words: Rich's colour
codes removed (it adds them when it takes the output for a terminal), the lines that are not
blank, and the config most CLI tests start from."""

from __future__ import annotations

import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def plain(text: str) -> str:
    return ANSI.sub("", text)


def printed_lines(text: str) -> list[str]:
    """The lines a person sees: colour codes removed, blank lines dropped."""
    return [line for line in plain(text).splitlines() if line.strip()]
