"""Errors a user can act on.

The CLI turns any `WinitError` into one red line on stderr and exit code 2; anything else is a
bug and keeps its traceback. `shorten` and `clip` keep a value quoted in a message to a line;
`printable` keeps a message one line of plain text whatever the user typed into it (a newline,
a terminal escape).
"""

import re
from typing import Any

SHOWN = 60  # characters of a value shown in a message


class WinitError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(WinitError):
    """A config file or override is invalid."""


class DataError(WinitError):
    """A dataset file is missing, corrupted or cannot be downloaded."""


class ResultsError(WinitError):
    """A results directory is missing or unreadable."""


def shorten(value: Any, limit: int = SHOWN) -> str:
    """repr(value), cut to `limit` characters: a message shows a value, not a megabyte."""
    return clip(repr(value), limit)


def clip(text: str, limit: int = SHOWN) -> str:
    """`text` cut to about `limit` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text):,} chars)"


# C0 and C1 control characters (newline, tab and ESC among them) and Unicode's line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with every control character written as its Python escape (`\\n`, `\\x1b`):
    a value echoed in an error stays on its line and cannot recolour or move the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
