"""The command line: one function per command, in four modules (experiment: run; sweeps:
compare, phase; results: report, schemes, index, export; advise) on one Typer app (common.py).
Each parses, calls the application layer (app/), renders with the views (views/) and maps errors
to exit codes. torch is imported inside the commands, so `winit --help` answers at once.
`--json` puts one JSON document on stdout and nothing else (progress goes to stderr); `--quiet`
prints only the result's path.
"""

from __future__ import annotations

from winit_cli.cli import advise, common, experiment, results, sweeps  # noqa: F401  registers them
from winit_cli.cli.common import app

common.tidy_help(app)  # every command registered: their help as paragraphs the terminal wraps

__all__ = ["app", "main"]


def main() -> None:
    import signal

    from winit_cli.interrupts import raise_on

    # `timeout`, `kill`, batch schedulers and closed terminals stop a run as Ctrl-C does: what
    # was measured is saved and the run is marked interrupted.
    raise_on(signal.SIGTERM, signal.SIGHUP)
    common.started_by_main = True
    app()
