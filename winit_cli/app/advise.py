"""`winit advise`: theory's prediction for every init scheme on a config's network, and the one
to use, in a second: nothing trains and no data is read (diagnosis/advise.py computes it)."""

from __future__ import annotations

from pathlib import Path

from winit_cli.app.compare import split_option
from winit_cli.config import load_config
from winit_cli.diagnosis.advise import Advice, advise


def advise_config(path: Path | None, overrides: list[str], schemes: str | None) -> Advice:
    """The advice for the config at `path` (None: the built-in defaults) with `--set` overrides,
    over the comma-separated `schemes` (None: every registered scheme)."""
    config = load_config(path, overrides)
    return advise(config, split_option(schemes, str, "--schemes") or None)
