"""Errors a user can act on.

The CLI turns any `WinitError` into one red line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""


class WinitError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(WinitError):
    """A config file or override is invalid."""


class DataError(WinitError):
    """A dataset file is missing, corrupted or cannot be downloaded."""


class ResultsError(WinitError):
    """A results directory is missing or unreadable."""
